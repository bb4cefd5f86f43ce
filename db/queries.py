"""Named query functions. The CLI and the dashboard read and write only through these."""

from __future__ import annotations

import zlib
from collections import defaultdict
from datetime import datetime
from typing import Any, Iterable

import numpy as np
import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from heptathlon.bench.metrics import MetricValue
from heptathlon.db.models import GroupMetric, Machine, Measurement, Profile, Run, Samples, Submission, Task, utcnow


# ---- arrays ---------------------------------------------------------------------------------
def encode_array(arr: np.ndarray) -> tuple[bytes, str, int]:
    a = np.ascontiguousarray(arr)
    dt = a.dtype.newbyteorder("<")
    return zlib.compress(a.astype(dt).tobytes(), 6), dt.str, int(a.size)


def decode_array(data: bytes, dtype: str) -> np.ndarray:
    return np.frombuffer(zlib.decompress(data), dtype=np.dtype(dtype)).copy()


# ---- registration -----------------------------------------------------------------------------
def get_or_create_machine(s: Session, fingerprint_hash: str, specs: dict[str, Any]) -> Machine:
    m = s.scalar(select(Machine).where(Machine.fingerprint_hash == fingerprint_hash))
    if m is None:
        m = Machine(fingerprint_hash=fingerprint_hash, specs=specs)
        s.add(m)
        s.flush()
    return m


def get_or_create_profile(s: Session, profile) -> Profile:
    p = s.scalar(select(Profile).where(Profile.name == profile.name, Profile.spec_hash == profile.spec_hash))
    if p is None:
        p = Profile(name=profile.name, spec_hash=profile.spec_hash,
                    yaml=yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False))
        s.add(p)
        s.flush()
    return p


def get_or_create_task(s: Session, name: str, spec: dict[str, Any]) -> Task:
    t = s.scalar(select(Task).where(Task.name == name))
    if t is None:
        t = Task(name=name, spec=spec)
        s.add(t)
        s.flush()
    return t


def get_or_create_submission(s: Session, *, name: str, version: str, task: str, kind: str, sha256: str,
                             manifest: dict[str, Any], store_path: str) -> Submission:
    sub = s.scalar(select(Submission).where(Submission.name == name, Submission.version == version,
                                            Submission.artifact_sha256 == sha256))
    if sub is None:
        sub = Submission(name=name, version=version, task=task, kind=kind, artifact_sha256=sha256,
                         manifest=manifest, store_path=store_path)
        s.add(sub)
        s.flush()
    return sub


# ---- runs --------------------------------------------------------------------------------------
def create_run(s: Session, **fields: Any) -> Run:
    run = Run(**fields)
    s.add(run)
    s.flush()
    return run


def get_run(s: Session, run_id: str) -> Run | None:
    return s.get(Run, run_id)


def queued_runs(s: Session, group_id: str | None = None) -> list[Run]:
    q = select(Run).where(Run.status == "queued").order_by(Run.created_at, Run.id)
    if group_id:
        q = q.where(Run.group_id == group_id)
    return list(s.scalars(q))


def mark_running(s: Session, run_id: str) -> None:
    run = s.get(Run, run_id)
    run.status = "running"
    run.started_at = utcnow()


def record_failure(s: Session, run_id: str, error: str, stderr_tail: str | None = None, **extra: Any) -> None:
    run = s.get(Run, run_id)
    run.status = "failed"
    run.error = error
    run.stderr_tail = stderr_tail if stderr_tail else error
    run.finished_at = utcnow()
    for k, v in extra.items():
        setattr(run, k, v)


def add_measurements(s: Session, run_id: str, values: Iterable[MetricValue]) -> None:
    for v in values:
        s.add(Measurement(run_id=run_id, metric=v.name, unit=v.unit, value=v.value, ci_low=v.ci_low,
                          ci_high=v.ci_high, n=v.n, method=v.method, note=v.note, params=dict(v.params)))


def add_samples(s: Session, run_id: str, kind: str, arr: np.ndarray) -> None:
    data, dtype, n = encode_array(arr)
    s.add(Samples(run_id=run_id, kind=kind, dtype=dtype, n=n, data=data))


