"""Every page of the dashboard, driven by Streamlit's AppTest against real SQLite databases:
empty, filled by real runs (most events not measured yet), and augmented with the rows the
other events will write."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from heptathlon.db.session import session_scope
from tests.dashboard.conftest import copy_sqlite

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
PAGES = ["views/leaderboard.py", "views/tradeoffs.py", "views/hardware.py", "views/framework_tax.py",
         "views/fairness.py", "views/run_detail.py", "views/history.py"]
TITLES = ["Leaderboard", "Trade-offs", "Hardware comparison", "Framework tax", "Fairness", "Run detail", "History"]


def open_page(url: str, monkeypatch, page: str, query: dict | None = None) -> AppTest:
    monkeypatch.setenv("HEPTATHLON_DB", url)
    at = AppTest.from_file(str(APP), default_timeout=60)
    if query:
        at.query_params.update(query)
    at.run()
    if page != PAGES[0]:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """All text the page shows (markdown, captions, alerts, html, titles), joined."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "html", "code"):
        parts += [str(e.value) for e in at.get(kind)]
    return "\n".join(parts)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def leaderboard_html(at: AppTest) -> str:
    return next(h.value for h in at.get("html") if "hep-leaderboard" in h.value)


class _Table(HTMLParser):
    """Header names and, per body row, {column: (text, class, title)} of the leaderboard table."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.rows: list[list[tuple[str, str, str]]] = []
        self._cell: list | None = None
        self._in_head = False
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "thead":
            self._in_head = True
        elif tag == "tr" and not self._in_head:
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = ["", a.get("class") or "", a.get("title") or ""]
            self._depth = 0
        elif tag == "div" and self._cell is not None:
            self._depth += 1  # unit / method / CI lines under the main text

    def handle_endtag(self, tag):
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            cell = (self._cell[0].strip(), self._cell[1], self._cell[2])
            (self.headers.append(cell[0]) if self._in_head else self.rows[-1].append(cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None and self._depth == 0:
            self._cell[0] += data


def leaderboard(at: AppTest) -> dict[str, dict[str, tuple[str, str, str]]]:
    """submission name -> column -> (text, class, title)."""
    p = _Table()
    p.feed(leaderboard_html(at))
    out = {}
    for row in p.rows:
        cells = dict(zip(p.headers, row))
        out[cells["submission"][0].rsplit(" v", 1)[0]] = cells
    return out


# ---- empty database ------------------------------------------------------------------------------
@pytest.mark.parametrize("page,title", list(zip(PAGES, TITLES)))
def test_empty_database_shows_how_to_submit(empty_db, monkeypatch, page, title):
    at = open_page(empty_db, monkeypatch, page)
    assert at.title[0].value == title
    shown = texts(at)
    assert "No results yet" in shown and "heptathlon run submissions/arrests-mlp-onnx" in shown
    assert not charts(at) and not at.get("html")


@pytest.mark.parametrize("page", PAGES)
def test_only_failed_runs_is_not_measured_everywhere(failed_only_db, monkeypatch, page):
    at = open_page(failed_only_db, monkeypatch, page)
    shown = texts(at)
    if page.endswith("run_detail.py"):
        assert "no-such-folder/submission.yaml: file not found" in shown and "never validated" in shown
    else:
        assert "No succeeded runs yet" in shown and "not measured" in shown
    assert not charts(at)


# ---- real runs --------------------------------------------------------------------------------------
def test_leaderboard_on_real_runs(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[0])
    board = leaderboard(at)
    # One task per group; the submission that never ran is on the board with its failure.
    assert set(board) == {"arrests-mlp-onnx", "arrests-mlp-command", "broken-model"}
    onnx, cmd, broken = board["arrests-mlp-onnx"], board["arrests-mlp-command"], board["broken-model"]
    assert broken["status"][0].startswith("failed") and "command exited with code 1" in broken["status"][0]
    assert broken["#"][0] == "—" and broken["score"][0] == "—"
    assert onnx["status"][0] == "ok"
    # The headline metrics are columns (the column chooser offers the rest), CI, n and method on hover.
    assert {"latency_p50_ms", "throughput_sps", "accuracy", "peak_rss_mb", "load_s", "params",
            "energy_per_sample_j"} <= set(onnx)
    text, _, title = onnx["latency_p50_ms"]
    number, unit = text.split()
    assert float(number) > 0 and unit in ("ns", "µs", "ms", "s")  # an SI prefix, never 0.007629 ms
    assert "95% CI [" in title and "method: timer:perf_counter_ns" in title
    # Not measured: the command submission's parameter count, and energy (meters off) everywhere.
    assert cmd["params"][0] == "not measured" and "method: unavailable" in cmd["params"][2]
    assert onnx["energy_per_sample_j"][0] == "not measured"
    # Ranks and scores: energy was weighted but nobody measured it, so it is dropped and named.
    assert {onnx["#"][0], cmd["#"][0]} <= {"1", "2", "1–2"}
    assert onnx["score"][0] != "—" and cmd["score"][0] != "—"
    assert "energy_per_sample_j" in texts(at) and "left out of the score" in texts(at)
    assert {"accuracy", "latency_p50_ms", "throughput_sps", "peak_rss_mb", "energy_per_sample_j", "framework_tax",
            "hw_disparity"} <= {s.label for s in at.slider}


def test_leaderboard_filters_switch_group(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[0])
    at.selectbox(key="lb_task").set_value("digits").run()
    assert not at.exception
    assert set(leaderboard(at)) == {"digits-cnn-onnx"}
    assert at.selectbox(key="lb_profile").options == ["cpu-1core", "cpu-2core"]


def test_leaderboard_weights_change_the_score(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[0])
    for s in at.slider:
        s.set_value(0.0)
    at.slider(key="lb_w_load_s").set_value(1.0).run()
    scores = sorted(float(row["score"][0]) for row in leaderboard(at).values() if row["status"][0] == "ok")
    w = dict(p.split(":") for p in at.query_params["w"].split(","))  # the weights are in the URL
    assert w["load_s"] == "1" and w["accuracy"] == "0"
    # One metric, two entries: the better one scores 100, the other 0 unless their CIs overlap
    # (load_s has no CI, so they do not).
    assert scores == [0.0, 100.0]


def test_tradeoffs_on_real_runs(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[1])
    (fig,) = charts(at)
    names = [t.get("name") for t in fig["data"]]
    assert "cpu-1core" in names and "cpu-2core" in names
    points = sum(len(t["x"]) for t in fig["data"] if t.get("mode") == "markers+text")
    assert points == 4  # two arrests submissions x two profiles
    assert at.dataframe, "the frontier table is shown"
    at.selectbox(key="to_x").set_value("energy_per_sample_j").run()  # meters were off
    assert not at.exception and "not measured yet" in texts(at) and not charts(at)


def test_hardware_comparison_on_real_runs(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[2])
    (fig,) = charts(at)
    bars = [t for t in fig["data"] if t["type"] == "bar"]
    assert {tuple(b["x"]) for b in bars} == {("cpu-1core", "cpu-2core")}
    assert all("arrayminus" in b["error_y"] for b in bars)  # CI error bars
    assert any(a.get("text") == "not measured" for a in fig["layout"]["annotations"])  # energy panel
    table = at.dataframe[0].value
    assert list(table.columns) == ["cpu-1core", "cpu-2core"]


def test_framework_tax_not_measured_yet(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[3])
    assert "not measured yet" in texts(at) and not charts(at)


def test_fairness_on_real_runs(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[4])
    figs = charts(at)
    heat = figs[0]["data"][0]
    assert heat["type"] == "heatmap" and sorted(heat["x"]) == ["cpu-1core", "cpu-2core"]
    assert "not measured yet" in texts(at)  # no delta_accuracy / flip_rate rows from real runs
    assert "fairness_gap" in at.dataframe[-1].value.columns


def test_run_detail_of_a_succeeded_run(filled_db, monkeypatch):
    rid = filled_db["outcomes"][0].run_id
    at = open_page(filled_db["url"], monkeypatch, PAGES[5], query={"run": rid})
    shown = texts(at)
    assert rid in shown and "Artifact sha256" in shown
    (hist,) = charts(at)
    bars = hist["data"][0]
    assert bars["type"] == "bar" and sum(bars["y"]) == filled_db["outcomes"][0].metrics["latency_p50_ms"].n
    controls = at.dataframe[1].value.set_index("control")  # applied controls and how
    assert "sched_setaffinity" in controls.loc["cpu.cores", "mechanism"]
    assert bool(controls.loc["cpu.cores", "took effect"]) is True


def test_run_detail_of_the_failed_run_shows_stderr(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[5], query={"run": filled_db["failed_id"]})
    assert at.error and "Failed" in at.error[0].value
    assert "layer 2 has shape (32, 3)" in texts(at)
    assert "Raw latency samples: not measured" in texts(at)


def test_history_on_real_runs(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[6])
    at.selectbox(key="hi_submission").set_value("arrests-mlp-onnx").run()
    (fig,) = charts(at)
    assert len(fig["data"][0]["x"]) == 1
    assert "No alerts for this series yet" in texts(at)
    at.selectbox(key="hi_metric").set_value("energy_per_sample_j").run()
    assert not at.exception and "not measured yet" in texts(at)


# ---- augmented: the other events' rows ---------------------------------------------------------
def test_leaderboard_marks_estimates_and_never_ranks_them(augmented_db, monkeypatch):
    at = open_page(augmented_db["url"], monkeypatch, PAGES[0])
    board = leaderboard(at)
    text, cls, title = board["arrests-mlp-command"]["energy_per_sample_j"]
    assert cls == "est" and text.startswith("≈") and "estimate:tdp" in title
    assert board["arrests-mlp-onnx"]["energy_per_sample_j"][1] == ""  # measured: no mark
    at.selectbox(key="lb_rank_by").set_value("energy_per_sample_j").run()
    board = leaderboard(at)
    assert board["arrests-mlp-onnx"]["#"][0] == "1" and board["arrests-mlp-command"]["#"][0] == "—"
    # Energy is measured for one entry, so the estimate's owner gets no composite score.
    assert board["arrests-mlp-command"]["score"][0] == "—" and "energy_per_sample_j" in board[
        "arrests-mlp-command"]["score"][2]
    assert "No score" in texts(at)
    assert "made_up_metric" not in board["arrests-mlp-onnx"]  # not a default column: offered in the chooser
    at.multiselect(key="lb_cols").select("made_up_metric").run()
    board = leaderboard(at)
    assert board["arrests-mlp-onnx"]["made_up_metric"][0] == "3 widgets"  # unknown to the registry: shown, unranked
    assert "made_up_metric" not in [o.split(" (")[0] for o in at.selectbox(key="lb_rank_by").options]


def test_framework_tax_with_sweeps(augmented_db, monkeypatch):
    at = open_page(augmented_db["url"], monkeypatch, PAGES[3])
    at.selectbox(key="ft_submission").set_value("arrests-mlp-onnx").run()
    sweep, tax = charts(at)
    names = [t.get("name") for t in sweep["data"] if t.get("name")]
    assert names[:3] == ["onnxruntime", "torch-eager", "torchscript"]
    assert names[3:] == ["b* = 16 (onnxruntime)", "b* = 32 (torch-eager)", "b* = 32 (torchscript, fitted here)"]
    knees = {r["runtime"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert knees["onnxruntime"]["knee b*"] == 16.0 and knees["onnxruntime"]["source"] == "measurement"
    assert knees["torch-eager"]["source"] == "run.extra" and knees["torchscript"]["source"] == "dashboard"
    assert 24 <= knees["torchscript"]["knee b*"] <= 40  # fitted from the stored medians (true knee 32)
    assert len(tax["data"]) == 3 and all(len(t["x"]) == 9 for t in tax["data"])


def test_fairness_with_deltas_and_flip_rates(augmented_db, monkeypatch):
    at = open_page(augmented_db["url"], monkeypatch, PAGES[4])
    at.selectbox(key="fa_submission").set_value("arrests-mlp-onnx").run()
    heat, delta, flips = charts(at)
    assert delta["data"][0]["name"] == "cpu-2core" and delta["data"][0]["error_y"]["array"][0] > 0
    assert flips["data"][0]["y"] == pytest.approx([0.031, 0.012])
    assert "not measured yet" not in texts(at)
    gaps = at.dataframe[-1].value.set_index("profile")
    assert gaps.loc["cpu-2core", "hw_disparity"].startswith("0.016")


def test_history_marks_failures_and_alerts(augmented_db, monkeypatch):
    at = open_page(augmented_db["url"], monkeypatch, PAGES[6])
    at.selectbox(key="hi_submission").set_value("arrests-mlp-onnx").run()
    (fig,) = charts(at)
    names = [t["name"] for t in fig["data"]]
    assert names == ["latency_p50_ms", "failed run", "alert: regression"]
    assert len(fig["data"][0]["x"]) == 5  # four earlier nights and the real run; the failed night apart
    table = at.dataframe[0].value
    assert "regression" in str(table["kind"].tolist())
    # The series by name, not its hash; p as people read it; the effect with its values in ms.
    assert table["series"].tolist() == ["arrests-mlp-onnx/cpu-1core/single_stream"]
    assert table["p"].tolist() == ["p = 0.0004"] and table["effect"].tolist()[0].startswith("+25.0%")


# ---- last night ---------------------------------------------------------------------------------------
LAST_NIGHT, COMPARE = "views/last_night.py", "views/compare.py"


def test_last_night_is_the_landing_page_after_a_recent_nightly(nightly_db, filled_db, monkeypatch):
    at = open_page(nightly_db["url"], monkeypatch, PAGES[0])  # the app's default page
    assert at.title[0].value == "Last night"
    shown = texts(at).replace("\\_", "_")  # Markdown-escaped names
    # Every verdict but pass is listed by default; the regression with its effect in ms and its CI.
    assert "regressed (1)" in shown and "broke (1)" in shown and "skipped (1)" in shown and "pass" not in [
        s.value for s in at.subheader]
    assert "arrests-mlp-onnx · cpu-1core · single_stream" in shown
    effect = next(m.value for m in at.markdown if "regression** of `latency_p50_ms`" in m.value)
    assert "+24" in effect and "µs" in effect and "[" in effect and "(+23.8%)" in effect  # unit, CI, relative
    assert "p < 0.0001" in shown and "000" not in shown.split("p < 0.0001")[0][-5:]
    assert "Mann-Whitney U" in shown and "software.onnxruntime: 1.17.0 -> 1.18.0" in shown
    assert "worker crashed: out of memory" in shown
    assert any("history?" in m.value and "submission=arrests-mlp-onnx" in m.value and "metric=latency_p50_ms"
               in m.value for m in at.markdown)
    # A link with settings opens what it names, not the landing view.
    linked = open_page(nightly_db["url"], monkeypatch, PAGES[0], query={"profile": "cpu-2core"})
    assert linked.title[0].value == "Leaderboard"
    # The filled database alone has no nightly: the leaderboard stays the landing page.
    plain = open_page(filled_db["url"], monkeypatch, PAGES[0])
    assert plain.title[0].value == "Leaderboard"


def test_last_night_lists_passing_series_on_request(nightly_db, monkeypatch):
    monkeypatch.setenv("HEPTATHLON_DB", nightly_db["url"])
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["profile"] = "cpu-1core"  # a link with settings: no landing redirect
    at.run()
    at.switch_page(LAST_NIGHT)  # the page's first render in this session: its settings come from the URL
    at.query_params["verdicts"] = "pass"
    at.run()
    assert not at.exception and at.title[0].value == "Last night", at.title
    assert [s.value for s in at.subheader] == [":material/check_circle: pass (1)"]
    assert "arrests-mlp-command · cpu-1core" in texts(at).replace("\\_", "_")


def test_acknowledge_writes_what_the_cli_writes(nightly_db, monkeypatch, tmp_path):
    from heptathlon.bench.app.nightly import list_alerts, set_alert_status
    from heptathlon.db.models import Alert as AlertRow

    at = open_page(nightly_db["url"], monkeypatch, PAGES[0])
    at.button(key=f"ln_ack_{nightly_db['alert_id']}").click().run()
    assert not at.exception
    assert f"alert #{nightly_db['alert_id']} · **acknowledged**" in texts(at)
    assert not [b for b in at.button if b.key == f"ln_ack_{nightly_db['alert_id']}"]  # no action left
    # The CLI's function on a second copy gives the same row (status, history entry shape).
    twin = copy_sqlite(nightly_db["path"], tmp_path / "twin.db")
    with session_scope(twin) as s:
        row = s.get(AlertRow, nightly_db["alert_id"])
        row.status, row.detail = "open", {k: v for k, v in row.detail.items() if k != "history"}
    set_alert_status(twin, [nightly_db["alert_id"]], "acknowledged")
    mine = next(a for a in list_alerts(nightly_db["url"], include_closed=True) if a["id"] == nightly_db["alert_id"])
    cli = next(a for a in list_alerts(twin, include_closed=True) if a["id"] == nightly_db["alert_id"])
    strip = [{k: v for k, v in h.items() if k != "at"} for h in mine["history"]]
    assert mine["status"] == cli["status"] == "acknowledged"
    assert strip == [{k: v for k, v in h.items() if k != "at"} for h in cli["history"]]
    # "Expected" on a broke alert is refused (a failed run cannot start a baseline): the button is disabled.
    assert at.button(key=f"ln_exp_{nightly_db['broke_alert_id']}").disabled


def test_expected_marks_the_alert_expected(nightly_db, monkeypatch):
    from heptathlon.bench.app.nightly import list_alerts

    at = open_page(nightly_db["url"], monkeypatch, PAGES[0])
    at.button(key=f"ln_exp_{nightly_db['alert_id']}").click().run()
    row = next(a for a in list_alerts(nightly_db["url"], include_closed=True) if a["id"] == nightly_db["alert_id"])
    assert row["status"] == "expected" and row["history"][-1]["from"] == "open"


# ---- compare -------------------------------------------------------------------------------------------
def test_compare_two_runs(filled_db, monkeypatch):
    one = filled_db["outcomes"][0].run_id  # arrests-mlp-onnx on cpu-1core
    two = filled_db["outcomes"][1].run_id  # arrests-mlp-onnx on cpu-2core
    at = open_page(filled_db["url"], monkeypatch, PAGES[0])
    at.switch_page(COMPARE)
    at.query_params.update({"a": one, "b": two})
    at.run()
    assert not at.exception and at.title[0].value == "Compare runs"
    metrics = at.dataframe[0].value.set_index("metric")
    row = metrics.loc["latency_p50_ms"]
    assert "[" in row["A"] and "[" in row["B"] and "[" in row["B − A"]  # both CIs and the difference's
    assert row["verdict"] in ("B better", "B worse", "inside the noise")
    context = at.dataframe[1].value
    assert {"profile"} <= set(context["area"]) and "cpu-2core" in set(context["B"])
    (fig,) = charts(at)
    assert [t["name"] for t in fig["data"] if t["type"] == "bar"] == [f"A · {one[:8]}", f"B · {two[:8]}"]
    assert at.query_params["a"] == one and at.query_params["b"] == two


@pytest.mark.parametrize("page,title", [(LAST_NIGHT, "Last night"), (COMPARE, "Compare runs")])
def test_new_pages_on_empty_and_failed_only_databases(empty_db, failed_only_db, monkeypatch, page, title):
    at = open_page(empty_db, monkeypatch, PAGES[0])
    at.switch_page(page).run()
    assert at.title[0].value == title and "No results yet" in texts(at) and not charts(at)
    at = open_page(failed_only_db, monkeypatch, PAGES[0])
    at.switch_page(page).run()
    assert not at.exception
    assert ("No nightly run" if page == LAST_NIGHT else "needs two succeeded runs") in texts(at)
