"""The run lifecycle: claims, owners, leases, reaping and requeueing (docs/security.md, "Run lifecycle").

- **Claim.** A queued run becomes running with one compare-and-set,
  ``UPDATE run SET status='running', owner_*=... WHERE id=? AND status='queued'``: of two
  executors that try, exactly one gets rowcount 1. The loser leaves the run alone.
- **Owner and lease.** The claim records the harness process (host, pid, and its start time,
  so a reused pid is told apart) and a lease, which :class:`LeaseKeeper` renews from a thread
  of the harness in its own short transactions while the run executes.
- **Finish.** The harness writes its result or failure only while it still owns the run
  (:func:`finish_owned`): a run that was reaped meanwhile keeps the reaper's record, and the
  late results are discarded rather than doubled.
- **Reap.** :func:`reap_stale_runs` (called each time a command opens the database, from
  :func:`heptathlon.db.session.ensure_schema`) marks failed the running runs whose owner is
  gone (same host: no such pid, or a pid now started at another time) or whose lease expired.
- **Requeue.** :func:`requeue_run` puts a failed run back in the queue; a running run with a
  live owner and a succeeded run are refused.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psutil
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from heptathlon.bench.run_status import RunStatus
from heptathlon.db.models import Run, utcnow

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 60.0
LEASE_ENV = "HEPTATHLON_LEASE_S"
# psutil's create_time is boot time + start ticks; the same process reads the same value, a
# reused pid almost never does within this tolerance (clock ticks are 10 ms).
_START_TOLERANCE_S = 0.5


class Interruption:
    """``run.interruption``: how a run ended that its harness did not finish normally."""

    SIGINT = "SIGINT"
    SIGTERM = "SIGTERM"
    HARNESS_DIED = "harness_died"
    LEASE_EXPIRED = "lease_expired"


def lease_seconds(value: float | None = None) -> float:
    """The lease length: ``value``, else $HEPTATHLON_LEASE_S, else 60 s."""
    if value is None:
        raw = os.environ.get(LEASE_ENV)
        try:
            value = float(raw) if raw else DEFAULT_LEASE_S
        except ValueError:
            raise ValueError(f"${LEASE_ENV}={raw!r}: expected a number of seconds") from None
    if not value > 0:
        raise ValueError(f"lease length {value!r}: expected a positive number of seconds (${LEASE_ENV})")
    return float(value)


def this_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class Owner:
    """The harness process that claimed a run."""

    host: str
    pid: int
    started: float  # psutil.Process(pid).create_time()

    @classmethod
    def current(cls) -> "Owner":
        pid = os.getpid()
        return cls(this_host(), pid, psutil.Process(pid).create_time())

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}"

    def conditions(self) -> list:
        return [Run.owner_host == self.host, Run.owner_pid == self.pid, Run.owner_started == self.started]


def owner_of(run: Any) -> Owner | None:
    if run.owner_host is None or run.owner_pid is None:
        return None
    return Owner(run.owner_host, run.owner_pid, run.owner_started or 0.0)


def owner_gone_reason(owner: Owner, host: str | None = None) -> str | None:
    """Why ``owner`` is certainly gone, or None while it may still run (or runs on another host)."""
    if owner.host != (host or this_host()):
        return None
    try:
        started = psutil.Process(owner.pid).create_time()
    except psutil.NoSuchProcess:
        return f"harness died: owner {owner.describe()} is gone"
    except psutil.Error:
        return None
    if abs(started - owner.started) > _START_TOLERANCE_S:
        return f"harness died: owner {owner.describe()} is gone (the pid now belongs to another process)"
    try:
        if psutil.Process(owner.pid).status() == psutil.STATUS_ZOMBIE:
            return f"harness died: owner {owner.describe()} is gone (a zombie)"
    except psutil.Error:
        pass
    return None


def _aware(t: datetime | None) -> datetime | None:
    if t is not None and t.tzinfo is None:  # SQLite hands back naive UTC
        return t.replace(tzinfo=timezone.utc)
    return t


def _fmt(t: datetime) -> str:
    return _aware(t).astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---- claim, renew, finish ----------------------------------------------------------------------
def claim_run(s: Session, run_id: str, owner: Owner, lease_s: float) -> bool:
    """The atomic compare-and-set queued -> running; True when this owner won the run."""
    now = utcnow()
    res = s.execute(update(Run).where(Run.id == run_id, Run.status == RunStatus.QUEUED).values(
        status=RunStatus.RUNNING, started_at=now, owner_host=owner.host, owner_pid=owner.pid,
        owner_started=owner.started, lease_expires_at=now + timedelta(seconds=lease_s), interruption=None)
        .execution_options(synchronize_session=False))
    return res.rowcount == 1


def renew_lease(s: Session, run_id: str, owner: Owner, lease_s: float) -> bool:
    """Push the lease forward; False when the run is no longer this owner's running run."""
    res = s.execute(update(Run).where(Run.id == run_id, Run.status == RunStatus.RUNNING, *owner.conditions())
                    .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
                    .execution_options(synchronize_session=False))
    return res.rowcount == 1


