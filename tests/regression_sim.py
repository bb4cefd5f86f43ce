"""Simulated nightly series for the regression detector's tests and benchmarks/nightly_false_positives.py:
lognormal per-query latencies with between-night drift, replayed night by night through the production
``check_series``, and false-positive / detection rates with exact binomial intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Sequence

import numpy as np
from scipy.stats import binomtest

from heptathlon.bench.errors import RegressionError
from heptathlon.bench.metrics import SampleKind
from heptathlon.bench.regression import DetectionConfig, NightlyRun, SeriesKey, SeriesResult, check_series


@dataclass(frozen=True)
class SimulationSpec:
    """A simulated nightly series: lognormal per-query latencies with lognormal between-night drift."""

    nights: int = 20
    n_queries: int = 1000
    base_latency_ms: float = 2.0
    within_sigma: float = 0.25  # per-query lognormal spread
    drift_sd: float = 0.01  # between-night drift (sd of the log factor)
    slowdown: float = 0.0  # e.g. 0.08 for an 8% slowdown
    slowdown_from: int | None = None  # first slowed night, 1-based
    metrics: tuple[str, ...] = ("latency_p50_ms", "latency_p99_ms", "latency_mean_ms")
    trials: int = 1  # per night, each in a fresh worker: its own scale factor (trial_sd)
    trial_sd: float = 0.0  # between-trial spread within one night (sd of the log factor)
    tail_only: bool = False  # the slowdown hits only the slowest 10% of queries (a p99 step, p50 unchanged)


_SIM_SERIES = SeriesKey("sim-model", "sim-task", "cpu-1core", "single_stream", "{}", "sim")
_SIM_STATS = {"latency_p50_ms": lambda x: np.percentile(x, 50), "latency_p90_ms": lambda x: np.percentile(x, 90),
              "latency_p99_ms": lambda x: np.percentile(x, 99), "latency_mean_ms": np.mean,
              "throughput_sps": lambda x: x.size / (x.sum() / 1e3)}  # closed loop: samples over the window
PER_TRIAL = ("throughput_sps",)  # no per-query samples: tested on per-trial values (as nightly stores them)


def simulate_series(rng: np.random.Generator, spec: SimulationSpec = SimulationSpec()) -> list[NightlyRun]:
    """Nights 1..N of one simulated series."""
    t0 = datetime(2025, 1, 1, 2, 30, tzinfo=timezone.utc)
    runs = []
    for night in range(1, spec.nights + 1):
        factor = math.exp(rng.normal(0.0, spec.drift_sd))
        slowed = spec.slowdown_from is not None and night >= spec.slowdown_from
        if slowed and not spec.tail_only:
            factor *= 1.0 + spec.slowdown
        trials = []
        for _ in range(spec.trials):
            trial = math.exp(rng.normal(0.0, spec.trial_sd)) if spec.trial_sd else 1.0  # no draw: old seeds hold
            t = spec.base_latency_ms * factor * trial * rng.lognormal(0.0, spec.within_sigma, spec.n_queries)
            if slowed and spec.tail_only:
                t = np.where(t > np.percentile(t, 90), t * (1.0 + spec.slowdown), t)
            trials.append(t)
        lat = np.concatenate(trials)
        metrics = {m: float(_SIM_STATS[m](lat)) for m in spec.metrics}
        samples = {SampleKind.LATENCY_NS: lat * 1e6}
        for m in spec.metrics:
            if m in PER_TRIAL:
                samples[m] = [float(_SIM_STATS[m](t)) for t in trials]
        runs.append(NightlyRun(run_id=f"night-{night}", series=_SIM_SERIES, started_at=t0 + timedelta(days=night),
                               metrics=metrics, samples=samples))
    return runs


def replay_series(runs: Sequence[NightlyRun], config: DetectionConfig = DetectionConfig()) -> list[SeriesResult]:
    """Check each night against the nights before it, as production would.

    A regressed night is excluded from later windows, as an unacknowledged alert is in production.
    """
    seen: list[NightlyRun] = []
    out = []
    for run in runs:
        res = check_series(run, seen, config)
        out.append(res)
        seen.append(replace(run, excluded_from_baseline=res.status == "regressed"))
    return out


@dataclass(frozen=True)
class RateEstimate:
    """A proportion over simulated series with its 95% Clopper-Pearson interval."""

    hits: int
    trials: int
    rate: float
    ci_low: float
    ci_high: float


def _rate(hits: int, trials: int) -> RateEstimate:
    ci = binomtest(hits, trials).proportion_ci(confidence_level=0.95, method="exact")
    return RateEstimate(hits, trials, hits / trials, float(ci.low), float(ci.high))


@dataclass(frozen=True)
class FalsePositiveEstimate:
    """False alarms on noise-only series: per series (any night) and per night checked."""

    per_series: RateEstimate
    per_night: RateEstimate
    spec: SimulationSpec
    config: DetectionConfig


def estimate_false_positive_rate(n_series: int = 500, spec: SimulationSpec = SimulationSpec(),
                                 config: DetectionConfig = DetectionConfig(), seed: int = 0) -> FalsePositiveEstimate:
    """Replay ``n_series`` noise-only series and count nights flagged as regressions."""
    if spec.slowdown:
        raise RegressionError("a false-positive estimate needs a noise-only simulation (slowdown=0)")
    rng = np.random.default_rng(seed)
    series_hits = night_hits = nights_checked = 0
    for _ in range(n_series):
        results = replay_series(simulate_series(rng, spec), config)
        checked = [r for r in results if r.status != "no_baseline"]
        flagged = sum(r.status == "regressed" for r in checked)
        nights_checked += len(checked)
        night_hits += flagged
        series_hits += flagged > 0
    return FalsePositiveEstimate(_rate(series_hits, n_series), _rate(night_hits, max(nights_checked, 1)), spec, config)


def estimate_detection_rate(n_series: int = 500, spec: SimulationSpec = SimulationSpec(slowdown=0.08, slowdown_from=6),
                            config: DetectionConfig = DetectionConfig(), seed: int = 0,
                            metric: str | None = None) -> RateEstimate:
    """Share of series flagged exactly at ``slowdown_from`` with no alarm on the nights before
    (``metric``: flagged by a regression of that metric, at that night)."""
    if not spec.slowdown or spec.slowdown_from is None:
        raise RegressionError("a detection-rate estimate needs slowdown and slowdown_from")
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_series):
        results = replay_series(simulate_series(rng, spec), config)
        before = results[: spec.slowdown_from - 1]
        at = results[spec.slowdown_from - 1]
        flagged = at.status == "regressed" if metric is None else any(
            d.metric == metric and d.kind == "regression" for d in at.detections)
        hits += flagged and not any(r.status == "regressed" for r in before)
    return _rate(hits, n_series)
