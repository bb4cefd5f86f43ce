"""The run lifecycle in storage (heptathlon.db.lifecycle), on SQLite and PostgreSQL, with real
processes: atomic claims, owner-checked finishes, leases, reaping, requeueing, serialised
migrations and race-free registration rows."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import timedelta

import psutil
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import func, select

from heptathlon.db import lifecycle as L
from heptathlon.db import queries as Q
from heptathlon.db.models import Machine, Measurement, Run, Submission, utcnow
from heptathlon.db.session import alembic_config, ensure_schema, get_engine, is_current, session_scope, upgrade


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def add_runs(url, n, status="queued", **fields):
    ids = [str(uuid.uuid4()) for _ in range(n)]
    with session_scope(url) as s:
        sub = Q.get_or_create_submission(s, name="a", version="1", task="arrests", kind="onnx", sha256="x" * 64,
                                         manifest={}, store_path="/nowhere")
        for rid in ids:
            Q.create_run(s, id=rid, submission_id=sub.id, submission_ref="r", profile_name="cpu-1core",
                         task_name="arrests", scenario="single_stream", params={}, status=status, **fields)
    return ids


def snapshot(url):
    """Every run column but the ones a reap or requeue may change, and the other tables' counts."""
    with session_scope(url) as s:
        runs = {r.id: (r.status, r.error, r.owner_pid, r.interruption) for r in s.scalars(select(Run))}
        counts = {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in (Submission, Machine,
                                                                                          Measurement)}
    return runs, counts


def test_migration_0004_adds_the_lease_columns_and_reaps_runs_an_older_harness_left_running(db_url):
    engine = get_engine(db_url)
    cfg = alembic_config(db_url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    meta = sa.MetaData()
    meta.reflect(engine, only=["run"])
    run = meta.tables["run"]
    assert "owner_pid" not in run.c and "lease_expires_at" not in run.c
    with engine.begin() as c:
        c.execute(sa.insert(run), [{"id": rid, "submission_ref": "r", "profile_name": "cpu-1core",
                                    "scenario": "single_stream", "params": {}, "status": st, "trial": 0,
                                    "created_at": utcnow(), "software": {}, "controls": {}, "extra": {}}
                                   for rid, st in (("old-running", "running"), ("old-done", "succeeded"))])
    ensure_schema(db_url)
    assert is_current(db_url)
    cols = {c["name"] for c in sa.inspect(engine).get_columns("run")}
    assert {"owner_host", "owner_pid", "owner_started", "lease_expires_at", "interruption"} <= cols
    with session_scope(db_url) as s:
        old, done = s.get(Run, "old-running"), s.get(Run, "old-done")
        assert (old.status, old.interruption) == ("failed", "harness_died")
        assert old.error == ("run old-runn on cpu-1core/single_stream: harness died: the run has no owner record "
                             "(started by an older harness)")
        assert done.status == "succeeded" and done.error is None


CLAIMER = textwrap.dedent("""
    import json, sys
    from heptathlon.db import lifecycle as L
    from heptathlon.db.session import session_scope
    url, ids = sys.argv[1], json.loads(sys.argv[2])
    sys.stdin.readline()  # start together
    won = []
    for rid in ids:
        with session_scope(url) as s:
            if L.claim_run(s, rid, L.Owner.current(), 60.0):
                won.append(rid)
    print(json.dumps(won))
""")


def test_concurrent_claims_give_each_run_to_exactly_one_process(db_url):
    upgrade(db_url)
    ids = add_runs(db_url, 12)
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, db_url, json.dumps(ids)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    time.sleep(1.0)  # let them import; the claims start when stdin says so
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in results]
    won = [json.loads(o) for o, _ in results]
    assert sorted(sum(won, [])) == sorted(ids)  # each run claimed once, none twice
    pids = {p.pid for p in procs}
    with session_scope(db_url) as s:
        rows = list(s.scalars(select(Run).where(Run.id.in_(ids))))
        assert {r.status for r in rows} == {"running"} and {r.owner_pid for r in rows} <= pids
        for w, p in zip(won, procs, strict=True):
            assert all(s.get(Run, rid).owner_pid == p.pid for rid in w)


