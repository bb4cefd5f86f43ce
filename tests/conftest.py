"""Shared fixtures: a fresh real database per test (SQLite file; PostgreSQL too when
HEPTATHLON_TEST_POSTGRES_URL is set), an isolated artifact store, and built example models."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("HEPTATHLON_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgres"] if PG_URL else [])


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HEPTATHLON_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HEPTATHLON_DB", raising=False)
    # Test machines are busy (CI runners, parallel jobs): the contention mark would take runs out of
    # the rankings that other tests check. 1.0 never marks a run; contention tests set their own
    # threshold below what their own CPU hog guarantees (tests/runners/test_contention.py).
    monkeypatch.setenv("HEPTATHLON_CONTENTION_MAX", "1")


def _fresh_postgres() -> tuple[str, callable]:
    base = make_url(PG_URL)
    name = f"heptathlon_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        from heptathlon.db.session import _ENGINES

        for url, eng in list(_ENGINES.items()):
            if name in url:
                eng.dispose()
                del _ENGINES[url]
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """A fresh, empty database URL; every test that takes it runs on each configured backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'results.db'}"
        return
    url, drop = _fresh_postgres()
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'results.db'}"


@pytest.fixture(scope="session")
def examples():
    """The bundled example submissions, with their artifacts built (seconds each, once)."""
    from heptathlon.bench.app.demo import EXAMPLES_DIR, build_examples

    folders = sorted(p.parent for p in EXAMPLES_DIR.glob("*/submission.yaml"))  # calibrated ones included
    build_examples(folders)
    return {f.name: f for f in folders}


@pytest.fixture
def quick():
    """Short scenario settings for tests: a few queries, no minimum duration."""
    return {"min_queries": 20, "min_duration_s": 0.0, "max_duration_s": 5.0, "warmup_queries": 2}


SLOW_DIRS = ("e2e",)  # tests/e2e/: the CLI end to end, with real workers on every example
SLOW_FILES = ("test_browser.py", "test_packaging.py")


def pytest_collection_modifyitems(config, items):
    """The slow tier (`make test-slow`, its own CI step) is marked here, by place, not by hand."""
    for item in items:
        rel = Path(str(item.fspath)).relative_to(REPO / "tests")
        if rel.parts[0] in SLOW_DIRS or rel.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
