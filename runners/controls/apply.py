"""The worker's side, before the model loads: affinity, threads, and a check that the cgroup
limits really hold for this process (RLIMIT_AS where cgroups are unusable)."""


from __future__ import annotations

import json
import os
import resource
from pathlib import Path
from typing import Any

from heptathlon.bench.profile import Profile
from heptathlon.runners.controls.cgroups import _own_cgroups, _quota_of, create_run_cgroup
from heptathlon.runners.controls.common import CGROUP_ENV, _PAGE, _not_applied, _read_int, _record
from heptathlon.runners.controls.env import thread_env


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
