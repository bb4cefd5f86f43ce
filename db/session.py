"""Engine and session. SQLite (WAL, busy timeout) is the embedded default; any SQLAlchemy URL works."""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from heptathlon.bench.errors import StorageError
from heptathlon.db.series import assign_series_keys

MIGRATIONS = Path(str(resources.files("heptathlon.db") / "migrations"))


def home_dir() -> Path:
    """Where Heptathlon keeps its database and artifact store: $HEPTATHLON_HOME or ./.heptathlon."""
    return Path(os.environ.get("HEPTATHLON_HOME", Path.cwd() / ".heptathlon"))


def default_url() -> str:
    return os.environ.get("HEPTATHLON_DB") or f"sqlite:///{home_dir() / 'heptathlon.db'}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


_ENGINES: dict[str, Engine] = {}


def get_engine(url: str | None = None) -> Engine:
    url = url or default_url()
    if url in _ENGINES:
        return _ENGINES[url]
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url, future=True, pool_pre_ping=True)
    except Exception as e:  # bad URL or missing driver
        raise StorageError(f"database URL {url!r}: {e}; pass a valid SQLAlchemy URL via --db or HEPTATHLON_DB") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    _ENGINES[url] = engine
    return engine


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# pg_advisory_xact_lock key that serialises migrations of one PostgreSQL database.
_PG_MIGRATION_LOCK = 0x4865707461  # "Hepta"


@contextmanager
def _file_lock(url: str) -> Iterator[None]:
    """An exclusive flock on ``<database file>.migrate.lock`` (SQLite files); nothing otherwise."""
    u = make_url(url)
    path = u.database if u.get_backend_name() == "sqlite" else None
    if not path or path == ":memory:" or path.startswith("file:"):
        yield
        return
    lock = Path(f"{path}.migrate.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file is closed
        yield


def upgrade(url: str | None = None) -> str:
    """Apply all Alembic migrations; returns the head revision.

    Serialised across processes: two commands opening a fresh database at once would otherwise
    both create its tables ("table ... already exists"). SQLite: a file lock beside the database
    file; PostgreSQL: a transaction-level advisory lock taken before Alembic reads the version.
    """
    url = url or default_url()
    engine = get_engine(url)
    cfg = alembic_config(url)
    try:
        with _file_lock(url), engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as e:
        raise StorageError(f"database {engine.url.render_as_string(hide_password=True)}: migration failed "
                           f"({str(e).splitlines()[0]}); is the server running and the URL right?") from None
    return ScriptDirectory.from_config(cfg).get_current_head()


def is_current(url: str | None = None) -> bool:
    url = url or default_url()
    engine = get_engine(url)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision() == head
    except SQLAlchemyError as e:
        raise StorageError(f"database {engine.url.render_as_string(hide_password=True)}: cannot connect "
                           f"({str(e).splitlines()[0]})") from None


def ensure_schema(url: str | None = None) -> None:
    """Migrate the database if it is behind, then reap the runs whose harness is gone
    (heptathlon.db.lifecycle.reap_stale_runs: one indexed query when there are none). Every
    command that opens the database comes through here."""
    if not is_current(url):
        upgrade(url)
    from heptathlon.db.lifecycle import reap_stale_runs

    try:
        reap_stale_runs(url)
    except SQLAlchemyError as e:  # e.g. a read-only role (a dashboard): the next writer reaps them
        logging.getLogger(__name__).warning("database %s: could not mark stuck runs failed (%s)",
                                            get_engine(url).url.render_as_string(hide_password=True),
                                            str(e).splitlines()[0])


# Every session of ours stores each run's series key as it writes the run (heptathlon.db.series).
_SESSIONS = sessionmaker(expire_on_commit=False)
event.listen(_SESSIONS, "before_flush", assign_series_keys)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    s = _SESSIONS(bind=get_engine(url))
    try:
        yield s
        s.commit()
    except BaseException:
        s.rollback()
        raise
    finally:
        s.close()
