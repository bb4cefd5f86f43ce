"""Enforcement of a hardware profile's controls, before the model loads.

Every control records what was requested, what is in effect, by which mechanism and whether
it took effect, so a result says exactly under which conditions it was measured. A control
that cannot be applied raises ProfileError naming the profile and the field, unless the
profile lists the field in ``best_effort``.

Who does what (see docs/profiles.md):

- parent, before spawning: ``validate_profile_for_machine``, then ``create_run_cgroup`` and
  ``control_env``; the worker's argv goes through ``CgroupHandle.wrap_argv`` so the worker
  is inside its cgroup before its first instruction runs;
- worker, before loading the model: ``apply_controls`` (affinity, threads, and a check that
  the cgroup limits really hold for this process), then ``apply_torch_controls`` or
  ``ort_session_options`` once the runtime is imported;
- parent, after the worker exits: ``CgroupHandle.peak_memory_bytes``,
  ``memory_limit_kill_reason``, ``CgroupHandle.cleanup``.

Cgroups: v2 where the unified hierarchy has the controller, else v1 (this project's machines
mount v1 for memory/cpu/cpuset and an empty v2). A run's cgroup is created inside the
caller's own cgroup, so limits set by whoever started the harness still apply on top.
"""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shlex
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heptathlon.bench.errors import ProfileError
from heptathlon.bench.profile import Profile
from heptathlon.runners.meters.cgroup_memory import cgroup_peak_bytes
from heptathlon.runners.meters.memory import MemoryReading

CGROUP_ENV = "HEPTATHLON_CGROUP"
CGROUP_PREFIX = "heptathlon-"
CFS_PERIOD_US = 100_000
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")
_V1_CONTROLLERS = frozenset({"memory", "cpu", "cpuset", "cpuacct", "pids"})
_PAGE = os.sysconf("SC_PAGE_SIZE")
# What a process says when an allocation fails under RLIMIT_AS (Python, libstdc++, glibc, ORT).
_ALLOC_FAILURE_RE = re.compile(r"\bMemoryError\b|std::bad_alloc|Cannot allocate memory|"
                               r"Failed to allocate memory|DefaultCPUAllocator: can't allocate memory|"
                               r"\bout of memory\b", re.IGNORECASE)


# -- small helpers ---------------------------------------------------------------------------

