"""Named query functions. The CLI and the dashboard read and write only through these."""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Any, Iterable

import numpy as np
import yaml
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from heptathlon.bench.generation import load_label
from heptathlon.bench.metrics import MetricValue, SampleKind
from heptathlon.bench.metrics import is_detail as metrics_is_detail
from heptathlon.bench.run_status import RunStatus
from heptathlon.db import results as R
from heptathlon.db.models import GroupMetric, Machine, Measurement, Profile, Run, Samples, Submission, Task, utcnow


# ---- arrays ---------------------------------------------------------------------------------
def encode_array(arr: np.ndarray) -> tuple[bytes, str, int]:
    a = np.ascontiguousarray(arr)
    dt = a.dtype.newbyteorder("<")
    return zlib.compress(a.astype(dt).tobytes(), 6), dt.str, int(a.size)


def decode_array(data: bytes, dtype: str) -> np.ndarray:
    return np.frombuffer(zlib.decompress(data), dtype=np.dtype(dtype)).copy()


# ---- registration -----------------------------------------------------------------------------
def _get_or_insert(s: Session, model: type, keys: dict[str, Any], values: dict[str, Any]) -> Any:
    """The row of ``model`` with ``keys`` (its unique columns), inserted with ``values`` if missing.

    Race-free: two processes registering the same machine, profile, task or submission at once
    both end with the one row. INSERT ... ON CONFLICT DO NOTHING, then SELECT, on SQLite and
    PostgreSQL; a savepoint and a retry elsewhere. Never a raw UNIQUE-constraint error.
    """
    where = [getattr(model, k) == v for k, v in keys.items()]
    row = s.scalar(select(model).where(*where))
    if row is not None:
        return row
    dialect = s.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = sqlite_insert if dialect == "sqlite" else pg_insert
        s.execute(insert(model).values(**keys, **values).on_conflict_do_nothing(index_elements=list(keys)))
    else:
        try:
            with s.begin_nested():
                s.add(model(**keys, **values))
        except IntegrityError:
            pass
    return s.scalars(select(model).where(*where)).one()


def get_or_create_machine(s: Session, fingerprint_hash: str, specs: dict[str, Any]) -> Machine:
    return _get_or_insert(s, Machine, {"fingerprint_hash": fingerprint_hash}, {"specs": specs})


def get_or_create_profile(s: Session, profile) -> Profile:
    return _get_or_insert(s, Profile, {"name": profile.name, "spec_hash": profile.spec_hash},
                          {"yaml": yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False)})


def get_or_create_task(s: Session, name: str, spec: dict[str, Any]) -> Task:
    return _get_or_insert(s, Task, {"name": name}, {"spec": spec})


def get_or_create_submission(s: Session, *, name: str, version: str, task: str, kind: str, sha256: str,
                             manifest: dict[str, Any], store_path: str) -> Submission:
    return _get_or_insert(s, Submission, {"name": name, "version": version, "artifact_sha256": sha256},
                          {"task": task, "kind": kind, "manifest": manifest, "store_path": store_path})


# ---- runs --------------------------------------------------------------------------------------
def create_run(s: Session, **fields: Any) -> Run:
    run = Run(**fields)
    s.add(run)
    s.flush()
    return run


def get_run(s: Session, run_id: str) -> Run | None:
    return s.get(Run, run_id)


def latest_generate_reference(s: Session, artifact_sha256: str, profile: str, *, max_new_tokens: int,
                              ignore_eos: bool, seed: int) -> Run | None:
    """The latest succeeded generate run of this artifact on ``profile`` with the same decoding
    settings: the reference a generate run's fidelity is measured against."""
    q = (select(Run).join(Submission, Run.submission_id == Submission.id)
         .where(Submission.artifact_sha256 == artifact_sha256, Run.profile_name == profile,
                Run.scenario == "generate", Run.status == RunStatus.SUCCEEDED)
         .order_by(Run.finished_at.desc()))
    for r in s.scalars(q):
        p = r.params or {}
        if (int(p.get("max_new_tokens") or 0) == int(max_new_tokens) and bool(p.get("ignore_eos")) == bool(ignore_eos)
                and int(p.get("seed") or 0) == int(seed)):
            return r
    return None


