"""bench/series.py: the series key of a stored run equals the key a nightly suite entry names."""

from __future__ import annotations

from heptathlon.bench.app.suite import SuiteEntry
from heptathlon.bench.scenarios import make_scenario
from heptathlon.bench.series import TrialSlot, run_series_key, series_key, series_params, trial_counts

FP = {"cpu_model": "Xeon", "cpu_flags_sha256": "abc", "logical_cores": 8, "ram_bytes": 2**34, "arch": "x86_64",
      "gpus": [], "software": {"torch": "2.13.0"}}


def test_a_runs_params_give_the_key_its_suite_entry_names():
    sc = make_scenario("single_stream", min_queries=50)
    energy = {"enabled": False, "idle_s": 1.0, "country_iso": "USA"}
    entry = SuiteEntry(submission_dir=None, profile="cpu-1core", scenario=sc, trials=3, energy=energy, timeout_s=90)
    stored = {**sc.to_params(), "timeout_s": 90.0, "energy": energy}  # what queue_runs writes to run.params
    from_run = run_series_key(submission="m", task="arrests", profile="cpu-1core", scenario=sc.name,
                              run_params=stored, trials=3, fingerprint=FP)
    assert from_run == series_key("m", "arrests", "cpu-1core", sc.name, entry.series_params, FP)
    # default meters ({}) are no part of the key, a timeout never is
    assert series_params({"name": "x", "timeout_s": 5, "energy": {}}, 1) == {"name": "x", "trials": 1}


def test_trial_counts_per_request_and_a_retry_does_not_double_them():
    slots = [TrialSlot(f"r{i}", "g", 1, "p", "s", {"b": 1}, i % 3) for i in range(6)]  # 3 trials, retried once
    slots += [TrialSlot("other", "g", 1, "p", "s", {"b": 2}, 0), TrialSlot("alone", None, 1, "p", "s", {}, 4)]
    counts = trial_counts(slots)
    assert {counts[f"r{i}"] for i in range(6)} == {3}
    assert counts["other"] == 1 and counts["alone"] == 5


def test_regression_tests_latency_on_the_samples_runs_store():
    """Runs store per-query latencies as ``latency_ns``; the detector used to look for ``latency_ms``
    and so never ran its Mann-Whitney test on real runs."""
    from datetime import datetime, timedelta, timezone

    import numpy as np

    from heptathlon.bench.metrics import SampleKind
    from heptathlon.bench.regression import NightlyRun, check_series

    key = series_key("m", "arrests", "cpu-1core", "single_stream", {}, FP)
    rng, t0 = np.random.default_rng(0), datetime(2026, 1, 1, tzinfo=timezone.utc)

    def night(i, scale):
        lat_ns = (rng.lognormal(np.log(1e6 * scale), 0.05, 400)).astype(np.int64)
        return NightlyRun(f"n{i}", key, t0 + timedelta(days=i), metrics={"latency_p50_ms": float(np.median(lat_ns)) / 1e6},
                          samples={SampleKind.LATENCY_NS: lat_ns})

    history = [night(i, 1.0 + 0.001 * i) for i in range(5)]
    (d,) = check_series(night(9, 1.5), history).detections
    assert d.kind == "regression" and d.p_value is not None and d.p_value < 1e-6
