from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heptathlon.bench.errors import HeptathlonError
from heptathlon.bench.metrics import SampleKind
from heptathlon.bench.regression import (
    ContextChange,
    DetectionConfig,
    NightlyRun,
    alerts_from,
    check_night,
    check_series,
    detect_change,
    detect_drift,
    diff_context,
    flip_rate,
    select_baseline,
    series_key,
    unacknowledged,
)
from tests.regression_sim import (
    SimulationSpec,
    estimate_detection_rate,
    estimate_false_positive_rate,
    replay_series,
    simulate_series,
)

FP = {"cpu_model": "Xeon", "cpu_flags_sha256": "abc", "logical_cores": 8, "physical_cores": 4,
      "ram_bytes": 16 * 2**30, "arch": "x86_64", "governor": "performance", "kernel": "6.1.0",
      "gpus": [], "software": {"torch": "2.13.0", "onnxruntime": "1.20.1", "numpy": "2.4.0"},
      "state": {"cpu_mhz": 2400.0}}
KEY = series_key("arrests-mlp", "arrests", "cpu-1core", "single_stream", {"min_queries": 200}, FP)
T0 = datetime(2025, 3, 1, 2, 30, tzinfo=timezone.utc)


def _lat(rng, scale, n=500):
    return scale * rng.lognormal(0.0, 0.2, n)


def _run(night, lat=None, *, key=KEY, status="succeeded", **kw):
    metrics = kw.pop("metrics", None)
    if metrics is None and lat is not None:
        metrics = {"latency_p50_ms": float(np.median(lat))}
    return NightlyRun(run_id=f"r{night}", series=key, started_at=T0 + timedelta(days=night), status=status,
                      metrics=metrics or {}, samples={SampleKind.LATENCY_NS: lat} if lat is not None else {},
                      fingerprint=kw.pop("fingerprint", FP), **kw)


def _history(rng, nights=7, scales=None):
    scales = scales or [1.0 + 0.01 * ((i % 3) - 1) for i in range(nights)]  # -1%, 0, +1%, ...
    return [_run(i, _lat(rng, s)) for i, s in enumerate(scales)]


# --------------------------------------------------------------------------- series key


def test_series_key_ignores_param_order_and_software_versions():
    other_order = series_key("arrests-mlp", "arrests", "cpu-1core", "single_stream", {"min_queries": 200}, FP)
    upgraded = {**FP, "software": {**FP["software"], "torch": "2.14.0"}, "kernel": "6.2.0",
                "state": {"cpu_mhz": 3100.0}}
    assert other_order == KEY
    assert series_key("arrests-mlp", "arrests", "cpu-1core", "single_stream", {"min_queries": 200}, upgraded) == KEY
    assert KEY.params == {"min_queries": 200}
    assert KEY.label == "arrests-mlp/cpu-1core/single_stream"


def test_series_key_changes_with_params_hardware_and_profile():
    ids = {
        KEY.id,
        series_key("arrests-mlp", "arrests", "cpu-1core", "single_stream", {"min_queries": 300}, FP).id,
        series_key("arrests-mlp", "arrests", "cpu-1core", "single_stream", {"min_queries": 200},
                   {**FP, "cpu_model": "EPYC"}).id,
        series_key("arrests-mlp", "arrests", "cpu-2core", "single_stream", {"min_queries": 200}, FP).id,
        series_key("arrests-mlp", "arrests", "cpu-1core", "single_stream", {"min_queries": 200},
                   {**FP, "governor": "powersave"}).id,
    }
    assert len(ids) == 5


# --------------------------------------------------------------------------- the three tests


def test_clear_slowdown_is_a_regression_with_all_three_statistics():
    rng = np.random.default_rng(1)
    base = [_lat(rng, s) for s in (1.0, 0.99, 1.01, 1.0, 0.995, 1.005, 1.0)]
    cand = _lat(rng, 1.12)
    d = detect_change("latency_p50_ms", [np.median(b) for b in base], np.concatenate(base),
                      float(np.median(cand)), cand)
    assert d.kind == "regression"
    assert 0.06 < d.rel_change < 0.18  # a 12% slowdown, seen through one night's sampling noise
    assert d.p_value < 1e-6
    assert d.z_score > 3
    assert d.n_baseline == 7


