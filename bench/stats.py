"""Statistics of raw samples: pure functions, arrays in, MetricValues out.

Every headline number carries a 95% CI (Madaan et al. 2024: without variance a ranking
means little). CIs come from scipy.stats.bootstrap; the percentile method keeps the cost
linear in n, which matters for 10^5 latency samples.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as sps

from heptathlon.bench.metrics import MetricValue

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
    classes, counts = np.unique(np.asarray(y_true), return_counts=True)
    major = classes[int(np.argmax(counts))]
    base = float(counts.max() / counts.sum())
    acc = float(correct.mean())
    note = f"majority-class baseline {base:.4f} (always answering {major!r})"
    if acc <= base:
        note += "; this model is not better than that constant answer"
    elif lo is not None and lo <= base:
        note += "; not distinguishable from that constant answer (the 95% CI includes it)"
    return MetricValue("accuracy", acc, "quality:labels", n=int(correct.size), ci_low=lo, ci_high=hi, note=note,
                       params={"majority_baseline": base, "majority_class": str(major)})



# ---- MLPerf early stopping ------------------------------------------------------------------------
EARLY_CONFIDENCE = 0.99  # MLPerf LoadGen's fixed choice (results.cc, PerformanceSummary::EarlyStopping)
EARLY_PERCENTILES = {"latency_p90_early_ms": 90.0, "latency_p99_early_ms": 99.0}


def _early_odds(h: int, t: int, p: float) -> float:
    """P(at most t of h + t queries exceed the p-quantile) = I_p(h, t + 1) (LoadGen's ``odds`` with d = 0)."""
    from scipy.special import betainc

    return float(betainc(h, t + 1, p))


def early_stopping_min_passing(t: int, p: float, confidence: float = EARLY_CONFIDENCE) -> int:
    """The least h with odds(h, t, p) < 1 - confidence: how many queries under the percentile are
    needed, next to t over it, for the percentile bound to hold (LoadGen's MinPassingQueriesFinder)."""
    lo, hi = 1, 2
    while _early_odds(hi, t, p) >= 1 - confidence:  # odds fall as h grows: find an upper end
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if _early_odds(mid, t, p) < 1 - confidence:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass(frozen=True)
class EarlyStoppingEstimate:
    percentile: float
    value: float | None  # None: too few queries for an estimate at this confidence
    discarded: int  # highest-latency queries the bound may discard (t - 1 in LoadGen's terms)
    min_queries: int  # queries needed for any estimate at all
    n: int


def early_stopping_percentile(latency, percentile: float, *,
                              confidence: float = EARLY_CONFIDENCE) -> EarlyStoppingEstimate:
    """MLPerf LoadGen's early-stopping estimate of a latency percentile.

    With n queries, t is the largest count of over-percentile queries for which n >= h(t) + t
    still holds, h(t) being ``early_stopping_min_passing``; the estimate is the t-th largest
    latency. It bounds the true percentile from above with the given confidence, so it is never
    below the plain sample percentile. LoadGen scans t upwards; h(t) + t grows with t, so a
    bisection finds the same t in O(log^2 n) incomplete-beta evaluations.
    """
    x = np.sort(np.asarray(latency, dtype=float))
    n = int(x.size)
    p = percentile / 100.0
    need = early_stopping_min_passing(1, p, confidence) + 1
    if n < need:
        return EarlyStoppingEstimate(percentile, None, 0, need, n)
    lo, hi = 1, n  # h(lo) + lo <= n holds; find the largest such t
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if early_stopping_min_passing(mid, p, confidence) + mid <= n:
            lo = mid
        else:
            hi = mid - 1
    return EarlyStoppingEstimate(percentile, float(x[n - lo]), lo - 1, need, n)


def summarize_early_stopping(latency_ms, *, method: str = "timer:perf_counter_ns") -> list[MetricValue]:
    """latency_p90_early_ms and latency_p99_early_ms; unavailable (with the reason) below LoadGen's minimum n."""
    out = []
    for name, q in EARLY_PERCENTILES.items():
        e = early_stopping_percentile(latency_ms, q)
        params = {"confidence": EARLY_CONFIDENCE, "discarded": e.discarded, "min_queries": e.min_queries}
        if e.value is None:
            out.append(MetricValue.unavailable(name, f"early stopping needs at least {e.min_queries} queries for "
                                                     f"p{q:g} at {EARLY_CONFIDENCE:.0%} confidence; got {e.n}", **params))
        else:
            out.append(MetricValue(name, e.value, method, n=e.n, note="MLPerf LoadGen early-stopping bound "
                                   f"({EARLY_CONFIDENCE:.0%} confidence)", params=params))
    return out


def summarize_latency_ns(latency_ns, *, method: str = "timer:perf_counter_ns", seed: int = 0) -> list[MetricValue]:
    """Every latency statistic of a run from its raw per-query samples (ns): the plain percentiles
    and mean with CIs, and the early-stopping estimates. Deterministic for a given seed, so stored
    samples give back the stored values without re-running."""
    ms = np.asarray(latency_ns, dtype=np.int64) / 1e6
    return summarize_latency(ms, method=method, seed=seed) + summarize_early_stopping(ms, method=method)


# ---- trials -----------------------------------------------------------------------------------------
def _t_interval(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """(low, high, sd) of the t-interval for the mean of per-trial values; None where k < 2."""
    k = values.size
    if k < 2:
        return None, None, None
    sd = float(np.std(values, ddof=1))
    half = float(sps.t.ppf(0.5 + CONFIDENCE / 2, df=k - 1)) * sd / np.sqrt(k)
    m = float(values.mean())
    return m - half, m + half, sd


def _pooled(name: str, value: float, trial_values: list[float], method: str, n: int,
            ci: tuple[float | None, float | None], extra: dict | None = None) -> MetricValue:
    """A pooled value whose CI is the union of ``ci`` and the t-interval over trial values, so it is
    never narrower than what the spread between fresh processes says."""
    vals = np.asarray(trial_values, dtype=float)
    t_lo, t_hi, sd = _t_interval(vals)
    los = [v for v in (ci[0], t_lo, value) if v is not None]
    his = [v for v in (ci[1], t_hi, value) if v is not None]
    params = {"pooled": True, "trials": int(vals.size), "between_trial_sd": sd,
              "trial_values": [float(v) for v in vals], "ci_method": "union of the pooled-sample CI and the "
              "t-interval over trial values", "ci_sampling": [ci[0], ci[1]], **(extra or {})}
    return MetricValue(name, float(value), method, n=n, ci_low=float(min(los)), ci_high=float(max(his)),
                       note=f"pooled over {vals.size} trials in fresh workers", params=params)


def pool_latency_trials(latency_ns_per_trial, *, method: str = "timer:perf_counter_ns",
                        seed: int = 0) -> list[MetricValue]:
    """Latency statistics over k trials: each value from the pooled raw samples, its CI widened to
    cover the between-trial t-interval, and the between-trial SD of the per-trial values."""
    trials = [np.asarray(t, dtype=np.int64) for t in latency_ns_per_trial if len(t)]
    if not trials:
        return []
    pooled = summarize_latency_ns(np.concatenate(trials), method=method, seed=seed)
    per_trial = [{m.name: m.value for m in summarize_latency_ns(t, method=method, seed=seed)} for t in trials]
    out = []
    for m in pooled:
        vals = [pt[m.name] for pt in per_trial if pt.get(m.name) is not None]
        if m.value is None or not vals:
            out.append(m if m.value is None else replace(m, params={**m.params, "pooled": True, "trials": len(trials)}))
            continue
        out.append(_pooled(m.name, m.value, vals, m.method, m.n, (m.ci_low, m.ci_high),
                           {k: v for k, v in m.params.items() if k not in ("pooled", "trials")}))
    return out


def pool_trial_values(name: str, trial_values, method: str, *, value: float | None = None, n: int | None = None,
                      ci: tuple[float | None, float | None] = (None, None)) -> MetricValue:
    """One pooled value from per-trial values (the mean unless ``value`` is given). Its CI is the
    t-interval over trials, widened to ``ci`` where given (e.g. the mean of the trials' own CIs,
    so a value that is identical in every trial keeps its sampling CI); n = trials unless given."""
    vals = np.asarray(trial_values, dtype=float)
    v = float(vals.mean()) if value is None else float(value)
    return _pooled(name, v, list(vals), method, int(vals.size) if n is None else n, ci)


# ---- one measured loop ------------------------------------------------------------------------------
def summarize_loop(issue_ns, done_ns, samples, loop: dict | None = None, *,
                   method: str = "timer:perf_counter_ns", seed: int = 0) -> list[MetricValue]:
    """The scenario's statistics from one loop's raw timestamps and the loop's own summary.

    Latency runs from issue (closed loop) or scheduled arrival (server: ``issue_ns`` holds the
    schedule), so the same arithmetic serves every scenario. Under server, throughput_sps is
    completed samples/s and scheduled_sps the arrival rate; an SLO search adds
    max_qps_within_slo, and "SLO not met" is a recorded outcome, not a failure.
    """
    loop = loop or {}
    issue = np.asarray(issue_ns, dtype=np.int64)
    done = np.asarray(done_ns, dtype=np.int64)
    values = summarize_latency_ns(done - issue, method=method, seed=seed)
    adaptive = loop.get("adaptive")
    if adaptive:
        values = [_with_reached_width(m, adaptive) if m.name == "latency_p50_ms" else m for m in values]
    thr = summarize_throughput(samples, issue, int(done[-1]), method=method, seed=seed)
    server = loop.get("loop") == "server"
    if server:
        unfinished = int(loop.get("queries_unfinished") or 0)
        note = "completed samples from the first scheduled arrival to the last completion"
        if unfinished:
            note += (f"; {unfinished} queries had arrived but were not served when the duration cap stopped the "
                     "run: the model is slower than the arrivals and the queue grew without bound")
        thr = replace(thr, note=note, params={**thr.params, "unfinished_queries": unfinished,
                                              "target_qps": loop.get("target_qps")})
    values.append(thr)
    if server:
        n = int(issue.size)
        if n > 1 and issue[-1] > issue[0]:
            values.append(MetricValue("scheduled_sps", float((n - 1) / ((issue[-1] - issue[0]) / 1e9)), "derived:schedule",
                                      n=n, note="the seeded Poisson schedule's realised rate, not a measurement of "
                                                "the model", params={"target_qps": loop.get("target_qps")}))
        search = loop.get("slo_search")
        if search:
            values.append(_slo_value(search, loop.get("slo") or {}))
    drift = loop.get("issue_drift") or {}
    if drift.get("n"):
        what = "intended start to actual start" if server else "previous completion to next issue"
        for name, key in (("issue_drift_p50_us", "p50_us"), ("issue_drift_p99_us", "p99_us")):
            values.append(MetricValue(name, float(drift[key]), method, n=int(drift["n"]), note=what,
                                      params={"max_us": drift.get("max_us")}))
    return values


def _with_reached_width(m: MetricValue, adaptive: dict) -> MetricValue:
    reached = None
    if m.value and m.ci_low is not None and m.ci_high is not None:
        reached = max(m.value - m.ci_low, m.ci_high - m.value) / abs(m.value)
    target = adaptive.get("ci_target_rel")
    met = None if reached is None or target is None else bool(reached <= target)
    return replace(m, params={**m.params, "adaptive": True, "ci_target_rel": target, "ci_target_met": met,
                              "ci_half_width_rel": reached, "loop_ci_half_width_rel": adaptive.get("ci_half_width_rel")})


def stop_reason(stopped_by: str, values) -> str:
    """The run's stop reason as stored: "ci_target" only when the STORED p50 interval meets the
    target; "ci_target_missed" when the loop's cheap estimate met it but the stored interval did not."""
    if stopped_by != "ci_target":
        return stopped_by
    p50 = next((v for v in values if v.name == "latency_p50_ms"), None)
    if p50 is not None and p50.params.get("ci_target_met") is False:
        return "ci_target_missed"
    return stopped_by


def _slo_value(search: dict, final: dict) -> MetricValue:
    params = {"slo_ms": search.get("slo_ms"), "percentile": search.get("percentile"), "met": final.get("met"),
              "final_p99_ms": final.get("p99_ms"), "final_qps": final.get("qps"), "probes": search.get("probes")}
    probes = search.get("probes") or []
    if search.get("max_qps") is None:
        lowest = min(probes, key=lambda p: p["qps"]) if probes else {}
        return MetricValue.unavailable(
            "max_qps_within_slo", f"SLO not met: p{search.get('percentile', 99):g} {_g(lowest.get('p99_ms'))} ms > "
            f"{_g(search.get('slo_ms'))} ms even at the lowest probed QPS ({_g(lowest.get('qps'))}); "
            f"{lowest.get('unfinished', 0)} queries unserved at the cap", **params)
    note = f"bisection over QPS with {len(probes)} short probe runs; p99 within {_g(search.get('slo_ms'))} ms"
    if final.get("met") is False:
        note += f"; the measured run at that QPS had p99 {_g(final.get('p99_ms'))} ms: SLO not met in the full run"
    return MetricValue("max_qps_within_slo", float(search["max_qps"]), "derived:slo-search", n=len(probes),
                       note=note, params=params)


def _g(x) -> str:
    return "n/a" if x is None else f"{x:.4g}"
