"""db/dashboard_queries.py on each configured backend (SQLite, and PostgreSQL in CI), on rows
written directly: which run is "latest", which row is a run's headline value, sweeps, knees,
group rows, history and alerts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from heptathlon.db import dashboard_queries as DQ
from heptathlon.db.models import Alert, GroupMetric, Machine, Measurement, Run, Submission
from heptathlon.db.session import session_scope, upgrade

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SPECS = {"cpu_model": "Test CPU", "logical_cores": 8, "physical_cores": 4, "ram_bytes": 16 * 2**30,
         "arch": "x86_64", "cpu_flags_sha256": "abc", "gpus": []}


def _meas(run_id, metric, value, method="timer:perf_counter_ns", unit="ms", **params):
    lo, hi = (None, None) if value is None else (value * 0.9, value * 1.1)
    return Measurement(run_id=run_id, metric=metric, unit=unit, value=value, ci_low=lo, ci_high=hi, n=100,
                       method=method, params=params)


@pytest.fixture
def db(db_url):
    upgrade(db_url)
    with session_scope(db_url) as s:
        m1 = Machine(fingerprint_hash="m1", specs=SPECS)
        m2 = Machine(fingerprint_hash="m2", specs={**SPECS, "kernel": "other"})  # same class as m1
        m3 = Machine(fingerprint_hash="m3", specs={**SPECS, "cpu_model": "Other CPU"})
        sa = Submission(name="a", version="1", task="arrests", kind="onnx", artifact_sha256="x" * 64, manifest={},
                        store_path="/x")
        sb = Submission(name="b", version="1", task="arrests", kind="command", artifact_sha256="y" * 64, manifest={},
                        store_path="/y")
        s.add_all([m1, m2, m3, sa, sb])
        s.flush()

        def run(rid, sub, profile, machine, day, status="succeeded", **kw):
            t = T0 + timedelta(days=day)
            s.add(Run(id=rid, submission_id=sub.id, machine_id=machine.id if machine else None, submission_ref="r",
                      profile_name=profile, task_name="arrests", scenario="single_stream", status=status,
                      created_at=t, started_at=t, finished_at=t, **kw))
            s.flush()

        run("a-old", sa, "cpu-1core", m1, 0)
        run("a-new", sa, "cpu-1core", m1, 2)
        run("a-failed", sa, "cpu-1core", None, 3, status="failed", error="boom")
        run("a-2core", sa, "cpu-2core", m1, 1, extra={"sweep": {"knee": {"value": 8, "ci_low": 4, "ci_high": 16},
                                                                 "runtime": "torchscript"}})
        run("a-other-cpu", sa, "cpu-1core", m3, 5)
        run("b-new", sb, "cpu-1core", m2, 1)
        run("b-queued", sb, "cpu-1core", None, 9, status="queued")
        s.add_all([
            _meas("a-old", "latency_p50_ms", 2.0),
            _meas("a-new", "latency_p50_ms", 1.0),
            _meas("a-new", "latency_p50_ms", 0.95, pooled=True, trials=3),  # pooled beats the trial's own
            _meas("a-new", "fairness_gap", 0.2, "derived:x", "fraction", attribute="sex", detail=True),
            _meas("a-new", "fairness_gap", 0.3, "derived:x", "fraction", attribute="colour×sex"),
            _meas("a-new", "latency_p50_ms", 5.0, sweep=True, batch_size=8, runtime="onnxruntime"),
            _meas("a-2core", "latency_p50_ms", 0.5),
            _meas("a-2core", "latency_p50_ms", 7.0, batch_size=8, runtime="onnxruntime"),
            _meas("a-2core", "batch_knee", 16.0, "derived:segmented-fit", "samples", sweep=True,
                  runtime="onnxruntime"),
            _meas("b-new", "latency_p50_ms", 3.0),
            _meas("b-new", "energy_per_sample_j", 0.01, "estimate:tdp", "J"),
            _meas("b-new", "params", None, "unavailable", "count"),
        ])
        for rid, acc in (("a-old", 0.7), ("a-new", 0.8), ("a-2core", 0.75)):
            s.add(GroupMetric(run_id=rid, attribute="sex", group="F", metric="accuracy", value=acc, ci_low=acc - 0.05,
                              ci_high=acc + 0.05, n=40, small=False))
        s.add(Alert(series_key="k", metric="latency_p50_ms", kind="regression", candidate_run_id="a-new",
                    p_value=0.001, status="open"))
    return db_url


def test_latest_results_one_run_per_series_with_headline_values(db):
    with session_scope(db) as s:
        runs, meas = DQ.latest_results(s, task="arrests", profile="cpu-1core", scenario="single_stream")
    assert sorted(runs["run_id"]) == ["a-new", "a-other-cpu", "b-new"]  # per machine; failed/queued left out
    got = {(r["run_id"], r["metric"]): r for r in meas.to_dict("records")}
    assert got[("a-new", "latency_p50_ms")]["value"] == 0.95  # pooled, not the trial's own nor the sweep point
    assert got[("a-new", "fairness_gap")]["value"] == 0.3  # the row not marked detail
    assert got[("b-new", "params")]["method"] == "unavailable" and pd.isna(got[("b-new", "params")]["value"])
    assert ("a-other-cpu", "latency_p50_ms") not in got


def test_latest_results_filters_by_machine_class_and_submission(db):
    with session_scope(db) as s:
        classes = DQ.machine_classes(s)
        same = classes.groupby("class_id")["machine_id"].apply(sorted).tolist()
        runs, _ = DQ.latest_results(s, machine_ids=[1, 2], submission="a")
    assert sorted(same) == [[1, 2], [3]]  # the kernel differs, the hardware class does not
    assert set(classes["label"]) == {"Test CPU · 8 cores · 16 GiB", "Other CPU · 8 cores · 16 GiB"}
    assert sorted(runs["run_id"]) == ["a-2core", "a-new"]


def test_result_options(db):
    with session_scope(db) as s:
        opts = DQ.result_options(s)
    assert set(map(tuple, opts[["submission", "profile", "runs"]].values.tolist())) == {
        ("a", "cpu-1core", 2), ("a", "cpu-1core", 1), ("a", "cpu-2core", 1), ("b", "cpu-1core", 1)}


def test_sweep_points_and_knees(db):
    with session_scope(db) as s:
        points, knees = DQ.sweep_points(s, submission="a")
    assert sorted(zip(points["profile"], points["batch_size"], points["value"])) == [
        ("cpu-1core", 8, 5.0), ("cpu-2core", 8, 7.0)]
    assert {(k["runtime"], k["knee"], k["source"]) for k in knees} == {
        ("onnxruntime", 16.0, "measurement"), ("torchscript", 8.0, "run.extra")}
    assert next(k for k in knees if k["source"] == "run.extra")["ci_high"] == 16.0


@pytest.mark.parametrize("extra,expected", [
    (None, []),
    ({"knee": 16}, [("default", 16.0)]),
    ({"onnxruntime": {"batch_knee": 8, "ci_low": 4, "ci_high": 16}, "torch": {"knee_batch": 32}},
     [("onnxruntime", 8.0), ("torch", 32.0)]),
    ({"runtimes": {"ort": {"knee": {"value": 4}}}}, [("ort", 4.0)]),
    ({"knee": "not a number"}, []),
])
def test_knees_from_extra_shapes(extra, expected):
    assert [(k["runtime"], k["knee"]) for k in DQ.knees_from_extra(extra)] == expected


def test_group_results_newest_run_per_profile(db):
    with session_scope(db) as s:
        g = DQ.group_results(s, submission="a")
    assert sorted(zip(g["profile"], g["run_id"], g["value"])) == [("cpu-1core", "a-new", 0.8),
                                                                  ("cpu-2core", "a-2core", 0.75)]


def test_series_history_keeps_failures_in_order(db):
    with session_scope(db) as s:
        h = DQ.series_history(s, submission="a", profile="cpu-1core", scenario="single_stream",
                              metric="latency_p50_ms", machine_ids=[1, 2])
        alerts = DQ.alerts_for_runs(s, list(h["run_id"]))
    assert list(h["run_id"]) == ["a-old", "a-new", "a-failed"]
    assert list(h["value"][:2]) == [2.0, 0.95] and h["value"].isna().tolist()[2]
    assert list(alerts["candidate_run_id"]) == ["a-new"] and alerts["kind"][0] == "regression"


def test_run_detail_by_id_or_unique_prefix(db):
    with session_scope(db) as s:
        d = DQ.run_detail(s, "a-new")
        assert DQ.run_detail(s, "a-fa")["run_id"] == "a-failed"  # a unique prefix
        assert DQ.run_detail(s, "b-ne")["run_id"] == "b-new"
        assert DQ.run_detail(s, "a-o") is None  # ambiguous: a-old, a-other-cpu
        assert DQ.run_detail(s, "nope") is None
    assert d["submission"]["name"] == "a" and d["machine"]["label"].startswith("Test CPU")
    assert len(d["measurements"]) == 5 and len(d["alerts"]) == 1 and d["samples"] == {}


def test_overview_of_an_empty_database(db_url):
    upgrade(db_url)
    with session_scope(db_url) as s:
        o = DQ.database_overview(s)
        assert DQ.result_options(s).empty and DQ.recent_runs(s).empty
    assert o["runs"] == 0 and o["submissions"] == 0 and o["latest"] is None


def test_latest_attempts_marks_a_newer_failure(db):
    with session_scope(db) as s:
        att = DQ.latest_attempts(s, task="arrests", profile="cpu-1core", scenario="single_stream",
                                 machine_ids=[1, 2])
    by = att.set_index("submission").to_dict("index")
    # a's newest finished run failed (no machine: it counts for every class); b's is its success.
    assert by["a"]["run_id"] == "a-failed" and by["a"]["status"] == "failed" and by["a"]["error"] == "boom"
    assert by["b"]["run_id"] == "b-new"  # the queued run is not finished
    with session_scope(db) as s:
        other = DQ.latest_attempts(s, task="arrests", profile="cpu-1core", scenario="single_stream", machine_ids=[3])
    assert other.set_index("submission").loc["a", "run_id"] == "a-other-cpu"  # day 5, newer than the failure (day 3)
    assert "b" not in set(other["submission"])  # b ran on another class only


def test_last_night_verdicts_and_effects(db):
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    with session_scope(db) as s:
        base = s.get(Run, "a-new")

        def night_run(rid, date, status="succeeded", p50=None, days_ago=0):
            s.add(Run(id=rid, submission_id=base.submission_id, machine_id=base.machine_id, submission_ref="r",
                      profile_name="cpu-1core", task_name="arrests", scenario="single_stream", status=status,
                      created_at=now - timedelta(days=days_ago), finished_at=now - timedelta(days=days_ago),
                      group_id="g-" + date, error="oom" if status == "failed" else None,
                      extra={"nightly": {"suite": "s", "date": date, "host": "h", "series": "k"}}))
            s.flush()
            if p50 is not None:
                s.add(_meas(rid, "latency_p50_ms", p50))
        for i in range(2):
            night_run(f"n{i}", f"2026-11-2{i}", p50=1.0 + 0.01 * i, days_ago=2 - i)
        night_run("n-last", "2026-11-30", p50=1.5)
        s.add(Alert(series_key="k", metric="latency_p50_ms", kind="regression", candidate_run_id="n-last",
                    baseline_run_ids=["n0", "n1"], test="mann-whitney-u+z-score", p_value=1e-9, effect=0.49,
                    status="open", context_diff=[{"path": "software.x", "change": "software.x: 1 -> 2"}]))
        s.add(Alert(series_key="k", metric="accuracy", kind="drift", candidate_run_id="n-last", status="superseded"))
    with session_scope(db) as s:
        assert DQ.latest_nightly_time(s) is not None
        night = DQ.last_night(s, min_window=2)
    assert list(night["night"].unique()) == ["2026-11-30"] and len(night) == 1  # superseded alert left out
    r = night.iloc[0]
    assert r["verdict"] == "regressed" and r["metric"] == "latency_p50_ms" and r["unit"] == "ms"
    assert r["baseline_value"] == pytest.approx(1.005) and r["candidate_value"] == 1.5
    assert r["baseline_ci_low"] < 1.005 < r["baseline_ci_high"] and r["n_baseline"] == 2
    assert r["context_diff"] == ["software.x: 1 -> 2"] and r["good_before"] >= 2
    with session_scope(db) as s:
        strict = DQ.last_night(s, min_window=50)
    assert strict.iloc[0]["verdict"] == "regressed"  # an alert decides, whatever the window


def test_no_nightly_means_an_empty_last_night(db):
    with session_scope(db) as s:
        assert DQ.latest_nightly_time(s) is None and DQ.last_night(s).empty
