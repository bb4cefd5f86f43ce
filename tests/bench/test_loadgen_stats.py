"""Scenario schedules and the statistics of load generation, as pure functions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heptathlon.bench.errors import ScenarioError
from heptathlon.bench.ranking import rank_with_ties
from heptathlon.bench.scenarios import (build_schedule, make_scenario, poisson_arrivals_ns, poisson_batch_sizes,
                             server_query_count)
from heptathlon.bench.stats import (early_stopping_min_passing, early_stopping_percentile, pool_latency_trials,
                         pool_trial_values, summarize_latency_ns, summarize_loop)
from heptathlon.runners.loadgen import median_ci_half_width_rel

latencies = st.lists(st.floats(min_value=0.01, max_value=1e4, allow_nan=False), min_size=1, max_size=1500)


# ---- scenarios ------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=0.2, max_value=64), st.integers(min_value=1, max_value=400), st.integers(0, 2**31))
def test_poisson_schedule_reproducible_by_seed_sizes_at_least_one(lam, n_instances, seed):
    cfg = make_scenario("poisson_batch", poisson_lambda=lam, seed=seed)
    a, b = build_schedule(cfg, n_instances), build_schedule(cfg, n_instances)
    assert [q.tolist() for q in a] == [q.tolist() for q in b]
    assert min(len(q) for q in a) >= 1
    assert set(np.concatenate(a).tolist()) == set(range(n_instances))  # every instance at least once


def test_poisson_sizes_follow_lambda_and_change_with_the_seed():
    s = poisson_batch_sizes(8.0, 20000, seed=0)
    assert s.mean() == pytest.approx(8.0, rel=0.02) and s.min() >= 1
    assert not np.array_equal(s[:100], poisson_batch_sizes(8.0, 100, seed=1))
    assert np.array_equal(s[:100], poisson_batch_sizes(8.0, 100, seed=0))  # a prefix of the same stream


def test_server_arrivals_are_a_seeded_poisson_process():
    a = poisson_arrivals_ns(250.0, 20000, seed=5)
    assert np.array_equal(a, poisson_arrivals_ns(250.0, 20000, seed=5))
    gaps = np.diff(a) / 1e9
    assert gaps.mean() == pytest.approx(1 / 250, rel=0.03)
    assert gaps.std() == pytest.approx(gaps.mean(), rel=0.05)  # exponential: sd equals mean
    assert np.all(gaps >= 0)
    need, most = server_query_count(100.0, make_scenario("server").stop)
    assert need == 200 and most >= need  # demo minimums: 200 queries, 1 s of schedule (101 queries)


@pytest.mark.parametrize("kwargs,msg", [
    ({"name": "server", "qps": 0}, "--qps must be > 0"),
    ({"name": "server", "qps": -5}, "--qps must be > 0"),
    ({"name": "poisson_batch", "poisson_lambda": 0}, "--lambda .* must be > 0"),
    ({"name": "poisson_batch", "poisson_lambda": -1.5}, "--lambda .* must be > 0"),
    ({"name": "server", "min_duration_s": 10, "max_duration_s": 5}, "above max_duration_s"),
    ({"name": "single_stream", "slo_ms": 20}, "SLO .* only to the server scenario"),
    ({"name": "offline", "slo_ms": 20}, "SLO .* only to the server scenario"),
    ({"name": "fixed_batch", "qps": 10}, "--qps applies only to the server scenario"),
    ({"name": "single_stream", "poisson_lambda": 3}, "--lambda applies only to the poisson_batch"),
    ({"name": "server", "max_batch": 0}, "--max-batch must be >= 1"),
    ({"name": "server", "max_wait_ms": 2}, "--max-wait-ms needs --max-batch"),
    ({"name": "server", "slo_ms": 0}, "--slo-ms must be > 0"),
    ({"name": "single_stream", "adaptive": True, "ci_target": 0}, "--ci-target"),
    ({"name": "poisson_batch", "batch_size": 4}, "chooses its own batch sizes"),
])
def test_impossible_combinations_rejected(kwargs, msg):
    with pytest.raises(ScenarioError, match=msg):
        make_scenario(**kwargs)


# ---- MLPerf early stopping --------------------------------------------------------------------------
def loadgen_reference(sorted_lat, p, c=0.99):
    """LoadGen's SingleStream early-stopping scan, step by step (results.cc), for comparison."""
    n = len(sorted_lat)
    h_min = early_stopping_min_passing(1, p, c)
    if n < h_min + 1:
        return None
    t = 1
    for i in range(2, n + 1):
        if n < early_stopping_min_passing(i, p, c) + i:
            t = i - 1
            break
    return sorted_lat[n - t]


