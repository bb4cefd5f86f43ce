"""Selectors and the URL: stale-selector regressions, and every view restored from its URL.

The selector helpers are driven in small scripts (AppTest.from_function) where the options of a
box depend on another box, and on the real pages against the filled database.
"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.dashboard.test_pages import PAGES, charts, leaderboard, open_page, texts


def _cascade():
    """Two boxes: the second's options depend on the first (the Submission box after a Task box)."""
    import streamlit as st

    from heptathlon.dashboard import common as C

    subs = {"arrests": ["arrests-a", "arrests-b"], "digits": ["digits-cnn"]}
    task = C.pick("Task", list(subs), "t_task", param="task")
    sub = C.pick("Submission", subs[task], "t_sub", param="submission")
    st.markdown(f"charts show: {sub}")


def _profiles():
    """A profile multiselect whose options depend on the group (the Trade-offs Profiles box)."""
    import streamlit as st

    from heptathlon.dashboard import common as C

    groups = {"one": ["cpu-1core"], "four": ["cpu-1core", "cpu-2core", "cpu-halfcore", "cuda-fp16"]}
    g = C.pick("Group", list(groups), "t_group", param="group")
    chosen = C.pick_many("Profiles", groups[g], "t_profiles", param="profiles")
    st.markdown(f"plotted: {','.join(chosen)}")


def test_a_box_whose_options_change_never_shows_a_stale_value():
    at = AppTest.from_function(_cascade).run()
    at.selectbox(key="t_sub").set_value("arrests-b").run()
    at.selectbox(key="t_task").set_value("digits").run()
    box = at.selectbox(key="t_sub")
    # The box, the state, the page and the URL all name the same submission.
    assert box.value == "digits-cnn" and box.options == ["digits-cnn"]
    assert at.session_state["t_sub"] == "digits-cnn" and at.markdown[0].value == "charts show: digits-cnn"
    assert at.query_params["submission"] == "digits-cnn" and at.query_params["task"] == "digits"
    at.selectbox(key="t_task").set_value("arrests").run()
    assert at.selectbox(key="t_sub").value == "arrests-a" == at.query_params["submission"]
    assert not at.exception and not at.warning  # no "default value and Session State" warning


def test_a_fresh_load_and_a_switched_view_show_the_same_profiles():
    fresh = AppTest.from_function(_profiles)
    fresh.query_params["group"] = "four"
    fresh.run()
    switched = AppTest.from_function(_profiles).run()  # starts on "one"
    assert switched.multiselect(key="t_profiles").value == ["cpu-1core"]
    switched.selectbox(key="t_group").set_value("four").run()
    assert switched.multiselect(key="t_profiles").value == fresh.multiselect(key="t_profiles").value
    assert len(switched.multiselect(key="t_profiles").value) == 4
    assert switched.markdown[0].value == fresh.markdown[0].value
    # A choice within one group is kept, and written to the URL.
    switched.multiselect(key="t_profiles").unselect("cuda-fp16").run()
    assert switched.query_params["profiles"] == "cpu-1core,cpu-2core,cpu-halfcore"
    switched.selectbox(key="t_group").set_value("four").run()
    assert "cuda-fp16" not in switched.multiselect(key="t_profiles").value


def test_the_url_restores_the_selection_and_ignores_unknown_values():
    at = AppTest.from_function(_cascade)
    at.query_params.update({"task": "arrests", "submission": "arrests-b"})
    at.run()
    assert at.selectbox(key="t_sub").value == "arrests-b"
    bad = AppTest.from_function(_cascade)
    bad.query_params.update({"task": "no-such-task", "submission": "nope"})
    bad.run()
    assert bad.selectbox(key="t_task").value == "arrests" and bad.query_params["task"] == "arrests"


# ---- the real pages ----------------------------------------------------------------------------
def test_hardware_submission_box_follows_the_task(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[2])
    at.selectbox(key="hw_submission").set_value("arrests-mlp-onnx").run()
    at.selectbox(key="hw_task").set_value("digits").run()
    assert not at.exception
    assert at.selectbox(key="hw_submission").value == "digits-cnn-onnx" == at.query_params["submission"]
    assert at.query_params["task"] == "digits"


def test_fairness_submission_box_follows_the_task(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[4])
    at.selectbox(key="fa_submission").set_value("arrests-mlp-onnx").run()
    at.selectbox(key="fa_task").set_value("digits").run()
    assert not at.exception
    assert at.selectbox(key="fa_submission").value == "digits-cnn-onnx" == at.query_params["submission"]
    assert "digits-cnn-onnx" in texts(at) or charts(at)


