"""A batch_sweep over k trials (bench/sweep_stats.py pool_sweep): every cell of the batch x
sequence-length grid is the mean of its trials, with a CI at least as wide as the spread between
them; a cell some trial missed is unavailable with how many trials measured it; the pooled record
(run.extra["sweep_pooled"]) carries the same numbers, knees and relative-to-best included."""

from __future__ import annotations

import numpy as np
import pytest

from heptathlon.bench.sweep_stats import pool_sweep, shown_sweep, summarize_sweep, sweep_tables

SIZES = [1, 2, 4]


def _entry(scale: float, sizes=SIZES, rng=None, tax=0.2):
    """One runtime's raw payload: latencies ~ scale * (1 + b), FT ~ tax per call."""
    rng = rng or np.random.default_rng(0)
    lats = [list(scale * (1 + b) * (1 + 0.01 * rng.standard_normal(10))) for b in sizes]
    decs = [{"batch_size": b, "method": "profiler:torch", "wall_s": lat, "compute_s": [x * (1 - tax) for x in lat],
             "reason": None, "details": {}} for b, lat in zip(sizes, lats)]
    return {"available": True, "kind": "torch", "batch_sizes": list(sizes), "latencies_s": lats,
            "decompositions": decs, "stopped_at": None, "stop_reason": None}


def _payload(scale: float, seed: int, ort_sizes=SIZES):
    rng = np.random.default_rng(seed)
    by_len = {str(s): {"runtimes": {"eager": _entry(scale * s, rng=rng, tax=0.3 / s),
                                     "onnxruntime": _entry(scale * s * 0.8, ort_sizes if s == 16 else SIZES, rng,
                                                           tax=0.1 / s)}}
              for s in (8, 16)}
    return {"primary_runtime": "eager", "kind": "torch", "sequence_length": 8, "batch_sizes_requested": SIZES,
            "runtimes": by_len["8"]["runtimes"], "by_sequence_length": by_len}


def _trial(scale, seed, **kw):
    sw = summarize_sweep(_payload(scale, seed, **kw), n_resamples=200)
    return sw.extra, sw.details


def _cell(rows, metric, rt, s, b):
    [m] = [m for m in rows if (m.name, m.params.get("runtime"), m.params.get("sequence_length"),
                               m.params.get("batch_size")) == (metric, rt, s, b)]
    return m


def test_every_cell_is_the_mean_of_its_trials_with_a_ci_over_their_spread():
    trials = [_trial(1e-3, 1), _trial(1.2e-3, 2), _trial(0.9e-3, 3)]  # a 30% spread between fresh workers
    rows, pooled = pool_sweep(trials)
    for metric in ("latency_p50_ms", "framework_tax", "throughput_sps"):
        for s in (8, 16):
            for b in SIZES:
                m = _cell(rows, metric, "eager", s, b)
                own = [_cell(d, metric, "eager", s, b) for _, d in trials]
                vals = [o.value for o in own]
                assert m.params["pooled"] is True and m.params["trials"] == 3
                assert m.params["trial_values"] == pytest.approx(vals)
                if metric == "throughput_sps":  # total samples over total time, not the mean of rates
                    assert m.value == pytest.approx(sum(o.params["samples"] for o in own)
                                                    / sum(o.params["window_s"] for o in own))
                else:
                    assert m.value == pytest.approx(np.mean(vals))
                assert m.ci_low <= min(vals) <= max(vals) <= m.ci_high or metric == "framework_tax"
                # never narrower than any trial's own within-run CI
                assert m.ci_high - m.ci_low >= min(o.ci_high - o.ci_low for o in own)
    lat = _cell(rows, "latency_p50_ms", "eager", 16, 4)
    spread = np.std(lat.params["trial_values"], ddof=1)
    assert lat.ci_high - lat.ci_low > 2 * spread  # the t-interval over 3 trials, not one run's bootstrap
    # the pooled record carries the same numbers, and the grid is recomputed from them
    rec = pooled["by_sequence_length"]["16"]
    assert rec["runtimes"]["eager"]["median_latency_ms"]["4"] == pytest.approx(lat.value)
    assert rec["runtimes"]["eager"]["framework_tax"]["2"] == pytest.approx(
        _cell(rows, "framework_tax", "eager", 16, 2).value)
    best = min(rec["runtimes"][rt]["median_latency_ms"]["4"] for rt in ("eager", "onnxruntime"))
    assert rec["relative_to_best"]["eager"]["4"] == pytest.approx(lat.value / best)
    knees = [t[0]["by_sequence_length"]["16"]["runtimes"]["eager"]["knee"]["value"] for t in trials]
    assert rec["runtimes"]["eager"]["knee"]["value"] == pytest.approx(np.mean(knees))
    assert pooled["pooled"] == {"trials": 3}
    # the run's own length (rows without sequence_length) is pooled too
    own = _cell(rows, "latency_p50_ms", "onnxruntime", None, 2)
    assert pooled["runtimes"]["onnxruntime"]["median_latency_ms"]["2"] == pytest.approx(own.value)
    bounds = [m for m in rows if m.name == "framework_tax" and "tax_lower_bound" in m.params]
    assert all(m.params["tax_lower_bound"] <= m.value for m in bounds)


def test_a_cell_one_trial_missed_is_unavailable_not_a_mean_of_fewer():
    trials = [_trial(1e-3, 1), _trial(1e-3, 2, ort_sizes=[1, 2])]  # trial 2's ORT sweep stopped before b = 4
    rows, pooled = pool_sweep(trials)
    gone = _cell(rows, "latency_p50_ms", "onnxruntime", 16, 4)
    assert gone.value is None and "measured in 1 of 2 trials" in gone.note
    assert _cell(rows, "latency_p50_ms", "onnxruntime", 16, 2).value is not None
    rec = pooled["by_sequence_length"]["16"]["runtimes"]["onnxruntime"]
    assert "4" not in rec["median_latency_ms"] and "1 of 2 trials" in rec["latency_unavailable"]["4"]
    assert "4" not in pooled["by_sequence_length"]["16"]["relative_to_best"]["onnxruntime"]
    tables = {t: rows_ for t, _c, rows_ in sweep_tables(pooled)}
    [grid] = [r for t, r in tables.items() if t.startswith("onnxruntime: FT(b, s)")]
    assert grid[2][2] == "—"  # b = 4 at s = 16: no number
    assert all(t.endswith("pooled over 2 trials") for t in tables)
    [na] = [r for t, r in tables.items() if t.startswith("not available")]
    assert any(r[1].startswith("s = 16, latency at b = 4") and "1 of 2 trials" in r[1] for r in na)


def test_shown_sweep_prefers_the_pooled_record():
    own, pooled = {"runtimes": {}}, {"runtimes": {}, "pooled": {"trials": 2}}
    assert shown_sweep({"sweep": own, "sweep_pooled": pooled}) is pooled
    assert shown_sweep({"sweep": own}) is own and shown_sweep(None) is None
