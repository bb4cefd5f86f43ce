"""The nightly tests every metric that has raw samples or trials, its context diff names what ran,
and its exit code counts every open alert (issue 14, item 6). Synthetic series: tests/regression_sim.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest

from heptathlon.bench.app.nightly import interleaved
from heptathlon.bench.app.report import EXIT_OK, EXIT_REGRESSION, NightlyReport
from heptathlon.bench.app.suite import SuiteParams
from heptathlon.bench.regression import DetectionConfig, check_series, exceedance_p, run_context
from tests.regression_sim import SimulationSpec, replay_series, simulate_series

METRICS = ("latency_p50_ms", "latency_p99_ms", "throughput_sps")
NOISE = {"nights": 6, "metrics": METRICS, "trials": 3, "trial_sd": 0.013, "drift_sd": 0.01, "slowdown_from": 6}


def _at_step(spec: SimulationSpec, seed: int = 3):
    results = replay_series(simulate_series(np.random.default_rng(seed), spec))
    assert not any(r.status == "regressed" for r in results[:-1])
    return {d.metric: d for d in results[-1].detections}


def test_a_10pct_throughput_step_is_flagged_from_per_trial_values():
    d = _at_step(SimulationSpec(**NOISE, slowdown=1 / 0.9 - 1))  # latency x1.11: throughput -10%
    t = d["throughput_sps"]
    assert t.kind == "regression", t.reason
    assert t.rel_change == pytest.approx(-0.10, abs=0.03)


def test_a_10pct_p99_step_alone_is_flagged_by_the_tail_test_and_p50_is_not():
    d = _at_step(SimulationSpec(**NOISE, slowdown=0.10, tail_only=True))
    assert d["latency_p99_ms"].kind == "regression", d["latency_p99_ms"].reason
    assert d["latency_p50_ms"].kind == "unchanged"


def test_throughput_with_one_trial_says_why_it_is_untested():
    d = _at_step(SimulationSpec(**{**NOISE, "trials": 1}, slowdown=1 / 0.9 - 1))
    assert d["throughput_sps"].kind == "untested" and "trials" in d["throughput_sps"].reason


def test_exceedance_test_sees_a_tail_shift_and_not_a_copy():
    rng = np.random.default_rng(0)
    base = rng.lognormal(0, 0.25, 20000)
    same = rng.lognormal(0, 0.25, 3000)
    tail = np.where(same > np.percentile(same, 90), same * 1.1, same)
    assert exceedance_p(same, base, 0.99) > 0.01
    assert exceedance_p(tail, base, 0.99) < 1e-6
    assert exceedance_p(same[:400], base, 0.99) is None  # fewer than 5 expected above p99


def test_context_diff_names_a_changed_artifact_and_profile():
    runs = simulate_series(np.random.default_rng(1), SimulationSpec(nights=7))
    art = {"sha256": "a" * 64, "manifest": {"kind": "onnx"}}
    runs = [replace(r, artifact=art, profile={"name": "cpu-1core", "spec_hash": "p1"}) for r in runs]
    runs[-1] = replace(runs[-1], artifact={**art, "sha256": "b" * 64})
    res = check_series(runs[-1], runs[:-1], DetectionConfig())
    paths = {c.path for c in res.context_changes}
    assert "artifact.sha256" in paths and "profile.spec_hash" not in paths
    assert run_context(runs[0])["profile"] == {"name": "cpu-1core", "spec_hash": "p1"}


def test_exit_code_counts_alerts_still_open_from_earlier_nights():
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert NightlyReport("s", t, ()).exit_code == EXIT_OK
    assert NightlyReport("s", t, (), earlier_open=("alert 4: x latency_p50_ms regression on 2025-12-30",)
                         ).exit_code == EXIT_REGRESSION


def test_nightly_defaults_to_three_trials_run_interleaved_by_trial():
    assert SuiteParams().trials == 3
    pending = [(0, 0, "a0"), (0, 1, "a1"), (0, 2, "a2"), (1, 0, "b0"), (1, 1, "b1"), (1, 2, "b2")]
    assert interleaved(pending) == ["a0", "b0", "a1", "b1", "a2", "b2"]