def queued_runs(s: Session, group_id: str | None = None) -> list[Run]:
    q = select(Run).where(Run.status == RunStatus.QUEUED).order_by(Run.created_at, Run.id)
    if group_id:
        q = q.where(Run.group_id == group_id)
    return list(s.scalars(q))


def record_failure(s: Session, run_id: str, error: str, stderr_tail: str | None = None, **extra: Any) -> None:
    run = s.get(Run, run_id)
    run.status = RunStatus.FAILED
    run.error = error
    run.stderr_tail = stderr_tail if stderr_tail else error
    run.finished_at = utcnow()
    for k, v in extra.items():
        setattr(run, k, v)


def add_measurements(s: Session, run_id: str, values: Iterable[MetricValue]) -> None:
    for v in values:
        s.add(Measurement(run_id=run_id, metric=v.name, unit=v.unit, value=v.value, ci_low=v.ci_low,
                          ci_high=v.ci_high, n=v.n, method=v.method, note=v.note, params=dict(v.params)))


def add_samples(s: Session, run_id: str, kind: SampleKind, arr: np.ndarray) -> None:
    data, dtype, n = encode_array(arr)
    s.add(Samples(run_id=run_id, kind=kind, dtype=dtype, n=n, data=data))


def add_group_metrics(s: Session, run_id: str, rows: Iterable[Any]) -> None:
    for g in rows:
        s.add(GroupMetric(run_id=run_id, attribute=g.attribute, group=g.group, metric=g.metric, value=g.value,
                          ci_low=g.ci_low, ci_high=g.ci_high, n=g.n, small=g.small))


def is_detail(m: Measurement) -> bool:
    """A detail row (per attribute, per batch size) is never a headline (heptathlon.bench.metrics.is_detail)."""
    return metrics_is_detail(m.params)


def load_samples(s: Session, run_id: str, kind: SampleKind) -> np.ndarray | None:
    row = s.scalar(select(Samples).where(Samples.run_id == run_id, Samples.kind == kind))
    return None if row is None else decode_array(row.data, row.dtype)


def run_measurements(s: Session, run_id: str) -> dict[str, Measurement]:
    """The run's headline row of each metric it stored (heptathlon.db.results)."""
    return R.headline_measurements(s, [run_id])[run_id]


# ---- leaderboard -------------------------------------------------------------------------------
def leaderboard(s: Session, *, task: str | None = None, profile: str | None = None, scenario: str | None = None,
                machine_id: int | None = None) -> list[dict[str, Any]]:
    """The latest succeeded run of each series (heptathlon.db.results), with its headline values.

    ``trials`` is the trial count of a run whose headline values are pooled over trials, else None.
    """
    conds = []
    if task:
        conds.append(Run.task_name == task)
    if profile:
        conds.append(Run.profile_name == profile)
    if scenario:
        conds.append(Run.scenario == scenario)
    if machine_id is not None:
        conds.append(Run.machine_id == machine_id)
    q = (select(Run, Submission).join(Submission, Run.submission_id == Submission.id)
         .where(Run.id.in_(R.latest_run_ids(*conds))))
    pairs = list(s.execute(q))
    meas = R.headline_measurements(s, [r.id for r, _ in pairs])
    rows = []
    for run, sub_ in pairs:
        rows.append({"run_id": run.id, "submission": sub_.name, "version": sub_.version, "kind": sub_.kind,
                     "task": run.task_name, "profile": run.profile_name, "scenario": run.scenario,
                     "machine_id": run.machine_id, "finished_at": run.finished_at, "metrics": meas[run.id],
                     "load": load_label(run.params) if run.scenario == "generate" else None,
                     "trials": R.trials_of_headlines(meas[run.id]),
                     "unsandboxed": bool(((run.controls or {}).get("sandbox") or {}).get("unsandboxed")),
                     # "trusted-in-process" (--trusted), "model-process", "no-code-in-worker"; None before it was recorded
                     "isolation": (run.controls or {}).get("isolation")})
    rows.sort(key=lambda r: (r["task"] or "", r["profile"], r["scenario"], r["submission"]))
    return rows


def counts(s: Session) -> dict[str, int]:
    return {status: n for status, n in s.execute(select(Run.status, func.count()).group_by(Run.status))}


def latest_time(s: Session) -> datetime | None:
    return s.scalar(select(func.max(Run.finished_at)))