def test_a_claim_is_a_compare_and_set_and_only_the_owner_finishes_the_run(db_url):
    upgrade(db_url)
    (rid,) = add_runs(db_url, 1)
    me = L.Owner.current()
    other = L.Owner("elsewhere", 1, 1.0)
    with session_scope(db_url) as s:
        assert L.claim_run(s, rid, me, 30.0)
    with session_scope(db_url) as s:
        assert not L.claim_run(s, rid, other, 30.0)  # running: not claimable again
        assert not L.finish_owned(s, rid, other, "succeeded")  # not its run
        assert L.renew_lease(s, rid, me, 30.0) and not L.renew_lease(s, rid, other, 30.0)
    with session_scope(db_url) as s:
        run = s.get(Run, rid)
        assert (run.status, run.owner_host, run.owner_pid, run.owner_started) == ("running", me.host, me.pid,
                                                                                  me.started)
        assert L._aware(run.lease_expires_at) > utcnow() + timedelta(seconds=20)
    with session_scope(db_url) as s:
        assert L.finish_owned(s, rid, me, "succeeded")
    with session_scope(db_url) as s:
        assert not L.finish_owned(s, rid, me, "failed", error="late")  # finished: stays as it is
        run = s.get(Run, rid)
        assert (run.status, run.error, run.lease_expires_at) == ("succeeded", None, None)


def test_reaping_marks_dead_owners_and_expired_leases_failed_and_nothing_else(db_url):
    upgrade(db_url)
    host = L.this_host()
    me = L.Owner.current()
    gone = dead_pid()
    later = utcnow() + timedelta(minutes=5)
    earlier = utcnow() - timedelta(minutes=5)
    reused = psutil.Process()  # a live pid whose start time is not the recorded one: a reused pid
    cases = {
        "dead": dict(owner_host=host, owner_pid=gone, owner_started=1.0, lease_expires_at=later),
        "reused": dict(owner_host=host, owner_pid=reused.pid, owner_started=reused.create_time() - 100,
                       lease_expires_at=later),
        "expired": dict(owner_host="another-host", owner_pid=4242, owner_started=1.0, lease_expires_at=earlier),
        "alive": dict(owner_host=me.host, owner_pid=me.pid, owner_started=me.started, lease_expires_at=later),
        "remote": dict(owner_host="another-host", owner_pid=4242, owner_started=1.0, lease_expires_at=later),
    }
    ids = {k: add_runs(db_url, 1, status="running", **v)[0] for k, v in cases.items()}
    (done,) = add_runs(db_url, 1, status="succeeded")
    (queued,) = add_runs(db_url, 1)
    before_runs, before_counts = snapshot(db_url)
    reaped = dict(L.reap_stale_runs(db_url))
    assert set(reaped) == {ids["dead"], ids["reused"], ids["expired"]}
    assert reaped[ids["dead"]] == (f"run {ids['dead'][:8]} on cpu-1core/single_stream: harness died: "
                                   f"owner pid {gone} on host {host} is gone")
    assert reaped[ids["reused"]].endswith(f"owner pid {reused.pid} on host {host} is gone "
                                          "(the pid now belongs to another process)")
    assert "lease expired at " in reaped[ids["expired"]]
    assert reaped[ids["expired"]].endswith("(owner pid 4242 on host another-host stopped renewing it)")
    after_runs, after_counts = snapshot(db_url)
    assert after_counts == before_counts
    for k in ("dead", "reused", "expired"):
        rid = ids[k]
        status, error, _, interruption = after_runs.pop(rid)
        before_runs.pop(rid)
        assert (status, error) == ("failed", reaped[rid]) and "\n" not in error
        assert interruption == ("lease_expired" if k == "expired" else "harness_died")
    assert after_runs == before_runs  # alive, remote, succeeded and queued runs untouched
    with session_scope(db_url) as s:
        assert s.get(Run, ids["dead"]).stderr_tail == reaped[ids["dead"]]
        assert s.get(Run, done).status == "succeeded" and s.get(Run, queued).status == "queued"
    assert L.reap_stale_runs(db_url) == []  # once


