"""Contention: how much of a run's own cores other processes used during its timed window.

Pure arithmetic over a trace the execution layer samples (``heptathlon.runners.meters.contention``):
at each sample time, the summed busy time of the run's cores (``/proc/stat``) and the CPU time
of the run's own process tree. Between two samples, other processes used

    share = ((busy(t1) - busy(t0)) - (own(t1) - own(t0))) / (n_cores * (t1 - t0))

of the run's cores, clipped to [0, 1]. A run whose share exceeds the threshold is *contended*:
it is marked in every table and left out of rankings and nightly baselines unless asked for.

The default threshold (:data:`DEFAULT_THRESHOLD`, 0.10) is "other processes took more than a
tenth of the run's cores": background daemons on a quiet machine stay well below 1%, while one
other busy process on a pinned core takes 30-50% (measured in docs/performance.md). It can be
set per deployment with ``HEPTATHLON_CONTENTION_MAX`` (a fraction; 1 never marks a run).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from heptathlon.bench.errors import OptionsError

DEFAULT_THRESHOLD = 0.10
THRESHOLD_ENV = "HEPTATHLON_CONTENTION_MAX"
CONTENDED_PARAM = "contended"
METHOD = "sampled:proc-stat-minus-own-cpu"


def contention_threshold() -> float:
    """The configured threshold (``HEPTATHLON_CONTENTION_MAX``), else :data:`DEFAULT_THRESHOLD`."""
    raw = os.environ.get(THRESHOLD_ENV)
    if raw is None or raw == "":
        return DEFAULT_THRESHOLD
    try:
        v = float(raw)
    except ValueError:
        raise OptionsError(f"{THRESHOLD_ENV}={raw!r}: expected a fraction between 0 and 1") from None
    if not 0.0 <= v <= 1.0:
        raise OptionsError(f"{THRESHOLD_ENV}={raw!r}: expected a fraction between 0 and 1")
    return v


@dataclass(frozen=True)
class ContentionTrace:
    """Samples around a run: times (perf_counter_ns, the worker's clock too), the summed busy
    seconds of ``cores``, and the run's own CPU seconds; plus readings of the machine's state."""

    cores: tuple[int, ...]
    t_ns: Sequence[int]
    busy_s: Sequence[float]
    own_s: Sequence[float]
    own_method: str
    context: dict[str, Any] = field(default_factory=dict)  # load average, frequency, governor, temperature


def _bracket(t_ns: Sequence[int], t0: int, t1: int) -> tuple[int, int]:
    """Indices of the last sample at or before ``t0`` and the first at or after ``t1`` (clamped)."""
    i0 = 0
    for i, t in enumerate(t_ns):
        if t <= t0:
            i0 = i
    i1 = len(t_ns) - 1
    for i in range(len(t_ns) - 1, -1, -1):
        if t_ns[i] >= t1:
            i1 = i
    return i0, max(i1, i0)


def share_of_others(trace: ContentionTrace, t0_ns: int | None = None, t1_ns: int | None = None
                    ) -> tuple[float | None, dict[str, Any]]:
    """(share of the run's cores other processes used over [t0, t1], details); None without two samples."""
    n = len(trace.t_ns)
    if n < 2 or not trace.cores:
        return None, {"reason": "fewer than two samples"}
    i0, i1 = _bracket(trace.t_ns, t0_ns if t0_ns is not None else trace.t_ns[0],
                      t1_ns if t1_ns is not None else trace.t_ns[-1])
    if i1 == i0:
        i0, i1 = max(0, i0 - 1), min(n - 1, i0 + 1)
    dt = (trace.t_ns[i1] - trace.t_ns[i0]) / 1e9
    if dt <= 0:
        return None, {"reason": "no time between samples"}
    busy = trace.busy_s[i1] - trace.busy_s[i0]
    own = trace.own_s[i1] - trace.own_s[i0]
    capacity = len(trace.cores) * dt
    share = min(1.0, max(0.0, (busy - own) / capacity))
    return share, {"window_s": round(dt, 4), "busy_share": round(min(1.0, busy / capacity), 4),
                   "own_share": round(min(1.0, own / capacity), 4), "n_samples": i1 - i0 + 1}


def contention_params(share: float | None, details: dict[str, Any], trace: ContentionTrace,
                      threshold: float | None = None) -> dict[str, Any]:
    """The params stored with ``contention_share``: cores, own-CPU method, context, threshold, mark."""
    threshold = contention_threshold() if threshold is None else threshold
    return {"cores": list(trace.cores), "own_cpu": trace.own_method, **details, **trace.context,
            "threshold": threshold, CONTENDED_PARAM: bool(share is not None and share > threshold)}


def is_contended(params: dict[str, Any] | None) -> bool:
    """Whether a stored ``contention_share`` row marks its run contended."""
    return bool((params or {}).get(CONTENDED_PARAM))


def contention_metric(trace: ContentionTrace | None, t0_ns: int | None, t1_ns: int | None,
                      threshold: float | None = None):
    """The stored ``contention_share`` value for a run's timed window [t0, t1] (perf_counter_ns)."""
    from heptathlon.bench.metrics import MetricValue

    if trace is None:
        return MetricValue.unavailable("contention_share", "this executor does not sample the run's cores")
    share, details = share_of_others(trace, t0_ns, t1_ns)
    if share is None:
        return MetricValue.unavailable("contention_share", details.get("reason", "no reading"),
                                       cores=list(trace.cores))
    params = contention_params(share, details, trace, threshold)
    note = (f"contended: other processes used {share:.0%} of cores {list(trace.cores)} (threshold "
            f"{params['threshold']:.0%}); left out of rankings and nightly baselines" if params[CONTENDED_PARAM]
            else None)
    return MetricValue("contention_share", round(share, 4), METHOD, n=details["n_samples"], note=note, params=params)
