"""The generate scenario on the dashboard: the pure rules and figure builders, the loaders against a
real SQLite database with real generate runs, the Generation page and the leaderboard's Generative table.

The database (``gen_db``) is a copy of ``filled_db`` (real classification runs) plus three real
generate runs through heptathlon.bench.app.service:

- ``plain``: the calibrated streaming command, single stream (no sweep, no SLO);
- ``unmet``: the calibrated command with SLOs it cannot meet (it busy-waits 50 ms before
  its first token, the SLO asks p99 TTFT <= 1 ms), so "SLO not met at any rate" is certain;
- ``met``: the tiny GPT-2 with --sweep and SLOs of a minute, met at every rate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from heptathlon.bench.app.service import execute_run, queue_runs
from heptathlon.dashboard import figures as F
from heptathlon.dashboard import generative as G
from heptathlon.dashboard.scoring import Value
from heptathlon.db import dashboard_queries as DQ
from heptathlon.db.models import Measurement
from heptathlon.db.session import session_scope
from tests.dashboard.conftest import NO_METERS, copy_sqlite
from tests.dashboard.test_pages import _Table, charts, open_page, texts

GEN_PAGE = "views/generation.py"
QUICK = {"min_queries": 8, "max_new_tokens": 4, "warmup_queries": 1, "min_duration_s": 0.0, "max_duration_s": 30.0}


@pytest.fixture(scope="session")
def gen_db(filled_db, examples, tmp_path_factory) -> dict:
    from heptathlon.bench.scenarios import make_scenario

    root = tmp_path_factory.mktemp("dashboard-generate")
    url = copy_sqlite(filled_db["path"], root / "gen.db")
    plan = {"plain": ("calibrated-stream-command", {}),
            "unmet": ("calibrated-stream-command", {"ttft_slo_ms": 1.0, "tpot_slo_ms": 1.0}),
            "met": ("gpt2-tiny-transformers", {"sweep": True, "ttft_slo_ms": 60000.0, "tpot_slo_ms": 60000.0})}
    ids = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEPTATHLON_HOME", str(root / "home"))
        mp.setenv("HEPTATHLON_CONTENTION_MAX", "1")  # a busy test machine must not mark these contended
        for key, (name, opts) in plan.items():
            [rid] = queue_runs(examples[name], ["cpu-1core"], [make_scenario("generate", **QUICK, **opts)], db=url,
                               energy=NO_METERS)
            outcome = execute_run(rid, db=url)
            assert outcome.status == "succeeded", outcome.error
            ids[key] = rid
    return {"url": url, "path": root / "gen.db", **ids}


# ---- pure rules --------------------------------------------------------------------------------
def test_load_labels_tell_loads_apart():
    assert G.load_label({"max_new_tokens": 16}) == "single stream · 16 new tokens"
    assert G.load_label({"concurrency": 4, "max_new_tokens": 16}) == "concurrency 4 · 16 new tokens"
    assert G.load_label({"rate": 5.0, "max_new_tokens": 8, "ignore_eos": True}) == \
        "rate 5 req/s · 8 new tokens (EOS ignored)"
    assert G.load_label({"sweep": True, "ttft_slo_ms": 40.0, "tpot_slo_ms": 3.0, "max_new_tokens": 16}) == \
        "sweep · SLO p99 TTFT ≤ 40 ms, p99 TPOT ≤ 3 ms · 16 new tokens"
    assert G.point_label("rate", 74.79970097617921, None) == "rate 74.8/s"
    assert G.point_label("single_stream", None, 1) == "single stream"


def _meas(rows):
    return pd.DataFrame([{"run_id": "r", "unit": "", "note": None, "params": {}, "ci_low": None, "ci_high": None,
                          "n": 16, **r} for r in rows], columns=DQ.MEASUREMENT_COLUMNS)


def test_headline_table_labels_estimates_and_never_calls_them_measurements():
    t = G.headline_table(_meas([
        {"metric": "ttft_p50_ms", "value": 25.9, "ci_low": 19.0, "ci_high": 31.4, "method": "timer:perf_counter_ns"},
        {"metric": "energy_per_token_j", "value": 0.00113, "n": 256, "method": "estimate:codecarbon"},
        {"metric": "max_rate_within_slo", "value": None, "n": None, "method": "unavailable",
         "note": "SLO not met at any rate"}])).set_index("metric")
    assert t.loc["ttft_p50_ms", "value"] == "25.9 ms" and t.loc["ttft_p50_ms", "95% CI"] == "[19 ms, 31.4 ms]"
    assert t.loc["ttft_p50_ms", "kind"] == "measurement" and t.loc["ttft_p50_ms", "n"] == "16"
    est = t.loc["energy_per_token_j"]
    assert est["value"] == "≈ 1.13 mJ (est.)" and est["kind"] == "estimate (not a measurement)"
    assert est["method"] == "estimate:codecarbon" and est["95% CI"] == "—"
    assert t.loc["max_rate_within_slo", "value"] == "not measured"
    assert t.loc["max_rate_within_slo", "note"] == "SLO not met at any rate"
    assert t.loc["itl_p50_ms", "value"] == "not stored"  # a metric the run did not store


def _run(rid, load, **kw):
    return {"run_id": rid, "submission": rid, "version": "1", "kind": "command", "load": load, "contended": False,
            "isolation": "model-process", "finished_at": None, **kw}


def test_generative_board_ranks_within_one_load_and_never_contended_or_estimated():
    v = lambda x, est=False: Value(x, x * 0.99, x * 1.01, "estimate:tdp" if est else "timer:perf_counter_ns", 16)
    runs = [_run("a", "single stream"), _run("b", "single stream"), _run("c", "concurrency 4"),
            _run("d", "single stream", contended=True), _run("e", "single stream")]
    entries = {"a": {"ttft_p50_ms": v(10.0)}, "b": {"ttft_p50_ms": v(20.0)}, "c": {"ttft_p50_ms": v(5.0)},
               "d": {"ttft_p50_ms": v(1.0), "contention_share": Value(0.4, method="sampled:x")},
               "e": {"ttft_p50_ms": v(2.0, est=True)}}
    board = G.build_generative_board(runs, entries, rank_by="ttft_p50_ms")
    rows = {r["submission"].text.split()[0]: r for r in board.rows}
    assert rows["a"]["#"].text == "1" and rows["b"]["#"].text == "2"
    assert rows["c"]["#"].text == "1"  # alone under its load: not ranked against single-stream runs
    assert rows["d"]["#"].text == "—" and rows["d"]["status"].text.startswith("contended 40%")
    assert rows["e"]["#"].text == "—" and rows["e"]["ttft_p50_ms"].cls == "est"
    assert rows["a"]["submission"].href == "generation?run=a"
    assert board.headers[:4] == ["submission", "#", "load", "status"] and "max_rate_within_slo" in board.headers


# ---- figure builders (pure) ------------------------------------------------------------------------
def test_token_latency_figure_marks_p50_and_p99():
    ttft, itl = np.arange(1, 101, dtype=float), np.full(50, 2.0)
    fig = F.token_latency_figure(ttft, itl, {"ttft": {"p50": 42.0, "p99": None}})
    names = [t.name for t in fig.data]
    assert "TTFT p50 42 ms" in names  # the stored headline value where given
    assert f"TTFT p99 {F.format_si(np.percentile(ttft, 99), 'ms')}" in names  # else computed from the samples
    assert "ITL p50 2 ms" in names and "ITL p99 2 ms" in names
    p50 = next(t for t in fig.data if t.name == "TTFT p50 42 ms")
    assert list(p50.x) == [42.0, 42.0]
    empty = F.token_latency_figure(None, itl)
    assert any(a.text == "not measured" for a in empty.layout.annotations)
    assert not any(str(t.name).startswith("TTFT") for t in empty.data)


def _points():
    rows = [(0, "single_stream", None, 1, 990.0, 1257.0, 62.0, 5.5, 0.89),
            (1, "throughput", None, None, 1805.0, 542.0, 112.8, 112.0, 1.98),
            (2, "rate", 74.8, None, 1063.0, 985.0, 66.4, 45.0, 1.46),
            (3, "rate", 87.5, None, 900.0, 500.0, 91.6, 44.5, 1.6)]  # dominated by point 1 and point 2
    return pd.DataFrame([{"point": p, "mode": m, "rate": r, "concurrency": c, "label": G.point_label(m, r, c),
                          "output_tokens_per_s": x, "output_tokens_per_s_per_request": y, "requests_per_s": rq,
                          "achieved_rate": rq, "ttft_p99_ms": t, "tpot_p99_ms": tp}
                         for p, m, r, c, x, y, rq, t, tp in rows])


def test_token_pareto_figure_labels_each_point_and_joins_the_front():
    fig = F.token_pareto_figure(_points())
    pts = next(t for t in fig.data if t.name == "sweep point")
    assert list(pts.text) == ["single stream", "throughput", "rate 74.8/s", "rate 87.5/s"]
    assert list(pts.x) == [990.0, 1805.0, 1063.0, 900.0] and list(pts.y) == [1257.0, 542.0, 985.0, 500.0]
    front = next(t for t in fig.data if t.name == "Pareto frontier")
    assert sorted(front.x) == [990.0, 1063.0, 1805.0]  # rate 87.5/s is beaten on both axes
    assert any("no sweep" in a.text for a in F.token_pareto_figure(_points().iloc[0:0]).layout.annotations)


def test_rate_sweep_figure_draws_slo_lines_and_the_max_rate():
    slo = {"ttft_ms": 40.0, "tpot_ms": 3.0, "max_rate": 99.7, "met": True, "reason": None,
           "probes": [{"mode": "rate", "rate": 5.9, "achieved_rate": 11.5, "met": True, "ttft_p99_ms": 22.3,
                       "tpot_p99_ms": 1.19},
                      {"mode": "throughput", "rate": None, "achieved_rate": 94.9, "met": False, "ttft_p99_ms": 138.0,
                       "tpot_p99_ms": 2.03}]}
    fig = F.rate_sweep_figure(_points(), slo, {"value": 99.7, "method": "derived:slo-search-log-bisection"})
    names = [t.name for t in fig.data]
    assert {"sweep: p99 TTFT", "sweep: p99 TPOT", "SLO probe, met", "SLO probe, not met"} <= set(names)
    ttft = next(t for t in fig.data if t.name == "sweep: p99 TTFT")
    assert list(ttft.x) == sorted(ttft.x)  # ordered by achieved rate
    hlines = sorted(s.y0 for s in fig.layout.shapes if s.y0 == s.y1)
    assert hlines == [3.0, 40.0]
    vlines = {s.x0 for s in fig.layout.shapes if s.x0 == s.x1}
    assert vlines == {99.7} and "max rate within SLO 99.7" in fig.layout.title.text
    assert any(str(n).startswith("max_rate_within_slo 99.7") for n in names)


def test_rate_sweep_figure_says_when_the_slo_is_never_met():
    slo = {"ttft_ms": 1.0, "tpot_ms": 1.0, "max_rate": None, "met": False, "reason": "SLO not met at any rate (...)",
           "probes": [{"mode": "rate", "rate": 1.0, "achieved_rate": 1.1, "met": False, "ttft_p99_ms": 55.0,
                       "tpot_p99_ms": 10.0}]}
    fig = F.rate_sweep_figure(_points().iloc[0:0], slo, {"value": None, "method": "unavailable"})
    assert "SLO not met at any rate" in fig.layout.title.text
    assert any(a.text == "SLO not met at any rate" for a in fig.layout.annotations)
    assert not [s for s in fig.layout.shapes if s.x0 == s.x1]  # no max-rate line
    # Without a stored p99 TPOT the bottom panel shows p99 ITL, named as such.
    pts = _points().drop(columns="tpot_p99_ms").assign(itl_p99_ms=2.0)
    assert "sweep: p99 ITL (no p99 TPOT stored)" in [t.name for t in F.rate_sweep_figure(pts).data]


# ---- loaders on real runs -------------------------------------------------------------------------
def test_generative_runs_are_the_generate_series_only(gen_db):
    with session_scope(gen_db["url"]) as s:
        runs, meas = DQ.generative_runs(s)
        classic, _ = DQ.latest_results(s, scenario="single_stream")
    assert set(runs["run_id"]) == {gen_db["plain"], gen_db["unmet"], gen_db["met"]}
    assert set(runs["scenario"]) == {"generate"} and not runs["contended"].any()
    assert not set(runs["run_id"]) & set(classic["run_id"])
    load = dict(zip(runs["run_id"], runs["load"]))
    assert load[gen_db["plain"]] == "single stream · 4 new tokens"
    assert load[gen_db["unmet"]].startswith("SLO p99 TTFT ≤ 1 ms")
    heads = meas[meas["run_id"] == gen_db["plain"]].set_index("metric")
    for m in ("ttft_p50_ms", "itl_p50_ms", "output_tokens_per_s", "energy_per_token_j"):
        assert m in heads.index
    assert heads.loc["ttft_p50_ms", "value"] > 0 and heads.loc["ttft_p50_ms", "method"].startswith("timer:")
    assert pd.isna(heads.loc["energy_per_token_j", "value"])  # meters off: unavailable, not zero
    assert not meas["params"].map(lambda p: bool((p or {}).get("sweep"))).any()  # headline rows only


def test_generate_record_has_the_samples(gen_db):
    with session_scope(gen_db["url"]) as s:
        rec = DQ.generate_record(s, gen_db["plain"])
        assert DQ.generate_record(s, "no-such-run") is None
        runs, _ = DQ.latest_results(s, scenario="single_stream")
        assert DQ.generate_record(s, runs["run_id"].iloc[0]) is None  # not a generate run
    assert rec["submission"] == "calibrated-stream-command" and rec["generate"]["mode"] == "single_stream"
    assert rec["ttft_ms"].size == rec["generate"]["requests"] == 8
    # The calibrated stream busy-waits 50 ms before its first token: no TTFT can be shorter.
    assert rec["ttft_ms"].min() >= 50.0 and (rec["e2e_ms"] >= rec["ttft_ms"]).all()
    assert rec["itl_ms"].size == int(sum(o["output_tokens"] - 1 for o in rec["outputs"]))
    assert "outputs" not in rec["generate"] and rec["n_outputs"] == 8
    p50 = rec["measurements"].set_index("metric").loc["ttft_p50_ms", "value"]
    assert p50 == pytest.approx(np.percentile(rec["ttft_ms"], 50), rel=0.05)


def test_generate_sweep_points_and_slo(gen_db):
    with session_scope(gen_db["url"]) as s:
        met, unmet, plain = (DQ.generate_sweep(s, gen_db[k]) for k in ("met", "unmet", "plain"))
    assert plain["points"].empty and plain["slo"] is None and plain["max_rate"] is None
    pts = met["points"]
    assert list(pts["point"]) == list(range(len(pts)))
    assert {"single_stream", "throughput"} <= set(pts["mode"]) <= {"single_stream", "throughput", "rate"}
    assert (pts["output_tokens_per_s"] > 0).all() and (pts["achieved_rate"] > 0).all()
    assert pts["tpot_p99_ms"].notna().all()
    assert (pts["ttft_p99_ms_ci_low"] <= pts["ttft_p99_ms"]).all()
    assert met["slo"]["met"] is True and met["max_rate"]["value"] > 0 and met["slo"]["probes"]
    assert unmet["slo"]["met"] is False and unmet["max_rate"]["value"] is None
    assert unmet["max_rate"]["method"] == "unavailable" and "not met" in unmet["max_rate"]["note"]


# ---- pages ----------------------------------------------------------------------------------------
def test_generation_page_shows_the_picked_run(gen_db, monkeypatch):
    at = open_page(gen_db["url"], monkeypatch, GEN_PAGE, query={"run": gen_db["met"]})
    shown = texts(at) + "\n".join(str(e.value) for e in at.success)
    assert at.title[0].value == "Generation"
    assert "gpt2-tiny-transformers v1 · cpu-1core · sweep" in shown and gen_db["met"] in shown
    assert "Max rate within SLO" in shown and "SLO not met" not in shown
    specs = charts(at)
    assert len(specs) == 3
    names = {t.get("name") for sp in specs for t in sp["data"]}
    assert {"TTFT histogram", "ITL histogram", "sweep point", "sweep: p99 TTFT"} <= names
    assert any(str(n).startswith("TTFT p99") for n in names)
    table = at.dataframe[0].value.set_index("metric")
    assert "ttft_p50_ms" in table.index and table.loc["energy_per_token_j", "kind"] == "unavailable"


def test_generation_page_says_the_slo_was_never_met(gen_db, monkeypatch):
    at = open_page(gen_db["url"], monkeypatch, GEN_PAGE, query={"run": gen_db["unmet"]})
    assert "SLO not met at any rate" in "\n".join(str(w.value) for w in at.warning)
    assert any("SLO not met at any rate" in sp["layout"]["title"]["text"] for sp in charts(at))


def test_generation_page_without_a_sweep(gen_db, monkeypatch):
    at = open_page(gen_db["url"], monkeypatch, GEN_PAGE, query={"run": gen_db["plain"]})
    shown = texts(at)
    assert "calibrated-stream-command v1 · cpu-1core · single stream · 4 new tokens" in shown
    assert "no sweep points" in shown and len(charts(at)) == 1  # the distributions only


def test_generation_page_on_a_database_without_generate_runs(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, GEN_PAGE)
    assert "No succeeded `generate` runs yet" in texts(at) and not charts(at)


def _tables(at) -> dict[str, dict[str, dict[str, tuple[str, str, str]]]]:
    """'main' and 'generative' leaderboard tables: submission name -> column -> (text, class, title)."""
    out = {}
    for h in at.get("html"):
        if "hep-leaderboard" not in h.value:
            continue
        p = _Table()
        p.feed(h.value)
        rows = {}
        for row in p.rows:
            cells = dict(zip(p.headers, row))
            rows[cells["submission"][0].rsplit(" v", 1)[0] + (f" [{cells['load'][0]}]" if "load" in cells else "")] \
                = cells
        out["generative" if "hep-generative" in h.value else "main"] = rows
    return out


def test_leaderboard_lists_generate_runs_in_their_own_table(gen_db, monkeypatch):
    at = open_page(gen_db["url"], monkeypatch, "views/leaderboard.py")
    tables = _tables(at)
    # The main board never offers the generate scenario and has no generate run.
    assert "generate" not in at.selectbox(key="lb_scenario").options
    assert "calibrated-stream-command" not in tables["main"] and "gpt2-tiny-transformers" not in tables["main"]
    gen = tables["generative"]
    assert len(gen) == 3
    plain = gen["calibrated-stream-command [single stream · 4 new tokens]"]
    for m in G.BOARD_METRICS:
        assert m in plain
    assert plain["#"][0] == "1" and plain["status"][0] == "ok"  # alone under its load
    assert plain["ttft_p50_ms"][0].endswith("ms") and "method: timer:" in plain["ttft_p50_ms"][2]
    assert plain["energy_per_token_j"][0] == "not measured"
    met = next(v for k, v in gen.items() if k.startswith("gpt2-tiny-transformers"))
    assert met["max_rate_within_slo"][0].endswith("requests/s")
    unmet = next(v for k, v in gen.items() if "TTFT ≤ 1 ms" in k)
    assert unmet["max_rate_within_slo"][0] == "not measured" and "not met" in unmet["max_rate_within_slo"][2]


def test_leaderboard_marks_a_contended_generate_run_and_does_not_rank_it(gen_db, tmp_path, monkeypatch):
    url = copy_sqlite(gen_db["path"], tmp_path / "contended.db")
    with session_scope(url) as s:
        row = s.query(Measurement).filter(Measurement.run_id == gen_db["plain"],
                                          Measurement.metric == "contention_share").one()
        row.value, row.params = 0.45, {**row.params, "contended": True}
    at = open_page(url, monkeypatch, "views/leaderboard.py")
    plain = _tables(at)["generative"]["calibrated-stream-command [single stream · 4 new tokens]"]
    assert plain["#"][0] == "—" and plain["status"][0] == "contended 45%: not ranked"
    assert "1 contended run(s): marked, not ranked." in texts(at)
    at = open_page(url, monkeypatch, GEN_PAGE, query={"run": gen_db["plain"]})
    assert "contended" in "\n".join(str(w.value) for w in at.warning)


def test_generation_page_on_empty_and_failed_only_databases(empty_db, failed_only_db, monkeypatch):
    at = open_page(empty_db, monkeypatch, GEN_PAGE)
    assert at.title[0].value == "Generation" and "No results yet" in texts(at) and not charts(at)
    at = open_page(failed_only_db, monkeypatch, GEN_PAGE)
    assert "No succeeded `generate` runs yet" in texts(at) and "not measured" in texts(at) and not charts(at)