def add_group_metrics(s: Session, run_id: str, rows: Iterable[Any]) -> None:
    for g in rows:
        s.add(GroupMetric(run_id=run_id, attribute=g.attribute, group=g.group, metric=g.metric, value=g.value,
                          ci_low=g.ci_low, ci_high=g.ci_high, n=g.n, small=g.small))


def is_detail(m: Measurement) -> bool:
    """Detail rows (per attribute, per batch size; mark them params["detail"]) stay out of headline tables."""
    p = m.params or {}
    return bool(p.get("detail") or p.get("sweep"))


def load_samples(s: Session, run_id: str, kind: str) -> np.ndarray | None:
    row = s.scalar(select(Samples).where(Samples.run_id == run_id, Samples.kind == kind))
    return None if row is None else decode_array(row.data, row.dtype)


def _keep(current: dict[str, Measurement], m: Measurement) -> None:
    """Headline row per metric; a pooled-over-trials row wins over the run's own."""
    old = current.get(m.metric)
    if old is None or (m.params or {}).get("pooled") and not (old.params or {}).get("pooled"):
        current[m.metric] = m


def run_measurements(s: Session, run_id: str) -> dict[str, Measurement]:
    out: dict[str, Measurement] = {}
    for m in s.scalars(select(Measurement).where(Measurement.run_id == run_id)):
        if not is_detail(m):
            _keep(out, m)
    return out


# ---- leaderboard -------------------------------------------------------------------------------
def leaderboard(s: Session, *, task: str | None = None, profile: str | None = None, scenario: str | None = None,
                machine_id: int | None = None) -> list[dict[str, Any]]:
    """The latest succeeded run per (submission, profile, scenario, machine), with its measurements."""
    latest = (select(Run.submission_id, Run.profile_name, Run.scenario, Run.machine_id,
                     func.max(Run.finished_at).label("t"))
              .where(Run.status == "succeeded").group_by(Run.submission_id, Run.profile_name, Run.scenario,
                                                         Run.machine_id))
    if task:
        latest = latest.where(Run.task_name == task)
    if profile:
        latest = latest.where(Run.profile_name == profile)
    if scenario:
        latest = latest.where(Run.scenario == scenario)
    if machine_id is not None:
        latest = latest.where(Run.machine_id == machine_id)
    sub = latest.subquery()
    q = (select(Run, Submission)
         .join(sub, (Run.submission_id == sub.c.submission_id) & (Run.profile_name == sub.c.profile_name)
               & (Run.scenario == sub.c.scenario) & (Run.finished_at == sub.c.t)
               & ((Run.machine_id == sub.c.machine_id) | (Run.machine_id.is_(None) & sub.c.machine_id.is_(None))))
         .join(Submission, Run.submission_id == Submission.id)
         .where(Run.status == "succeeded"))
    pairs = list(s.execute(q))
    ids = [r.id for r, _ in pairs]
    meas: dict[str, dict[str, Measurement]] = defaultdict(dict)
    for i in range(0, len(ids), 500):
        for m in s.scalars(select(Measurement).where(Measurement.run_id.in_(ids[i:i + 500]))):
            if not is_detail(m):
                _keep(meas[m.run_id], m)
    rows = []
    for run, sub_ in pairs:
        rows.append({"run_id": run.id, "submission": sub_.name, "version": sub_.version, "kind": sub_.kind,
                     "task": run.task_name, "profile": run.profile_name, "scenario": run.scenario,
                     "machine_id": run.machine_id, "finished_at": run.finished_at, "metrics": meas[run.id]})
    rows.sort(key=lambda r: (r["task"] or "", r["profile"], r["scenario"], r["submission"]))
    return rows


def counts(s: Session) -> dict[str, int]:
    return {status: n for status, n in s.execute(select(Run.status, func.count()).group_by(Run.status))}


def latest_time(s: Session) -> datetime | None:
    return s.scalar(select(func.max(Run.finished_at)))