def format_size(n_bytes: int) -> str:
    """536870912 -> '512 MiB': the unit the profile was most likely written in."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= size and n_bytes % size == 0:
            return f"{n_bytes // size} {unit}"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes} B"


def _record(requested: Any, effective: Any, mechanism: str | None, took_effect: bool, **extra: Any) -> dict[str, Any]:
    return {"requested": requested, "effective": effective, "mechanism": mechanism, "took_effect": took_effect,
            **extra}


def _not_applied(profile: Profile, field_name: str, reason: str, requested: Any, effective: Any = None,
                 mechanism: str | None = None) -> dict[str, Any]:
    """Raise for a control that did not take effect, or record it when the profile allows that."""
    if not profile.allows_best_effort(field_name):
        raise ProfileError(f"profile {profile.name!r}: field '{field_name}': {reason} "
                           f"(list '{field_name}' under best_effort to run without it)")
    return _record(requested, effective, mechanism, False, reason=reason)


def _read(path: Path) -> str:
    return path.read_text().strip()


def _read_int(path: Path) -> int | None:
    try:
        text = _read(path)
    except OSError:
        return None
    return None if text == "max" else int(text)


def _read_keyed(path: Path, key: str) -> int | None:
    """A 'key value' line from cpu.stat, memory.events or memory.oom_control."""
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except OSError:
        pass
    return None


def _write(path: Path, value: Any) -> None:
    path.write_text(f"{value}\n")


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


# -- cgroups ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Hierarchy:
    version: int
    mountpoint: Path
    mount_root: str  # the hierarchy path mounted at mountpoint ("/" outside containers)
    controllers: frozenset[str]


def _unescape_mountinfo(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _hierarchies() -> list[_Hierarchy]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        pre, sep, post = line.partition(" - ")
        f, p = pre.split(), post.split()
        if not sep or len(f) < 5 or len(p) < 3:
            continue
        fstype, superopts = p[0], p[2]
        root, mountpoint = _unescape_mountinfo(f[3]), Path(_unescape_mountinfo(f[4]))
        if fstype == "cgroup2":
            try:
                ctrls = frozenset((mountpoint / "cgroup.controllers").read_text().split())
            except OSError:
                ctrls = frozenset()
            out.append(_Hierarchy(2, mountpoint, root, ctrls))
        elif fstype == "cgroup":
            ctrls = frozenset(o for o in superopts.split(",") if o in _V1_CONTROLLERS)
            if ctrls:
                out.append(_Hierarchy(1, mountpoint, root, ctrls))
    return out


def _own_cgroups(pid: int | str = "self") -> tuple[dict[str, str], str | None]:
    """(v1 controller -> path, v2 path) of a process, as /proc/PID/cgroup names them."""
    v1: dict[str, str] = {}
    v2 = None
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return v1, v2
    for line in lines:
        hid, ctrls, path = line.split(":", 2)
        if hid == "0" and ctrls == "":
            v2 = path
        else:
            for c in ctrls.split(","):
                v1[c] = path
    return v1, v2


def _pick_hierarchy(controller: str) -> _Hierarchy | None:
    hs = _hierarchies()
    for version in (2, 1):  # v2 wins where the unified hierarchy really has the controller
        for h in hs:
            if h.version == version and controller in h.controllers:
                return h
    return None


def _dir_of(h: _Hierarchy, cg_path: str) -> Path | None:
    root = h.mount_root.rstrip("/")
    if root and not (cg_path == root or cg_path.startswith(root + "/")):
        return None  # this process lives outside the part of the hierarchy mounted here
    return h.mountpoint / cg_path[len(root):].lstrip("/")


def _join_path(cg_path: str, name: str) -> str:
    return cg_path.rstrip("/") + "/" + name


def cgroup_problem(controller: str) -> str | None:
    """Why a run cgroup with this controller cannot be made here; None when it can."""
    if os.geteuid() != 0:
        return "not running as root"
    h = _pick_hierarchy(controller)
    if h is None:
        return f"no cgroup hierarchy with the {controller} controller is mounted"
    v1, v2 = _own_cgroups()
    own = v2 if h.version == 2 else v1.get(controller)
    d = None if own is None else _dir_of(h, own)
    if d is None or not d.is_dir():
        return f"this process's {controller} cgroup is not visible under {h.mountpoint}"
    if not os.access(d, os.W_OK):
        return f"{d} is not writable"
    return None


@dataclass
class CgroupHandle:
    """A per-run cgroup (one directory per v1 hierarchy, or one v2 directory).

    Created by ``create_run_cgroup``; ``cleanup()`` removes it and is safe to call twice.
    """

    run_id: str
    name: str
    profile_name: str
    creator_pid: int
    dirs: dict[str, Path] = field(default_factory=dict)       # controller -> directory
    versions: dict[str, int] = field(default_factory=dict)    # controller -> 1 | 2
    members: dict[str, str] = field(default_factory=dict)     # controller -> path in /proc/PID/cgroup
    controls: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)    # controller -> why it is missing

    @property
    def path(self) -> Path | None:
        """The memory cgroup's directory (the one that measures and limits memory)."""
        return self.dirs.get("memory") or next(iter(self.dirs.values()), None)

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in dict.fromkeys(self.dirs.values())]

    def describe(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "name": self.name, "creator_pid": self.creator_pid,
                "dirs": {c: str(d) for c, d in self.dirs.items()}, "versions": dict(self.versions),
                "members": dict(self.members), "controls": self.controls, "problems": dict(self.problems)}

    def env(self) -> dict[str, str]:
        """Put this in the worker's environment: ``apply_controls`` checks membership and limits."""
        return {CGROUP_ENV: json.dumps(self.describe())}

    def wrap_argv(self, argv: list[str]) -> list[str]:
        """argv that joins the cgroup, then execs ``argv``: the worker starts inside it.

        A shell `echo $$ > cgroup.procs; exec` rather than preexec_fn, which is unsafe in a
        parent that runs sampler threads. Children (a sandbox, a command submission) inherit
        the cgroup, so the limit and the peak cover the whole process tree.
        """
        if not self.dirs:
            return list(argv)
        joins = " && ".join(f"echo $$ > {shlex.quote(str(p))}" for p in self.procs_files)
        script = (f"{{ {joins}; }} || {{ echo 'heptathlon: could not join the run cgroup {self.name}' >&2; "
                  f"exit 125; }}; exec \"$@\"")
        return ["/bin/sh", "-c", script, "heptathlon-cgroup-join", *argv]

    def add_pid(self, pid: int) -> None:
        """Move a running process in (its threads follow; its existing children do not)."""
        for p in self.procs_files:
            _write(p, pid)

    def join(self) -> None:
        """Move the calling process in: for a worker that manages its own cgroup."""
        self.add_pid(os.getpid())

    def pids(self) -> list[int]:
        out: set[int] = set()
        for p in self.procs_files:
            try:
                out.update(int(x) for x in p.read_text().split())
            except OSError:
                pass
        return sorted(out)

    def peak_memory(self) -> MemoryReading | None:
        """Exact peak charged to the cgroup (kernel counter, page cache included); None without a memory cgroup."""
        d = self.dirs.get("memory")
        return None if d is None else cgroup_peak_bytes(d)

    def peak_memory_bytes(self) -> int | None:
        reading = self.peak_memory()
        return None if reading is None else reading.peak_bytes

    def memory_limit_bytes(self) -> int | None:
        d = self.dirs.get("memory")
        if d is None:
            return None
        value = _read_int(d / ("memory.max" if self.versions["memory"] == 2 else "memory.limit_in_bytes"))
        return None if value is None or value >= 2**62 else value

    def oom_kill_count(self) -> int | None:
        """How many processes the kernel's OOM killer ended inside this cgroup."""
        d = self.dirs.get("memory")
        if d is None:
            return None
        if self.versions["memory"] == 2:
            return _read_keyed(d / "memory.events", "oom_kill")
        return _read_keyed(d / "memory.oom_control", "oom_kill")

    def memory_limit_hits(self) -> int | None:
        """How often usage ran into the limit (v1 memory.failcnt, v2 memory.events max)."""
        d = self.dirs.get("memory")
        if d is None:
            return None
        if self.versions["memory"] == 2:
            return _read_keyed(d / "memory.events", "max")
        return _read_int(d / "memory.failcnt")

    def cpu_stat(self) -> dict[str, int] | None:
        """cpu.stat: nr_periods (quota periods in which the cgroup ran), nr_throttled, ..."""
        d = self.dirs.get("cpu")
        if d is None:
            return None
        try:
            return {k: int(v) for k, _, v in (ln.partition(" ") for ln in (d / "cpu.stat").read_text().splitlines())}
        except (OSError, ValueError):
            return None

    def cleanup(self) -> None:
        """Kill anything left inside, then remove the directories. Idempotent."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for d in reversed(list(dict.fromkeys(self.dirs.values()))):
            _rmdir_cgroup(d)
        self.dirs.clear()

    def __enter__(self) -> CgroupHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _rmdir_cgroup(d: Path, attempts: int = 200) -> None:
    # rmdir fails with EBUSY until the kernel has finished tearing down killed tasks; that
    # takes milliseconds, so a short bounded retry (not a test synchronisation) is enough.
    for _ in range(attempts):
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
    d.rmdir()


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:48] or "run"


def _v2_base(h: _Hierarchy, own: str, controllers: list[str]) -> tuple[Path, str]:
    """Where a v2 run cgroup can go: inside our own cgroup, else beside it.

    v2's no-internal-processes rule forbids enabling controllers for the children of a
    cgroup that holds processes (ours does), except at the root; the parent cgroup already
    delegates the controllers we have, so a sibling always works.
    """
    d = _dir_of(h, own)
    if d is None:
        raise OSError(f"this process's cgroup {own} is not visible under {h.mountpoint}")
    try:
        enabled = set(_read(d / "cgroup.subtree_control").split())
        missing = [c for c in controllers if c not in enabled]
        if missing:
            _write(d / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
        return d, own
    except OSError:
        if d == h.mountpoint:
            raise
        parent_own = own.rstrip("/").rsplit("/", 1)[0] or "/"
        return d.parent, parent_own


def _make_dirs(handle: CgroupHandle, wanted: list[str]) -> None:
    v1_own, v2_own = _own_cgroups()
    by_hier: dict[_Hierarchy, list[str]] = {}
    for c in wanted:
        h = _pick_hierarchy(c)
        if h is None:
            handle.problems[c] = f"no cgroup hierarchy with the {c} controller is mounted"
        else:
            by_hier.setdefault(h, []).append(c)
    for h, ctrls in by_hier.items():
        try:
            if h.version == 2:
                if v2_own is None:
                    raise OSError("this process is not in the cgroup v2 hierarchy")
                base, base_path = _v2_base(h, v2_own, ctrls)
            else:
                own = v1_own.get(ctrls[0])
                base = None if own is None else _dir_of(h, own)
                if base is None:
                    raise OSError(f"this process's {ctrls[0]} cgroup is not visible under {h.mountpoint}")
                base_path = own
            d = base / handle.name
            d.mkdir()
        except OSError as e:
            for c in ctrls:
                handle.problems[c] = f"cannot create a cgroup under {h.mountpoint}: {e}"
            continue
        for c in ctrls:
            handle.dirs[c] = d
            handle.versions[c] = h.version
            handle.members[c] = _join_path(base_path, handle.name)


def _set_memory(handle: CgroupHandle, limit: int | None) -> dict[str, Any] | None:
    d = handle.dirs.get("memory")
    if d is None:
        if limit is None:
            return None
        return {"requested": limit, "configured": False, "mechanism": "RLIMIT_AS (applied by the worker)",
                "reason": handle.problems.get("memory", "no memory cgroup")}
    if limit is None:
        return None  # the cgroup is still there: it measures the exact peak
    if handle.versions["memory"] == 2:
        _write(d / "memory.max", limit)
        for name, value in (("memory.swap.max", 0), ("memory.oom.group", 1)):
            try:
                _write(d / name, value)  # no swapping past the limit; an OOM kill ends the whole tree
            except OSError:
                pass
        mechanism = "cgroup v2 memory.max"
    else:
        _write(d / "memory.limit_in_bytes", limit)
        try:
            _write(d / "memory.memsw.limit_in_bytes", limit)  # no swapping past the limit
        except OSError:
            pass  # swap accounting off: then there is nothing to swap through either
        mechanism = "cgroup v1 memory.limit_in_bytes"
    return {"requested": limit, "effective": handle.memory_limit_bytes(), "configured": True,
            "mechanism": mechanism, "path": str(d)}


def _quota_of(d: Path, version: int) -> float | None:
    if version == 2:
        quota, _, period = _read(d / "cpu.max").partition(" ")
        return None if quota == "max" else int(quota) / int(period)
    quota_us, period_us = _read_int(d / "cpu.cfs_quota_us"), _read_int(d / "cpu.cfs_period_us")
    return None if quota_us is None or quota_us < 0 or not period_us else quota_us / period_us


def _set_quota(handle: CgroupHandle, quota: float) -> dict[str, Any]:
    d = handle.dirs.get("cpu")
    if d is None:
        return {"requested": quota, "configured": False, "mechanism": None,
                "reason": handle.problems.get("cpu", "no cpu cgroup")}
    quota_us = max(1000, round(quota * CFS_PERIOD_US))  # the kernel's minimum quota is 1 ms
    if handle.versions["cpu"] == 2:
        _write(d / "cpu.max", f"{quota_us} {CFS_PERIOD_US}")
        mechanism = "cgroup v2 cpu.max"
    else:
        _write(d / "cpu.cfs_period_us", CFS_PERIOD_US)
        _write(d / "cpu.cfs_quota_us", quota_us)
        mechanism = "cgroup v1 cpu.cfs_quota_us"
    return {"requested": quota, "effective": _quota_of(d, handle.versions["cpu"]), "configured": True,
            "mechanism": mechanism, "path": str(d)}


def _set_cpuset(handle: CgroupHandle, cores: list[int]) -> dict[str, Any] | None:
    d = handle.dirs.get("cpuset")
    if d is None:
        return None
    try:
        _write(d / "cpuset.cpus", ",".join(map(str, cores)))
        if handle.versions["cpuset"] == 1:  # v1 refuses tasks until both are set
            parent = d.parent
            mems_file = parent / "cpuset.effective_mems"
            _write(d / "cpuset.mems", _read(mems_file if mems_file.exists() else parent / "cpuset.mems"))
    except OSError as e:
        handle.problems["cpuset"] = f"cpuset.cpus={cores} refused: {e}"
        _rmdir_cgroup(d)
        handle.dirs.pop("cpuset")
        handle.versions.pop("cpuset")
        handle.members.pop("cpuset")
        return None
    return {"requested": cores, "configured": True, "mechanism": f"cgroup v{handle.versions['cpuset']} cpuset.cpus",
            "path": str(d)}


def create_run_cgroup(run_id: str, profile: Profile) -> CgroupHandle:
    """Make a fresh cgroup for one run and set the profile's quota, memory limit and cpuset.

    The memory controller is always used when available, also without a limit, because its
    counter gives the exact peak. Raises ProfileError when a CPU quota is requested and the
    cpu controller is not usable (unless best_effort lists cpu.quota); a memory limit falls
    back to RLIMIT_AS in the worker instead. Either the parent or the worker may call this;
    the parent is the robust choice (see the module docstring).
    """
    # The run id names it for people; the random part keeps two handles for one run id apart;
    # the creator's pid comes last so cleanup_stale_run_cgroups can tell when it has exited.
    name = f"{CGROUP_PREFIX}{_safe_name(run_id)}-{secrets.token_hex(3)}-{os.getpid()}"
    handle = CgroupHandle(run_id=run_id, name=name, profile_name=profile.name, creator_pid=os.getpid())
    if os.geteuid() != 0:
        handle.problems = {c: "not running as root" for c in ("memory", "cpu", "cpuset")}
    wanted = ["memory"] + (["cpu"] if profile.cpu.quota is not None else []) + \
        (["cpuset"] if profile.cpu.cores is not None else [])
    try:
        if os.geteuid() == 0:
            _make_dirs(handle, wanted)
        try:
            mem = _set_memory(handle, profile.memory_limit_bytes)
        except OSError as e:
            mem = {"requested": profile.memory_limit_bytes, "configured": False,
                   "mechanism": "RLIMIT_AS (applied by the worker)", "reason": f"the cgroup refused the limit: {e}"}
        if mem is not None:
            handle.controls["memory_limit"] = mem
        if profile.cpu.quota is not None:
            try:
                q = _set_quota(handle, profile.cpu.quota)
            except OSError as e:
                q = {"requested": profile.cpu.quota, "configured": False, "mechanism": None,
                     "reason": f"the cgroup refused the quota: {e}"}
            if not q["configured"]:
                _not_applied(profile, "cpu.quota", f"a CPU quota needs the cgroup cpu controller ({q['reason']})",
                             profile.cpu.quota)
            handle.controls["cpu.quota"] = q
        if profile.cpu.cores is not None:
            cs = _set_cpuset(handle, profile.cpu.cores)
            if cs is not None:
                handle.controls["cpuset"] = cs
    except BaseException:
        handle.cleanup()
        raise
    return handle


def cleanup_stale_run_cgroups() -> list[Path]:
    """Remove empty run cgroups whose creator has exited (a worker cannot remove its own)."""
    import psutil

    removed = []
    v1, v2 = _own_cgroups()
    bases = set()
    for h in _hierarchies():
        own = v2 if h.version == 2 else next((v1[c] for c in h.controllers if c in v1), None)
        d = None if own is None else _dir_of(h, own)
        if d is not None:
            bases.update({d, d.parent})
    for base in bases:
        for d in base.glob(f"{CGROUP_PREFIX}*"):
            m = re.search(r"-(\d+)$", d.name)
            if not m or psutil.pid_exists(int(m.group(1))):
                continue
            try:
                if not (d / "cgroup.procs").read_text().split():
                    d.rmdir()
                    removed.append(d)
            except OSError:
                pass
    return removed


# -- the worker's side -----------------------------------------------------------------------

def _cgroup_from_env(profile: Profile, use_cgroups: bool) -> tuple[dict[str, Any] | None, str | None]:
    raw = os.environ.get(CGROUP_ENV)
    if raw and use_cgroups:
        return json.loads(raw), "parent"
    needs = profile.cpu.quota is not None or profile.memory_limit is not None
    if not (use_cgroups and needs and os.geteuid() == 0):
        return None, None
    # No cgroup from the parent: the worker makes its own and moves in. It cannot remove the
    # directory while inside it; cleanup_stale_run_cgroups() does that after it exits.
    handle = create_run_cgroup(f"pid{os.getpid()}", profile)
    try:
        handle.join()
    except OSError as e:
        handle.problems.update({c: f"cannot join {d}: {e}" for c, d in handle.dirs.items()})
        handle.cleanup()
        handle.members.clear()
        handle.controls.clear()
        return handle.describe(), None
    return handle.describe(), "worker"


def _membership(info: dict[str, Any]) -> dict[str, bool]:
    v1, v2 = _own_cgroups()
    return {c: (v2 if info["versions"][c] == 2 else v1.get(c)) == expected for c, expected in info["members"].items()}


def _apply_affinity(profile: Profile, info: dict[str, Any] | None, member: dict[str, bool]) -> dict[str, Any]:
    cores = profile.cpu.cores
    available = sorted(os.sched_getaffinity(0))
    missing = [c for c in cores if c not in available]
    if missing:
        return _not_applied(profile, "cpu.cores", f"cores {missing} do not exist here (this process may use "
                            f"{available})", cores, available)
    os.sched_setaffinity(0, cores)
    effective = sorted(os.sched_getaffinity(0))
    mechanism = "sched_setaffinity"
    if info and member.get("cpuset"):
        mechanism = f"{info['controls']['cpuset']['mechanism']} + sched_setaffinity"
    if effective != sorted(cores):
        return _not_applied(profile, "cpu.cores", f"affinity is {effective} after setting it", cores, effective,
                            mechanism)
    return _record(cores, effective, mechanism, True)


def _apply_threads(profile: Profile) -> dict[str, Any]:
    wanted = thread_env(profile)
    seen = {k: os.environ.get(k) for k in wanted}
    if seen == wanted:
        return _record(profile.cpu.threads, profile.cpu.threads, "environment from the parent", True, env=seen)
    # Not set by the parent: set it now. Pools that read it already (numpy imported before
    # this point) keep their size, which is why the parent should pass control_env().
    os.environ.update(wanted)
    return _record(profile.cpu.threads, profile.cpu.threads, "environment set in the worker", True, env=seen,
                   note="set after start-up; a pool created earlier keeps its size")


def _apply_quota(profile: Profile, info: dict[str, Any] | None, member: dict[str, bool]) -> dict[str, Any]:
    q = profile.cpu.quota
    rec = (info or {}).get("controls", {}).get("cpu.quota")
    if not rec or not rec.get("configured"):
        reason = (rec or {}).get("reason") or (info or {}).get("problems", {}).get("cpu") or "no run cgroup"
        return _not_applied(profile, "cpu.quota", f"a CPU quota needs the cgroup cpu controller ({reason})", q)
    if not member.get("cpu"):
        return _not_applied(profile, "cpu.quota", f"this process is not in the run cgroup {info['members']['cpu']}",
                            q, mechanism=rec["mechanism"])
    effective = _quota_of(Path(info["dirs"]["cpu"]), info["versions"]["cpu"])
    if effective is None or abs(effective - q) > 0.01:
        return _not_applied(profile, "cpu.quota", f"the cgroup's quota reads {effective}", q, effective,
                            rec["mechanism"])
    return _record(q, effective, rec["mechanism"], True, path=info["dirs"]["cpu"])


def _apply_rlimit_as(profile: Profile, limit: int, why: str) -> dict[str, Any]:
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        new_hard = limit if hard == resource.RLIM_INFINITY else min(hard, limit)
        resource.setrlimit(resource.RLIMIT_AS, (min(limit, new_hard), new_hard))
        effective = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (OSError, ValueError) as e:
        return _not_applied(profile, "memory_limit", f"no cgroup ({why}) and RLIMIT_AS failed: {e}", limit)
    # RLIMIT_AS caps virtual address space, not resident memory: runtimes that reserve large
    # arenas fail earlier than under a cgroup. It is the fallback, and the record says so.
    return _record(limit, effective, "RLIMIT_AS", effective == limit, why_not_cgroup=why,
                   note="virtual address space, stricter than resident memory")


def _apply_memory(profile: Profile, info: dict[str, Any] | None, member: dict[str, bool]) -> dict[str, Any]:
    limit = profile.memory_limit_bytes
    rec = (info or {}).get("controls", {}).get("memory_limit")
    if rec and rec.get("configured"):
        if member.get("memory"):
            d = Path(info["dirs"]["memory"])
            eff = _read_int(d / ("memory.max" if info["versions"]["memory"] == 2 else "memory.limit_in_bytes"))
            if eff is not None and abs(eff - limit) < _PAGE:
                return _record(limit, eff, rec["mechanism"], True, path=str(d))
            return _not_applied(profile, "memory_limit", f"the cgroup's limit reads {eff}", limit, eff,
                                rec["mechanism"])
        why = f"this process is not in the run cgroup {info['members']['memory']}"
    else:
        why = (rec or {}).get("reason") or (info or {}).get("problems", {}).get("memory") or "cgroups not used"
    return _apply_rlimit_as(profile, limit, why)


def apply_controls(profile: Profile, *, use_cgroups: bool = True) -> dict[str, Any]:
    """Apply the profile in the current (worker) process. Returns what took effect and how.

    Call it first thing in the worker, before a runtime is imported or the model loads. The
    keys are the profile's field names; ``cgroup`` says which cgroup holds the process.
    ``use_cgroups=False`` forces the fallbacks (RLIMIT_AS; no quota), for tests and probes.

    Raises ProfileError for a control that cannot be applied, unless the profile lists it
    in ``best_effort``.
    """
    info, owner = _cgroup_from_env(profile, use_cgroups)
    member = _membership(info) if info else {}
    applied: dict[str, Any] = {
        "cgroup": {"owner": owner, "dirs": (info or {}).get("dirs", {}), "versions": (info or {}).get("versions", {}),
                   "member": member, "problems": (info or {}).get("problems", {})},
    }
    if profile.cpu.cores is not None:
        applied["cpu.cores"] = _apply_affinity(profile, info, member)
    applied["cpu.threads"] = _apply_threads(profile)
    if profile.cpu.quota is not None:
        applied["cpu.quota"] = _apply_quota(profile, info, member)
    if profile.memory_limit is not None:
        applied["memory_limit"] = _apply_memory(profile, info, member)
    return applied


def apply_torch_threads(profile: Profile) -> dict[str, Any]:
    """Set torch's intra- and inter-op pools; called by torch adapters after importing torch."""
    import torch

    torch.set_num_threads(profile.cpu.threads)
    try:
        torch.set_num_interop_threads(profile.cpu.interop_threads)
    except RuntimeError:
        pass  # already set once in this process; the intra-op setting is what matters here
    return {"requested": profile.cpu.threads, "effective": torch.get_num_threads(),
            "mechanism": "torch.set_num_threads", "took_effect": torch.get_num_threads() == profile.cpu.threads,
            "interop": {"requested": profile.cpu.interop_threads, "effective": torch.get_num_interop_threads()}}


