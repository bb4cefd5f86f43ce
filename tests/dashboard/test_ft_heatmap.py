"""FT(b, s): the batch size x sequence length view of the framework-tax page.

- the figure builders (pure): values where they were measured, blanks (never 0) with the reason
  where they were not;
- the loader (heptathlon.db.dashboard_queries.ft_cells) against a real SQLite database holding one
  real batch_sweep run of a tiny BERT at two sequence lengths, made through the service;
- the page, through Streamlit's AppTest, on that database.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from heptathlon.bench.app.service import execute_run, queue_runs
from heptathlon.bench.scenarios import make_scenario
from heptathlon.dashboard import figures as F
from heptathlon.db import dashboard_queries as DQ
from heptathlon.db.models import Measurement, Run
from heptathlon.db.session import session_scope
from tests.dashboard.conftest import copy_sqlite
from tests.text_models import text_submission

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
PAGE = "views/framework_tax.py"
LENGTHS = [4, 16]
SIZES = [1, 2, 4]  # max_batch 4: three sizes, so that every (runtime, length) gets a knee fit


# ---- pure figure builders ------------------------------------------------------------------------
def _cell(rt, s, b, ft=None, reason=None, knee=2.0, knee_note=None, lat=None):
    ok = ft is not None
    return {"runtime": rt, "sequence_length": s, "batch_size": b, "available": ok, "reason": None if ok else reason,
            "ft": ft, "ft_ci_low": None if ft is None else ft - 0.01, "ft_ci_high": None if ft is None else ft + 0.02,
            "ft_n": 7 if ok else None, "ft_method": "profiler:torch" if ok else None,
            "ft_lower_bound": 0.1 if ok else None, "estimated": False,
            "latency_p50_ms": lat if lat is not None else 1.0 + s * b / 10, "lat_ci_low": 0.9, "lat_ci_high": 50.0,
            "lat_n": 7, "relative_to_best": 1.25, "knee": knee, "knee_ci_low": None if knee is None else 1.0,
            "knee_ci_high": None if knee is None else 3.0, "knee_method": "derived:segmented-fit",
            "knee_note": knee_note}


@pytest.fixture
def cells() -> pd.DataFrame:
    rows = []
    for s in (16, 64):
        for b in (1, 2, 4, 8):
            rows.append(_cell("eager", s, b, ft=round(0.5 / b + s / 1000, 4)))
            # onnxruntime: its profiler resolved nothing at s = 64 (as ORT sometimes cannot); 0.0 at
            # (16, 1) is a real measured zero and must stay a value.
            rows.append(_cell("onnxruntime", s, b, ft=(0.0 if b == 1 else 0.2) if s == 16 else None,
                              reason="profiler recorded no kernels inside the call",
                              knee=None if s == 64 else 1.5, knee_note="a knee needs at least 3 batch sizes"))
    return pd.DataFrame(rows, columns=DQ.FT_CELL_COLUMNS)


def test_heatmap_places_each_ft_at_its_batch_and_length(cells):
    fig = F.ft_heatmap(cells, "eager")
    (heat,) = fig.data  # every cell measured: no "not measured" layer
    assert list(heat.x) == ["1", "2", "4", "8"] and list(heat.y) == ["16", "64"]
    z = np.asarray(heat.z, dtype=float)
    assert z.shape == (2, 4)
    assert z[1, 2] == pytest.approx(0.5 / 4 + 64 / 1000)  # row = length 64, column = batch 4
    assert heat.text[0][0] == f"{0.5 + 0.016:.2f}"
    hover = heat.hovertext[1][3]
    assert "95% CI [" in hover and "n = 7" in hover and "batch 8" in hover and "sequence length 64" in hover
    assert "×1.25 the best runtime" in hover and heat.zmin == 0 and heat.zmax == 1


def test_heatmap_colour_scale_ends_at_the_first_ceiling_above_the_largest_ft(cells):
    # BERT-base on one core: FT of 1-12% would be one pale colour on a 0-100% scale.
    small = cells.assign(ft=cells["ft"] / 5)  # eager: at most 0.564 / 5 = 0.113
    (heat,) = F.ft_heatmap(small, "eager").data
    assert (heat.zmin, heat.zmax) == (0, 0.2)
    assert F.ft_heatmap(cells, "onnxruntime").data[0].zmax == 0.2  # measured 0.0 and 0.2, blanks ignored
    assert F.ft_heatmap(cells.assign(ft=0.0), "eager").data[0].zmax == 0.05


def test_heatmap_leaves_unmeasured_cells_blank_with_the_reason(cells):
    fig = F.ft_heatmap(cells, "onnxruntime")
    heat, gaps = fig.data
    z = np.asarray(heat.z, dtype=float)
    assert np.isnan(z[1]).all()  # s = 64: blank, never 0
    assert z[0, 0] == 0.0 and z[0, 1] == pytest.approx(0.2)  # a measured 0 stays a value
    assert all(t == "" for t in heat.text[1]) and heat.hoverongaps is False
    assert list(gaps.x) == ["1", "2", "4", "8"] and list(gaps.y) == ["64"] * 4
    assert set(gaps.text) == {"not measured"}
    assert all("profiler recorded no kernels" in h for h in gaps.hovertext)


def test_curves_per_length_with_error_bars_gaps_and_knees(cells):
    fig = F.ft_curves_by_length(cells, "onnxruntime")
    names = [t.name for t in fig.data]
    assert names[0] == "s = 16" and names[1] == "s = 64 (not measured at b = 1, 2, 4, 8)"
    s16, s64 = fig.data[0], fig.data[1]
    assert list(s16.x) == [1, 2, 4, 8] and list(s16.y) == [0.0, 0.2, 0.2, 0.2]
    assert list(s64.y) == [None] * 4 and not s64.connectgaps  # gaps, never zeros
    assert s16.error_y.array[0] == pytest.approx(0.02) and s16.error_y.arrayminus[1] == pytest.approx(0.01)
    knee16 = next(t for t in fig.data if t.name.startswith("b* = 1.5 (s = 16)"))
    assert list(knee16.x) == [1.5, 1.5] and "95% CI [1.0, 3.0]" in knee16.name
    assert any(t.name == "b* (s = 64): not measured: a knee needs at least 3 batch sizes" for t in fig.data)


def test_a_knee_below_the_second_batch_size_reads_compute_bound_from_the_start(cells):
    one_core = cells.assign(knee=1.1, knee_ci_low=1.0, knee_ci_high=1.3)  # BERT-base on one core: no flat region
    names = [t.name for t in F.ft_curves_by_length(one_core, "eager").data]
    assert "compute-bound from b = 1: b* = 1.1 (s = 16), 95% CI [1.0, 1.3]" in names
    names = [t.name for t in F.ft_curves_by_length(cells, "eager").data]  # CI [1, 3] reaches past b = 2
    assert not any(n.startswith("compute-bound") for n in names)


def test_latency_curves_on_log_axes(cells):
    fig = F.ft_curves_by_length(cells, "eager", y="latency")
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis.type == "log"
    s64 = next(t for t in fig.data if t.name == "s = 64")
    assert list(s64.y) == pytest.approx([1.0 + 64 * b / 10 for b in (1, 2, 4, 8)])
    assert "×1.25 the best runtime" in s64.hovertext[0]
    # the FT view of the same cells is a different figure (a share of wall time on a linear axis)
    ft = F.ft_curves_by_length(cells, "eager")
    assert ft.layout.yaxis.type != "log" and list(ft.data[1].y)[0] == pytest.approx(0.5 + 0.064)


# ---- one real batch_sweep run at two sequence lengths --------------------------------------------
@pytest.fixture(scope="session")
def seq_db(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ft-seq")
    sub = text_submission(root / "tiny-bert-seq", name="tiny-bert-seq")
    url = f"sqlite:///{root / 'seq.db'}"
    sc = make_scenario("batch_sweep", max_batch=SIZES[-1], min_queries=5, min_duration_s=0, max_duration_s=20,
                       warmup_queries=1, repeats=3, runtimes=["onnxruntime"], seq_lengths=LENGTHS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEPTATHLON_HOME", str(root / "home"))
        mp.setenv("HEPTATHLON_CONTENTION_MAX", "1")
        (rid,) = queue_runs(sub, ["cpu-1core"], [sc], db=url, timeout_s=400, energy={"enabled": False})
        out = execute_run(rid, db=url)
    assert out.status == "succeeded", (out.error, out.stderr_tail)
    return {"url": url, "path": root / "seq.db", "run_id": rid, "sweep": out.sweep}


def _stored(url: str, run_id: str, metric: str) -> dict[tuple, Measurement]:
    with session_scope(url) as s:
        rows = s.scalars(select(Measurement).where(Measurement.run_id == run_id, Measurement.metric == metric))
        return {(m.params["runtime"], m.params["sequence_length"], m.params.get("batch_size")):
                (m.value, m.ci_low, m.ci_high, m.n, m.note) for m in rows if "sequence_length" in (m.params or {})}


def test_loader_reads_every_cell_of_the_real_run(seq_db):
    with session_scope(seq_db["url"]) as s:
        runs = DQ.seq_sweep_runs(s, submission="tiny-bert-seq")
        grid = DQ.ft_cells(s, seq_db["run_id"])
    assert list(runs["run_id"]) == [seq_db["run_id"]] and runs.iloc[0]["lengths"] == LENGTHS
    assert grid["lengths"] == LENGTHS and grid["batch_sizes"] == SIZES
    assert grid["runtimes"] == ["eager", "onnxruntime"] and grid["primary_runtime"] == "eager"
    assert grid["own_sequence_length"] == seq_db["sweep"]["sequence_length"] == LENGTHS[0]
    cells = grid["cells"]
    assert len(cells) == 2 * len(LENGTHS) * len(SIZES)
    assert not cells.duplicated(["runtime", "sequence_length", "batch_size"]).any()
    ft = _stored(seq_db["url"], seq_db["run_id"], "framework_tax")
    lat = _stored(seq_db["url"], seq_db["run_id"], "latency_p50_ms")
    knees = _stored(seq_db["url"], seq_db["run_id"], "batch_knee")
    rel = seq_db["sweep"]["by_sequence_length"]
    for r in cells.to_dict("records"):
        key = (r["runtime"], r["sequence_length"], r["batch_size"])
        v, lo, hi, n, note = ft[key]
        if v is None:  # the profiler could not decompose this call: no value, its reason
            assert not r["available"] and pd.isna(r["ft"]) and r["reason"] == note
        else:
            assert r["available"] and r["ft"] == v and (r["ft_ci_low"], r["ft_ci_high"], r["ft_n"]) == (lo, hi, n)
            assert lo <= v <= hi
        assert r["latency_p50_ms"] == lat[key][0] and r["lat_ci_low"] <= r["latency_p50_ms"] <= r["lat_ci_high"]
        assert r["relative_to_best"] == pytest.approx(
            rel[str(r["sequence_length"])]["relative_to_best"][r["runtime"]][str(r["batch_size"])])
        kv = knees[(r["runtime"], r["sequence_length"], None)]
        assert r["knee"] == kv[0] and r["knee_ci_low"] == kv[1] and r["knee_ci_high"] == kv[2]
    assert cells["relative_to_best"].min() == pytest.approx(1.0)  # some runtime is the best at each cell
    assert cells["available"].any()  # eager's torch.profiler decomposes a BERT on CPU


def test_loader_marks_unmeasured_cells_and_keeps_the_length_axis_off_the_plain_sweep(seq_db, tmp_path):
    url = copy_sqlite(seq_db["path"], tmp_path / "seq.db")
    why = "profiler recorded no kernels inside the call"
    with session_scope(url) as s:  # eager at s = 16 as a profiler that resolves nothing stores it
        for m in s.scalars(select(Measurement).where(Measurement.run_id == seq_db["run_id"],
                                                     Measurement.metric == "framework_tax")):
            p = m.params or {}
            if p.get("runtime") == "eager" and p.get("sequence_length") == 16 and "batch_size" in p:
                m.value, m.ci_low, m.ci_high, m.method, m.note = None, None, None, "unavailable", why
        run = s.get(Run, seq_db["run_id"])  # and a runtime that could not be derived at length 4
        sweep = json.loads(json.dumps(run.extra["sweep"]))
        sweep["by_sequence_length"]["4"]["runtimes"]["torchscript"] = {"available": False, "reason": "trace failed"}
        sweep["by_sequence_length"]["4"]["not_available"]["torchscript"] = "trace failed"
        run.extra = {**run.extra, "sweep": sweep}
    with session_scope(url) as s:
        grid = DQ.ft_cells(s, seq_db["run_id"])
        points, knees = DQ.sweep_points(s, submission="tiny-bert-seq")
        assert DQ.ft_cells(s, "no-such-run") is None
    cells = grid["cells"].set_index(["runtime", "sequence_length", "batch_size"])
    gone = cells.loc["eager"].loc[16]
    assert (~gone["available"]).all() and gone["ft"].isna().all() and set(gone["reason"]) == {why}
    ts = cells.loc["torchscript"]
    assert set(ts.loc[4]["reason"]) == {"trace failed"} and set(ts.loc[16]["reason"]) == {"not swept at this length"}
    assert ts["ft"].isna().all() and ts["knee"].isna().all()
    fig = F.ft_heatmap(grid["cells"], "eager")
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.isnan(z[1]).all()  # blank, never 0
    assert np.allclose(z[0], cells.loc["eager"].loc[4]["ft"].to_numpy(dtype=float), equal_nan=True)
    gaps = fig.data[1]
    assert [(x, y) for x, y in zip(gaps.x, gaps.y) if y == "16"] == [(str(b), "16") for b in SIZES]
    assert all(why in h for h, y in zip(gaps.hovertext, gaps.y) if y == "16")
    # sweep_points (the page's upper charts) holds the run's own sweep only: one row per
    # (runtime, batch size, metric), the values stored without a sequence_length.
    assert not points.duplicated(["runtime", "batch_size", "metric"]).any()
    own = {(m.params["runtime"], m.params["batch_size"]): m.value for m in _plain_rows(url, seq_db["run_id"])}
    lat = points[points["metric"] == "latency_p50_ms"]
    assert {(r, int(b)): v for r, b, v in zip(lat["runtime"], lat["batch_size"], lat["value"])} == own
    # the run's own knee per runtime, once as a row and once from run.extra; none of the per-length ones
    assert sorted((k["runtime"], k["source"]) for k in knees) == [
        ("eager", "measurement"), ("eager", "run.extra"), ("onnxruntime", "measurement"), ("onnxruntime", "run.extra")]


def _plain_rows(url: str, run_id: str) -> list[Measurement]:
    with session_scope(url) as s:
        rows = list(s.scalars(select(Measurement).where(Measurement.run_id == run_id,
                                                        Measurement.metric == "latency_p50_ms")))
        return [m for m in rows if "batch_size" in (m.params or {}) and "sequence_length" not in m.params]


# ---- the page ------------------------------------------------------------------------------------
def _open(url: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("HEPTATHLON_DB", url)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_page_draws_the_heatmap_and_curves_of_the_run(seq_db, monkeypatch):
    at = _open(seq_db["url"], monkeypatch)
    assert at.selectbox(key="ft_submission").value == "tiny-bert-seq"
    assert at.selectbox(key="ft_seq_runtime").options == ["eager", "onnxruntime"]
    assert at.selectbox(key="ft_seq_runtime").value == "eager"  # the submitted runtime first
    figs = _charts(at)
    assert len(figs) == 4  # latency sweep, FT bars, then the heatmap and the curves
    rid = seq_db["run_id"][:8]  # one run: the upper charts say which, and warn of no mix
    assert f"From eager: run {rid}; onnxruntime: run {rid}." in [c.value for c in at.caption]
    assert not at.warning
    heat = figs[2]["data"][0]
    assert heat["type"] == "heatmap" and heat["x"] == ["1", "2", "4"] and heat["y"] == ["4", "16"]
    with session_scope(seq_db["url"]) as s:
        cells = DQ.ft_cells(s, seq_db["run_id"])["cells"]
    eager = cells[cells["runtime"] == "eager"].set_index(["sequence_length", "batch_size"])
    for i, length in enumerate(LENGTHS):
        for j, b in enumerate(SIZES):
            got, want = heat["z"][i][j], eager.loc[(length, b), "ft"]
            assert (got is None and pd.isna(want)) or got == pytest.approx(want)
    # Cells the run could not decompose (on this machine: ONNX Runtime's profiler on a tiny BERT,
    # whose node times exceed the whole call) are blank and labelled with their stored reason.
    onnx = cells[cells["runtime"] == "onnxruntime"]
    at.selectbox(key="ft_seq_runtime").set_value("onnxruntime").run()
    oheat = _charts(at)[2]
    gaps = oheat["data"][1] if len(oheat["data"]) > 1 else {"x": [], "y": [], "hovertext": []}
    labelled = {(y, x): h for x, y, h in zip(gaps["x"], gaps["y"], gaps["hovertext"])}
    for r in onnx.to_dict("records"):
        i, j = LENGTHS.index(r["sequence_length"]), SIZES.index(r["batch_size"])
        if r["available"]:
            assert oheat["data"][0]["z"][i][j] == pytest.approx(r["ft"])
        else:
            assert oheat["data"][0]["z"][i][j] is None and r["reason"] in labelled[(str(r["sequence_length"]),
                                                                                      str(r["batch_size"]))]
    at.selectbox(key="ft_seq_runtime").set_value("eager").run()
    curves = figs[3]["data"]
    assert [t["name"].split(" (")[0] for t in curves[:2]] == ["s = 4", "s = 16"]
    assert sum(t["name"].startswith(("b* = ", "b* (", "compute-bound from b = 1: b* = ")) for t in curves) == len(LENGTHS)
    (knee_table,) = [d.value for d in at.dataframe if "sequence length" in d.value.columns]
    assert list(knee_table["sequence length"]) == LENGTHS
    for length, shown in zip(LENGTHS, knee_table["knee b*"]):
        k = eager.loc[(length, 1), "knee"]
        assert shown == ("—" if pd.isna(k) else round(float(k), 1))
    at.selectbox(key="ft_seq_runtime").set_value("onnxruntime").run()
    at.selectbox(key="ft_seq_y").set_value("latency").run()
    assert not at.exception
    figs = _charts(at)
    assert "onnxruntime" in figs[2]["layout"]["title"]["text"] and figs[3]["layout"]["yaxis"]["type"] == "log"
    assert any("Framework tax over batch size × sequence length" in str(h.value) for h in at.subheader)


def test_page_without_a_length_axis_is_unchanged(seq_db, monkeypatch, tmp_path):
    """The same run with its length axis taken away: the upper charts only, no heatmap, no selector."""
    url = copy_sqlite(seq_db["path"], tmp_path / "plain.db")
    with session_scope(url) as s:
        run = s.get(Run, seq_db["run_id"])
        run.extra = {**run.extra, "sweep": {k: v for k, v in run.extra["sweep"].items() if k != "by_sequence_length"}}
        for m in s.scalars(select(Measurement).where(Measurement.run_id == run.id)):
            if "sequence_length" in (m.params or {}):
                s.delete(m)
    with session_scope(url) as s:
        assert DQ.seq_sweep_runs(s, submission="tiny-bert-seq").empty and DQ.ft_cells(s, seq_db["run_id"]) is None
    at = _open(url, monkeypatch)
    figs = _charts(at)
    assert len(figs) == 2 and [f["data"][0]["type"] for f in figs] == ["scatter", "bar"]
    assert "ft_seq_runtime" not in [sb.key for sb in at.selectbox]
    assert not any("sequence length" in str(h.value) for h in at.subheader)


def test_cli_prints_one_batch_by_length_grid_per_runtime_from_the_real_run(seq_db):
    from heptathlon.bench.sweep_stats import sweep_tables

    sweep = seq_db["sweep"]
    tables = {title: (cols, rows) for title, cols, rows in sweep_tables(sweep)}
    assert any(t.endswith(f"at sequence length {LENGTHS[0]}") for t in tables)  # the run's own sweep says which s
    grids = {t.split(":")[0]: v for t, v in tables.items() if "batch x sequence length" in t}
    assert set(grids) == {"eager", "onnxruntime"}
    for rt, (cols, rows) in grids.items():
        assert cols == ["batch"] + [f"s = {s}" for s in LENGTHS]
        assert [r[0] for r in rows] == [str(b) for b in SIZES] + ["knee b*"]
        for row in rows[:-1]:
            b = row[0]
            for s, cell in zip(LENGTHS, row[1:]):
                sub = sweep["by_sequence_length"][str(s)]
                lat = sub["runtimes"][rt]["median_latency_ms"][b]
                assert f"{lat:.4g} ms" in cell
                assert f"({sub['relative_to_best'][rt][b]:.2f}x)" in cell
                tax = (sub["runtimes"][rt].get("framework_tax") or {}).get(b)
                assert cell.startswith("—" if tax is None else f"{tax:.3f} · ")


def test_runs_show_prints_the_sweep_tables_of_a_stored_run(seq_db):
    from typer.testing import CliRunner

    from heptathlon.bench.cli import app

    res = CliRunner().invoke(app, ["runs", "show", seq_db["run_id"][:8], "--db", seq_db["url"]])
    assert res.exit_code == 0, res.output
    text = res.output
    assert text.index("stderr_tail") < text.index("batch sweep: latency p50 ms")
    for rt in ("eager", "onnxruntime"):
        assert f"{rt}: FT(b, s)" in text
    assert all(f"s = {s}" in text for s in LENGTHS)