def test_faster_latency_is_an_improvement_and_lower_throughput_a_regression():
    vals = [100.0, 101.0, 99.0, 100.5, 99.5]
    samples = np.repeat(vals, 20)
    lat = detect_change("latency_p50_ms", vals, samples, 80.0, np.full(100, 80.0))
    thr = detect_change("throughput_sps", vals, samples, 80.0, np.full(100, 80.0))
    more = detect_change("throughput_sps", vals, samples, 120.0, np.full(100, 120.0))
    assert (lat.kind, thr.kind, more.kind) == ("improvement", "regression", "improvement")


def test_change_below_relative_threshold_is_not_flagged_even_when_significant():
    vals = [100.0, 100.1, 99.9, 100.05, 99.95]
    samples = np.repeat(vals, 50)
    d = detect_change("latency_p50_ms", vals, samples, 103.0, np.full(200, 103.0))
    assert d.p_value < 0.01 and d.z_score > 3  # two of three hold
    assert d.kind == "unchanged"
    assert "change" in d.reason
    tight = DetectionConfig(thresholds={"latency_p50_ms": 0.02})
    assert detect_change("latency_p50_ms", vals, samples, 103.0, np.full(200, 103.0), tight).kind == "regression"


def test_change_inside_a_wide_window_band_is_not_flagged():
    vals = [100.0, 120.0, 85.0, 110.0, 90.0]  # a noisy series: sd ~14%
    samples = np.repeat(vals, 50)
    d = detect_change("latency_p50_ms", vals, samples, 115.0, np.full(200, 115.0))
    assert d.rel_change > 0.05 and d.p_value < 0.01
    assert d.kind == "unchanged"
    assert "z-score" in d.reason


def test_change_without_significant_samples_is_not_flagged():
    rng = np.random.default_rng(2)
    base = rng.lognormal(0, 0.3, 1000)
    # The reported value moved (say a p99 from a handful of queries) but the samples did not.
    d = detect_change("latency_p99_ms", [10.0, 10.1, 9.9, 10.05, 9.95], base, 12.0, rng.lognormal(0, 0.3, 50))
    assert d.p_value > 0.01
    assert d.kind == "unchanged"
    assert "Mann-Whitney" in d.reason


def test_short_window_or_missing_samples_is_untested():
    short = detect_change("latency_p50_ms", [1.0, 1.1], np.ones(10), 2.0, np.full(10, 2.0))
    no_samples = detect_change("energy_j", [5.0, 5.1, 4.9, 5.0, 5.05], None, 9.0, None)
    assert short.kind == "untested" and "2 good nightly runs" in short.reason
    assert no_samples.kind == "untested" and "no raw samples" in no_samples.reason
    assert no_samples.rel_change == pytest.approx(0.8, rel=0.01)


def test_detection_config_rejects_bad_values():
    with pytest.raises(HeptathlonError, match="latency_p42_ms"):
        DetectionConfig(thresholds={"latency_p42_ms": 0.1})
    with pytest.raises(HeptathlonError, match="p_value"):
        DetectionConfig(p_value=1.5)
    with pytest.raises(HeptathlonError, match="smaller than min_window"):
        DetectionConfig(window=3, min_window=5)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.5, 2.0), min_size=5, max_size=9), st.integers(0, 2**32 - 1))
def test_a_candidate_drawn_like_the_window_with_its_mean_never_flags(values, seed):
    rng = np.random.default_rng(seed)
    samples = np.concatenate([v * rng.lognormal(0, 0.2, 50) for v in values])
    mean = float(np.mean(values))
    d = detect_change("latency_mean_ms", values, samples, mean, rng.choice(samples, 300))
    assert d.kind in ("unchanged", "untested")
    assert d.rel_change == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------- drift


def test_identical_predictions_are_not_drift():
    preds = list(range(100))
    d = detect_drift("accuracy", 0.91, 0.91, preds, list(preds))
    assert d.kind == "unchanged" and d.flip_rate == 0.0


