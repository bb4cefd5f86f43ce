"""Which cores a run gets: a profile's own, or for "any N cores" (``cpu.count``) the N least
loaded of the cores this process may use, measured just before the run; and ``--wait-quiet``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from heptathlon.bench.errors import ProfileError
from heptathlon.bench.profile import Profile
from heptathlon.runners.meters.contention import least_loaded_cores, run_cores, wait_quiet


def resolve_cores(profile: Profile) -> tuple[Profile, dict[str, Any] | None]:
    """(the profile pinned to concrete cores, the record of the pick); unchanged without ``cpu.count``."""
    n = profile.cpu.count
    if n is None:
        return profile, None
    allowed = sorted(os.sched_getaffinity(0))
    if n > len(allowed):
        raise ProfileError(f"profile {profile.name!r}: field 'cpu.count': {n} cores asked for, but this process "
                           f"may use only {len(allowed)} ({allowed})")
    picked, shares = least_loaded_cores(n, allowed)
    record = {"requested": f"any {n}", "picked": picked, "busy_share_before": {str(c): round(v, 3)
                                                                                for c, v in shares.items()},
              "mechanism": "least busy over 0.5 s of /proc/stat"}
    return profile.with_cores(picked), record


def wait_for_quiet(profile: Profile, threshold: float, timeout_s: float,
                   on_progress: Callable[[float, float], None] | None = None) -> dict[str, Any]:
    """Wait (at most ``timeout_s``) until the profile's cores are busy at most ``threshold``.

    An "any N cores" profile waits until N of the allowed cores are that quiet. The record says
    whether they got quiet, the last busy share and how long it took.
    """
    cores = profile.cpu.cores
    if profile.cpu.count is not None:  # any N: wait on the N quietest, picked again each window
        import time

        start = time.perf_counter()
        while True:
            picked, shares = least_loaded_cores(profile.cpu.count)
            share = sum(shares[c] for c in picked) / len(picked)
            waited = time.perf_counter() - start
            if share <= threshold or waited >= timeout_s:
                return {"quiet": share <= threshold, "busy_share": round(share, 4), "waited_s": round(waited, 2),
                        "cores": picked, "threshold": threshold}
            if on_progress:
                on_progress(share, waited)
    quiet, share, waited = wait_quiet(run_cores(cores), threshold, timeout_s, on_progress=on_progress)
    return {"quiet": quiet, "busy_share": round(share, 4), "waited_s": round(waited, 2),
            "cores": list(run_cores(cores)), "threshold": threshold}
