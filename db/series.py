"""Writes ``run.series_key`` (heptathlon.bench.series) whenever a run is flushed.

The key is computed at write time, as Conbench computes its history fingerprint, so that every
writer (the run service, the nightly job, a test that adds rows) stores it without knowing about
it: a ``before_flush`` hook on the sessions of ``heptathlon.db.session`` recomputes the key of
each new or changed run that has a submission and a machine. Readers then select by the indexed
column instead of rebuilding the key.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from heptathlon.bench.series import TrialSlot, run_series_key, trial_counts
from heptathlon.db.models import Machine, Run, Submission


def _slot(run: Run) -> TrialSlot:
    return TrialSlot(run.id, run.group_id, run.submission_id, run.profile_name, run.scenario, run.params or {},
                     run.trial or 0)


def trials_of_run(s: Session, run: Run) -> int:
    """How many trials the run's request queued (``heptathlon.bench.series.trial_counts``)."""
    slots = [_slot(run)]
    if run.group_id is not None:
        siblings = select(Run).where(Run.group_id == run.group_id, Run.submission_id == run.submission_id,
                                     Run.profile_name == run.profile_name, Run.scenario == run.scenario,
                                     Run.id != run.id)
        slots += [_slot(r) for r in s.scalars(siblings)]
        slots += [_slot(r) for r in s.new if isinstance(r, Run) and r.id != run.id and r.group_id == run.group_id]
    return trial_counts(slots)[run.id]


def series_key_of(s: Session, run: Run) -> str | None:
    """The run's series key, or None while it has no submission or no machine."""
    # A pending run does not load its relationships from foreign keys set by hand: look them up.
    sub = run.submission or (s.get(Submission, run.submission_id) if run.submission_id is not None else None)
    machine = run.machine or (s.get(Machine, run.machine_id) if run.machine_id is not None else None)
    if sub is None or machine is None:
        return None
    return run_series_key(submission=sub.name, task=sub.task, profile=run.profile_name, scenario=run.scenario,
                          run_params=run.params or {}, trials=trials_of_run(s, run),
                          fingerprint=machine.specs or {}).id


def assign_series_keys(session: Session, _flush_context, _instances) -> None:
    """``before_flush`` hook: (re)compute the key of every new or changed run."""
    with session.no_autoflush:
        for obj in [*session.new, *session.dirty]:
            if isinstance(obj, Run):
                key = series_key_of(session, obj)
                if key != obj.series_key:
                    obj.series_key = key
