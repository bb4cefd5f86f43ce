"""The fleet task body (heptathlon.bench.app.fleet.handle_message) on real runs: claim, fetch,
execute in the real sandboxed worker, store; and the exactly-once rules for redelivered messages.
The broker itself is exercised in tests/e2e/test_fleet_e2e.py; here the messages are handed over
as the worker's Celery task would receive them."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest
from sqlalchemy import func, select

from heptathlon.bench.app import fleet as F
from heptathlon.bench.app.service import queue_runs
from heptathlon.bench.run_status import RunStatus
from heptathlon.bench.scenarios import make_scenario
from heptathlon.db import lifecycle as L
from heptathlon.db import queries as Q
from heptathlon.db.models import Measurement, Run, Samples
from heptathlon.db.session import session_scope
from tests.runners.jobs import QUICK


@pytest.fixture
def sub():
    """The cheapest real submission: the bundled calibrated busy-wait model behind the stdio protocol."""
    from heptathlon.bench.app.demo import EXAMPLES_DIR

    return EXAMPLES_DIR / "calibrated-busywait-command"


def _dispatch(folder, db, store, profile="cpu-1core"):
    ids = queue_runs(folder, [profile], [make_scenario("single_stream", **QUICK)], db=db, energy={"enabled": False})
    msgs = []
    F.dispatch_runs(ids, db=db, artifacts=str(store), publish=lambda m: msgs.append(m) or f"task-{len(msgs)}")
    return ids, [m.model_dump() for m in msgs]


def _counts(db, rid):
    with session_scope(db) as s:
        return (s.scalar(select(func.count()).select_from(Measurement).where(Measurement.run_id == rid)),
                s.scalar(select(func.count()).select_from(Samples).where(Samples.run_id == rid)))


def test_a_message_runs_once_and_a_redelivery_is_acked_without_running(sub, db_url, tmp_path):
    (rid,), (msg,) = _dispatch(sub, db_url, tmp_path / "store")
    assert msg["profile"] == "cpu-1core" and len(msg["sha256"]) == 64 and msg["run_id"] == rid
    cfg = F.WorkerConfig(db=db_url, profiles=["cpu-1core"])
    assert F.handle_message(cfg, msg) == {"action": "ran", "status": RunStatus.SUCCEEDED, "error": None}
    with session_scope(db_url) as s:
        run = Q.get_run(s, rid)
        assert run.extra["executor"] == "celery" and run.extra["fleet"]["queue"] == "hw.cpu-1core"
        assert run.machine_id is not None and run.owner_pid == psutil.Process().pid
    first = _counts(db_url, rid)
    assert first[0] > 0 and first[1] > 0
    assert F.handle_message(cfg, msg) == {"action": "already", "status": RunStatus.SUCCEEDED}
    assert _counts(db_url, rid) == first  # one set of measurements


def test_a_run_whose_harness_died_is_run_again_from_scratch(sub, db_url, tmp_path):
    (rid,), (msg,) = _dispatch(sub, db_url, tmp_path / "store")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(dead.pid).create_time()
    dead.wait()
    with session_scope(db_url) as s:  # a worker claimed it, then was SIGKILLed before storing anything
        assert L.claim_run(s, rid, L.Owner(L.this_host(), dead.pid, started), 600)
    out = F.handle_message(F.WorkerConfig(db=db_url, profiles=["cpu-1core"]), msg)
    assert out["action"] == "ran" and out["status"] == RunStatus.SUCCEEDED
    with session_scope(db_url) as s:
        run = Q.get_run(s, rid)
        assert [a["status"] for a in run.extra["attempts"]] == [RunStatus.FAILED]
        assert "harness died" in run.extra["attempts"][0]["error"]
    assert _counts(db_url, rid)[1] > 0


def test_a_run_held_by_a_live_owner_is_retried_later_and_left_alone(sub, db_url, tmp_path):
    (rid,), (msg,) = _dispatch(sub, db_url, tmp_path / "store")
    with session_scope(db_url) as s:
        assert L.claim_run(s, rid, L.Owner.current(), 30)
    with pytest.raises(F._RetryLater) as e:
        F.handle_message(F.WorkerConfig(db=db_url, profiles=["cpu-1core"]), msg)
    assert 1 <= e.value.seconds <= 32
    with session_scope(db_url) as s:
        assert Q.get_run(s, rid).status == RunStatus.RUNNING


def test_a_missing_artifact_fails_the_run_with_the_reason(sub, db_url, tmp_path):
    (rid,), (msg,) = _dispatch(sub, db_url, tmp_path / "store")
    for p in (tmp_path / "store").rglob("*.tar"):
        p.unlink()
    out = F.handle_message(F.WorkerConfig(db=db_url, profiles=["cpu-1core"]), msg)
    assert out["status"] == RunStatus.FAILED
    with session_scope(db_url) as s:
        run = Q.get_run(s, rid)
        assert run.status == RunStatus.FAILED and f"artifact {msg['sha256'][:12]}: not found in the store" in run.error
    assert _counts(db_url, rid) == (0, 0)


def test_a_message_that_does_not_match_its_run_fails_it_and_a_malformed_one_is_dropped(sub, db_url, tmp_path):
    (rid,), (msg,) = _dispatch(sub, db_url, tmp_path / "store")
    cfg = F.WorkerConfig(db=db_url, profiles=["cpu-1core", "cpu-2core"])
    out = F.handle_message(cfg, {**msg, "profile": "cpu-2core"})
    assert out["action"] == "refused" and "does not match the run" in out["error"]
    with session_scope(db_url) as s:
        assert Q.get_run(s, rid).status == RunStatus.FAILED
    assert F.handle_message(cfg, {**msg, "sha256": "x"})["action"] == "refused"
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(Run)) == 1


def test_worker_refuses_a_profile_this_machine_cannot_serve():
    from heptathlon.bench.errors import ProfileError

    with pytest.raises(ProfileError, match=r"worker refuses profile 'cuda-fp16': this machine cannot serve it"):
        F.check_profiles(["cpu-1core", "cuda-fp16"])
    assert F.check_profiles(["cpu-1core"]) == ["cpu-1core"]
