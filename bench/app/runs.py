"""Listing, showing and requeueing runs (``heptathlon runs``, ``runs show``, ``requeue``).

Every function opens the database through ``ensure_schema``, so a run whose harness is gone has
already been marked failed ("harness died ...", "lease expired ...") when it is listed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from heptathlon.bench.errors import OptionsError
from heptathlon.bench.run_status import RunStatus
from heptathlon.db import lifecycle as L
from heptathlon.db.models import Measurement, Run
from heptathlon.db.session import ensure_schema, session_scope

STATUSES = tuple(s.value for s in RunStatus)


def _iso(t: datetime | None) -> str | None:
    return L._fmt(t) if t is not None else None


def run_summary(run: Run) -> dict[str, Any]:
    sub = run.submission
    return {"run_id": run.id, "status": run.status, "submission": sub.name if sub is not None else None,
            "version": sub.version if sub is not None else None, "submission_ref": run.submission_ref,
            "profile": run.profile_name, "scenario": run.scenario, "task": run.task_name, "trial": run.trial,
            "created_at": _iso(run.created_at), "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at), "error": run.error, "interruption": run.interruption,
            "owner": ({"host": run.owner_host, "pid": run.owner_pid,
                       "started_at": _iso(datetime.fromtimestamp(run.owner_started).astimezone())
                       if run.owner_started else None} if run.owner_host else None),
            "lease_expires_at": _iso(run.lease_expires_at)}


def run_record(s, run: Run) -> dict[str, Any]:
    n = s.scalar(select(func.count()).select_from(Measurement).where(Measurement.run_id == run.id))
    return {**run_summary(run), "group_id": run.group_id, "machine_id": run.machine_id, "series_key": run.series_key,
            "params": run.params, "controls": run.controls, "software": run.software, "extra": run.extra,
            "measurements": n, "stderr_tail": run.stderr_tail}


def list_runs(db: str | None = None, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    if status is not None and status not in STATUSES:
        raise OptionsError(f"--status: {status!r} is not a run status; expected one of {', '.join(STATUSES)}")
    if limit < 1:
        raise OptionsError(f"--limit: {limit} is not a positive number of runs")
    ensure_schema(db)
    with session_scope(db) as s:
        return [run_summary(r) for r in L.list_runs(s, status=status, limit=limit)]


def resolve(s, ref: str) -> Run:
    """The one run whose id starts with ``ref``; a one-line error naming ``ref`` otherwise."""
    ref = ref.strip()
    if not ref:
        raise OptionsError("run id: empty; give a run id or its first characters (see: heptathlon runs)")
    found = L.find_runs(s, ref)
    if not found:
        raise OptionsError(f"run {ref!r}: no such run (see: heptathlon runs)")
    if len(found) > 1:
        raise OptionsError(f"run {ref!r}: ambiguous, it begins {found[0].id} and {found[1].id} (at least); "
                           "give more characters")
    return found[0]


def show_run(db: str | None, ref: str) -> dict[str, Any]:
    ensure_schema(db)
    with session_scope(db) as s:
        return run_record(s, resolve(s, ref))


def requeue_runs(db: str | None, refs: list[str]) -> list[tuple[str, str | None, str]]:
    """Queue each run again: (ref, run id or None, one-line message), refused ones included."""
    ensure_schema(db)
    out = []
    for ref in refs:
        try:
            with session_scope(db) as s:
                run = resolve(s, ref)
                rid = run.id
                L.requeue_run(s, run)
            out.append((ref, rid, f"run {rid[:8]}: queued again (was failed); execute it with: heptathlon execute"))
        except (OptionsError, L.RequeueRefused) as e:
            out.append((ref, None, str(e)))
    return out


def pooled_sweep(run_id: str, *, db: str | None = None) -> dict[str, Any] | None:
    """The pooled batch_sweep record a run holds (``run.extra["sweep_pooled"]``, from ``--trials k``), else None."""
    with session_scope(db) as s:
        extra = s.scalar(select(Run.extra).where(Run.id == run_id))
    pooled = (extra or {}).get("sweep_pooled")
    return pooled if isinstance(pooled, dict) else None
