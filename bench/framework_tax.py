"""Framework tax arithmetic: pure functions, arrays in, frozen dataclasses and MetricValues out.

References:
- Fernandez et al. 2023, "The Framework Tax": at small batch sizes latency is dominated by
  framework overhead; the batch sweep shows a flat (framework-bound) regime that gives way to a
  compute-bound regime at a knee b*.
- Madaan et al. 2024: every headline number carries a bootstrap CI.

What lives here (see docs/framework-tax.md for the method):
- ``framework_tax`` / ``summarize_tax``: FT = (T_wall - T_compute) / T_wall from paired per-call
  samples of a profiled pass.
- ``fit_batch_knee``: continuous flat-then-linear fit of latency against batch size.
- ``estimate_fixed_overhead`` / ``estimate_framework_tax``: for submissions whose compute is not
  visible (kind ``command``), the intercept of the compute-bound line, labelled
  ``estimate:intercept``.
- ``relative_to_best``: each runtime's latency over the best runtime's, per batch size.

Bad arguments raise FrameworkTaxError, also a ValueError: they are programming errors of the caller,
not user-facing conditions (the runners turn measurement failures into "unavailable" values first).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from heptathlon.bench.errors import FrameworkTaxError
from heptathlon.bench.metrics import MetricValue, spec_for
from heptathlon.bench.stats import CONFIDENCE, bootstrap_ci

# The framework-tax event's quantities besides framework_tax, defined in the registry (heptathlon.bench.metrics).
FIXED_OVERHEAD = spec_for("fixed_overhead_ms")
BATCH_KNEE = spec_for("batch_knee")

_MIN_POINTS_FOR_KNEE = 3


# --------------------------------------------------------------------------- framework tax


def framework_tax(t_wall_s: float, t_compute_s: float) -> float:
    """FT = (T_wall - T_compute) / T_wall for one call; both in seconds, 0 <= T_compute <= T_wall."""
    t_wall_s, t_compute_s = float(t_wall_s), float(t_compute_s)
    if not (math.isfinite(t_wall_s) and math.isfinite(t_compute_s)):
        raise FrameworkTaxError(f"framework_tax: times must be finite, got wall={t_wall_s!r}, compute={t_compute_s!r}")
    if t_wall_s <= 0:
        raise FrameworkTaxError(f"framework_tax: wall time must be > 0 s, got {t_wall_s!r}")
    if t_compute_s < 0:
        raise FrameworkTaxError(f"framework_tax: compute time must be >= 0 s, got {t_compute_s!r}")
    if t_compute_s > t_wall_s:
        raise FrameworkTaxError(f"framework_tax: compute time {t_compute_s!r} s exceeds wall time {t_wall_s!r} s; "
                                "compute must be measured inside the same call")
    return (t_wall_s - t_compute_s) / t_wall_s


def per_call_tax(wall_samples_s: Sequence[float], compute_samples_s: Sequence[float]) -> np.ndarray:
    """FT of each call, from paired samples (call i's wall and compute come from the same call)."""
    wall = np.asarray(wall_samples_s, dtype=float).ravel()
    compute = np.asarray(compute_samples_s, dtype=float).ravel()
    if wall.shape != compute.shape:
        raise FrameworkTaxError(f"per_call_tax: {wall.size} wall samples but {compute.size} compute samples; "
                                "samples must be paired per call")
    if wall.size == 0:
        raise FrameworkTaxError("per_call_tax: no samples")
    return np.array([framework_tax(w, c) for w, c in zip(wall, compute)])


def _percentile_ci(samples: tuple[np.ndarray, ...], statistic, n_resamples: int, seed: int,
                   paired: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """Stratified percentile bootstrap: each array (one per batch size) is resampled on its own.

    heptathlon.bench.stats.bootstrap_ci covers one sample or paired samples; a sweep's batch sizes are
    independent samples, hence scipy.stats.bootstrap with paired=False here. Percentile rather
    than BCa, as in heptathlon.bench.stats: the statistics (medians, argmin-based knees) are discrete and
    BCa's jackknife acceleration is unstable on them. None where resampling cannot vary.
    """
    if n_resamples <= 0 or any(s.size < 2 for s in samples):
        return None
    with warnings.catch_warnings():
        # a degenerate bootstrap distribution (e.g. exact data) is a valid answer: the CI collapses
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(samples, statistic, n_resamples=n_resamples, vectorized=False, paired=paired,
                              confidence_level=CONFIDENCE, method="percentile",
                              rng=np.random.default_rng(seed))
    return np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)


def _finite_or_none(x) -> float | None:
    """A CI bound, or None where the bootstrap could not form it (NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None


def summarize_tax(wall_samples_s: Sequence[float], compute_samples_s: Sequence[float], method: str, *,
                  n_resamples: int = 2000, seed: int = 0, **params) -> MetricValue:
    """The ``framework_tax`` metric from paired per-call samples of one profiled pass.

    Value: the median of per-call FT (robust to a stray slow call); CI: percentile bootstrap over
    calls. ``method`` says where T_compute came from, e.g. ``profiler:torch``,
    ``profiler:onnxruntime``, ``profiler:torch-cuda``; ``params`` are stored with the value
    (batch size, runtime, ...).
    """
    tax = per_call_tax(wall_samples_s, compute_samples_s)
    wall = np.asarray(wall_samples_s, dtype=float).ravel()
    compute = np.asarray(compute_samples_s, dtype=float).ravel()
    ci_low, ci_high = (bootstrap_ci(tax, np.median, n_resamples=n_resamples, seed=seed) if n_resamples > 0
                       else (None, None))
    value = float(np.median(tax))
    if params.get("tax_lower_bound") is not None:  # a bound (from medians of the passes) never above the value
        params = {**params, "tax_lower_bound": min(float(params["tax_lower_bound"]), value)}
    return MetricValue(
        name="framework_tax",
        value=value,
        method=method,
        n=int(tax.size),
        ci_low=ci_low,
        ci_high=ci_high,
        params={"wall_median_ms": float(np.median(wall) * 1e3),
                "compute_median_ms": float(np.median(compute) * 1e3), **params},
    )


# --------------------------------------------------------------------------- batch knee


@dataclass(frozen=True)
class KneeFit:
    """Continuous flat-then-linear fit of latency against batch size.

    latency(b) = flat_latency_s                                   for b <= knee_batch
               = flat_latency_s + slope_s_per_sample * (b - knee)  for b >  knee_batch
    intercept_s = flat_latency_s - slope * knee: the compute-bound line extended to b = 0, i.e.
    the fixed per-call cost that does not scale with the batch.

    Two regimes give two readings:
    - asynchronous execution (GPU): latency = max(launch overhead, compute), truly flat, then
      linear; ``knee_batch`` is where the overhead stops hiding the compute;
    - synchronous execution (CPU): latency = overhead + per-sample cost * b, a line from b = 1
      whose slope is tiny next to the overhead; the fit then puts the knee at the first batch
      size (``flat_observed`` False), and ``crossover_batch`` = intercept / slope, the batch
      size at which the per-sample term equals the fixed term (framework share ~ 1/2), is
      the number that says where the framework-bound regime ends.
    """

    knee_batch: float
    ci_low: float | None
    ci_high: float | None
    flat_latency_s: float
    slope_s_per_sample: float
    intercept_s: float
    rss: float  # weighted residual sum of squares (relative residuals) at the optimum
    batch_sizes: tuple[int, ...]
    median_latency_s: tuple[float, ...]
    n_resamples: int
    flat_observed: bool  # at least two measured batch sizes lie at or before the knee
    compute_bound_observed: bool  # at least two measured batch sizes lie past the knee, with a positive slope
    rise_ratio: float  # fitted latency at the largest batch size over the flat level; 1.0 = never grew
    crossover_batch: float | None  # intercept / slope; None unless both are > 0
    crossover_ci_low: float | None
    crossover_ci_high: float | None

    def predict_s(self, batch_size: float) -> float:
        return self.flat_latency_s + self.slope_s_per_sample * max(0.0, float(batch_size) - self.knee_batch)


@dataclass(frozen=True)
class _Hinge:
    knee: float
    level: float
    slope: float
    rss: float


def _wls_hinge_fixed_knee(b: np.ndarray, y: np.ndarray, w: np.ndarray, knee: float) -> _Hinge:
    """Weighted least squares of y = level + slope * max(0, b - knee), slope >= 0, for a fixed knee.

    Latency does not fall as the batch grows; a negative slope only fits noise. With one bound
    on a convex least-squares problem, the constrained optimum of a fit whose free slope is
    negative is the flat line.
    """
    h = np.maximum(0.0, b - knee)
    sw = np.sqrt(w)
    flat_level = float(np.sum(w * y) / np.sum(w))
    flat = _Hinge(knee, flat_level, 0.0, float(np.sum(w * (y - flat_level) ** 2)))
    if not np.any(h > 0):  # the knee sits at or beyond the last point: a flat line
        return flat
    X = np.column_stack([np.ones_like(b), h]) * sw[:, None]
    coef, *_ = np.linalg.lstsq(X, y * sw, rcond=None)
    level, slope = float(coef[0]), float(coef[1])
    if slope < 0:
        return flat
    rss = float(np.sum(w * (y - level - slope * h) ** 2))
    return _Hinge(knee, level, slope, rss)


def _fit_hinge(b: np.ndarray, y: np.ndarray) -> _Hinge:
    """Exact continuous segmented regression (Hudson 1966): one flat and one linear segment.

    For a knee between consecutive batch sizes b_j <= k <= b_j+1 the points split into a flat
    left set and a linear right set. Fit each freely; if the two lines meet inside [b_j, b_j+1]
    that is the optimum for this interval, otherwise the optimum lies on one of its ends, where
    the knee is fixed and the fit is linear. The best interval wins. This recovers a knee between
    measured batch sizes exactly, which a grid search over measured sizes cannot.

    Fitted in b, not log2(b): in the compute-bound regime the work, hence latency, grows
    linearly in b, so a straight line in b is the physical model (in log2(b) that regime is an
    exponential). Residuals are relative (weights 1/y^2) because timing noise scales with the
    latency; otherwise the few large-b points would decide the whole fit.
    """
    w = 1.0 / y ** 2
    best: _Hinge | None = None
    # Residuals are relative, so this tolerance means "equal to ~1e-6 of the latency". On a tie
    # the later knee wins: flat data fit every knee equally well, and the honest answer is
    # "latency has not started to grow within the sweep", not a knee at the first batch size.
    tie = 1e-12 * b.size

    def consider(c: _Hinge) -> None:
        nonlocal best
        if best is None or c.rss < best.rss - tie or (c.rss <= best.rss + tie and c.knee > best.knee):
            best = c

    n = b.size
    for j in range(n - 1):
        left, right = slice(0, j + 1), slice(j + 1, n)
        lo, hi = b[j], b[j + 1]
        if n - (j + 1) >= 2:
            wl, yl = w[left], y[left]
            level = float(np.sum(wl * yl) / np.sum(wl))
            br, yr, wr = b[right], y[right], w[right]
            X = np.column_stack([np.ones_like(br), br]) * np.sqrt(wr)[:, None]
            (c0, slope), *_ = np.linalg.lstsq(X, yr * np.sqrt(wr), rcond=None)
            if slope > 0:
                knee = (level - c0) / slope
                if lo <= knee <= hi:
                    rss = float(np.sum(wl * (yl - level) ** 2) + np.sum(wr * (yr - c0 - slope * br) ** 2))
                    consider(_Hinge(float(knee), level, float(slope), rss))
        consider(_wls_hinge_fixed_knee(b, y, w, float(lo)))
        consider(_wls_hinge_fixed_knee(b, y, w, float(hi)))
    assert best is not None
    return best


def _validate_sweep(batch_sizes: Sequence[int], latencies_per_batch: Sequence) -> tuple[np.ndarray, list[np.ndarray]]:
    b = np.asarray(batch_sizes, dtype=float).ravel()
    if len(latencies_per_batch) != b.size:
        raise FrameworkTaxError(f"{b.size} batch sizes but {len(latencies_per_batch)} latency entries")
    samples = [np.atleast_1d(np.asarray(s, dtype=float)).ravel() for s in latencies_per_batch]
    if np.any(b <= 0) or not np.all(np.isfinite(b)):
        raise FrameworkTaxError(f"batch sizes must be positive, got {list(batch_sizes)}")
    if np.any(np.diff(b) <= 0):
        raise FrameworkTaxError(f"batch sizes must be strictly increasing, got {list(batch_sizes)}")
    for bi, s in zip(b, samples):
        if s.size == 0:
            raise FrameworkTaxError(f"batch size {int(bi)}: no latency samples")
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise FrameworkTaxError(f"batch size {int(bi)}: latencies must be finite and > 0 s")
    return b, samples


def _knee_from_samples(b: np.ndarray, samples: Sequence[np.ndarray]) -> _Hinge:
    # Fit per-batch medians: one GC pause or page fault must not move the knee.
    return _fit_hinge(b, np.array([np.median(s) for s in samples]))


def _crossover(h: _Hinge) -> float:
    intercept = h.level - h.slope * h.knee
    return intercept / h.slope if h.slope > 0 and intercept > 0 else math.nan


def _knee_and_crossover(b: np.ndarray, samples: Sequence[np.ndarray]) -> np.ndarray:
    h = _knee_from_samples(b, samples)
    return np.array([h.knee, _crossover(h)])


def fit_batch_knee(batch_sizes: Sequence[int], latencies_per_batch: Sequence, *, n_resamples: int = 1000,
                   seed: int = 0) -> KneeFit:
    """Fit flat-then-linear latency(b) and find the knee b* with a bootstrap CI.

    ``latencies_per_batch[i]`` holds the repeated latencies (s) at ``batch_sizes[i]`` (a scalar
    counts as one repeat). The CI resamples repeats within each batch size independently
    (stratified bootstrap) and refits; it is None when any batch size has fewer than 2 repeats.
    Needs at least 3 batch sizes.
    """
    b, samples = _validate_sweep(batch_sizes, latencies_per_batch)
    if b.size < _MIN_POINTS_FOR_KNEE:
        raise FrameworkTaxError(f"fit_batch_knee: needs at least {_MIN_POINTS_FOR_KNEE} batch sizes, got {b.size}")
    fit = _knee_from_samples(b, samples)
    crossover = _crossover(fit)
    # One bootstrap for both; a crossover CI is None (NaN) where some resamples have no
    # positive intercept, i.e. where the crossover is not defined.
    ci = _percentile_ci(tuple(samples), lambda *s: _knee_and_crossover(b, s), n_resamples, seed)
    knee_ci = (None, None) if ci is None else (_finite_or_none(ci[0][0]), _finite_or_none(ci[1][0]))
    cross_ci = (None, None)
    if ci is not None and math.isfinite(crossover):
        cross_ci = (_finite_or_none(ci[0][1]), _finite_or_none(ci[1][1]))
    medians = tuple(float(np.median(s)) for s in samples)
    return KneeFit(
        knee_batch=fit.knee,
        ci_low=knee_ci[0],
        ci_high=knee_ci[1],
        flat_latency_s=fit.level,
        slope_s_per_sample=fit.slope,
        intercept_s=fit.level - fit.slope * fit.knee,
        rss=fit.rss,
        batch_sizes=tuple(int(x) for x in b),
        median_latency_s=medians,
        n_resamples=n_resamples if ci is not None else 0,
        flat_observed=int(np.sum(b <= fit.knee)) >= 2,
        compute_bound_observed=fit.slope > 0 and int(np.sum(b > fit.knee)) >= 2,
        rise_ratio=float((fit.level + fit.slope * max(0.0, b[-1] - fit.knee)) / fit.level),
        crossover_batch=float(crossover) if math.isfinite(crossover) else None,
        crossover_ci_low=cross_ci[0],
        crossover_ci_high=cross_ci[1],
    )


def knee_metric(fit: KneeFit, **params) -> MetricValue:
    """The ``batch_knee`` metric of a fit, for storage next to the other framework-tax values."""
    return MetricValue(name="batch_knee", value=fit.knee_batch, method="derived:segmented-fit",
                       n=len(fit.batch_sizes), ci_low=fit.ci_low, ci_high=fit.ci_high,
                       params={"flat_latency_ms": fit.flat_latency_s * 1e3,
                               "slope_ms_per_sample": fit.slope_s_per_sample * 1e3,
                               "crossover_batch": fit.crossover_batch,
                               "compute_bound_observed": fit.compute_bound_observed, **params})


# --------------------------------------------------------------------------- estimates (kind: command)


def _intercept_and_taxes(b: np.ndarray, samples: Sequence[np.ndarray]) -> np.ndarray:
    """[intercept_s, FT_est(b_1), ..., FT_est(b_n)] from one set of samples."""
    y = np.array([np.median(s) for s in samples])
    if b.size >= _MIN_POINTS_FOR_KNEE:
        knee = _fit_hinge(b, y).knee
        part = b >= knee
        if int(np.sum(part)) < 2:
            # No compute-bound regime within the sweep: latency does not grow with b, so all of it
            # is fixed per-call cost; the line over the whole sweep says exactly that.
            part = np.ones_like(b, dtype=bool)
    else:
        part = np.ones_like(b, dtype=bool)
    bb, yy = b[part], y[part]
    w = 1.0 / yy ** 2
    X = np.column_stack([np.ones_like(bb), bb]) * np.sqrt(w)[:, None]
    (c0, _slope), *_ = np.linalg.lstsq(X, yy * np.sqrt(w), rcond=None)
    taxes = np.clip(c0, 0.0, None) / y
    return np.concatenate([[c0], np.clip(taxes, 0.0, 1.0)])


def estimate_fixed_overhead(batch_sizes: Sequence[int], latencies_per_batch: Sequence, *,
                            n_resamples: int = 1000, seed: int = 0, **params) -> MetricValue:
    """Fixed per-call overhead (ms): intercept of a linear fit over the compute-bound part of a sweep.

    The compute-bound part is the batch sizes at or past the fitted knee (all of them when fewer
    than two lie past it, or with fewer than 3 batch sizes). Method ``estimate:intercept``; the
    CI is a stratified bootstrap over repeats. A negative intercept (latency growing
    superlinearly in b) is reported as measured, with a note.
    """
    b, samples = _validate_sweep(batch_sizes, latencies_per_batch)
    if b.size < 2:
        raise FrameworkTaxError("estimate_fixed_overhead: needs at least 2 batch sizes")
    point = _intercept_and_taxes(b, samples)
    ci = _percentile_ci(tuple(samples), lambda *s: _intercept_and_taxes(b, s)[0], n_resamples, seed)
    note = None
    if point[0] < 0:
        note = "negative intercept: latency grows faster than linearly in b; no fixed overhead is visible"
    return MetricValue(name="fixed_overhead_ms", value=float(point[0] * 1e3), method="estimate:intercept",
                       n=int(sum(s.size for s in samples)),
                       ci_low=None if ci is None else _finite_or_none(ci[0] * 1e3),
                       ci_high=None if ci is None else _finite_or_none(ci[1] * 1e3),
                       note=note, params={"batch_sizes": [int(x) for x in b], **params})


def estimate_framework_tax(batch_sizes: Sequence[int], latencies_per_batch: Sequence, *,
                           n_resamples: int = 1000, seed: int = 0, **params) -> dict[int, MetricValue]:
    """FT_est(b) = fixed overhead / median latency(b), per batch size, for runs without a profiler.

    Method ``estimate:intercept``: never ranked against a profiler-measured framework_tax.
    """
    b, samples = _validate_sweep(batch_sizes, latencies_per_batch)
    if b.size < 2:
        raise FrameworkTaxError("estimate_framework_tax: needs at least 2 batch sizes")
    point = _intercept_and_taxes(b, samples)
    ci = _percentile_ci(tuple(samples), lambda *s: _intercept_and_taxes(b, s), n_resamples, seed)
    out: dict[int, MetricValue] = {}
    for i, bi in enumerate(b):
        out[int(bi)] = MetricValue(
            name="framework_tax", value=float(point[i + 1]), method="estimate:intercept",
            n=int(samples[i].size),
            ci_low=None if ci is None else _finite_or_none(ci[0][i + 1]),
            ci_high=None if ci is None else _finite_or_none(ci[1][i + 1]),
            params={"batch_size": int(bi), "fixed_overhead_ms": float(point[0] * 1e3), **params})
    return out


# --------------------------------------------------------------------------- runtimes


def relative_to_best(latency_by_runtime: Mapping[str, Mapping[int, float]]) -> dict[str, dict[int, float]]:
    """latency / best runtime's latency, per runtime and batch size (1.0 marks the best).

    A runtime missing a batch size (e.g. its sweep stopped earlier) is left out at that size; the
    best is taken over the runtimes that have it.
    """
    best: dict[int, float] = {}
    for runtime, by_batch in latency_by_runtime.items():
        for bsz, lat in by_batch.items():
            lat = float(lat)
            if not math.isfinite(lat) or lat <= 0:
                raise FrameworkTaxError(f"relative_to_best: runtime {runtime!r}, batch {bsz}: latency must be > 0, got {lat!r}")
            best[bsz] = min(best.get(bsz, math.inf), lat)
    return {runtime: {bsz: float(lat) / best[bsz] for bsz, lat in sorted(by_batch.items())}
            for runtime, by_batch in latency_by_runtime.items()}