def finish_owned(s: Session, run_id: str, owner: Owner, status: str, **fields: Any) -> bool:
    """Move this owner's running run to ``status`` (with ``fields``); False when it is no longer
    ours (reaped, requeued, claimed by another), in which case nothing is written.

    The UPDATE is the transaction's first write: on SQLite it takes the write lock, on
    PostgreSQL it locks the row, so the rest of the transaction (measurements) cannot race a reaper.
    """
    res = s.execute(update(Run).where(Run.id == run_id, Run.status == RunStatus.RUNNING, *owner.conditions())
                    .values(status=status, finished_at=utcnow(), lease_expires_at=None, **fields)
                    .execution_options(synchronize_session=False))
    if res.rowcount == 1:
        run = s.get(Run, run_id)
        if run is not None:
            s.refresh(run)
        return True
    return False


class LeaseKeeper:
    """A daemon thread that renews a run's lease every ``lease_s / 3`` seconds, each time in its
    own short transaction, until stopped. It never touches the measured loop (that runs in the
    worker process); ``lost`` is set when the run was taken away (reaped) meanwhile."""

    def __init__(self, db: str | None, run_id: str, owner: Owner, lease_s: float) -> None:
        self.db, self.run_id, self.owner, self.lease_s = db, run_id, owner, lease_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heptathlon-lease-{run_id[:8]}", daemon=True)

    def _loop(self) -> None:
        from heptathlon.db.session import session_scope

        while not self._stop.wait(self.lease_s / 3):
            try:
                with session_scope(self.db) as s:
                    ok = renew_lease(s, self.run_id, self.owner, self.lease_s)
            except Exception as e:  # noqa: BLE001  a DB hiccup: try again at the next tick
                log.warning("run %s: could not renew its lease: %s", self.run_id[:8], e)
                continue
            if not ok:
                self.lost.set()
                return

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


# ---- reaping ------------------------------------------------------------------------------------
def stale_reason(run: Any, *, now: datetime, host: str) -> tuple[str, str] | None:
    """(interruption, reason) for a running run whose harness is gone, else None."""
    owner = owner_of(run)
    if owner is None:
        return Interruption.HARNESS_DIED, "harness died: the run has no owner record (started by an older harness)"
    why = owner_gone_reason(owner, host)
    if why:
        return Interruption.HARNESS_DIED, why
    lease = _aware(run.lease_expires_at)
    if lease is not None and lease < now:
        return Interruption.LEASE_EXPIRED, f"lease expired at {_fmt(lease)} (owner {owner.describe()} stopped renewing it)"
    return None


