"""The parent's side: the worker's environment, the check before spawning, and why a run died."""


from __future__ import annotations

import os
import signal

from heptathlon.bench.errors import ProfileError
from heptathlon.bench.profile import Profile
from heptathlon.runners.controls.cgroups import CgroupHandle, cgroup_problem
from heptathlon.runners.controls.common import THREAD_VARS, _ALLOC_FAILURE_RE, format_size


# -- environment for the worker (parent side) ---------------------------------------------------

def thread_env(profile: Profile) -> dict[str, str]:
    """Environment for the worker: thread pools read these at import time, so the parent sets them."""
    n = str(profile.cpu.threads)
    return {k: n for k in THREAD_VARS}


def gpu_env(profile: Profile) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES hides every other GPU from the worker; inside, the chosen one is cuda:0.

    PCI bus order makes CUDA's numbering agree with NVML's (and with ``nvidia-smi``).
    """
    if profile.device != "cuda":
        return {}
    index = profile.gpu.index if profile.gpu else 0
    return {"CUDA_VISIBLE_DEVICES": str(index), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def control_env(profile: Profile) -> dict[str, str]:
    """Everything the parent puts in the worker's environment for the profile (threads, GPU)."""
    return {**thread_env(profile), **gpu_env(profile)}


# -- the parent's check before spawning ------------------------------------------------------

def validate_profile_for_machine(profile: Profile) -> None:
    """Refuse, before anything runs, a profile this machine cannot honour.

    The parent calls this before it creates a cgroup or spawns a worker. Controls listed in
    best_effort pass here and are recorded as not taken effect by the worker.
    """
    if profile.device == "cuda":
        from heptathlon.bench.fingerprint import count_nvidia_gpus

        n, note = count_nvidia_gpus()
        if n == 0:
            raise ProfileError(f"profile {profile.name!r}: field 'device': 'cuda' needs an NVIDIA GPU, "
                               f"but none is visible on this machine ({note})")
        index = profile.gpu.index if profile.gpu else 0
        if index >= n and not profile.allows_best_effort("gpu.index"):
            raise ProfileError(f"profile {profile.name!r}: field 'gpu.index': GPU {index} does not exist; "
                               f"this machine has {n} GPU(s), indices 0..{n - 1}")
    elif profile.precision == "fp16" and not profile.allows_best_effort("precision"):
        raise ProfileError(f"profile {profile.name!r}: field 'precision': fp16 runs on device: cuda only; "
                           f"use bf16 or int8 for a CPU profile")
    if profile.cpu.cores is not None:
        available = sorted(os.sched_getaffinity(0))
        missing = [c for c in profile.cpu.cores if c not in available]
        if missing and not profile.allows_best_effort("cpu.cores"):
            raise ProfileError(f"profile {profile.name!r}: field 'cpu.cores': cores {missing} do not exist "
                               f"here (this machine offers {available})")
    limit = profile.memory_limit_bytes
    if limit is not None:
        import psutil

        total = psutil.virtual_memory().total
        if limit > total and not profile.allows_best_effort("memory_limit"):
            raise ProfileError(f"profile {profile.name!r}: field 'memory_limit': {format_size(limit)} is more "
                               f"than this machine's {format_size(total)} of RAM, so it would limit nothing")
    if profile.cpu.quota is not None and not profile.allows_best_effort("cpu.quota"):
        problem = cgroup_problem("cpu")
        if problem:
            raise ProfileError(f"profile {profile.name!r}: field 'cpu.quota': a CPU quota needs the cgroup "
                               f"cpu controller, which is not usable here ({problem})")
    if profile.require_sandbox:
        from heptathlon.runners.sandbox import available_mechanisms, unavailable_reasons

        if not available_mechanisms():
            raise ProfileError(f"profile {profile.name!r}: field 'require_sandbox': no sandbox works on this "
                               f"machine ({unavailable_reasons()})")



# -- after the run (parent side) -------------------------------------------------------------

def memory_limit_kill_reason(profile: Profile, returncode: int | None, stderr_tail: str = "",
                             cgroup: CgroupHandle | None = None) -> str | None:
    """'memory limit of 512 MiB exceeded' when the memory limit ended the worker, else None.

    Recognises a cgroup OOM kill (the kernel's oom_kill counter, or SIGKILL after usage ran
    into the limit) and an allocation failure under RLIMIT_AS (MemoryError, std::bad_alloc in
    the stderr tail of a worker that exited non-zero).
    """
    limit = profile.memory_limit_bytes
    if limit is None or returncode == 0:
        return None
    reason = f"memory limit of {format_size(limit)} exceeded"
    if cgroup is not None:
        if (cgroup.oom_kill_count() or 0) > 0:
            return reason
        killed = returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
        if killed and (cgroup.memory_limit_hits() or 0) > 0:
            return reason
    if returncode is not None and _ALLOC_FAILURE_RE.search(stderr_tail or ""):
        return reason
    return None
