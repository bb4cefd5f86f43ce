"""The metric registry: every metric name and unit is defined here, once.

The CLI, the database and the dashboard all read this registry. A value that is
not a plain measurement says so in its ``method`` (``estimate:...``), and an
estimated value is never ranked against a measured one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from heptathlon.bench.errors import MetricError


class SampleKind(StrEnum):
    """The raw arrays a run stores in the ``samples`` table, by kind. Writers and readers use these."""

    LATENCY_NS = "latency_ns"  # per query: completion minus issue (or scheduled arrival), perf_counter_ns
    PREDICTIONS = "predictions"  # the model's output per example, in the task's fixed order
    SCORES = "scores"  # per-example scores (float32), for threshold-free fairness metrics
    # the generate scenario (docs/generate.md), per request in request order; ITL over all gaps
    TTFT_NS = "ttft_ns"
    ITL_NS = "itl_ns"
    E2E_NS = "e2e_ns"
    PROMPT_TOKENS = "prompt_tokens"
    OUTPUT_TOKENS = "output_tokens"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str
    event: str  # quality | latency | throughput | memory | energy | framework_tax | fairness | size | context
    lower_is_better: bool | None
    description: str
    sample_kind: SampleKind | None = None  # the stored raw samples a regression test compares


_SPECS = [
    MetricSpec("accuracy", "fraction", "quality", False,
               "Task quality, or fidelity to the reference profile where the task has no labels."),
    MetricSpec("latency_p50_ms", "ms", "latency", True, "Median per-query latency from issue time.",
               SampleKind.LATENCY_NS),
    MetricSpec("latency_p90_ms", "ms", "latency", True, "90th percentile per-query latency.",
               SampleKind.LATENCY_NS),
    MetricSpec("latency_p99_ms", "ms", "latency", True, "99th percentile per-query latency.",
               SampleKind.LATENCY_NS),
    MetricSpec("latency_mean_ms", "ms", "latency", True, "Mean per-query latency.",
               SampleKind.LATENCY_NS),
    MetricSpec("latency_p90_early_ms", "ms", "latency", True,
               "MLPerf LoadGen early-stopping estimate of the p90 latency: an upper bound at 99% confidence."),
    MetricSpec("latency_p99_early_ms", "ms", "latency", True,
               "MLPerf LoadGen early-stopping estimate of the p99 latency: an upper bound at 99% confidence."),
    MetricSpec("issue_drift_p50_us", "us", "latency", True,
               "Median delay the harness adds before issuing a query (closed loop: previous completion to next "
               "issue; server: intended to actual start)."),
    MetricSpec("issue_drift_p99_us", "us", "latency", True, "99th percentile of the harness's issue delay."),
    MetricSpec("scheduled_sps", "samples/s", "throughput", False,
               "Server: samples scheduled per second, the realised rate of the seeded Poisson arrivals."),
    MetricSpec("max_qps_within_slo", "queries/s", "throughput", False,
               "Server with an SLO: the largest probed QPS whose p99 latency stayed within the SLO."),
    MetricSpec("throughput_sps", "samples/s", "throughput", False,
               "Samples completed over the timed window."),
    MetricSpec("tokens_per_s", "1/s", "throughput", False,
               "Input tokens processed per second over the timed window; tokens as the submission's own "
               "tokenizer counts them (padding excluded)."),
    MetricSpec("words_per_s", "1/s", "throughput", False,
               "Whitespace-separated input words processed per second over the timed window (Pentathlon's)."),
    MetricSpec("tokenize_ms", "ms", "latency", True,
               "Median tokenisation time per query, outside the timed model call (transformers and onnx on text)."),
    # The generate scenario (docs/generate.md): token times stamped by the harness on receipt.
    MetricSpec("ttft_p50_ms", "ms", "latency", True,
               "Median time to first token: request arrival (scheduled, under Poisson load) to the first "
               "streamed token (MLPerf LLM, guidellm).", SampleKind.TTFT_NS),
    MetricSpec("ttft_p90_ms", "ms", "latency", True, "90th percentile time to first token.", SampleKind.TTFT_NS),
    MetricSpec("ttft_p99_ms", "ms", "latency", True, "99th percentile time to first token.", SampleKind.TTFT_NS),
    MetricSpec("itl_p50_ms", "ms", "latency", True,
               "Median inter-token latency, over all gaps between consecutive streamed tokens of every "
               "request (vLLM's ITL).", SampleKind.ITL_NS),
    MetricSpec("itl_p90_ms", "ms", "latency", True, "90th percentile inter-token latency, over all gaps.",
               SampleKind.ITL_NS),
    MetricSpec("itl_p99_ms", "ms", "latency", True, "99th percentile inter-token latency, over all gaps.",
               SampleKind.ITL_NS),
    MetricSpec("tpot_ms", "ms", "latency", True,
               "Median over requests of time per output token, (e2e - ttft) / (output tokens - 1) "
               "(MLPerf LLM's TPOT, vLLM's TPOT)."),
    MetricSpec("e2e_p50_ms", "ms", "latency", True, "Median request latency: arrival to final answer.",
               SampleKind.E2E_NS),
    MetricSpec("e2e_p99_ms", "ms", "latency", True, "99th percentile request latency: arrival to final answer.",
               SampleKind.E2E_NS),
    MetricSpec("output_tokens_per_s", "1/s", "throughput", False,
               "Output tokens of all requests over the timed window (aggregate)."),
    MetricSpec("output_tokens_per_s_per_request", "1/s", "throughput", False,
               "Median over requests of output tokens / (final answer - first token): tokens/s one user sees."),
    MetricSpec("requests_per_s", "1/s", "throughput", False, "Completed requests over the timed window."),
    MetricSpec("prefill_tokens_per_s", "1/s", "throughput", False,
               "Prompt tokens of all requests over the union of their TTFT intervals (arrival to first token): "
               "a cohort prefilled together counts once; queueing included."),
    MetricSpec("energy_per_token_j", "J", "energy", True, "Net energy over output tokens."),
    MetricSpec("max_rate_within_slo", "requests/s", "throughput", False,
               "Generate with TTFT and TPOT SLOs: the largest probed request rate whose p99 TTFT and p99 TPOT "
               "both stayed within them."),
    MetricSpec("bleu", "score", "quality", False,
               "Generate with references: corpus BLEU of the greedy outputs (sacrebleu, signature in the note)."),
    MetricSpec("chrf", "score", "quality", False,
               "Generate with references: corpus chrF of the greedy outputs (sacrebleu, signature in the note)."),
    MetricSpec("generation_exact_match", "fraction", "quality", False,
               "Generate fidelity: share of requests whose greedy token sequence equals the fp32 reference "
               "profile's for the same prompt (labelled fidelity, not task quality)."),
    MetricSpec("generation_first_divergence", "tokens", "quality", False,
               "Generate fidelity: mean position of the first token that differs from the fp32 reference "
               "profile's greedy output (max_new_tokens where none differs)."),
    MetricSpec("peak_rss_mb", "MB", "memory", True, "Peak resident memory of the worker's process tree."),
    MetricSpec("gpu_peak_mb", "MB", "memory", True, "Peak GPU memory used by the worker's processes."),
    MetricSpec("load_s", "s", "latency", True, "Cold start: process spawn to model ready."),
    MetricSpec("params", "count", "size", True, "Parameter count, derived from the artifact."),
    MetricSpec("artifact_mb", "MB", "size", True, "Size of the artifact."),
    MetricSpec("energy_j", "J", "energy", True, "Energy over the timed window, net of the idle baseline."),
    MetricSpec("energy_gross_j", "J", "energy", True, "Energy over the timed window, idle baseline included."),
    MetricSpec("energy_per_sample_j", "J", "energy", True, "Net energy per completed sample."),
    MetricSpec("co2_g", "g", "energy", True, "CO2 from net energy and the configured grid intensity."),
    MetricSpec("framework_tax", "fraction", "framework_tax", True, "(T_wall - T_compute) / T_wall."),
    MetricSpec("fixed_overhead_ms", "ms", "framework_tax", True,
               "Fixed per-call overhead: intercept of a linear fit of latency over the compute-bound part of a batch sweep."),
    MetricSpec("batch_knee", "samples", "framework_tax", None,
               "Batch size b* where flat (framework-bound) latency gives way to latency that grows with b."),
    MetricSpec("fairness_gap", "fraction", "fairness", True,
               "Within one profile: max minus min group accuracy."),
    MetricSpec("hw_disparity", "fraction", "fairness", True,
               "fairness_gap(profile) - fairness_gap(reference profile)."),
    MetricSpec("demographic_parity_diff", "fraction", "fairness", True,
               "fairlearn demographic_parity_difference: max minus min group selection rate of the positive class."),
    MetricSpec("equalized_odds_diff", "fraction", "fairness", True,
               "fairlearn equalized_odds_difference: the larger of the TPR and FPR gaps between groups."),
    MetricSpec("contention_share", "fraction", "context", None,
               "Share of the run's cores used by other processes during the timed window (/proc/stat busy time "
               "minus the run's own CPU time); above the threshold the run is marked contended."),
]

METRICS: dict[str, MetricSpec] = {s.name: s for s in _SPECS}

# Headline metrics shown by default in tables, in this order.
HEADLINE = [
    "latency_p50_ms",
    "latency_p99_ms",
    "throughput_sps",
    "accuracy",
    "peak_rss_mb",
    "load_s",
    "energy_per_sample_j",
    "params",
]

# ---- the headline rule ----------------------------------------------------------------------
# A run may store several rows of one metric. Rows whose params carry one of these keys are
# details of the run (batch-sweep points, per-attribute breakdowns, a second memory counter)
# and never its headline value. Of the rest, a value pooled over k trials
# (heptathlon.bench.stats.pool_trial_values) wins over the run's own; then the first row stored.
DETAIL_PARAMS = ("detail", "sweep")
SWEEP_POINT_PARAM = "batch_size"
POOLED_PARAM = "pooled"


def is_detail(params: Mapping[str, Any] | None) -> bool:
    """Whether a stored row with these params is a detail, never a headline value."""
    p = params or {}
    return any(p.get(k) for k in DETAIL_PARAMS) or SWEEP_POINT_PARAM in p


def headline_order(params: Mapping[str, Any] | None, row_id: int) -> tuple[int, int]:
    """Sort key among a metric's non-detail rows of one run: the smallest is the headline."""
    return (0 if (params or {}).get(POOLED_PARAM) else 1, row_id)


