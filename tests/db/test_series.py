"""run.series_key: written on every flush of a run with a submission and a machine, and
backfilled by migration 0003 for rows written before it (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import command
from sqlalchemy import select

from heptathlon.bench.series import run_series_key
from heptathlon.db.models import Machine, Run, Submission
from heptathlon.db.session import alembic_config, get_engine, session_scope, upgrade

SPECS = {"cpu_model": "Test CPU", "logical_cores": 8, "ram_bytes": 2**34, "arch": "x86_64", "gpus": [],
         "software": {"torch": "2.13.0"}}
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def expected(params, trials, specs=SPECS, profile="cpu-1core"):
    return run_series_key(submission="a", task="arrests", profile=profile, scenario="single_stream",
                          run_params=params, trials=trials, fingerprint=specs).id


def test_migration_0003_backfills_the_series_key_of_existing_runs(db_url):
    engine = get_engine(db_url)
    cfg = alembic_config(db_url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    meta = sa.MetaData()
    meta.reflect(engine, only=["run", "submission", "machine"])
    run, sub, machine = meta.tables["run"], meta.tables["submission"], meta.tables["machine"]
    assert "series_key" not in run.c
    params = {"name": "single_stream", "min_queries": 50, "timeout_s": 60.0, "energy": {}}
    with engine.begin() as c:
        c.execute(sa.insert(machine), [{"id": 1, "fingerprint_hash": "m1", "specs": SPECS, "created_at": T0}])
        c.execute(sa.insert(sub), [{"id": 1, "name": "a", "version": "1", "task": "arrests", "kind": "onnx",
                                    "artifact_sha256": "x" * 64, "manifest": {}, "store_path": "/x",
                                    "created_at": T0}])

        def row(rid, trial=0, group="g", machine_id=1, submission_id=1, status="succeeded", p=params):
            return {"id": rid, "submission_id": submission_id, "machine_id": machine_id, "submission_ref": "r",
                    "profile_name": "cpu-1core", "task_name": "arrests", "scenario": "single_stream", "params": p,
                    "status": status, "trial": trial, "group_id": group, "created_at": T0, "software": {},
                    "controls": {}, "extra": {}}

        c.execute(sa.insert(run), [row("t0", 0), row("t1", 1), row("single", group="h", p={**params, "b": 2}),
                                   row("queued", machine_id=None, status="queued", group="q"),
                                   row("rejected", submission_id=None, machine_id=None, status="failed")])
    upgrade(db_url)
    with session_scope(db_url) as s:
        keys = {rid: key for rid, key in s.execute(select(Run.id, Run.series_key))}
    assert keys["t0"] == keys["t1"] == expected(params, 2)  # both trials of one request: trials=2
    assert keys["single"] == expected({**params, "b": 2}, 1)
    assert keys["queued"] is None and keys["rejected"] is None
    assert len(keys["t0"]) == 16


def test_a_run_gets_its_key_when_it_gets_a_machine_and_software_does_not_change_it(db_url):
    upgrade(db_url)
    with session_scope(db_url) as s:
        s.add_all([Machine(id=1, fingerprint_hash="m1", specs=SPECS),
                   Machine(id=2, fingerprint_hash="m2", specs={**SPECS, "software": {"torch": "2.14.0"}}),
                   Submission(id=1, name="a", version="1", task="arrests", kind="onnx", artifact_sha256="x" * 64,
                              manifest={}, store_path="/x")])
        s.flush()
        s.add(Run(id="r", submission_id=1, submission_ref="r", profile_name="cpu-1core", scenario="single_stream",
                  params={}, status="queued", group_id="g"))
    with session_scope(db_url) as s:
        assert s.get(Run, "r").series_key is None
        s.get(Run, "r").machine_id = 1
    with session_scope(db_url) as s:
        first = s.get(Run, "r").series_key
        assert first == expected({}, 1)
        s.get(Run, "r").machine_id = 2  # another torch version: the same series (a regression shows in it)
    with session_scope(db_url) as s:
        assert s.get(Run, "r").series_key == first
        s.get(Run, "r").profile_name = "cpu-2core"
    with session_scope(db_url) as s:
        assert s.get(Run, "r").series_key == expected({}, 1, profile="cpu-2core") != first
