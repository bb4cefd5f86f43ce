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
