"""Nightly regression detection: baseline windows, per-metric tests, context diffs.

Pure core: plain dataclasses and arrays in, frozen dataclasses out, no I/O. The caller (the
``nightly`` command) loads past runs from the database, turns them into :class:`NightlyRun`
values and stores the :class:`Alert` values this module returns.

A nightly value regresses only when all three hold (DESIGN.md, "Regression detection"):

1. its relative change against the baseline window's mean exceeds the metric's threshold;
2. a two-sided Mann-Whitney U test of the candidate's raw samples against the window's pooled
   raw samples is significant;
3. its z-score against the window's per-night values passes the z threshold (Conbench's
   lookback z-score: ``(candidate - mean(window)) / stdev(window)``).

(2) alone flags tiny shifts because thousands of per-query samples make any between-night drift
significant; (3) alone fires on a window that happens to be tight; (1) keeps both to changes
someone cares about. The same three tests in the good direction report an improvement.

Quality and fairness metrics are not tested for size: with fixed weights on a fixed profile any
change in predictions is drift, reported with its flip rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
from scipy.stats import binomtest, mannwhitneyu

from heptathlon.bench.errors import RegressionError
from heptathlon.bench.metrics import METRICS, spec_for
from heptathlon.bench.run_status import RunStatus
from heptathlon.bench.series import SeriesKey, canonical_json, series_fingerprint_class, series_key

__all__ = ["SeriesKey", "series_fingerprint_class", "series_key"]  # the key lives in bench/series.py

DEFAULT_WINDOW = 7
DEFAULT_MIN_WINDOW = 5
DEFAULT_P_VALUE = 0.01
DEFAULT_Z_THRESHOLD = 3.0
DEFAULT_REL_THRESHOLD = 0.05  # 5% for latency, energy and every other sized metric unless overridden

# Metric events whose values are checked for drift in predictions rather than for size.
DRIFT_EVENTS = frozenset({"quality", "fairness"})

DetectionKind = Literal["regression", "improvement", "drift", "unchanged", "untested"]
SeriesStatus = Literal["broke", "regressed", "drift", "improved", "no_baseline", "ok"]
AlertKind = Literal["regression", "improvement", "drift", "broke"]


# --------------------------------------------------------------------------- runs and config


@dataclass(frozen=True)
class NightlyRun:
    """One night's result of one series, as the detector needs it.

    ``samples`` maps a stored sample kind (``SampleKind.LATENCY_NS``, the metric's
    ``MetricSpec.sample_kind``; or a metric name for per-trial or per-interval values) to raw
    observations, in the unit they are stored in: the Mann-Whitney U test only ranks them. ``predictions`` is the model's output per example, in the task's
    fixed order, for drift checks. ``excluded_from_baseline`` marks a run with an open
    (unacknowledged) regression so that it does not become the baseline; ``starts_baseline`` marks
    a run whose change a maintainer accepted as expected, so the window restarts there.
    """

    run_id: str
    series: SeriesKey
    started_at: datetime
    status: Literal[RunStatus.SUCCEEDED, RunStatus.FAILED] = RunStatus.SUCCEEDED
    metrics: Mapping[str, float] = field(default_factory=dict)
    samples: Mapping[str, Sequence[float]] = field(default_factory=dict)
    predictions: Sequence[Any] | None = None
    software: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    nightly: bool = True
    excluded_from_baseline: bool = False
    starts_baseline: bool = False
    # What ran: {"sha256": ..., "manifest": {...}} and {"name": ..., "spec_hash": ...}; in the context diff.
    artifact: Mapping[str, Any] = field(default_factory=dict)
    profile: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DetectionConfig:
    """Detection parameters; a suite file sets them (see bench/suite.py)."""

    window: int = DEFAULT_WINDOW
    min_window: int = DEFAULT_MIN_WINDOW
    p_value: float = DEFAULT_P_VALUE
    z_threshold: float = DEFAULT_Z_THRESHOLD
    thresholds: Mapping[str, float] = field(default_factory=dict)  # metric -> relative threshold
    default_threshold: float = DEFAULT_REL_THRESHOLD

    def __post_init__(self) -> None:
        if self.min_window < 2:
            raise RegressionError(f"min_window must be at least 2 (a z-score needs a spread), got {self.min_window}")
        if self.window < self.min_window:
            raise RegressionError(f"baseline window {self.window} is smaller than min_window {self.min_window}")
        if not 0 < self.p_value < 1:
            raise RegressionError(f"p_value must lie in (0, 1), got {self.p_value}")
        if not self.z_threshold > 0:
            raise RegressionError(f"z_threshold must be positive, got {self.z_threshold}")
        for name, thr in {**self.thresholds, "(default)": self.default_threshold}.items():
            if name != "(default)":
                spec_for(name)
            if not thr > 0:
                raise RegressionError(f"threshold for {name} must be positive, got {thr}")

    def threshold_for(self, metric: str) -> float:
        return float(self.thresholds.get(metric, self.default_threshold))


# --------------------------------------------------------------------------- baseline window


def select_baseline(history: Iterable[NightlyRun], candidate: NightlyRun, window: int) -> tuple[NightlyRun, ...]:
    """The last ``window`` good nightly runs of the candidate's series before it, oldest first.

    Good: succeeded, nightly, not excluded. A run marked ``starts_baseline`` drops every run
    before it (Conbench's "distribution change").
    """
    good = sorted(
        (r for r in history
         if r.series == candidate.series and r.run_id != candidate.run_id
         and r.started_at < candidate.started_at and r.nightly
         and r.status == RunStatus.SUCCEEDED and not r.excluded_from_baseline),
        key=lambda r: r.started_at,
    )
    resets = [i for i, r in enumerate(good) if r.starts_baseline]
    if resets:
        good = good[resets[-1]:]
    return tuple(good[-window:]) if window > 0 else ()


# --------------------------------------------------------------------------- per-metric tests


@dataclass(frozen=True)
class Detection:
    """The outcome of checking one metric of one candidate run against its baseline window."""

    metric: str
    kind: DetectionKind
    baseline_value: float | None  # window mean (drift: the latest baseline run's value)
    candidate_value: float | None
    rel_change: float | None  # signed: (candidate - baseline) / |baseline|
    p_value: float | None
    z_score: float | None
    n_baseline: int
    threshold: float | None = None
    flip_rate: float | None = None
    reason: str = ""


def _rel_change(base: float, cand: float) -> float:
    if base == 0:
        return 0.0 if cand == 0 else math.copysign(math.inf, cand)
    return (cand - base) / abs(base)


def _z_score(values: np.ndarray, cand: float) -> float:
    mean = float(values.mean())
    sd = float(values.std(ddof=1))
    if sd == 0:
        return 0.0 if cand == mean else math.copysign(math.inf, cand - mean)
    return (cand - mean) / sd


def mann_whitney_p(candidate_samples: Sequence[float] | None, baseline_samples: Sequence[float] | None) -> float | None:
    """Two-sided Mann-Whitney U p-value; None when either side has fewer than two samples."""
    if candidate_samples is None or baseline_samples is None:
        return None
    xs = np.asarray(candidate_samples, dtype=float)
    ys = np.asarray(baseline_samples, dtype=float)
    if xs.size < 2 or ys.size < 2:
        return None
    p = float(mannwhitneyu(xs, ys, alternative="two-sided").pvalue)
    return 1.0 if math.isnan(p) else p  # nan: every sample identical


def detect_change(metric: str, baseline_values: Sequence[float], baseline_samples: Sequence[float] | None,
                  candidate_value: float, candidate_samples: Sequence[float] | None,
                  config: DetectionConfig = DetectionConfig()) -> Detection:
    """Three-test check of one sized metric (latency, throughput, memory, energy, ...).

    ``baseline_values`` are the window's per-night values; ``baseline_samples`` the window's raw
    samples pooled; ``candidate_samples`` tonight's raw samples.
    """
    return classify_change(metric, baseline_values, candidate_value,
                           lambda: mann_whitney_p(candidate_samples, baseline_samples), config)


def classify_change(metric: str, baseline_values: Sequence[float], candidate_value: float,
                    p_value: Callable[[], float | None], config: DetectionConfig = DetectionConfig()) -> Detection:
    """``detect_change`` with the Mann-Whitney p-value supplied lazily (shared by metrics of one sample kind)."""
    spec = spec_for(metric)
    base_vals = np.asarray(baseline_values, dtype=float)
    n = int(base_vals.size)
    thr = config.threshold_for(metric)
    if spec.lower_is_better is None:
        return Detection(metric, "untested", None, candidate_value, None, None, None, n, thr,
                         reason="metric has no better direction")
    if n < config.min_window:
        return Detection(metric, "untested", float(base_vals.mean()) if n else None, candidate_value,
                         None, None, None, n, thr,
                         reason=f"baseline has {n} good nightly runs; {config.min_window} needed")
    base = float(base_vals.mean())
    rel = _rel_change(base, candidate_value)
    z = _z_score(base_vals, candidate_value)
    p = p_value()
    if p is None:
        return Detection(metric, "untested", base, candidate_value, rel, None, z, n, thr,
                         reason="no raw samples and fewer than 2 trials per night for a significance test")

    # Sign +1 means "worse": higher for lower-is-better metrics, lower otherwise.
    worse = 1.0 if spec.lower_is_better else -1.0
    size_ok = abs(rel) > thr
    sig_ok = p < config.p_value
    band_ok = abs(z) > config.z_threshold
    if size_ok and sig_ok and band_ok and (rel * worse > 0) == (z * worse > 0):
        kind: DetectionKind = "regression" if rel * worse > 0 else "improvement"
        reason = f"{rel:+.1%} (threshold {thr:.0%}), p={p:.2g}, z={z:+.1f}"
    else:
        kind = "unchanged"
        failed = [s for s, ok in (("change", size_ok), ("Mann-Whitney", sig_ok), ("z-score", band_ok)) if not ok]
        reason = "within " + ", ".join(failed) if failed else "tests disagree on direction"
    return Detection(metric, kind, base, candidate_value, rel, p, z, n, thr, reason=reason)


# Tail statistics get a test of the tail: the share of tonight's raw samples above the baseline's
# pooled quantile, against the share the quantile implies (an exact binomial test). A Mann-Whitney
# U test on all samples mostly sees the median and misses a step in p99 alone.
TAIL_QUANTILES = {"latency_p90_ms": 0.90, "latency_p99_ms": 0.99, "ttft_p90_ms": 0.90, "ttft_p99_ms": 0.99,
                  "itl_p90_ms": 0.90, "itl_p99_ms": 0.99, "e2e_p99_ms": 0.99}
# A metric without per-query samples is tested on per-trial values (samples named after the metric,
# one value per trial in a fresh worker): throughput, peak memory, load time, energy.
TRIAL_VALUES_MIN = 2


def exceedance_p(candidate_samples: Sequence[float] | None, baseline_samples: Sequence[float] | None,
                 q: float) -> float | None:
    """Two-sided exact binomial p-value of the share of candidate samples above the baseline's
    pooled ``q`` quantile, against 1 - q; None when tonight's tail would hold fewer than 5 samples
    (p99: fewer than 500 queries) or the baseline's fewer than 10."""
    if candidate_samples is None or baseline_samples is None:
        return None
    xs = np.asarray(candidate_samples, dtype=float)
    ys = np.asarray(baseline_samples, dtype=float)
    if xs.size * (1 - q) < 5 or ys.size * (1 - q) < 10:  # a tail of fewer than 5 expected samples is noise
        return None
    cut = float(np.quantile(ys, q))
    return float(binomtest(int((xs > cut).sum()), int(xs.size), 1 - q).pvalue)


def flip_rate(baseline_predictions: Sequence[Any], candidate_predictions: Sequence[Any]) -> float | None:
    """Share of examples whose prediction differs; None when the two cannot be paired.

    An example's prediction may itself be a vector (multi-output); it counts as one flip.
    """
    a, b = baseline_predictions, candidate_predictions
    if len(a) != len(b) or len(a) == 0:
        return None
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.ndim == b.ndim == 1:
        return float(np.mean(a != b))
    return sum(not _same(x, y) for x, y in zip(a, b)) / len(a)


def _same(x: Any, y: Any) -> bool:
    x, y = np.asarray(x), np.asarray(y)
    return x.shape == y.shape and bool(np.all(x == y))


def detect_drift(metric: str, baseline_value: float | None, candidate_value: float,
                 baseline_predictions: Sequence[Any] | None, candidate_predictions: Sequence[Any] | None) -> Detection:
    """Quality/fairness check: any change in predictions (or, lacking them, in the value) is drift."""
    spec_for(metric)
    if baseline_value is None and baseline_predictions is None:
        return Detection(metric, "untested", None, candidate_value, None, None, None, 0,
                         reason="no good nightly run to compare predictions with")
    rel = None if baseline_value is None else _rel_change(baseline_value, candidate_value)
    if baseline_predictions is not None and candidate_predictions is not None:
        flips = flip_rate(baseline_predictions, candidate_predictions)
        if flips is None:
            return Detection(metric, "drift", baseline_value, candidate_value, rel, None, None, 1,
                             reason=f"prediction count changed: {len(baseline_predictions)} → {len(candidate_predictions)}")
        if flips > 0:
            return Detection(metric, "drift", baseline_value, candidate_value, rel, None, None, 1, flip_rate=flips,
                             reason=f"{flips:.2%} of predictions changed")
        return Detection(metric, "unchanged", baseline_value, candidate_value, rel, None, None, 1, flip_rate=0.0,
                         reason="predictions identical")
    if baseline_value is not None and candidate_value != baseline_value:
        return Detection(metric, "drift", baseline_value, candidate_value, rel, None, None, 1,
                         reason="value changed (no predictions stored to compute a flip rate)")
    return Detection(metric, "unchanged", baseline_value, candidate_value, rel, None, None, 1,
                     reason="value identical")


# --------------------------------------------------------------------------- context diff


@dataclass(frozen=True)
class ContextChange:
    """One changed leaf of the software context or machine fingerprint."""

    path: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.path}: {_show(self.old)} → {_show(self.new)}"


