"""The leaderboard's arithmetic: CI-tie ranks, the heptathlon score, Pareto fronts, formatting."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from heptathlon.dashboard.figures import hardware_figure, latency_histogram
from heptathlon.dashboard.scoring import (Value, format_value, heptathlon_scores, ordered_metrics, pareto_front, rank_metric,
                               score_ranks)

M = "timer:perf_counter_ns"


def v(value, lo=None, hi=None, method=M):
    return Value(value, lo, hi, method)


def test_overlapping_cis_tie_in_rank_and_in_score():
    entries = {"a": {"latency_p50_ms": v(1.0, 0.9, 1.1)}, "b": {"latency_p50_ms": v(1.05, 1.0, 1.2)},
               "c": {"latency_p50_ms": v(3.0, 2.9, 3.1)}}
    ranks = rank_metric(entries, "latency_p50_ms")
    assert [ranks[k].label for k in "abc"] == ["1–2", "1–2", "3"]
    t = heptathlon_scores(entries, {"latency_p50_ms": 1.0})
    assert t.scores["a"].score == t.scores["b"].score == pytest.approx(75.0)  # mid rank 1.5 of 3
    assert t.scores["c"].score == pytest.approx(0.0)


def test_direction_comes_from_the_registry():
    entries = {"slow": {"throughput_sps": v(10.0)}, "fast": {"throughput_sps": v(100.0)}}
    t = heptathlon_scores(entries, {"throughput_sps": 1.0})
    assert (t.scores["fast"].score, t.scores["slow"].score) == (100.0, 0.0)


def test_weights_mix_metrics():
    entries = {"a": {"latency_p50_ms": v(1.0), "accuracy": v(0.5)},
               "b": {"latency_p50_ms": v(2.0), "accuracy": v(0.9)}}
    assert heptathlon_scores(entries, {"latency_p50_ms": 3.0, "accuracy": 1.0}).scores["a"].score == 75.0
    assert heptathlon_scores(entries, {"latency_p50_ms": 1.0, "accuracy": 3.0}).scores["a"].score == 25.0


def test_estimates_are_never_ranked_or_scored_against_measurements():
    entries = {"measured": {"energy_per_sample_j": v(2.0), "accuracy": v(0.8)},
               "estimated": {"energy_per_sample_j": v(1.0, method="estimate:tdp"), "accuracy": v(0.7)}}
    assert set(rank_metric(entries, "energy_per_sample_j")) == {"measured"}
    t = heptathlon_scores(entries, {"energy_per_sample_j": 1.0, "accuracy": 1.0})
    assert t.scores["estimated"].score is None and t.scores["estimated"].missing == ("energy_per_sample_j",)
    assert t.scores["measured"].score == 100.0


def test_a_metric_nobody_measured_is_dropped_not_penalised():
    entries = {"a": {"accuracy": v(0.9), "energy_per_sample_j": Value(None, method="unavailable")},
               "b": {"accuracy": v(0.8), "energy_per_sample_j": v(1.0, method="estimate:codecarbon")}}
    t = heptathlon_scores(entries, {"accuracy": 1.0, "energy_per_sample_j": 1.0, "framework_tax": 1.0})
    assert t.dropped == ("energy_per_sample_j", "framework_tax") and t.used == {"accuracy": 1.0}
    assert (t.scores["a"].score, t.scores["b"].score) == (100.0, 0.0)


def test_metrics_without_direction_or_weight_do_not_count():
    entries = {"a": {"batch_knee": v(16.0), "accuracy": v(0.9)}, "b": {"batch_knee": v(4.0), "accuracy": v(0.9)}}
    t = heptathlon_scores(entries, {"batch_knee": 5.0, "accuracy": 1.0, "latency_p50_ms": 0.0})
    assert t.used == {"accuracy": 1.0} and t.dropped == ()


def test_score_ranks_share_equal_scores():
    t = heptathlon_scores({"a": {"accuracy": v(0.9)}, "b": {"accuracy": v(0.9)}, "c": {"accuracy": v(0.1)},
                           "d": {}}, {"accuracy": 1.0})
    assert score_ranks(t.scores) == {"a": "1–2", "b": "1–2", "c": "3"}


values = st.floats(0.001, 1000, allow_nan=False)


@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=3),
                       st.tuples(values, values, values, values), min_size=1, max_size=8))
def test_scores_are_bounded_and_independent_of_order(raw):
    entries = {k: {"latency_p50_ms": v(a, a * 0.9, a * 1.1), "throughput_sps": v(b, b * 0.95, b * 1.05),
                   "accuracy": v(c / 1000), "peak_rss_mb": v(d)} for k, (a, b, c, d) in raw.items()}
    w = {"latency_p50_ms": 2.0, "throughput_sps": 1.0, "accuracy": 1.5, "peak_rss_mb": 0.5}
    fwd = heptathlon_scores(entries, w).scores
    rev = heptathlon_scores(dict(reversed(list(entries.items()))), w).scores
    for k in entries:
        assert 0.0 <= fwd[k].score <= 100.0
        assert fwd[k].score == pytest.approx(rev[k].score)


def test_pareto_front():
    pts = [("fast-bad", 1.0, 0.70), ("slow-good", 5.0, 0.95), ("dominated", 6.0, 0.90), ("mid", 2.0, 0.85),
           ("twin-mid", 2.0, 0.85), ("missing", float("nan"), 0.99)]
    assert pareto_front(pts) == {"fast-bad", "slow-good", "mid", "twin-mid"}
    assert pareto_front(pts, x_lower_is_better=False) == {"slow-good", "dominated"}


def test_ordered_metrics_headline_first_unknown_last():
    names = ["zz_custom", "co2_g", "accuracy", "latency_p50_ms", "framework_tax"]
    assert ordered_metrics(names) == ["latency_p50_ms", "accuracy", "co2_g", "framework_tax", "zz_custom"]


def test_format_value():
    assert format_value(None) == "not measured" and format_value(float("nan")) == "not measured"
    assert format_value(11498.0, "count") == "11,498"
    assert format_value(0.97333, "fraction") == "0.973"
    assert format_value(0.0123456, "ms") == "0.01235"
    assert format_value(52831.6, "samples/s") == "52,832"


def test_hardware_figure_marks_a_missing_panel_not_measured():
    df = pd.DataFrame([{"where": p, "metric": "latency_p50_ms", "value": x, "ci_low": x * 0.9, "ci_high": x * 1.1,
                        "method": M, "n": 100} for p, x in (("cpu-1core", 1.0), ("cpu-2core", 0.7))])
    fig = hardware_figure(df, ["latency_p50_ms", "energy_per_sample_j"], ["cpu-1core", "cpu-2core"])
    assert [t.type for t in fig.data] == ["bar"]
    assert [a.text for a in fig.layout.annotations if a.text == "not measured"] == ["not measured"]


def test_latency_histogram_counts_every_sample():
    import numpy as np

    lat = np.random.default_rng(0).lognormal(0, 0.5, 5000)
    fig = latency_histogram(lat)
    assert sum(fig.data[0].y) == 5000
