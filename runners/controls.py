"""Enforcement of a hardware profile's controls inside the worker, before the model loads.

Every control records whether it took effect and by which mechanism, so a result says
exactly under which conditions it was measured.
"""

from __future__ import annotations

import os
from typing import Any

from bench.errors import ProfileError
from bench.profile import Profile


def thread_env(profile: Profile) -> dict[str, str]:
    """Environment for the worker: thread pools read these at import time, so the parent sets them."""
    n = str(profile.cpu.threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}


def apply_controls(profile: Profile) -> dict[str, Any]:
    """Apply the profile in the current (worker) process. Returns what took effect and how.

    Raises ProfileError for a control that cannot be applied, unless the profile lists it
    in ``best_effort``.
    """
    applied: dict[str, Any] = {}
    if profile.cpu.cores is not None:
        available = sorted(os.sched_getaffinity(0))
        missing = [c for c in profile.cpu.cores if c not in available]
        if missing:
            reason = (f"profile {profile.name!r}: field 'cpu.cores': cores {missing} do not exist here "
                      f"(this machine offers {available})")
            if "affinity" not in profile.best_effort:
                raise ProfileError(reason)
            applied["affinity"] = {"requested": profile.cpu.cores, "effective": available,
                                   "mechanism": None, "took_effect": False, "reason": reason}
        else:
            os.sched_setaffinity(0, profile.cpu.cores)
            effective = sorted(os.sched_getaffinity(0))
            applied["affinity"] = {"requested": profile.cpu.cores, "effective": effective,
                                   "mechanism": "sched_setaffinity",
                                   "took_effect": effective == sorted(profile.cpu.cores)}
    applied["threads"] = {"requested": profile.cpu.threads, "mechanism": "env+runtime",
                          "env": {k: os.environ.get(k) for k in thread_env(profile)}, "took_effect": True}
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
            "mechanism": "torch.set_num_threads", "took_effect": torch.get_num_threads() == profile.cpu.threads}
