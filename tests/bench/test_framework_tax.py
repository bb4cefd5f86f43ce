"""Pure framework-tax arithmetic: tax, its summary, the batch knee, the intercept estimate, ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heptathlon.bench.framework_tax import (
    estimate_fixed_overhead,
    estimate_framework_tax,
    fit_batch_knee,
    framework_tax,
    knee_metric,
    per_call_tax,
    relative_to_best,
    summarize_tax,
)
from heptathlon.bench.metrics import METRICS

SWEEP = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def hinge(b, level, slope, knee):
    return level + slope * np.maximum(0.0, np.asarray(b, dtype=float) - knee)


# --------------------------------------------------------------------------- framework_tax


@given(wall=st.floats(1e-7, 10.0), share=st.floats(0.0, 1.0))
def test_tax_is_the_non_compute_share_of_wall(wall, share):
    compute = wall * share
    ft = framework_tax(wall, compute)
    assert 0.0 <= ft <= 1.0
    assert ft == pytest.approx(1.0 - share, abs=1e-12)


def test_tax_values_at_the_extremes():
    assert framework_tax(2e-3, 0.0) == 1.0
    assert framework_tax(2e-3, 2e-3) == 0.0
    assert framework_tax(4e-3, 1e-3) == pytest.approx(0.75)


@pytest.mark.parametrize("wall, compute, message", [
    (0.0, 0.0, "wall time must be > 0"),
    (-1.0, 0.0, "wall time must be > 0"),
    (1.0, -0.1, "compute time must be >= 0"),
    (1.0, 1.5, "exceeds wall time"),
    (math.nan, 0.1, "finite"),
])
def test_tax_rejects_impossible_times(wall, compute, message):
    with pytest.raises(ValueError, match=message):
        framework_tax(wall, compute)


def test_per_call_tax_needs_paired_samples():
    with pytest.raises(ValueError, match="paired"):
        per_call_tax([1.0, 2.0], [0.5])
    assert per_call_tax([1.0, 2.0], [0.5, 0.5]).tolist() == [0.5, 0.75]


def test_summarize_tax_is_median_of_per_call_tax_with_ci():
    rng = np.random.default_rng(0)
    wall = rng.uniform(1.0e-3, 1.2e-3, size=40)
    compute = wall * rng.uniform(0.2, 0.4, size=40)
    mv = summarize_tax(wall, compute, "profiler:torch", n_resamples=500, batch_size=4, runtime="eager")
    expected = float(np.median((wall - compute) / wall))
    assert mv.name == "framework_tax" and mv.unit == "fraction"
    assert mv.value == pytest.approx(expected)
    assert mv.method == "profiler:torch" and mv.n == 40 and not mv.is_estimate
    assert mv.ci_low <= mv.value <= mv.ci_high
    assert 0.6 < mv.ci_low and mv.ci_high < 0.8
    assert mv.params["batch_size"] == 4 and mv.params["runtime"] == "eager"
    assert mv.params["compute_median_ms"] < mv.params["wall_median_ms"]


def test_summarize_tax_single_call_has_no_ci():
    mv = summarize_tax([1e-3], [2.5e-4], "profiler:onnxruntime")
    assert mv.value == pytest.approx(0.75) and mv.ci_low is None and mv.ci_high is None and mv.n == 1


# --------------------------------------------------------------------------- fit_batch_knee


@settings(max_examples=60, deadline=None)
@given(knee=st.floats(1.0, 64.0), level_ms=st.floats(0.05, 50.0), slope_per_level=st.floats(0.005, 0.5))
def test_knee_fit_recovers_exact_hinge(knee, level_ms, slope_per_level):
    # At least two sizes (128, 256) lie past any knee <= 64, so the knee is identifiable.
    level = level_ms * 1e-3
    slope = level * slope_per_level
    y = hinge(SWEEP, level, slope, knee)
    fit = fit_batch_knee(SWEEP, list(y), n_resamples=0)
    assert fit.knee_batch == pytest.approx(knee, rel=1e-6)
    assert fit.flat_latency_s == pytest.approx(level, rel=1e-6)
    assert fit.slope_s_per_sample == pytest.approx(slope, rel=1e-6)
    assert fit.intercept_s == pytest.approx(level - slope * knee, rel=1e-6, abs=1e-12)
    assert fit.compute_bound_observed
    assert fit.predict_s(512) == pytest.approx(level + slope * (512 - knee), rel=1e-6)


def test_knee_fit_with_noise_puts_truth_inside_the_bootstrap_ci():
    rng = np.random.default_rng(7)
    level, slope, knee = 2e-3, 1e-4, 20.0
    lat = [hinge(b, level, slope, knee) * (1 + rng.normal(0, 0.02, size=25)) for b in SWEEP]
    fit = fit_batch_knee(SWEEP, lat, n_resamples=300, seed=1)
    assert fit.ci_low <= knee <= fit.ci_high
    assert fit.ci_low <= fit.knee_batch <= fit.ci_high
    assert fit.ci_high - fit.ci_low < 16  # the knee is pinned between 8 and 32
    assert fit.n_resamples == 300
    assert fit.flat_observed and fit.compute_bound_observed
    assert fit.flat_latency_s == pytest.approx(level, rel=0.03)
    assert fit.slope_s_per_sample == pytest.approx(slope, rel=0.05)


def test_knee_fit_between_measured_sizes_is_not_snapped_to_a_grid():
    y = hinge(SWEEP, 1e-3, 2e-5, 23.0)  # 23 lies between the measured 16 and 32
    assert fit_batch_knee(SWEEP, list(y), n_resamples=0).knee_batch == pytest.approx(23.0, rel=1e-9)


def test_flat_sweep_reports_no_compute_bound_regime():
    fit = fit_batch_knee(SWEEP, [np.full(5, 3e-3)] * len(SWEEP), n_resamples=50)
    assert fit.knee_batch == SWEEP[-1]
    assert not fit.compute_bound_observed
    assert fit.slope_s_per_sample == 0.0 and fit.rise_ratio == 1.0
    assert fit.flat_latency_s == pytest.approx(3e-3)


def test_latency_that_falls_with_batch_is_fitted_flat():
    y = [3e-3, 2.9e-3, 2.95e-3, 2.8e-3, 2.7e-3]
    fit = fit_batch_knee([1, 2, 4, 8, 16], y, n_resamples=0)
    assert fit.slope_s_per_sample == 0.0 and not fit.compute_bound_observed
    assert fit.flat_latency_s == pytest.approx(np.average(y, weights=1 / np.square(y)))


def test_linear_sweep_reports_no_flat_regime_and_its_crossover():
    # The synchronous (CPU) shape: fixed overhead 1 ms plus 0.1 ms per sample. No flat part;
    # the per-sample term equals the overhead at b = 10.
    y = 1e-3 + 1e-4 * np.asarray(SWEEP, dtype=float)
    fit = fit_batch_knee(SWEEP, list(y), n_resamples=0)
    assert fit.knee_batch == pytest.approx(1.0)
    assert not fit.flat_observed and fit.compute_bound_observed
    assert fit.intercept_s == pytest.approx(1e-3)
    assert fit.crossover_batch == pytest.approx(10.0)
    assert fit.rise_ratio > 20


def test_crossover_ci_covers_truth_under_noise_and_is_absent_without_intercept():
    rng = np.random.default_rng(5)
    lat = [(2e-3 + 1e-5 * b) * (1 + rng.normal(0, 0.01, size=20)) for b in SWEEP]
    fit = fit_batch_knee(SWEEP, lat, n_resamples=300)
    assert fit.crossover_ci_low <= 200.0 <= fit.crossover_ci_high
    no_overhead = fit_batch_knee(SWEEP, [1e-4 * b - 5e-5 for b in SWEEP], n_resamples=0)
    assert no_overhead.intercept_s == pytest.approx(-5e-5)
    assert no_overhead.crossover_batch is None


def test_knee_fit_ci_is_none_with_single_repeats():
    fit = fit_batch_knee(SWEEP, list(hinge(SWEEP, 1e-3, 1e-5, 10.0)), n_resamples=100)
    assert fit.ci_low is None and fit.ci_high is None and fit.n_resamples == 0


def test_knee_fit_uses_medians_so_one_outlier_does_not_move_it():
    lat = [np.array([v, v, v, v, v * 50]) for v in hinge(SWEEP, 1e-3, 1e-5, 10.0)]
    assert fit_batch_knee(SWEEP, lat, n_resamples=0).knee_batch == pytest.approx(10.0, rel=1e-6)


@pytest.mark.parametrize("sizes, lat, message", [
    ([1, 2], [[1e-3], [1e-3]], "at least 3"),
    ([1, 4, 2], [[1e-3]] * 3, "strictly increasing"),
    ([0, 1, 2], [[1e-3]] * 3, "positive"),
    ([1, 2, 4], [[1e-3], [1e-3]], "3 batch sizes but 2"),
    ([1, 2, 4], [[1e-3], [], [1e-3]], "no latency samples"),
    ([1, 2, 4], [[1e-3], [-1.0], [1e-3]], "finite and > 0"),
])
def test_knee_fit_rejects_bad_sweeps(sizes, lat, message):
    with pytest.raises(ValueError, match=message):
        fit_batch_knee(sizes, lat)


def test_knee_metric_carries_fit_and_ci():
    rng = np.random.default_rng(3)
    lat = [hinge(b, 1e-3, 5e-5, 12.0) * (1 + rng.normal(0, 0.01, 10)) for b in SWEEP]
    fit = fit_batch_knee(SWEEP, lat, n_resamples=100)
    mv = knee_metric(fit, runtime="eager")
    assert mv.name == "batch_knee" and mv.unit == "samples" and mv.value == fit.knee_batch
    assert (mv.ci_low, mv.ci_high) == (fit.ci_low, fit.ci_high)
    assert mv.params["runtime"] == "eager" and mv.params["compute_bound_observed"] is True


# --------------------------------------------------------------------------- intercept estimates


def test_intercept_estimate_recovers_known_overhead():
    # latency = max(floor, overhead + s*b): a framework floor, then per-sample compute on top of
    # a fixed overhead of 0.5 ms; the knee sits where the line crosses the floor (b = 15).
    overhead, s, floor = 0.5e-3, 0.1e-3, 2e-3
    y = np.maximum(floor, overhead + s * np.asarray(SWEEP, dtype=float))
    mv = estimate_fixed_overhead(SWEEP, list(y), n_resamples=0)
    assert mv.name == "fixed_overhead_ms" and mv.unit == "ms"
    assert mv.method == "estimate:intercept" and mv.is_estimate
    assert mv.value == pytest.approx(0.5, rel=1e-6)
    assert METRICS["fixed_overhead_ms"].event == "framework_tax"


def test_intercept_estimate_with_noise_covers_truth():
    rng = np.random.default_rng(11)
    overhead, s, floor = 0.5e-3, 0.1e-3, 2e-3
    lat = [max(floor, overhead + s * b) * (1 + rng.normal(0, 0.01, size=30)) for b in SWEEP]
    mv = estimate_fixed_overhead(SWEEP, lat, n_resamples=300, seed=2)
    assert mv.ci_low <= 0.5 <= mv.ci_high
    assert mv.ci_high - mv.ci_low < 0.5
    assert mv.n == 30 * len(SWEEP)


def test_intercept_of_superlinear_growth_is_reported_with_a_note():
    y = [1e-3 * b ** 1.5 for b in SWEEP]
    mv = estimate_fixed_overhead(SWEEP, y, n_resamples=0)
    assert mv.value < 0 and "negative intercept" in mv.note


def test_estimated_tax_falls_with_batch_size_and_is_labelled_estimate():
    overhead, s, floor = 0.5e-3, 0.1e-3, 2e-3
    y = np.maximum(floor, overhead + s * np.asarray(SWEEP, dtype=float))
    est = estimate_framework_tax(SWEEP, list(y), n_resamples=0)
    assert sorted(est) == SWEEP
    values = [est[b].value for b in SWEEP]
    assert values[0] == pytest.approx(0.5e-3 / 2e-3)
    assert values[-1] == pytest.approx(0.5e-3 / (0.5e-3 + 0.1e-3 * 256))
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert all(mv.method == "estimate:intercept" and mv.is_estimate for mv in est.values())


def test_estimated_tax_of_a_flat_sweep_is_all_overhead():
    est = estimate_framework_tax([1, 2, 4, 8], [np.full(4, 1e-3)] * 4, n_resamples=50)
    assert all(mv.value == pytest.approx(1.0) for mv in est.values())


# --------------------------------------------------------------------------- relative_to_best


def test_relative_to_best_per_batch_size():
    rel = relative_to_best({
        "eager": {1: 2.0e-3, 8: 4.0e-3},
        "onnxruntime": {1: 1.0e-3, 8: 5.0e-3},
        "torchscript": {1: 1.5e-3},  # its sweep stopped before 8
    })
    assert rel["onnxruntime"][1] == 1.0 and rel["eager"][8] == 1.0
    assert rel["eager"][1] == pytest.approx(2.0) and rel["torchscript"][1] == pytest.approx(1.5)
    assert rel["onnxruntime"][8] == pytest.approx(1.25)
    assert 8 not in rel["torchscript"]


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]),
                       st.dictionaries(st.sampled_from([1, 2, 4, 8]), st.floats(1e-6, 1.0), min_size=1),
                       min_size=1))
def test_relative_to_best_has_one_best_per_batch_size_and_ratios_at_least_one(lat):
    rel = relative_to_best(lat)
    sizes = {b for by in lat.values() for b in by}
    for b in sizes:
        ratios = [rel[r][b] for r in rel if b in rel[r]]
        assert min(ratios) == 1.0 and all(x >= 1.0 for x in ratios)


def test_relative_to_best_rejects_non_positive_latency():
    with pytest.raises(ValueError, match="latency must be > 0"):
        relative_to_best({"eager": {1: 0.0}})