def test_early_stopping_minimum_query_counts_match_mlperf():
    assert early_stopping_min_passing(1, 0.90) + 1 == 64  # LoadGen: 64 queries for a p90 estimate
    assert early_stopping_min_passing(1, 0.99) + 1 == 662  # and 662 for p99


@pytest.mark.parametrize("n", [63, 64, 65, 100, 700, 1500])
@pytest.mark.parametrize("q", [90.0, 99.0])
def test_early_stopping_equals_loadgens_scan(n, q):
    x = np.sort(np.random.default_rng(n).lognormal(0, 0.4, n))
    e = early_stopping_percentile(x, q)
    assert e.value == loadgen_reference(list(x), q / 100)


@settings(max_examples=40, deadline=None)
@given(latencies, st.sampled_from([90.0, 99.0]))
def test_early_stopping_estimate_is_never_below_the_plain_percentile(xs, q):
    e = early_stopping_percentile(xs, q)
    if len(xs) < e.min_queries:
        assert e.value is None
    else:
        assert e.value >= np.percentile(xs, q) - 1e-12


# ---- CIs, adaptive width, recomputation -------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**9), min_size=2, max_size=800))
def test_latency_cis_enclose_their_estimates(ns):
    for m in summarize_latency_ns(np.array(ns)):
        if m.value is not None and m.ci_low is not None:
            assert m.ci_low <= m.value + 1e-9 <= m.ci_high + 2e-9, m


@settings(max_examples=40, deadline=None)
@given(latencies)
def test_loop_median_ci_width_is_nonnegative_and_zero_for_constant(xs):
    w = median_ci_half_width_rel(np.array(xs))
    assert w >= 0 or len(xs) < 2
    assert median_ci_half_width_rel(np.full(max(len(xs), 2), 7.0)) == 0


def test_recomputing_from_samples_is_deterministic():
    lat = np.random.default_rng(2).integers(10**5, 10**7, 3000)
    a, b = summarize_latency_ns(lat), summarize_latency_ns(lat.copy())
    assert [m.to_json() for m in a] == [m.to_json() for m in b]


# ---- trials ---------------------------------------------------------------------------------------
def test_pooled_trials_show_between_trial_spread():
    rng = np.random.default_rng(0)
    trials = [(rng.lognormal(0, 0.1, 400) * 1e6 * shift).astype(np.int64) for shift in (1.0, 1.1, 1.3)]
    pooled = {m.name: m for m in pool_latency_trials(trials)}
    p50 = pooled["latency_p50_ms"]
    per_trial = [np.percentile(t / 1e6, 50) for t in trials]
    assert p50.value == pytest.approx(np.percentile(np.concatenate(trials) / 1e6, 50))
    assert p50.n == 1200 and p50.params["pooled"] and p50.params["trials"] == 3
    assert p50.params["between_trial_sd"] == pytest.approx(np.std(per_trial, ddof=1))
    # the CI covers at least the t-interval over the three trial medians
    half = 4.302652729911275 * np.std(per_trial, ddof=1) / np.sqrt(3)  # t(0.975, df=2)
    assert p50.ci_low <= np.mean(per_trial) - half + 1e-9 and p50.ci_high >= np.mean(per_trial) + half - 1e-9
    for m in pooled.values():
        if m.value is not None and not m.name.endswith("_early_ms"):  # early-stopping bounds carry no CI
            assert m.ci_low <= m.value <= m.ci_high
    assert pooled["latency_p99_early_ms"].value is not None  # 1200 pooled samples reach LoadGen's 662