def test_changed_predictions_are_drift_with_flip_rate():
    base = [0] * 100
    cand = [1, 1] + [0] * 98
    d = detect_drift("accuracy", 0.91, 0.90, base, cand)
    assert d.kind == "drift"
    assert d.flip_rate == pytest.approx(0.02)
    assert "2.00%" in d.reason


def test_drift_without_predictions_falls_back_to_the_value_and_length_change_is_drift():
    assert detect_drift("fairness_gap", 0.10, 0.12, None, None).kind == "drift"
    assert detect_drift("fairness_gap", 0.10, 0.10, None, None).kind == "unchanged"
    d = detect_drift("accuracy", 0.9, 0.9, [1, 2, 3], [1, 2])
    assert d.kind == "drift" and "3 → 2" in d.reason
    assert flip_rate([[0.1, 0.2], [1, 2]], [[0.1, 0.2], [1, 3]]) == pytest.approx(0.5)


# --------------------------------------------------------------------------- context diff


def test_diff_context_lists_changed_leaves_by_path():
    old = {"software": {"torch": "2.13.0", "numpy": "2.4.0"}, "machine": {"kernel": "6.1", "isa": ["avx2"]}}
    new = {"software": {"torch": "2.14.0", "numpy": "2.4.0", "onnx": "1.17"},
           "machine": {"kernel": "6.1", "isa": ["avx2", "avx512f"]}}
    changes = [str(c) for c in diff_context(old, new)]
    assert changes == [
        'machine.isa: ["avx2"] → ["avx2","avx512f"]',
        "software.onnx: (absent) → 1.17",
        "software.torch: 2.13.0 → 2.14.0",
    ]


@given(st.recursive(st.one_of(st.integers(), st.text(max_size=5)),
                    lambda c: st.dictionaries(st.text(min_size=1, max_size=4), c, max_size=4), max_leaves=10))
def test_diff_context_of_a_dict_with_itself_is_empty(d):
    d = d if isinstance(d, dict) else {"v": d}
    assert diff_context(d, d) == ()
    (added,) = diff_context(d, {**d, "__new": 1})  # keys drawn are at most 4 characters long
    assert isinstance(added, ContextChange) and str(added) == "__new: (absent) → 1"


# --------------------------------------------------------------------------- baseline window


def test_select_baseline_keeps_last_n_good_nightly_runs_of_the_series():
    rng = np.random.default_rng(3)
    runs = _history(rng, nights=10)
    other = series_key("digits-cnn", "digits", "cpu-1core", "single_stream", {}, FP)
    runs[8] = replace(runs[8], status="failed")
    runs[7] = replace(runs[7], nightly=False)  # a manual run does not feed the baseline
    runs[6] = replace(runs[6], excluded_from_baseline=True)  # an open regression
    extra = _run(9, _lat(rng, 1.0), key=other)
    cand = _run(10, _lat(rng, 1.0))
    window = select_baseline(runs + [extra, _run(11, _lat(rng, 1.0))], cand, 4)
    assert [r.run_id for r in window] == ["r3", "r4", "r5", "r9"]


def test_select_baseline_restarts_at_an_accepted_change():
    rng = np.random.default_rng(4)
    runs = _history(rng, nights=8)
    runs[5] = replace(runs[5], starts_baseline=True)
    window = select_baseline(runs, _run(8, _lat(rng, 1.0)), 7)
    assert [r.run_id for r in window] == ["r5", "r6", "r7"]


# --------------------------------------------------------------------------- one series, one night


def test_check_series_flags_regression_and_names_what_changed():
    rng = np.random.default_rng(5)
    history = _history(rng)
    upgraded = {**FP, "software": {**FP["software"], "torch": "2.14.0"}, "state": {"cpu_mhz": 3000.0}}
    cand = _run(8, _lat(rng, 1.15), fingerprint=upgraded, software={"heptathlon": "0.2.0"})
    res = check_series(cand, history)
    assert res.status == "regressed"
    assert [d.metric for d in res.of_kind("regression")] == ["latency_p50_ms"]
    assert res.baseline_run_ids == tuple(f"r{i}" for i in range(7))
    assert [str(c) for c in res.context_changes] == ["software.heptathlon: (absent) → 0.2.0",
                                                    "software.torch: 2.13.0 → 2.14.0"]