def test_leaderboard_view_round_trips_through_the_url(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[0])
    assert at.selectbox(key="lb_scenario").value == "single_stream"
    at.selectbox(key="lb_rank_by").set_value("throughput_sps").run()
    at.text_input(key="lb_search").input("onnx").run()
    at.toggle(key="lb_inline_ci").set_value(True).run()
    at.selectbox(key="lb_profile").set_value("cpu-2core").run()
    url = dict(at.query_params)
    assert url["rank"] == "throughput_sps" and url["q"] == "onnx" and url["ci"] == "1"
    assert url["profile"] == "cpu-2core" and url["task"] == "arrests" and url["scenario"] == "single_stream"
    board = leaderboard(at)
    assert set(board) == {"arrests-mlp-onnx"}  # the search
    # A new session opened on that URL shows the same view.
    again = open_page(filled_db["url"], monkeypatch, PAGES[0], query=url)
    assert again.selectbox(key="lb_rank_by").value == "throughput_sps"
    assert again.selectbox(key="lb_profile").value == "cpu-2core"
    assert again.text_input(key="lb_search").value == "onnx" and again.toggle(key="lb_inline_ci").value is True
    assert leaderboard(again) == board and dict(again.query_params) == url


def test_tradeoffs_axis_and_profiles_come_from_the_url(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[1], query={"x": "peak_rss_mb", "profiles": "cpu-2core"})
    assert at.selectbox(key="to_x").value == "peak_rss_mb"
    assert at.multiselect(key="to_profiles").value == ["cpu-2core"]
    (fig,) = charts(at)
    assert {t["name"] for t in fig["data"] if t.get("mode") == "markers+text"} == {"cpu-2core"}
    at.selectbox(key="to_x").set_value("load_s").run()
    assert at.query_params["x"] == "load_s"


def test_history_metric_is_in_the_url(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[6], query={"submission": "arrests-mlp-onnx",
                                                                    "metric": "throughput_sps"})
    assert at.selectbox(key="hi_metric").value == "throughput_sps"
    assert at.selectbox(key="hi_submission").value == "arrests-mlp-onnx"
    (fig,) = charts(at)
    assert fig["layout"]["xaxis"]["title"]["text"] == "night"


# ---- the board's states ------------------------------------------------------------------------
def _db_with(filled_db, tmp_path, change) -> str:
    from heptathlon.db.session import session_scope
    from tests.dashboard.conftest import copy_sqlite

    url = copy_sqlite(filled_db["path"], tmp_path / "states.db")
    with session_scope(url) as s:
        change(s)
    return url


def _onnx_run(s, profile="cpu-1core"):
    from heptathlon.db.models import Run

    return next(r for r in s.query(Run).filter(Run.status == "succeeded", Run.profile_name == profile)
                if r.submission is not None and r.submission.name == "arrests-mlp-onnx")


def _clone_run(s, src, *, status="succeeded", submission_id=None, minutes=5, error=None):
    import uuid
    from datetime import timedelta

    from heptathlon.db.models import Measurement, Run

    t = src.finished_at + timedelta(minutes=minutes)
    rid = str(uuid.uuid4())
    s.add(Run(id=rid, submission_id=submission_id or src.submission_id, profile_id=src.profile_id,
              machine_id=src.machine_id, submission_ref=src.submission_ref, profile_name=src.profile_name,
              task_name=src.task_name, scenario=src.scenario, params=src.params, status=status, created_at=t,
              started_at=t, finished_at=t, error=error))
    s.flush()
    if status == "succeeded":
        for m in src.measurements:
            s.add(Measurement(run_id=rid, metric=m.metric, unit=m.unit, value=m.value, ci_low=m.ci_low,
                              ci_high=m.ci_high, n=m.n, method=m.method, params=m.params, note=m.note))
    return rid


