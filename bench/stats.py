"""Statistics of raw samples: pure functions, arrays in, MetricValues out.

Every headline number carries a 95% CI (Madaan et al. 2024: without variance a ranking
means little). CIs come from scipy.stats.bootstrap; the percentile method keeps the cost
linear in n, which matters for 10^5 latency samples.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from bench.metrics import MetricValue

N_RESAMPLES = 2000
# Above this many samples the bootstrap's O(n x resamples) cost is replaced by exact or
# asymptotic intervals that are as good at that size: the distribution-free order-statistic
# CI for percentiles (scipy.stats.quantile_test), t for the mean, the delta method for ratios.
BOOTSTRAP_MAX_N = 10_000
CONFIDENCE = 0.95
LATENCY_PERCENTILES = {"latency_p50_ms": 50.0, "latency_p90_ms": 90.0, "latency_p99_ms": 99.0}


def bootstrap_ci(samples, statistic, *, n_resamples: int = N_RESAMPLES, seed: int = 0,
                 paired: bool = False) -> tuple[float | None, float | None]:
    """95% percentile-bootstrap CI of ``statistic`` (vectorised, takes ``axis``).

    ``samples`` is one array, or a tuple of arrays resampled together when ``paired``.
    Returns (None, None) where a CI is undefined (fewer than two samples).
    """
    data = tuple(np.asarray(s, dtype=float) for s in (samples if paired else (samples,)))
    n = len(data[0])
    if n < 2:
        return None, None
    if all(np.all(d == d[0]) for d in data):  # degenerate: every resample gives the same value
        v = float(statistic(*data, axis=-1))
        return v, v
    batch = max(1, min(n_resamples, 4_000_000 // n))  # bound memory to ~32 MB per batch
    res = sps.bootstrap(data, statistic, n_resamples=n_resamples, confidence_level=CONFIDENCE,
                        method="percentile", paired=paired, vectorized=True, batch=batch,
                        random_state=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return lo, hi


def _percentile(q: float):
    def stat(x, axis=-1):
        return np.percentile(x, q, axis=axis)
    return stat


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def summarize_latency(latency_ms: np.ndarray, *, method: str = "timer:perf_counter_ns",
                      seed: int = 0) -> list[MetricValue]:
    """p50/p90/p99/mean of per-query latencies, each with n and a bootstrap CI."""
    lat = np.asarray(latency_ms, dtype=float)
    n = int(lat.size)
    out = []
    for name, q in LATENCY_PERCENTILES.items():
        lo, hi = percentile_ci(lat, q, seed=seed)
        out.append(MetricValue(name, float(np.percentile(lat, q)), method, n=n, ci_low=lo, ci_high=hi))
    lo, hi = mean_ci(lat, seed=seed)
    out.append(MetricValue("latency_mean_ms", float(lat.mean()), method, n=n, ci_low=lo, ci_high=hi))
    return out


def percentile_ci(x: np.ndarray, q: float, *, seed: int = 0) -> tuple[float | None, float | None]:
    x = np.asarray(x, dtype=float)
    if x.size <= BOOTSTRAP_MAX_N:
        return bootstrap_ci(x, _percentile(q), seed=seed)
    ci = sps.quantile_test(x, q=float(np.percentile(x, q)), p=q / 100).confidence_interval(CONFIDENCE)
    lo, hi = float(ci.low), float(ci.high)
    if not np.isfinite(lo):  # too few samples beyond an extreme percentile for a two-sided bound
        lo = float(x.min())
    if not np.isfinite(hi):
        hi = float(x.max())
    return lo, hi


def mean_ci(x: np.ndarray, *, seed: int = 0) -> tuple[float | None, float | None]:
    x = np.asarray(x, dtype=float)
    if x.size <= BOOTSTRAP_MAX_N:
        return bootstrap_ci(x, _mean, seed=seed)
    lo, hi = sps.t.interval(CONFIDENCE, df=x.size - 1, loc=x.mean(), scale=sps.sem(x))
    return float(lo), float(hi)


def _ratio_of_sums(num, den, axis=-1):
    return np.sum(num, axis=axis) / np.sum(den, axis=axis)


def summarize_throughput(batch_sizes: np.ndarray, issue_ns: np.ndarray, end_ns: int, *,
                         method: str = "timer:perf_counter_ns", seed: int = 0) -> MetricValue:
    """Samples completed over the timed window.

    The window is split at each query's issue time, so the point estimate is exactly
    total samples / window; the CI resamples (samples, interval) pairs.
    """
    b = np.asarray(batch_sizes, dtype=float)
    t = np.asarray(issue_ns, dtype=np.int64)
    intervals = np.diff(np.append(t, np.int64(end_ns))) / 1e9
    window_s = float(intervals.sum())
    value = float(b.sum() / window_s)
    if b.size <= BOOTSTRAP_MAX_N:
        lo, hi = bootstrap_ci((b, intervals), _ratio_of_sums, paired=True, seed=seed)
    else:  # delta method for a ratio estimator: Var(R) ~ Var(b - R d) / (n mean(d)^2)
        se = float(np.std(b - value * intervals, ddof=1) / (np.sqrt(b.size) * intervals.mean()))
        z = float(sps.norm.ppf(0.5 + CONFIDENCE / 2))
        lo, hi = value - z * se, value + z * se
    return MetricValue("throughput_sps", value, method, n=int(b.size), ci_low=lo, ci_high=hi,
                       params={"window_s": window_s, "samples": int(b.sum())})


def summarize_accuracy(y_true: np.ndarray, y_pred: np.ndarray, *, seed: int = 0) -> MetricValue:
    correct = (np.asarray(y_true) == np.asarray(y_pred)).astype(float)
    lo, hi = bootstrap_ci(correct, _mean, seed=seed)
    return MetricValue("accuracy", float(correct.mean()), "quality:labels", n=int(correct.size), ci_low=lo, ci_high=hi)


def ci_half_width_rel(samples: np.ndarray, q: float = 50.0, *, n_resamples: int = 500, seed: int = 0) -> float:
    """Relative half-width of the bootstrap CI of a percentile (for adaptive stopping)."""
    lo, hi = bootstrap_ci(samples, _percentile(q), n_resamples=n_resamples, seed=seed)
    centre = float(np.percentile(samples, q))
    if lo is None or centre == 0:
        return float("inf")
    return (hi - lo) / 2 / abs(centre)