def test_pooled_identical_values_keep_their_sampling_ci():
    m = pool_trial_values("accuracy", [0.8, 0.8, 0.8], "quality:labels", ci=(0.75, 0.85))
    assert (m.value, m.ci_low, m.ci_high, m.n) == (pytest.approx(0.8), 0.75, 0.85, 3)
    assert m.params["between_trial_sd"] == pytest.approx(0.0, abs=1e-12)


# ---- a server loop's metrics ---------------------------------------------------------------------------
def test_server_loop_metrics_report_scheduled_and_completed_rates_and_slo_not_met():
    issue = np.arange(100, dtype=np.int64) * 10_000_000  # scheduled every 10 ms
    done = issue + np.arange(100, dtype=np.int64) * 5_000_000 + 1_000_000  # a growing queue
    loop = {"loop": "server", "queries_unfinished": 40, "target_qps": 100.0,
            "issue_drift": {"n": 100, "p50_us": 1.0, "p99_us": 3.0, "max_us": 4.0},
            "slo_search": {"slo_ms": 5.0, "percentile": 99.0, "max_qps": None,
                           "probes": [{"qps": 50.0, "p99_ms": 80.0, "unfinished": 3, "met": False}]},
            "slo": {"met": False, "p99_ms": 491.0, "qps": 50.0}}
    m = {v.name: v for v in summarize_loop(issue, done, np.ones(100, dtype=np.int32), loop)}
    assert m["scheduled_sps"].value == pytest.approx(100.0)
    assert m["throughput_sps"].value == pytest.approx(100 / ((done[-1] - issue[0]) / 1e9))
    assert m["throughput_sps"].params["unfinished_queries"] == 40 and "without bound" in m["throughput_sps"].note
    slo = m["max_qps_within_slo"]
    assert slo.value is None and slo.note.startswith("SLO not met") and slo.params["met"] is False
    assert m["issue_drift_p99_us"].value == 3.0
    assert m["latency_p99_ms"].value > m["latency_p50_ms"].value


# ---- ranks ----------------------------------------------------------------------------------------
intervals = st.lists(st.tuples(st.floats(0.1, 100), st.floats(0, 10)), min_size=1, max_size=10)


@settings(max_examples=60, deadline=None)
@given(intervals, st.randoms())
def test_tie_ranks_are_consistent_and_order_free(items, rnd):
    entries = [(f"k{i}", v, v - w, v + w) for i, (v, w) in enumerate(items)]
    shuffled = entries[:]
    rnd.shuffle(shuffled)
    a = {r.key: r.label for r in rank_with_ties(entries)}
    assert a == {r.key: r.label for r in rank_with_ties(shuffled)}
    rk = {r.key: r for r in rank_with_ties(entries)}
    for k1, _, lo1, hi1 in entries:
        for k2, _, lo2, hi2 in entries:
            overlap = lo1 <= hi2 and lo2 <= hi1
            if overlap:  # tied entries' rank ranges overlap too
                assert rk[k1].best <= rk[k2].worst and rk[k2].best <= rk[k1].worst
            elif hi1 < lo2:  # strictly better: ranked strictly ahead
                assert rk[k1].worst < rk[k2].best or rk[k1].best < rk[k2].best


def test_stop_reason_agrees_with_the_stored_interval():
    """'stopped by ci_target' is stored only when the stored p50 interval meets the target."""
    from heptathlon.bench.metrics import MetricValue
    from heptathlon.bench.stats import _with_reached_width, stop_reason

    adaptive = {"ci_target_rel": 0.01, "ci_half_width_rel": 0.008}
    wide = _with_reached_width(MetricValue("latency_p50_ms", 1.0, "timer", n=100, ci_low=0.9893, ci_high=1.0107), adaptive)
    narrow = _with_reached_width(MetricValue("latency_p50_ms", 1.0, "timer", n=100, ci_low=0.995, ci_high=1.004), adaptive)
    assert wide.params["ci_target_met"] is False and narrow.params["ci_target_met"] is True
    assert stop_reason("ci_target", [wide]) == "ci_target_missed"
    assert stop_reason("ci_target", [narrow]) == "ci_target"
    assert stop_reason("max_duration", [wide]) == "max_duration"
