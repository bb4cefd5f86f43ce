"""Named queries of the nightly job (bench/nightly.py) and of ``heptathlon alerts``.

Nightly bookkeeping lives in ``run.extra["nightly"]`` (suite, date, host, entry, series, ...), one
night's runs share a ``group_id``, alerts live in the ``alert`` table and the suite lock is a row
of the ``lock`` table. Callers own the transaction (``heptathlon.db.session.session_scope``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from heptathlon.db.models import Alert, Lock, Measurement, Run, utcnow
from heptathlon.db.results import chunks as _chunks

NIGHTLY = "nightly"  # the run.extra key of nightly bookkeeping

# Alert statuses. "superseded": the alert's run was replaced by a retry of the same night, or the
# night was evaluated again and no longer finds it.
OPEN, ACKNOWLEDGED, EXPECTED, SUPERSEDED = "open", "acknowledged", "expected", "superseded"
ALERT_STATUSES = (OPEN, ACKNOWLEDGED, EXPECTED, SUPERSEDED)


def nightly_marker(run: Run) -> dict[str, Any] | None:
    """The nightly bookkeeping of a run, or None for a run that no nightly job queued."""
    m = (run.extra or {}).get(NIGHTLY)
    return m if isinstance(m, dict) else None


# ---- runs ----------------------------------------------------------------------------------------
def runs_of_night(s: Session, group_id: str) -> list[Run]:
    """Every run of one night of one suite on one host (they share a group id), oldest first."""
    return list(s.scalars(select(Run).where(Run.group_id == group_id).order_by(Run.created_at, Run.trial, Run.id)))


def nightly_runs_of(s: Session, *, series_keys: Iterable[str], before: str) -> list[Run]:
    """Nightly runs of these series (``run.series_key``) from nights before ``before`` (YYYY-MM-DD),
    any suite or host, oldest first; retried-away runs left out."""
    out = []
    for chunk in _chunks(sorted(set(series_keys))):
        q = (select(Run).where(Run.series_key.in_(chunk), Run.group_id.is_not(None)))
        for run in s.scalars(q):
            m = nightly_marker(run)
            if m is not None and str(m.get("date", "")) < before and not m.get("superseded"):
                out.append(run)
    return sorted(out, key=lambda r: (r.created_at, r.id))


def tag_nightly_runs(s: Session, run_ids: Iterable[str], marker: dict[str, Any], *, machine_id: int | None = None,
                     software: dict[str, Any] | None = None) -> None:
    """Write the nightly marker into each run's extra. A run that failed before it reached the
    machine fingerprint gets this machine and software context, so that its series and the
    context diff of its "broke" alert are known."""
    for rid in run_ids:
        run = s.get(Run, rid)
        run.extra = {**(run.extra or {}), NIGHTLY: {**(nightly_marker(run) or {}), **marker}}
        if run.machine_id is None and machine_id is not None:
            run.machine_id = machine_id
        if not run.software and software:
            run.software = dict(software)


def supersede_runs(s: Session, run_ids: Iterable[str], by: str) -> list[int]:
    """Mark runs as replaced by a retry of the same night; their open alerts become superseded.
    Returns the ids of those alerts."""
    ids = list(run_ids)
    for rid in ids:
        run = s.get(Run, rid)
        run.extra = {**(run.extra or {}), NIGHTLY: {**(nightly_marker(run) or {}), "superseded": by}}
    changed = []
    for a in alerts_of_runs(s, ids):
        if a.status == OPEN:
            set_alert_status(s, a, SUPERSEDED, by=by)
            changed.append(a.id)
    return changed


def measurements_of(s: Session, run_id: str) -> list[Measurement]:
    return list(s.scalars(select(Measurement).where(Measurement.run_id == run_id)))


# ---- alerts ----------------------------------------------------------------------------------------
def alerts_of_runs(s: Session, run_ids: Sequence[str]) -> list[Alert]:
    """Alerts whose candidate is one of these runs."""
    out: list[Alert] = []
    for chunk in _chunks(list(run_ids)):
        out += s.scalars(select(Alert).where(Alert.candidate_run_id.in_(chunk)).order_by(Alert.id))
    return out


def find_alert(s: Session, *, series_key: str, metric: str, kind: str, candidate_run_id: str) -> Alert | None:
    return s.scalar(select(Alert).where(Alert.series_key == series_key, Alert.metric == metric, Alert.kind == kind,
                                        Alert.candidate_run_id == candidate_run_id).order_by(Alert.id).limit(1))


def add_alert(s: Session, **fields: Any) -> Alert:
    a = Alert(**fields)
    s.add(a)
    s.flush()
    return a


def list_alerts(s: Session, statuses: Sequence[str] | None = None, limit: int | None = None) -> list[Alert]:
    """Alerts, newest first; only the given statuses when ``statuses`` is set."""
    q = select(Alert).order_by(Alert.created_at.desc(), Alert.id.desc())
    if statuses:
        q = q.where(Alert.status.in_(list(statuses)))
    if limit:
        q = q.limit(limit)
    return list(s.scalars(q))


def get_alert(s: Session, alert_id: int) -> Alert | None:
    return s.get(Alert, alert_id)


def set_alert_status(s: Session, alert: Alert, status: str, *, by: str) -> None:
    """Change an alert's status and append who did it, and when, to ``detail["history"]``."""
    detail = dict(alert.detail or {})
    history = list(detail.get("history") or [])
    history.append({"status": status, "from": alert.status, "by": by, "at": utcnow().isoformat()})
    alert.status = status
    alert.detail = {**detail, "history": history}


# ---- the lock ----------------------------------------------------------------------------------------
def insert_lock(s: Session, name: str, holder: str) -> Lock:
    """Take the lock; the primary key makes a second holder fail with IntegrityError at flush."""
    row = Lock(name=name, holder=holder, acquired_at=utcnow())
    s.add(row)
    s.flush()
    return row


def get_lock(s: Session, name: str) -> Lock | None:
    return s.get(Lock, name)


def delete_lock(s: Session, name: str, holder: str) -> bool:
    """Delete the lock only if ``holder`` still holds it (compare-and-delete); True if it did."""
    return s.execute(delete(Lock).where(Lock.name == name, Lock.holder == holder)).rowcount == 1