def reap_stale_runs(db: str | None = None, *, host: str | None = None) -> list[tuple[str, str]]:
    """Mark failed every running run whose owner is gone or whose lease expired; returns
    (run id, reason) of those this call marked. One indexed query when nothing is stale."""
    from heptathlon.db.session import session_scope

    host = host or this_host()
    now = utcnow()
    with session_scope(db) as s:
        rows = s.execute(select(Run.id, Run.owner_host, Run.owner_pid, Run.owner_started, Run.lease_expires_at,
                                Run.profile_name, Run.scenario, Run.submission_ref)
                         .where(Run.status == RunStatus.RUNNING)).all()
    found = [(r, why) for r in rows if (why := stale_reason(r, now=now, host=host))]
    reaped = []
    for r, (kind, why) in found:
        error = f"run {r.id[:8]} on {r.profile_name}/{r.scenario}: {why}"
        same = [Run.owner_host.is_(None)] if r.owner_host is None else [
            Run.owner_host == r.owner_host, Run.owner_pid == r.owner_pid, Run.owner_started == r.owner_started]
        if kind == Interruption.LEASE_EXPIRED:
            same.append(Run.lease_expires_at < now)
        with session_scope(db) as s:  # its own write-first transaction: compare-and-set on the owner seen
            res = s.execute(update(Run).where(Run.id == r.id, Run.status == RunStatus.RUNNING, *same).values(
                status=RunStatus.FAILED, error=error, stderr_tail=error, finished_at=utcnow(),
                lease_expires_at=None, interruption=kind).execution_options(synchronize_session=False))
        if res.rowcount == 1:
            log.warning("%s", error)
            reaped.append((r.id, error))
    return reaped


# ---- requeue ------------------------------------------------------------------------------------
class RequeueRefused(Exception):
    """A run that cannot be queued again; the message is one line naming the run."""


def requeue_run(s: Session, run: Run, *, host: str | None = None) -> None:
    """Queue a failed run again (its previous failure is kept in ``extra["attempts"]``).

    Refuses, with RequeueRefused: a succeeded run, a queued one, a running run whose owner may be
    alive (its lease has not expired), and a run rejected before it ran (no stored submission).
    """
    rid = run.id[:8]
    if run.status == RunStatus.SUCCEEDED:
        raise RequeueRefused(f"run {rid}: succeeded; not requeued (queue a new run with: heptathlon submit)")
    if run.status == RunStatus.QUEUED:
        raise RequeueRefused(f"run {rid}: already queued")
    if run.status == RunStatus.RUNNING:
        why = stale_reason(run, now=utcnow(), host=host or this_host())
        if why is None:
            owner = owner_of(run)
            lease = _aware(run.lease_expires_at)
            raise RequeueRefused(f"run {rid}: running, owner {owner.describe()} is alive"
                                 + (f" (lease until {_fmt(lease)})" if lease else "") + "; not requeued")
    if run.submission_id is None:
        raise RequeueRefused(f"run {rid}: was rejected before it ran ({run.error}); fix the submission and submit it again")
    attempt = {"status": run.status, "error": run.error, "interruption": run.interruption,
               "started_at": _fmt(run.started_at) if run.started_at else None,
               "finished_at": _fmt(run.finished_at) if run.finished_at else None,
               "owner": (f"{run.owner_host}:{run.owner_pid}" if run.owner_host else None)}
    res = s.execute(update(Run).where(Run.id == run.id, Run.status == run.status).values(
        status=RunStatus.QUEUED, error=None, stderr_tail=None, started_at=None, finished_at=None, owner_host=None,
        owner_pid=None, owner_started=None, lease_expires_at=None, interruption=None,
        extra={**(run.extra or {}), "attempts": [*(run.extra or {}).get("attempts", []), attempt]})
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:
        raise RequeueRefused(f"run {rid}: changed while being requeued; look again with: heptathlon runs show {rid}")


def lock_group(s: Session, group_id: str) -> None:
    """Serialise writers of one group's rows until the transaction ends: a no-op UPDATE as the
    transaction's first write takes SQLite's write lock and PostgreSQL's row locks."""
    s.execute(update(Run).where(Run.group_id == group_id).values(group_id=Run.group_id)
              .execution_options(synchronize_session=False))


def find_runs(s: Session, prefix: str) -> list[Run]:
    """Runs whose id starts with ``prefix`` (at most 2: enough to tell an ambiguous prefix)."""
    return list(s.scalars(select(Run).where(Run.id.startswith(prefix, autoescape=True)).order_by(Run.id).limit(2)))


def list_runs(s: Session, *, status: str | None = None, limit: int = 50) -> list[Run]:
    q = select(Run).order_by(Run.created_at.desc(), Run.id).limit(limit)
    if status:
        q = q.where(Run.status == status)
    return list(s.scalars(q))
