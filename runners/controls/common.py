"""Constants and small helpers shared by the control modules: records, cgroup file reads and writes."""


from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from heptathlon.bench.errors import ProfileError
from heptathlon.bench.profile import Profile


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
