"""Between-run noise: a per-machine-class model of how much a metric moves from one fresh run to
the next, and intervals widened by it (issue 14, item 1; docs/performance.md, "Intervals").

A single run's bootstrap CI only covers the sampling noise *within* the run. Runs in fresh
workers also differ by a between-run component (placement, frequency, cache state, what else
runs), measured here at about 5x the within-run half-width for the calibrated busy-wait. So:

- **Fit.** From calibration runs (k >= 3 fresh runs of one series, several series allowed), the
  relative between-run SD of each metric, pooled over series with ``k - 1`` degrees of freedom
  each: ``s0^2 = sum((k_i - 1) s_i^2) / sum(k_i - 1)`` on values divided by their series mean.
- **One run.** ``half^2 = half_sampling^2 + (t_{df0} * s0 * value)^2``: the sampling interval and
  the between-run component added in quadrature, with the t quantile of the model's degrees of
  freedom (the model's own uncertainty).
- **k trials.** The between-trial variance of tonight's trials and the model's are pooled,
  ``s^2 = (df0 s0^2 + (k - 1) s_k^2) / (df0 + k - 1)``, and the interval for the mean of k is
  ``t_{df0 + k - 1} * s / sqrt(k)``: three trials alone give a t(2) interval 4.3 s / sqrt(3) wide,
  uselessly wide for throughput; borrowing the model's degrees of freedom keeps it honest and narrow.

A widened value says so: ``params.ci_method`` and ``params.noise_model`` (class, rel_sd, df, runs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from heptathlon.bench.errors import MetricError
from heptathlon.bench.metrics import MetricValue

CONFIDENCE = 0.95
# Metrics a noise model covers: per-run statistics whose between-run spread the sampling CI misses.
NOISE_METRICS = ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "throughput_sps")
MIN_DF = 2


@dataclass(frozen=True)
class MetricNoise:
    rel_sd: float  # between-run SD over the series mean
    df: int  # degrees of freedom of that estimate
    runs: int


@dataclass(frozen=True)
class NoiseModel:
    """Between-run relative SD per metric on one machine class."""

    machine_class: str
    metrics: Mapping[str, MetricNoise] = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"machine_class": self.machine_class, "note": self.note,
                "metrics": {k: {"rel_sd": v.rel_sd, "df": v.df, "runs": v.runs} for k, v in self.metrics.items()}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], source: str = "noise model") -> "NoiseModel":
        try:
            ms = {k: MetricNoise(float(v["rel_sd"]), int(v["df"]), int(v["runs"])) for k, v in d["metrics"].items()}
            model = cls(str(d["machine_class"]), ms, str(d.get("note", "")))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise MetricError(f"{source}: not a noise model ({type(e).__name__}: {e}); fit one with "
                              "benchmarks/ci_coverage.py --write-model") from None
        for k, v in ms.items():
            if not (v.rel_sd >= 0 and math.isfinite(v.rel_sd)) or v.df < 1:
                raise MetricError(f"{source}: metric {k!r}: rel_sd must be >= 0 and df >= 1")
        return model


def fit_noise_model(machine_class: str, series: Sequence[Mapping[str, Sequence[float]]], note: str = "") -> NoiseModel:
    """Fit from calibration series: each a {metric: per-run values} of one submission/profile/scenario."""
    acc: dict[str, list[tuple[float, int]]] = {}
    for s in series:
        for name, vals in s.items():
            v = np.asarray([x for x in vals if x is not None], dtype=float)
            if v.size < 2 or not np.all(np.isfinite(v)) or v.mean() == 0:
                continue
            acc.setdefault(name, []).append((float(np.var(v / v.mean(), ddof=1)), int(v.size)))
    out = {}
    for name, parts in acc.items():
        df = sum(k - 1 for _, k in parts)
        if df < MIN_DF:
            continue
        var = sum((k - 1) * s2 for s2, k in parts) / df
        out[name] = MetricNoise(float(math.sqrt(var)), df, sum(k for _, k in parts))
    return NoiseModel(machine_class, out, note)


def _t(df: int) -> float:
    return float(sps.t.ppf(0.5 + CONFIDENCE / 2, df=df))


def _model_params(model: NoiseModel, noise: MetricNoise, how: str) -> dict[str, Any]:
    return {"ci_method": how, "noise_model": {"machine_class": model.machine_class, "rel_sd": noise.rel_sd,
                                              "df": noise.df, "runs": noise.runs}}


def widen_single(m: MetricValue, model: NoiseModel | None) -> MetricValue:
    """One run's value with the between-run component added to its CI (unchanged without a model entry)."""
    noise = None if model is None else model.metrics.get(m.name)
    if noise is None or m.value is None or m.params.get("pooled"):
        return m
    v = m.value
    lo, hi = (m.ci_low if m.ci_low is not None else v), (m.ci_high if m.ci_high is not None else v)
    between = _t(noise.df) * noise.rel_sd * abs(v)
    lo_w = v - math.hypot(v - lo, between)
    hi_w = v + math.hypot(hi - v, between)
    params = {**m.params, **_model_params(model, noise, "sampling CI and the machine class's between-run SD "
                                          "(t quantile of its df) added in quadrature"),
              "ci_sampling": [m.ci_low, m.ci_high]}
    return replace(m, ci_low=float(lo_w), ci_high=float(hi_w), params=params)


def widen_pooled(m: MetricValue, model: NoiseModel | None) -> MetricValue:
    """A value pooled over k trials: between-trial and model variance pooled, t interval for the mean of k."""
    noise = None if model is None else model.metrics.get(m.name)
    vals = m.params.get("trial_values")
    if noise is None or m.value is None or not vals or len(vals) < 2:
        return m
    k = len(vals)
    mean = float(np.mean(vals))
    s_k2 = float(np.var(np.asarray(vals, dtype=float) / mean, ddof=1)) if mean else 0.0
    s2 = (noise.df * noise.rel_sd ** 2 + (k - 1) * s_k2) / (noise.df + k - 1)
    half = _t(noise.df + k - 1) * math.sqrt(s2 / k) * abs(m.value)
    lo_s, hi_s = m.params.get("ci_sampling") or (None, None)  # the pooled samples' own CI (bench/stats._pooled)
    lo = min(m.value - half, *(x for x in (lo_s,) if x is not None))
    hi = max(m.value + half, *(x for x in (hi_s,) if x is not None))
    params = {**m.params, **_model_params(model, noise, f"t interval for the mean of {k} trials with the "
                                          "between-trial variance pooled with the machine class's"),
              "ci_unpooled": [m.ci_low, m.ci_high], "pooled_rel_sd": math.sqrt(s2)}
    return replace(m, ci_low=float(lo), ci_high=float(hi), params=params)
