import numpy as np
import pytest
from sqlalchemy import inspect, select

from heptathlon.db import queries as Q
from heptathlon.db.models import Run
from heptathlon.db.session import get_engine, is_current, session_scope, upgrade


def test_migrations_create_every_table(db_url):
    upgrade(db_url)
    assert is_current(db_url)
    tables = set(inspect(get_engine(db_url)).get_table_names())
    assert {"machine", "profile", "task", "submission", "run", "measurement", "samples", "group_metric",
            "alert", "alembic_version"} <= tables


def test_upgrade_is_idempotent(db_url):
    from alembic.script import ScriptDirectory

    from heptathlon.db.session import alembic_config

    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    assert upgrade(db_url) == upgrade(db_url) == head
    assert is_current(db_url)


def test_samples_round_trip_compressed(db_url):
    upgrade(db_url)
    lat = np.random.default_rng(0).integers(1000, 90000, 5000).astype(np.int64)
    with session_scope(db_url) as s:
        Q.create_run(s, id="r1", submission_ref="x", profile_name="p", scenario="single_stream", status="failed")
        Q.add_samples(s, "r1", "latency_ns", lat)
    with session_scope(db_url) as s:
        back = Q.load_samples(s, "r1", "latency_ns")
    assert np.array_equal(back, lat)


def test_transaction_rolls_back_whole(db_url):
    upgrade(db_url)
    with pytest.raises(RuntimeError):
        with session_scope(db_url) as s:
            Q.create_run(s, id="r2", submission_ref="x", profile_name="p", scenario="s", status="queued")
            raise RuntimeError("boom")
    with session_scope(db_url) as s:
        assert s.scalar(select(Run).where(Run.id == "r2")) is None


def test_sqlite_uses_wal(sqlite_url):
    upgrade(sqlite_url)
    with get_engine(sqlite_url).connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