_ABSENT = object()


def _show(v: Any) -> str:
    if v is _ABSENT:
        return "(absent)"
    if isinstance(v, (list, tuple, dict)):
        return canonical_json(v)
    return str(v)


def diff_context(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> tuple[ContextChange, ...]:
    """Every leaf that differs between two nested dicts, as ``path: old → new``, sorted by path.

    Lists are compared as whole values; a key present on one side only shows ``(absent)``.
    """
    out: list[ContextChange] = []
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{key}"
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(diff_context(a, b, prefix=path + "."))
        elif a != b:
            out.append(ContextChange(path, a, b))
    return tuple(out)


def run_context(run: NightlyRun) -> dict[str, Any]:
    """``{"software": ..., "machine": ...}`` of a run, the shape that ``diff_context`` compares."""
    # "state" holds live readings (current clocks) that differ on every run.
    machine = {k: v for k, v in run.fingerprint.items() if k not in ("software", "state")}
    software = {**dict(run.fingerprint.get("software") or {}), **dict(run.software)}
    out: dict[str, Any] = {"software": software, "machine": machine}
    if run.artifact:  # a rebuilt artifact continues its series (named by the submission): say so
        out["artifact"] = dict(run.artifact)
    if run.profile:
        out["profile"] = dict(run.profile)
    return out


# --------------------------------------------------------------------------- one series, one night


@dataclass(frozen=True)
class SeriesResult:
    """Every check of one candidate run: its status, per-metric detections and context changes."""

    series: SeriesKey
    candidate_run_id: str
    status: SeriesStatus
    detections: tuple[Detection, ...]
    baseline_run_ids: tuple[str, ...]
    context_changes: tuple[ContextChange, ...]
    error: str | None = None

    def of_kind(self, kind: DetectionKind) -> tuple[Detection, ...]:
        return tuple(d for d in self.detections if d.kind == kind)


def sample_kind_of(metric: str) -> str:
    """The raw samples behind a metric: its registered sample kind, else samples named after it."""
    spec = METRICS.get(metric)
    return str(spec.sample_kind) if spec is not None and spec.sample_kind is not None else metric


def _samples_for(run: NightlyRun, metric: str) -> np.ndarray | None:
    s = run.samples.get(sample_kind_of(metric))
    return None if s is None else np.asarray(s, dtype=float)


def check_series(candidate: NightlyRun, history: Iterable[NightlyRun],
                 config: DetectionConfig = DetectionConfig()) -> SeriesResult:
    """Check one candidate run against the baseline window of its series."""
    history = list(history)
    window = select_baseline(history, candidate, config.window)
    ids = tuple(r.run_id for r in window)
    last_good = window[-1] if window else None
    if last_good is None:  # compare context with the latest run of the series, good or not
        earlier = [r for r in history if r.series == candidate.series and r.started_at < candidate.started_at]
        last_good = max(earlier, key=lambda r: r.started_at) if earlier else None
    changes = diff_context(run_context(last_good), run_context(candidate)) if last_good else ()

    if candidate.status != RunStatus.SUCCEEDED:
        return SeriesResult(candidate.series, candidate.run_id, "broke", (), ids, changes,
                            error=candidate.error or "run failed without a reason")

    p_cache: dict[tuple[str, tuple[str, ...]], float | None] = {}

    def pooled_of(name: str, runs: tuple[NightlyRun, ...]) -> np.ndarray | None:
        base = [np.asarray(s, dtype=float) for r in runs if (s := r.samples.get(name)) is not None]
        return np.concatenate(base) if runs and len(base) == len(runs) else None

    def p_for(metric: str, runs: tuple[NightlyRun, ...]) -> float | None:
        ids = tuple(r.run_id for r in runs)
        kind = sample_kind_of(metric)
        if metric in TAIL_QUANTILES and kind != metric:  # the tail of the per-query samples
            key = (f"tail:{metric}", ids)
            if key not in p_cache:
                p_cache[key] = exceedance_p(_samples_for(candidate, metric), pooled_of(kind, runs),
                                            TAIL_QUANTILES[metric])
            return p_cache[key]
        if kind == metric:  # no per-query samples: per-trial values, where tonight has enough trials
            mine = candidate.samples.get(metric)
            if mine is None or len(mine) < TRIAL_VALUES_MIN:
                return None
            return mann_whitney_p(mine, pooled_of(metric, runs))
        # Every other latency statistic shares the per-query samples: test them once.
        key = (kind, ids)
        if key not in p_cache:
            p_cache[key] = mann_whitney_p(_samples_for(candidate, metric), pooled_of(kind, runs))
        return p_cache[key]

    detections: list[Detection] = []
    for metric in sorted(candidate.metrics):
        if metric not in METRICS:
            continue
        value = float(candidate.metrics[metric])
        if METRICS[metric].event in DRIFT_EVENTS:
            ref = next((r for r in reversed(window) if metric in r.metrics), None)
            detections.append(detect_drift(
                metric,
                None if ref is None else float(ref.metrics[metric]),
                value,
                None if ref is None else ref.predictions,
                candidate.predictions,
            ))
            continue
        with_metric = tuple(r for r in window if metric in r.metrics)
        detections.append(classify_change(metric, [float(r.metrics[metric]) for r in with_metric], value,
                                          lambda m=metric, w=with_metric: p_for(m, w), config))

    kinds = {d.kind for d in detections}
    if "regression" in kinds:
        status: SeriesStatus = "regressed"
    elif "drift" in kinds:
        status = "drift"
    elif "improvement" in kinds:
        status = "improved"
    elif len(window) < config.min_window:
        status = "no_baseline"
    else:
        status = "ok"
    return SeriesResult(candidate.series, candidate.run_id, status, tuple(detections), ids, changes)


def check_night(candidates: Iterable[NightlyRun], history: Iterable[NightlyRun],
                config: DetectionConfig = DetectionConfig()) -> tuple[SeriesResult, ...]:
    """Check every candidate run of one night; ``history`` holds the earlier runs of any series."""
    history = list(history)
    return tuple(check_series(c, history, config) for c in candidates)


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class Alert:
    """A finding to store and show until a maintainer acknowledges it (alert table row)."""

    series_id: str
    series_label: str
    kind: AlertKind
    metric: str | None  # None for "broke"
    candidate_run_id: str
    baseline_run_ids: tuple[str, ...]
    p_value: float | None
    z_score: float | None
    rel_change: float | None
    flip_rate: float | None
    message: str

    @property
    def key(self) -> str:
        """Stable identity, used to acknowledge this alert."""
        return f"{self.series_id}:{self.metric or 'run'}:{self.kind}:{self.candidate_run_id}"

    @property
    def blocking(self) -> bool:
        """Whether this alert, left unacknowledged, makes the night fail (improvements do not)."""
        return self.kind != "improvement"


def alerts_from(results: Iterable[SeriesResult]) -> list[Alert]:
    """Alerts for breaks, regressions, drift and improvements, in result order."""
    out: list[Alert] = []
    for r in results:
        if r.status == "broke":
            out.append(Alert(r.series.id, r.series.label, "broke", None, r.candidate_run_id, r.baseline_run_ids,
                             None, None, None, None, r.error or "run failed"))
        for d in r.detections:
            if d.kind in ("regression", "improvement", "drift"):
                out.append(Alert(r.series.id, r.series.label, d.kind, d.metric, r.candidate_run_id,
                                 r.baseline_run_ids, d.p_value, d.z_score, d.rel_change, d.flip_rate, d.reason))
    return out


def unacknowledged(alerts: Iterable[Alert], acknowledged: Collection[str] = ()) -> list[Alert]:
    """Blocking alerts whose key is not in ``acknowledged``."""
    ack = set(acknowledged)
    return [a for a in alerts if a.blocking and a.key not in ack]