def torch_device(profile: Profile) -> str:
    """The torch device string the model should go to: 'cpu', or 'cuda:N' as the worker sees it."""
    if profile.device != "cuda":
        return "cpu"
    index = profile.gpu.index if profile.gpu else 0
    # With CUDA_VISIBLE_DEVICES from gpu_env() the chosen GPU is the only one, numbered 0.
    return "cuda:0" if os.environ.get("CUDA_VISIBLE_DEVICES") == str(index) else f"cuda:{index}"


def apply_torch_controls(profile: Profile) -> dict[str, Any]:
    """Torch backend flags and CUDA controls, after ``import torch`` and before the model loads.

    Covers threads, cudnn.benchmark, deterministic algorithms and, for CUDA profiles, the
    device index, TF32 on/off and the per-process memory fraction.
    """
    import torch

    from heptathlon.runners.adapters.torch_common import TorchConfig  # its section of the profile's runtime:

    rt = TorchConfig.of(profile)
    out: dict[str, Any] = {"cpu.threads": apply_torch_threads(profile)}
    torch.backends.cudnn.benchmark = rt.cudnn_benchmark
    out["runtime.torch.cudnn_benchmark"] = _record(rt.cudnn_benchmark, torch.backends.cudnn.benchmark,
                                                   "torch.backends.cudnn.benchmark",
                                                   torch.backends.cudnn.benchmark == rt.cudnn_benchmark)
    torch.use_deterministic_algorithms(rt.deterministic, warn_only=False)
    det = torch.are_deterministic_algorithms_enabled()
    out["runtime.torch.deterministic"] = _record(rt.deterministic, det, "torch.use_deterministic_algorithms",
                                                 det == rt.deterministic)
    if profile.device != "cuda":
        return out
    if not torch.cuda.is_available():
        raise ProfileError(f"profile {profile.name!r}: field 'device': 'cuda' but torch sees no GPU "
                           f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    gpu = profile.gpu
    device = torch_device(profile)
    index = int(device.split(":")[1])
    if index >= torch.cuda.device_count():
        out["gpu.index"] = _not_applied(profile, "gpu.index", f"{device} does not exist", gpu.index if gpu else 0)
    else:
        torch.cuda.set_device(index)
        mech = "CUDA_VISIBLE_DEVICES + torch.cuda.set_device" if device == "cuda:0" and gpu_env(profile) \
            else "torch.cuda.set_device"
        out["gpu.index"] = _record(gpu.index if gpu else 0, torch.cuda.current_device(), mech,
                                   torch.cuda.current_device() == index, device_name=torch.cuda.get_device_name(index))
    tf32 = gpu.tf32 if gpu else False
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    eff = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    out["gpu.tf32"] = _record(tf32, eff, "torch.backends.cuda.matmul.allow_tf32 + torch.backends.cudnn.allow_tf32",
                              eff == {"matmul": tf32, "cudnn": tf32})
    fraction = gpu.memory_fraction if gpu else 1.0
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    getter = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    eff_fraction = getter(index) if getter else None
    took = eff_fraction is None or abs(eff_fraction - fraction) < 1e-6
    out["gpu.memory_fraction"] = _record(fraction, eff_fraction, "torch.cuda.set_per_process_memory_fraction", took)
    return out


def ort_session_options(profile: Profile) -> tuple[Any, list[Any], dict[str, Any]]:
    """(SessionOptions, providers, record) for onnxruntime.InferenceSession under the profile."""
    import onnxruntime as ort

    from heptathlon.runners.adapters.onnx import OrtConfig  # its section of the profile's runtime:

    spec = OrtConfig.of(profile)
    so = ort.SessionOptions()
    so.intra_op_num_threads = profile.cpu.threads
    so.inter_op_num_threads = profile.cpu.interop_threads
    so.execution_mode = (ort.ExecutionMode.ORT_SEQUENTIAL if profile.cpu.interop_threads == 1
                         else ort.ExecutionMode.ORT_PARALLEL)
    so.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[spec.graph_optimization]
    available = ort.get_available_providers()
    missing = [p for p in spec.providers if p not in available]
    if missing:
        raise ProfileError(f"profile {profile.name!r}: field 'runtime.onnxruntime.providers': {missing} not "
                           f"available in onnxruntime {ort.__version__} here (available: {available})")
    providers: list[Any] = []
    for p in spec.providers:
        if p == "CUDAExecutionProvider":
            gpu = profile.gpu
            opts: dict[str, Any] = {"device_id": int(torch_device(profile).split(":")[1]),
                                    "use_tf32": int(bool(gpu and gpu.tf32))}
            if gpu and gpu.memory_fraction < 1.0:
                from heptathlon.bench.fingerprint import collect_gpus

                gpus = collect_gpus()[0]
                idx = gpu.index
                if idx < len(gpus) and gpus[idx]["memory_total_mib"]:
                    opts["gpu_mem_limit"] = int(gpus[idx]["memory_total_mib"] * 2**20 * gpu.memory_fraction)
            providers.append((p, opts))
        else:
            providers.append(p)
    record = {"intra_op_num_threads": so.intra_op_num_threads, "inter_op_num_threads": so.inter_op_num_threads,
              "graph_optimization": spec.graph_optimization, "providers": providers,
              "mechanism": "onnxruntime.SessionOptions"}
    return so, providers, record


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