def test_check_series_reports_broke_and_no_baseline():
    rng = np.random.default_rng(6)
    history = _history(rng, nights=3)
    broke = check_series(_run(4, None, status="failed", error="worker exited with code 137 (out of memory)"), history)
    young = check_series(_run(4, _lat(rng, 1.3)), history)
    assert broke.status == "broke" and "137" in broke.error
    assert young.status == "no_baseline"
    assert "3 good nightly runs; 5 needed" in young.detections[0].reason


def test_check_series_reports_drift_on_quality_metrics():
    rng = np.random.default_rng(7)
    preds = rng.integers(0, 2, 200)
    history = [replace(r, metrics={**r.metrics, "accuracy": 0.9}, predictions=preds) for r in _history(rng)]
    flipped = preds.copy()
    flipped[:3] = 1 - flipped[:3]
    cand = _run(8, _lat(rng, 1.0), metrics={"latency_p50_ms": 1.0, "accuracy": 0.895})
    res = check_series(replace(cand, predictions=flipped), history)
    (drift,) = res.of_kind("drift")
    assert res.status == "drift"
    assert drift.metric == "accuracy" and drift.flip_rate == pytest.approx(0.015)


def test_alerts_and_acknowledgement():
    rng = np.random.default_rng(8)
    history = _history(rng)
    results = check_night([_run(8, _lat(rng, 1.2)),
                           _run(9, None, status="failed", error="boom", key=series_key("x", "t", "p", "s", {}, FP))],
                          history)
    alerts = alerts_from(results)
    assert [(a.kind, a.metric) for a in alerts] == [("regression", "latency_p50_ms"), ("broke", None)]
    assert alerts[0].key == f"{KEY.id}:latency_p50_ms:regression:r8"
    assert len(unacknowledged(alerts)) == 2
    assert unacknowledged(alerts, {alerts[0].key}) == [alerts[1]]
    faster = alerts_from([check_series(_run(8, _lat(rng, 0.8)), history)])
    assert [a.kind for a in faster] == ["improvement"] and unacknowledged(faster) == []


# --------------------------------------------------------------------------- simulated history


def test_calibrated_8pct_slowdown_is_flagged_at_night_6_and_not_before():
    spec = SimulationSpec(nights=10, slowdown=0.08, slowdown_from=6)
    results = replay_series(simulate_series(np.random.default_rng(0), spec))
    statuses = [r.status for r in results]
    assert "regressed" not in statuses[:5]
    assert statuses[5] == "regressed"
    flagged = {d.metric for d in results[5].of_kind("regression")}
    assert "latency_p50_ms" in flagged
    # The slowed night is left out of later windows, so the alert stays until acknowledged.
    assert statuses[6] == "regressed" and "night-6" not in results[6].baseline_run_ids


def test_noise_only_series_at_a_realistic_level_stays_quiet():
    results = replay_series(simulate_series(np.random.default_rng(0), SimulationSpec(nights=30)))
    assert [r.status for r in results if r.status not in ("ok", "no_baseline")] == []
    assert sum(r.status == "ok" for r in results) == 30 - 5


def test_false_positive_and_detection_estimates_are_proportions_with_intervals():
    fp = estimate_false_positive_rate(20, SimulationSpec(nights=8, n_queries=200), seed=1)
    assert fp.per_night.trials == 20 * (8 - 5)
    assert 0 <= fp.per_night.ci_low <= fp.per_night.rate <= fp.per_night.ci_high <= 1
    assert fp.per_series.rate <= 0.2
    # 1000 queries: p99 of 200 is below the tail test's minimum (5 expected samples above it), so untested
    loud = estimate_false_positive_rate(20, SimulationSpec(nights=8, n_queries=1000, drift_sd=0.15), seed=1)
    assert loud.per_night.hits > fp.per_night.hits  # heavy drift does fool the detector sometimes
    power = estimate_detection_rate(20, SimulationSpec(nights=6, n_queries=200, slowdown=0.15, slowdown_from=6))
    assert power.rate >= 0.9
    with pytest.raises(HeptathlonError, match="noise-only"):
        estimate_false_positive_rate(2, SimulationSpec(slowdown=0.1, slowdown_from=3))
