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
    # The only scorable entry: nothing to compare it with, so no score (never a free 100).
    assert t.scores["measured"].score is None and "nothing to compare" in t.scores["measured"].reason


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
        if len(entries) == 1:  # a lone entry is never scored
            assert fwd[k].score is None and rev[k].score is None
            continue
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


def test_a_single_entry_does_not_score_100():
    t = heptathlon_scores({"alone": {"accuracy": v(0.9), "latency_p50_ms": v(1.0)}},
                          {"accuracy": 1.0, "latency_p50_ms": 1.0})
    assert t.scores["alone"].score is None and "nothing to compare" in t.scores["alone"].reason
    two = heptathlon_scores({"a": {"accuracy": v(0.9)}, "b": {"accuracy": v(0.5)}}, {"accuracy": 1.0})
    assert (two.scores["a"].score, two.scores["b"].score) == (100.0, 0.0)


def test_score_formula_is_latex_not_markdown_math():
    from heptathlon.dashboard.scoring import SCORE_LATEX, SCORE_RULES

    assert "$" not in SCORE_RULES and "\\" not in SCORE_RULES  # no inline math left to render red
    assert SCORE_LATEX.startswith(r"\text{score}") and "$" not in SCORE_LATEX


def ci(x, lo, hi, method=M):
    return Value(x, lo, hi, method, 100, "ms")


def test_ci_aware_pareto_front():
    from heptathlon.dashboard.scoring import pareto_front_ci

    pts = [("fast", ci(1.0, 0.9, 1.1), ci(0.80, 0.78, 0.82)),
           # Slower and less accurate on point estimates, but both CIs overlap "fast": not dominated.
           ("noisy", ci(1.05, 0.95, 1.3), ci(0.79, 0.75, 0.83)),
           # Clearly slower, accuracy inside fast's noise: dominated.
           ("slow", ci(3.0, 2.8, 3.2), ci(0.80, 0.79, 0.81)),
           # Clearly slower and clearly more accurate: on the frontier.
           ("accurate", ci(3.0, 2.8, 3.2), ci(0.95, 0.94, 0.96))]
    assert pareto_front_ci(pts) == {"fast", "noisy", "accurate"}
    # On point estimates alone "noisy" would be dominated.
    assert "noisy" not in pareto_front([(k, x.value, y.value) for k, x, y in pts])
    # Without CIs the rule is the classic one.
    flat = [(k, Value(x.value), Value(y.value)) for k, x, y in pts]
    assert pareto_front_ci(flat) == pareto_front([(k, x.value, y.value) for k, x, y in pts])


def test_format_si_prefixes():
    from heptathlon.dashboard.scoring import format_si

    assert format_si(0.007629, "ms") == "7.63 µs"
    assert format_si(1.241e-05, "J") == "12.4 µJ"
    assert format_si(1200.0, "MB") == "1.2 GB" and format_si(0.5, "MB") == "500 kB"
    assert format_si(3600.0, "s") == "3,600 s"  # no kiloseconds
    assert format_si(0.009, "ms", ref=0.0076) == "9 µs"  # a CI bound takes its estimate's prefix
    assert format_si(52831.6, "samples/s") == "52,832 samples/s"
    assert format_si(0.97333, "fraction") == "0.973" and format_si(None, "ms") == "not measured"


def test_log_ticks_read_as_numbers():
    from heptathlon.dashboard.figures import log_ticks

    vals, labels = log_ticks(0.05, 0.4, "ms")
    assert vals == sorted(vals) and len(vals) >= 4 and all(0.05 <= x <= 0.4 for x in vals)
    assert labels[0] == "50 µs" and all(lab.endswith("s") for lab in labels)
    vals, _ = log_ticks(0.01, 100.0)
    assert vals == [0.01, 0.1, 1.0, 10.0, 100.0]


def test_heatmap_colour_scale_is_fixed_for_fractions():
    import numpy as np

    from heptathlon.dashboard.figures import group_heatmap, heatmap_range

    assert heatmap_range("accuracy", np.array([[0.418, 0.428]])) == (0.0, 1.0)
    df = pd.DataFrame([{"group": g, "profile": p, "value": x, "ci_low": None, "ci_high": None, "n": 50,
                        "small": False} for g, p, x in (("a", "cpu-1core", 0.418), ("a", "cpu-2core", 0.428))])
    heat = group_heatmap(df, "accuracy").data[0]
    assert (heat.zmin, heat.zmax) == (0.0, 1.0)


def test_latency_figure_is_log_binned_with_a_cdf():
    import numpy as np

    lat = np.concatenate([np.random.default_rng(1).lognormal(0, 0.2, 999), [200.0]])  # one 200 ms outlier
    fig = latency_histogram(lat)
    bars = fig.data[0]
    assert sum(bars.y) == 1000 and max(bars.y) < 999  # the outlier does not squeeze the bulk into one bar
    widths = np.array(bars.width)
    assert np.allclose(widths, widths[0])  # equal widths in log10 coordinates: log-spaced bins
    cdf = [t for t in fig.data if t.type == "scatter" and t.mode == "lines" and len(t.x) > 2]
    assert cdf and cdf[0].y[-1] == 1.0 and fig.layout.xaxis2.type == "log"
    names = [t.name for t in fig.data]
    assert any(n.startswith("p50 ") for n in names) and any(n.startswith("p99 ") for n in names)
    from heptathlon.dashboard.figures import latency_figure

    both = latency_figure({"a": lat, "b": lat * 2})
    hist = [t for t in both.data if t.type == "bar"]
    assert [t.name for t in hist] == ["a", "b"] and abs(sum(hist[0].y) - 1.0) < 1e-9  # shares, overlaid