def test_the_lease_thread_renews_and_notices_when_the_run_was_taken(db_url):
    upgrade(db_url)
    (rid,) = add_runs(db_url, 1)
    me = L.Owner.current()
    with session_scope(db_url) as s:
        assert L.claim_run(s, rid, me, 0.6)
    with session_scope(db_url) as s:
        first = L._aware(s.get(Run, rid).lease_expires_at)
    with L.LeaseKeeper(db_url, rid, me, 0.6) as keeper:
        for _ in range(200):  # renewed every 0.2 s; poll until it moved (no timing is asserted)
            time.sleep(0.05)
            with session_scope(db_url) as s:
                if L._aware(s.get(Run, rid).lease_expires_at) > first:
                    break
        else:
            pytest.fail("the lease was never renewed")
        with session_scope(db_url) as s:  # someone else reaps it meanwhile
            s.execute(sa.update(Run).where(Run.id == rid).values(status="failed", error="reaped"))
        assert keeper.lost.wait(60)
    assert reaped_status(db_url, rid) == ("failed", "reaped")


def reaped_status(url, rid):
    with session_scope(url) as s:
        r = s.get(Run, rid)
        return r.status, r.error


def test_requeue_queues_failed_runs_and_refuses_the_rest(db_url):
    upgrade(db_url)
    me = L.Owner.current()
    (failed,) = add_runs(db_url, 1, status="failed", error="run x: harness died", interruption="harness_died",
                         owner_host=me.host, owner_pid=123, owner_started=1.0)
    (done,) = add_runs(db_url, 1, status="succeeded")
    (queued,) = add_runs(db_url, 1)
    (live,) = add_runs(db_url, 1, status="running", owner_host=me.host, owner_pid=me.pid, owner_started=me.started,
                       lease_expires_at=utcnow() + timedelta(minutes=5))
    with session_scope(db_url) as s:
        rejected = Q.create_run(s, id=str(uuid.uuid4()), submission_ref="r", profile_name="p", scenario="s",
                                params={}, status="failed", error="bad manifest").id
    with session_scope(db_url) as s:
        L.requeue_run(s, s.get(Run, failed))
        msgs = {}
        for rid in (done, queued, live, rejected):
            with pytest.raises(L.RequeueRefused) as e:
                L.requeue_run(s, s.get(Run, rid))
            msgs[rid] = str(e.value)
    assert msgs[done] == f"run {done[:8]}: succeeded; not requeued (queue a new run with: heptathlon submit)"
    assert msgs[queued] == f"run {queued[:8]}: already queued"
    assert msgs[live].startswith(f"run {live[:8]}: running, owner pid {me.pid} on host {me.host} is alive (lease until ")
    assert msgs[rejected] == (f"run {rejected[:8]}: was rejected before it ran (bad manifest); fix the submission "
                              "and submit it again")
    with session_scope(db_url) as s:
        r = s.get(Run, failed)
        assert (r.status, r.error, r.owner_pid, r.interruption, r.finished_at) == ("queued", None, None, None, None)
        assert r.extra["attempts"][0]["error"] == "run x: harness died"
        assert s.get(Run, live).status == "running" and s.get(Run, done).status == "succeeded"


MIGRATE_AND_REGISTER = textwrap.dedent("""
    import sys
    from heptathlon.db import queries as Q
    from heptathlon.db.session import ensure_schema, session_scope
    url = sys.argv[1]
    sys.stdin.readline()
    ensure_schema(url)
    with session_scope(url) as s:
        m = Q.get_or_create_machine(s, "same-fingerprint", {"cpu": "x"})
        t = Q.get_or_create_task(s, "arrests", {})
        sub = Q.get_or_create_submission(s, name="a", version="1", task="arrests", kind="onnx", sha256="y" * 64,
                                         manifest={}, store_path="/x")
        print(m.id, t.id, sub.id)
""")


def test_processes_opening_a_fresh_database_at_once_migrate_once_and_share_the_rows(db_url):
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE_AND_REGISTER, db_url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(1.0)
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e for _, e in results]
    assert len({o for o, _ in results}) == 1  # the same machine, task and submission rows for all
    assert is_current(db_url)
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(Machine)) == 1
        assert s.scalar(select(func.count()).select_from(Submission)) == 1
