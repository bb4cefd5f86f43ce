"""One latest-run rule and one headline rule (heptathlon.db.results) for `heptathlon results`
(heptathlon.db.queries.leaderboard), the dashboard (heptathlon.db.dashboard_queries) and nightly
(heptathlon.db.queries.run_measurements)."""

from __future__ import annotations

from datetime import datetime, timezone

from heptathlon.db import dashboard_queries as DQ
from heptathlon.db import queries as Q
from heptathlon.db.models import Machine, Measurement, Run, Submission
from heptathlon.db.session import session_scope, upgrade

T = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _m(run_id, metric, value, **params):
    return Measurement(run_id=run_id, metric=metric, unit="ms", value=value, n=10, method="timer:x", params=params)


def fill(url):
    upgrade(url)
    with session_scope(url) as s:
        s.add_all([Machine(id=1, fingerprint_hash="m1", specs={"cpu_model": "X"}),
                   Submission(id=1, name="a", version="1", task="arrests", kind="onnx", artifact_sha256="x" * 64,
                              manifest={}, store_path="/x")])
        s.flush()
        # Two runs of one series that finished at the same instant. The old CLI rule (join on
        # max(finished_at)) returned both; the old dashboard rule (row_number by finished_at, id)
        # returned "run-b". Now both return "run-b".
        for rid in ("run-a", "run-b"):
            s.add(Run(id=rid, submission_id=1, machine_id=1, submission_ref="r", profile_name="cpu-1core",
                      task_name="arrests", scenario="single_stream", params={}, status="succeeded",
                      created_at=T, finished_at=T))
        s.flush()
        s.add_all([_m("run-a", "latency_p50_ms", 9.0),
                   _m("run-b", "latency_p50_ms", 2.0),
                   _m("run-b", "latency_p50_ms", 1.5, pooled=True, trials=3),  # pooled beats the run's own
                   _m("run-b", "latency_p99_ms", 4.0),
                   _m("run-b", "latency_p99_ms", 5.0),  # a second plain row: the first stored wins
                   _m("run-b", "latency_p90_ms", 7.0, batch_size=8),  # a sweep point, never a headline
                   _m("run-b", "gpu_peak_mb", 100.0, detail=True)])  # a detail row, never a headline
    return url


def test_results_and_dashboard_pick_the_same_latest_run_and_headlines(db_url):
    url = fill(db_url)
    with session_scope(url) as s:
        cli_rows = Q.leaderboard(s)
        runs, meas = DQ.latest_results(s)
        nightly = Q.run_measurements(s, "run-b")
    assert [r["run_id"] for r in cli_rows] == list(runs["run_id"]) == ["run-b"]
    cli = {k: m.value for k, m in cli_rows[0]["metrics"].items()}
    dash = dict(zip(meas["metric"], meas["value"]))
    assert cli == dash == {k: m.value for k, m in nightly.items()} == {"latency_p50_ms": 1.5, "latency_p99_ms": 4.0}
    assert cli_rows[0]["trials"] == 3


def test_history_reads_one_series_by_its_stored_key(db_url):
    url = fill(db_url)
    with session_scope(url) as s:
        key = s.get(Run, "run-b").series_key
        by_key = DQ.series_history(s, series_key=key, metric="latency_p50_ms")
        by_names = DQ.series_history(s, submission="a", profile="cpu-1core", scenario="single_stream",
                                     metric="latency_p50_ms")
    assert list(by_key["run_id"]) == list(by_names["run_id"]) == ["run-a", "run-b"]
    assert list(by_key["value"]) == [9.0, 1.5] and set(by_key["series_key"]) == {key}