def test_profile_colours_are_the_same_everywhere():
    from heptathlon.dashboard.figures import colour, group_bars

    df = pd.DataFrame([{"group": "a", "profile": p, "value": 0.5, "ci_low": None, "ci_high": None}
                       for p in ("cpu-2core", "zz-new-profile")])
    alone = pd.DataFrame([{"group": "a", "profile": "cpu-2core", "value": 0.5, "ci_low": None, "ci_high": None}])
    assert group_bars(df, "x").data[0].marker.color == group_bars(alone, "x").data[0].marker.color == colour(
        "cpu-2core")
    assert colour("zz-new-profile") == colour("zz-new-profile") and colour("cpu-1core") != colour("cpu-2core")


def _sweep(knee_lo, knee_hi):
    from heptathlon.dashboard.figures import sweep_figure

    lat = pd.DataFrame([{"runtime": "onnxruntime", "batch_size": b, "value": 0.05 + 0.004 * max(0, b - 16),
                         "ci_low": None, "ci_high": None, "method": M} for b in (1, 2, 4, 8, 16, 32, 64)])
    return sweep_figure(lat, [{"runtime": "onnxruntime", "knee": 16.0, "ci_low": knee_lo, "ci_high": knee_hi}],
                        "latency_p50_ms")


def test_knee_ci_band_is_clipped_to_the_measured_batches():
    narrow = _sweep(8.0, 32.0)
    bands = [t for t in narrow.data if t.fill == "toself"]
    assert len(bands) == 1 and min(bands[0].x) == 8.0 and max(bands[0].x) == 32.0
    wide = _sweep(0.0, 10_000.0)  # a CI that says nothing: no band over the whole plot, said in the legend
    assert not [t for t in wide.data if t.fill == "toself"]
    assert any("CI spans every batch size" in (t.name or "") for t in wide.data)
    assert list(narrow.layout.xaxis.tickvals) == [1, 2, 4, 8, 16, 32, 64]
    assert all(lab.endswith("s") for lab in narrow.layout.yaxis.ticktext)  # "50 µs", never "9, 8 … 2"


def test_a_knee_at_the_first_batch_reads_compute_bound_from_the_start():
    from heptathlon.dashboard.figures import sweep_figure

    lat = pd.DataFrame([{"runtime": "eager", "batch_size": b, "value": 70.0 * b, "ci_low": None, "ci_high": None,
                         "method": M} for b in (1, 2, 4)])
    fig = sweep_figure(lat, [{"runtime": "eager", "knee": 1.1, "ci_low": 1.0, "ci_high": 1.3}], "latency_p50_ms")
    assert any((t.name or "").startswith("compute-bound from b = 1: b* = 1 (eager)") for t in fig.data)
    assert not any("compute-bound" in (t.name or "") for t in _sweep(8.0, 32.0).data)


def test_estimated_tax_bars_are_marked():
    from heptathlon.dashboard.figures import tax_figure

    tax = pd.DataFrame([{"runtime": "command", "batch_size": b, "value": 0.5, "ci_low": None, "ci_high": None,
                         "method": "estimate:intercept"} for b in (1, 2)])
    bar = tax_figure(tax).data[0]
    assert list(bar.marker.pattern.shape) == ["/", "/"] and "estimated" in bar.name and bar.text[0] == "≈ est."


def test_history_x_axis_is_the_night():
    from heptathlon.dashboard.figures import history_figure

    t = pd.Timestamp("2026-11-30 00:30", tz="UTC")  # finished after midnight, belongs to the 29th
    series = pd.DataFrame([{"run_id": "r", "status": "succeeded", "created_at": t, "finished_at": t,
                            "value": 1.0, "ci_low": 0.9, "ci_high": 1.1, "method": M, "error": None,
                            "night": "2026-11-29"}])
    fig = history_figure(series, pd.DataFrame(), "latency_p50_ms")
    assert str(fig.data[0].x[0])[:10] == "2026-11-29" and fig.layout.xaxis.title.text == "night"


def test_sweep_sources_name_each_runtimes_run_and_flag_a_mix():
    from heptathlon.dashboard.common import sweep_sources

    t0, t1 = pd.Timestamp("2026-12-03 14:00"), pd.Timestamp("2026-12-03 15:00")
    rows = [{"run_id": "aaaaaaaa-1", "runtime": "eager", "finished_at": t1},
            {"run_id": "bbbbbbbb-2", "runtime": "onnxruntime", "finished_at": t0},
            {"run_id": "aaaaaaaa-1", "runtime": "torch.compile", "finished_at": t1}]
    mixed, text = sweep_sources(pd.DataFrame(rows))
    assert mixed and text == "eager: run aaaaaaaa; onnxruntime: run bbbbbbbb; torch.compile: run aaaaaaaa"
    one = pd.DataFrame([r for r in rows if r["run_id"].startswith("a")])
    assert sweep_sources(one) == (False, "eager: run aaaaaaaa; torch.compile: run aaaaaaaa")
    both = pd.DataFrame(rows + [{"run_id": "bbbbbbbb-2", "runtime": "eager", "finished_at": t0}])
    assert "eager: runs aaaaaaaa, bbbbbbbb" in sweep_sources(both)[1]  # newest first