def test_a_failed_latest_run_is_on_the_board_with_the_older_result_marked(filled_db, monkeypatch, tmp_path):
    def fail_last_night(s):
        _clone_run(s, _onnx_run(s), status="failed", error="run x (arrests-mlp-onnx on cpu-1core/single_stream): "
                                                          "worker timed out after 600 s")

    url = _db_with(filled_db, tmp_path, fail_last_night)
    at = open_page(url, monkeypatch, PAGES[0])
    row = leaderboard(at)["arrests-mlp-onnx"]
    text, cls, title = row["status"]
    assert text.startswith("latest run failed") and "worker timed out after 600 s" in text and "older" in text
    assert cls == "failed" and "worker timed out" in title
    assert row["latency_p50_ms"][0] != "—"  # the last good result is still shown (greyed via the row class)
    assert "class='older'" in next(h.value for h in at.get("html") if "hep-leaderboard" in h.value)


def test_a_changed_artifact_leaves_one_row(filled_db, monkeypatch, tmp_path):
    from heptathlon.db.models import Submission

    def new_artifact(s):
        src = _onnx_run(s)
        old = src.submission
        sub = Submission(name=old.name, version=old.version, task=old.task, kind=old.kind,
                         artifact_sha256="f" * 64, manifest=old.manifest, store_path=old.store_path + "-new")
        s.add(sub)
        s.flush()
        _clone_run(s, src, submission_id=sub.id)

    url = _db_with(filled_db, tmp_path, new_artifact)
    at = open_page(url, monkeypatch, PAGES[0])
    html = next(h.value for h in at.get("html") if "hep-leaderboard" in h.value)
    assert html.count(">arrests-mlp-onnx v1<") == 1  # one row, not two identical ones
    assert leaderboard(at)["arrests-mlp-onnx"]["status"][0] == "ok · new artifact"


def test_the_download_is_the_table_shown(filled_db, monkeypatch):
    import csv
    import io

    from heptathlon.dashboard import board as B

    at = open_page(filled_db["url"], monkeypatch, PAGES[0], query={"q": "command", "cols": "latency_p50_ms,accuracy"})
    shown = leaderboard(at)
    assert set(shown) == {"arrests-mlp-command"}
    assert [e.proto.label for e in at.get("download_button")] == ["Download this table (1 rows, CSV)"]
    # The CSV is built from the same Board the HTML is drawn from: same header, same cell text.
    header = list(next(iter(shown.values())))
    assert header == ["submission", "#", "score", "status", "latency_p50_ms", "accuracy"]
    runs = [{"run_id": "r1", "submission": "x", "version": "1", "kind": "onnx", "finished_at": "t"}]
    from heptathlon.dashboard.scoring import Value

    board = B.build_board(runs, {"r1": {"latency_p50_ms": Value(0.007629, 0.007, 0.008, "timer", 9, "ms")}}, [],
                          metrics=["latency_p50_ms"], rank_by="latency_p50_ms", weights={}, inline_ci=True)
    rows = list(csv.reader(io.StringIO(board.csv())))
    assert rows == [["submission", "#", "score", "status", "latency_p50_ms"],
                    ["x v1", "1", "—", "ok", "7.63 µs [7 µs, 8 µs]"]]
    assert "position: sticky; left: 0" in B.STYLE and "<th class='sub'" in B.board_html(board)  # pinned name


def test_scenario_default_is_single_stream_not_alphabetical():
    import pandas as pd

    from heptathlon.dashboard.common import most_common

    opts = pd.DataFrame({"scenario": ["batch_sweep", "single_stream", "batch_sweep", "single_stream"],
                         "submission": ["a", "a", "b", "b"]})
    assert most_common(opts, "scenario") == ["single_stream", "batch_sweep"]


def test_fairness_delta_follows_the_metric(augmented_db, monkeypatch):
    at = open_page(augmented_db["url"], monkeypatch, PAGES[4], query={"submission": "arrests-mlp-onnx"})
    assert "Δ accuracy against the reference profile" in [s.value for s in at.subheader]
    other = [m for m in at.selectbox(key="fa_metric").options if m != "accuracy"]
    assert other, "the real runs store more than one group metric"
    at.selectbox(key="fa_metric").set_value(other[0]).run()
    assert f"Δ {other[0]} against the reference profile" in [s.value for s in at.subheader]
    assert at.query_params["metric"] == other[0]
    figs = charts(at)
    assert figs[0]["data"][0]["zmin"] is not None  # the heatmap's colour scale is fixed, not fitted to the data


def test_score_formula_renders_as_latex(filled_db, monkeypatch):
    at = open_page(filled_db["url"], monkeypatch, PAGES[0])
    assert [e.value for e in at.get("latex")] and r"\text{score}" in at.get("latex")[0].value
    assert not any("$$" in m.value for m in at.markdown)
