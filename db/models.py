"""SQLAlchemy 2.0 typed models following DESIGN.md's schema sketch. Plain declarations only."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from heptathlon.bench.series import SERIES_KEY_LENGTH


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Machine(Base):
    __tablename__ = "machine"
    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint_hash: Mapped[str] = mapped_column(String(64), unique=True)
    specs: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Profile(Base):
    __tablename__ = "profile"
    __table_args__ = (UniqueConstraint("name", "spec_hash"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    spec_hash: Mapped[str] = mapped_column(String(64))
    yaml: Mapped[str] = mapped_column(Text)


class Task(Base):
    __tablename__ = "task"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    spec: Mapped[dict[str, Any]]


class Submission(Base):
    __tablename__ = "submission"
    __table_args__ = (UniqueConstraint("name", "version", "artifact_sha256"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]]
    store_path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Run(Base):
    __tablename__ = "run"
    __table_args__ = (
        Index("ix_run_series", "submission_id", "profile_name", "scenario"),
        Index("ix_run_status_created", "status", "created_at"),
        Index("ix_run_dashboard", "status", "task_name", "profile_name", "scenario", "machine_id", "submission_id",
              "finished_at"),  # migration 0002: the leaderboard's filters and latest-run query
        Index("ix_run_series_key", "series_key", "finished_at"),  # migration 0003: a series' runs, in order
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Foreign keys are nullable so that a submission that never validated still leaves a
    # failed-run record; the *_ref columns keep what the user asked for.
    submission_id: Mapped[int | None] = mapped_column(ForeignKey("submission.id"))
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profile.id"))
    machine_id: Mapped[int | None] = mapped_column(ForeignKey("machine.id"))
    submission_ref: Mapped[str] = mapped_column(Text)
    profile_name: Mapped[str] = mapped_column(String(128))
    task_name: Mapped[str | None] = mapped_column(String(128))
    scenario: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))  # heptathlon.bench.run_status.RunStatus
    error: Mapped[str | None] = mapped_column(Text)
    stderr_tail: Mapped[str | None] = mapped_column(Text)
    trial: Mapped[int] = mapped_column(Integer, default=0)
    group_id: Mapped[str | None] = mapped_column(String(36))  # runs queued together (trials, a nightly)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    software: Mapped[dict[str, Any]] = mapped_column(default=dict)
    controls: Mapped[dict[str, Any]] = mapped_column(default=dict)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # heptathlon.bench.series.SeriesKey.id, set by heptathlon.db.series once the run has a
    # submission and a machine (None before: a queued run, a request rejected before it ran).
    series_key: Mapped[str | None] = mapped_column(String(SERIES_KEY_LENGTH))
    # migration 0004, the run lifecycle (heptathlon.db.lifecycle): the harness that claimed the run
    # (host, pid, process start time, so a reused pid is told apart), the lease it renews while
    # the run is running, and how a run ended that its harness did not finish (SIGINT, SIGTERM,
    # harness_died, lease_expired); None for a run its harness finished.
    owner_host: Mapped[str | None] = mapped_column(String(255))
    owner_pid: Mapped[int | None] = mapped_column(Integer)
    owner_started: Mapped[float | None] = mapped_column(Float)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    interruption: Mapped[str | None] = mapped_column(String(32))

    submission: Mapped[Submission | None] = relationship()
    profile: Mapped[Profile | None] = relationship()
    machine: Mapped[Machine | None] = relationship()
    measurements: Mapped[list["Measurement"]] = relationship(back_populates="run", cascade="all, delete-orphan")


class Measurement(Base):
    __tablename__ = "measurement"
    __table_args__ = (Index("ix_measurement_run_metric", "run_id", "metric"), Index("ix_measurement_metric", "metric"))
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int | None] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)  # e.g. batch size, runtime, trial

    run: Mapped[Run] = relationship(back_populates="measurements")


class Samples(Base):
    __tablename__ = "samples"
    __table_args__ = (Index("ix_samples_run_kind", "run_id", "kind"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))  # heptathlon.bench.metrics.SampleKind
    dtype: Mapped[str] = mapped_column(String(16))
    n: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)  # zlib-compressed little-endian array


class GroupMetric(Base):
    __tablename__ = "group_metric"
    __table_args__ = (Index("ix_group_metric_run", "run_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    attribute: Mapped[str] = mapped_column(String(128))
    group: Mapped[str] = mapped_column(String(256))
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    small: Mapped[bool] = mapped_column(default=False)


class Alert(Base):
    __tablename__ = "alert"
    __table_args__ = (Index("ix_alert_status", "status"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    series_key: Mapped[str] = mapped_column(Text)
    metric: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))  # regression | improvement | drift | broke
    baseline_run_ids: Mapped[list[Any]] = mapped_column(default=list)
    candidate_run_id: Mapped[str | None] = mapped_column(ForeignKey("run.id", ondelete="SET NULL"))
    test: Mapped[str | None] = mapped_column(String(64))
    p_value: Mapped[float | None] = mapped_column(Float)
    effect: Mapped[float | None] = mapped_column(Float)
    z_score: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | acknowledged | expected
    context_diff: Mapped[list[Any]] = mapped_column(default=list)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Lock(Base):
    """Database-level lock rows (nightly suites); a unique name means one holder at a time."""

    __tablename__ = "lock"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