METHOD_KINDS = ("timer", "counter", "sampled", "profiler", "estimate", "artifact", "quality", "derived")
UNAVAILABLE = "unavailable"


def spec_for(name: str) -> MetricSpec:
    try:
        return METRICS[name]
    except KeyError:
        raise MetricError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}") from None


def is_estimate(method: str) -> bool:
    return method.startswith("estimate:")


@dataclass(frozen=True)
class MetricValue:
    """One reported value: the number, its unit, how it was obtained, n and a 95% CI."""

    name: str
    value: float | None
    method: str
    n: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    note: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec_for(self.name)  # unknown names fail loudly
        kind = self.method.split(":", 1)[0]
        if self.method != UNAVAILABLE and kind not in METHOD_KINDS:
            raise MetricError(f"metric {self.name!r}: method {self.method!r} must start with one of {METHOD_KINDS}")
        if self.value is not None and not math.isfinite(self.value):
            raise MetricError(f"metric {self.name!r}: value {self.value!r} is not finite")

    @property
    def unit(self) -> str:
        return METRICS[self.name].unit

    @property
    def is_estimate(self) -> bool:
        return is_estimate(self.method)

    @property
    def available(self) -> bool:
        return self.value is not None

    @classmethod
    def unavailable(cls, name: str, reason: str, **params: Any) -> "MetricValue":
        return cls(name=name, value=None, method=UNAVAILABLE, note=reason, params=params)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": self.value,
            "unit": self.unit,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n": self.n,
            "method": self.method,
        }
        if self.note:
            out["note"] = self.note
        if self.params:
            out["params"] = dict(self.params)
        return out
