"""The nightly job: suite → queued runs → detection → alerts → reports (docs/nightly.md).

A thin shell around the pure core: ``heptathlon.bench.app.suite`` says what to run, ``heptathlon.bench.app.service`` runs it,
``heptathlon.bench.regression`` judges each series against its baseline and ``heptathlon.bench.app.report``
renders the night. This module only moves data between them and the database:

- **One night** is one suite on one date on one host. Its runs share a group id derived from
  those three, and each run carries ``run.extra["nightly"]`` (suite, date, host, entry, series,
  ...). Re-running a night reuses every run that finished; runs that a crash left queued or
  running are executed again under their own ids; nothing is duplicated.
- **The lock** is a row of the ``lock`` table named after the suite and host: its primary key
  lets exactly one process insert it, on SQLite and PostgreSQL alike. See :func:`lock_stale_reason`
  for when a left-over lock is taken over.
- **History.** The baseline of a series comes from earlier nights' runs of the same series
  (any suite, any host of the same fingerprint class). Alerts steer it: a run with an open
  regression or drift alert stays out of the baseline, and a run with an alert marked expected
  starts a new baseline segment.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from sqlalchemy.exc import IntegrityError

from heptathlon.bench.errors import AlertError, HeptathlonError, OptionsError
from heptathlon.bench.fingerprint import collect_fingerprint, fingerprint_hash, software_context
from heptathlon.bench.manifest import load_manifest
from heptathlon.bench.metrics import SampleKind
from heptathlon.bench.run_status import RunStatus
from heptathlon.bench.app.report import NightlyReport, ReportPaths, write_reports
from heptathlon.bench.regression import (
    Alert as AlertFinding,
    NightlyRun,
    SeriesKey,
    SeriesResult,
    alerts_from,
    check_night,
    select_baseline,
    series_key,
)
from heptathlon.bench.app.schedule import StopEvent, run_on_schedule
from heptathlon.bench.app.suite import Suite, SuiteEntry, SuiteError, load_suite
from heptathlon.db import lifecycle as L
from heptathlon.db import nightly_queries as NQ
from heptathlon.db import queries as Q
from heptathlon.db.models import Run
from heptathlon.db.session import ensure_schema, home_dir, session_scope

log = logging.getLogger(__name__)

# sysexits.h EX_TEMPFAIL: another process holds this suite's lock; try again later.
EXIT_LOCKED = 75
# A lock older than this is stale whoever holds it: no night runs for a day (the systemd unit
# gives a night at most 6 h, TimeoutStartSec).
LOCK_MAX_AGE = timedelta(hours=24)
# Alert kinds whose open alert keeps its run out of the baseline (docs/nightly.md).
EXCLUDING_KINDS = ("regression", "drift")
_NIGHT_NAMESPACE = uuid.UUID("5b0f3c1e-6a0d-4c55-9a57-2f1f4b6f1e01")  # group ids of nights


class NightlyLockedError(HeptathlonError):
    """Another nightly process holds the suite's lock."""

    exit_code = EXIT_LOCKED


def default_report_dir() -> Path:
    return home_dir() / "nightly"


def parse_night(value: str | date | None) -> date:
    """The night's date: ``YYYY-MM-DD``, or today (local time) when not given."""
    if value is None:
        return datetime.now().astimezone().date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise OptionsError(f"--date {value!r}: expected a date as YYYY-MM-DD, e.g. 2026-11-22") from None


def this_host() -> str:
    return socket.gethostname()[:64] or "localhost"


# ---- suite --------------------------------------------------------------------------------------------
def load_nightly_suite(path: Path | str) -> Suite:
    """Validate the suite, its submission manifests and profiles; raise SuiteError listing every problem.

    On top of ``load_suite``: two folders whose manifests share a name would be one series, so
    that is a problem too.
    """
    names: dict[str, list[Path]] = {}

    def check_submission(folder: Path) -> None:
        names.setdefault(load_manifest(folder).name, []).append(folder)

    problems: list[str] = []
    suite = None
    try:
        suite = load_suite(path, check_submission=check_submission)
    except SuiteError as e:
        problems = list(e.problems)
    for name, folders in names.items():
        if len(folders) > 1:
            problems.append(f"field 'submissions': {', '.join(map(str, folders))} all have the name {name!r} "
                            "in their submission.yaml; a series is named by it, so each must be unique")
    if problems or suite is None:
        raise SuiteError(path, problems)
    return suite


# ---- nightly bookkeeping ---------------------------------------------------------------------------------
def night_group_id(suite: str, night: date, host: str) -> str:
    """The group id shared by every run of one night of one suite on one host."""
    return str(uuid.uuid5(_NIGHT_NAMESPACE, f"{suite}|{night.isoformat()}|{host}"))


def entry_id(entry: SuiteEntry) -> str:
    """Identity of a suite entry within a night (folder, profile, series parameters)."""
    raw = json.dumps([str(entry.submission_dir), entry.profile, entry.series_params], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def nightly_marker(suite: str, entry: SuiteEntry, night: date, host: str, fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """What a nightly run stores under ``run.extra["nightly"]``."""
    m = load_manifest(entry.submission_dir)
    key = series_key(m.name, m.task, entry.profile, entry.scenario.name, entry.series_params, fingerprint)
    return {"suite": suite, "date": night.isoformat(), "host": host, "entry": entry_id(entry),
            "submission": m.name, "task": m.task, "params": key.params,
            "fingerprint_class": key.fingerprint_class, "series": key.id}


@dataclass(frozen=True)
class EntryOutcome:
    """What the night did with one suite entry."""

    entry: SuiteEntry
    action: str  # ran | reused | resumed | retried
    status: str  # succeeded | failed
    run_ids: tuple[str, ...]
    error: str | None = None


# ---- the lock ------------------------------------------------------------------------------------------
def lock_name(suite: str, host: str) -> str:
    return f"nightly:{suite}@{host}"[:128]


def lock_holder(host: str | None = None, pid: int | None = None) -> str:
    """``host:pid:process-start`` of this process: the start time tells a reused pid apart."""
    pid = os.getpid() if pid is None else pid
    return f"{host or this_host()}:{pid}:{int(psutil.Process(pid).create_time())}"


def describe_holder(holder: str) -> str:
    host, _, rest = holder.partition(":")
    pid, _, start = rest.partition(":")
    try:
        since = datetime.fromtimestamp(int(start)).astimezone().isoformat(timespec="seconds")
    except (ValueError, OverflowError, OSError):
        return holder
    return f"process {pid} on {host} (started {since})"


def lock_stale_reason(holder: str, acquired_at: datetime, *, now: datetime, host: str,
                      max_age: timedelta = LOCK_MAX_AGE) -> str | None:
    """Why a lock left in the table is stale, or None while its holder may still be running.

    The rule: a lock is stale when it is older than ``max_age`` (24 h), or when its holder is on
    this host and that process is gone (no such pid, or the pid now belongs to a process started
    at another time). A holder on another host is trusted until ``max_age``.
    """
    if acquired_at.tzinfo is None:  # SQLite hands back naive UTC
        acquired_at = acquired_at.replace(tzinfo=timezone.utc)
    age = now - acquired_at
    if age > max_age:
        return f"it was taken {age} ago, more than {max_age}"
    h, _, rest = holder.partition(":")
    pid_s, _, start_s = rest.partition(":")
    if h != host or not pid_s.isdigit():
        return None
    try:
        started = int(psutil.Process(int(pid_s)).create_time())
    except psutil.NoSuchProcess:
        return f"process {pid_s} no longer exists"
    except psutil.Error:
        return None
    if start_s.isdigit() and started != int(start_s):
        return f"process {pid_s} has exited (the pid now belongs to another process)"
    return None


def acquire_lock(db: str | None, name: str, holder: str, *, host: str, max_age: timedelta = LOCK_MAX_AGE,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> str | None:
    """Take the lock row ``name`` for ``holder``; return the reason when a stale lock was taken over.

    Raises NightlyLockedError, naming the holder, when another live process has it.
    """
    for _ in range(3):  # the lock may be released or taken over between our reads
        try:
            with session_scope(db) as s:
                NQ.insert_lock(s, name, holder)
            return None
        except IntegrityError:
            pass
        with session_scope(db) as s:
            row = NQ.get_lock(s, name)
            if row is None:
                continue
            reason = lock_stale_reason(row.holder, row.acquired_at, now=now(), host=host, max_age=max_age)
            if reason is None:
                since = row.acquired_at if row.acquired_at.tzinfo else row.acquired_at.replace(tzinfo=timezone.utc)
                raise NightlyLockedError(
                    f"lock {name!r} is held by {describe_holder(row.holder)} since {since.isoformat(timespec='seconds')}: "
                    "another nightly run of this suite is in progress; this one does nothing. The lock is "
                    f"taken over once that process has exited or after {max_age} (holder {row.holder!r}).")
            # Compare-and-delete, then insert, in one transaction: of two processes that both
            # saw the stale row, only one deletes it.
            if NQ.delete_lock(s, name, row.holder):
                NQ.insert_lock(s, name, holder)
                log.warning("took over stale nightly lock %r from %s: %s", name, row.holder, reason)
                return f"took over a stale lock from {describe_holder(row.holder)}: {reason}"
    raise NightlyLockedError(f"lock {name!r}: could not be taken; another nightly process keeps taking it")


def release_lock(db: str | None, name: str, holder: str) -> bool:
    with session_scope(db) as s:
        return NQ.delete_lock(s, name, holder)


# ---- running the suite -------------------------------------------------------------------------------
ProgressFn = Callable[[int, int, SuiteEntry, str], None]


def _execute(run_id: str, db: str | None) -> None:
    """heptathlon.bench.app.service.execute_run, and a failure record for anything it lets through."""
    from heptathlon.bench.app.service import execute_run

    try:
        execute_run(run_id, db=db, trusted=False)  # the nightly never runs a model in its measuring process
    except Exception as e:  # noqa: BLE001  one entry's failure never stops the night
        with session_scope(db) as s:  # only a run this night left queued or running, never a finished one
            run = Q.get_run(s, run_id)
            if run is not None and run.status in (RunStatus.QUEUED, RunStatus.RUNNING) and (
                    run.status == RunStatus.QUEUED or L.owner_of(run) == L.Owner.current()):
                Q.record_failure(s, run_id, f"run {run_id[:8]}: {type(e).__name__}: {e}")


def interleaved(pending: Sequence[tuple[int, int, str]]) -> list[str]:
    """Run ids of (entry index, trial, run id) in trial-major order: trial 0 of every entry, then
    trial 1 of every entry, ... so drift during the night hits every entry's trials alike."""
    return [rid for _, _, rid in sorted(pending, key=lambda x: (x[1], x[0]))]


def run_entries(suite: Suite, night: date, *, db: str | None, host: str, fingerprint: Mapping[str, Any],
                retry_failed: bool = False, on_progress: ProgressFn | None = None,
                fleet: Callable[[list[str]], None] | None = None) -> list[EntryOutcome]:
    """Run every entry of the suite that this night has not finished yet; reuse the rest.

    Every entry is queued first; the runs then execute interleaved across entries by trial
    (:func:`interleaved`). ``fleet(run_ids)``: dispatch the night's pending runs, in that order,
    to the measuring fleet and wait for them (heptathlon.bench.app.fleet.nightly_dispatcher)
    instead of executing each here."""
    from heptathlon.bench.app.service import queue_runs, record_rejected

    group = night_group_id(suite.name, night, host)
    software = software_context()
    with session_scope(db) as s:
        machine_id = Q.get_or_create_machine(s, fingerprint_hash(dict(fingerprint)), dict(fingerprint)).id
    entries = suite.entries()
    planned: list[tuple[SuiteEntry, dict[str, Any], str]] = []
    to_run: list[tuple[int, int, str]] = []
    for i, entry in enumerate(entries):
        marker = nightly_marker(suite.name, entry, night, host, fingerprint)
        with session_scope(db) as s:
            night_runs = [r for r in NQ.runs_of_night(s, group)
                          if (m := NQ.nightly_marker(r)) and m.get("entry") == marker["entry"] and not m.get("superseded")]
            # A run a crash or a signal interrupted (reaped as "harness died", "lease expired", or
            # "interrupted by SIGTERM") is queued again under its own id: we hold the night's lock.
            for r in night_runs:
                if r.status == RunStatus.FAILED and r.interruption:
                    L.requeue_run(s, r)
            runs = [(r.id, RunStatus.QUEUED if r.status == RunStatus.FAILED and r.interruption else r.status)
                    for r in night_runs]
        failed = [rid for rid, st in runs if st == RunStatus.FAILED]
        # Left queued by a crash; a run still 'running' has a live owner (a dead one's was reaped
        # when the database was opened) and execute_run's claim leaves it to that owner.
        pending = [rid for rid, st in runs if st in (RunStatus.QUEUED, RunStatus.RUNNING)]
        action = "reused"
        if retry_failed and failed:
            with session_scope(db) as s:
                NQ.supersede_runs(s, [rid for rid, _ in runs], by="retry")
            runs, pending, action = [], [], "retried"
        if not runs:
            action = "ran" if action == "reused" else action
            if on_progress:
                on_progress(i + 1, len(entries), entry, "queued")
            try:
                pending = queue_runs(entry.submission_dir, [entry.profile], [entry.scenario], db=db,
                                     trials=entry.trials, group_id=group, extra={NQ.NIGHTLY: marker},
                                     energy=entry.energy,
                                     **({"timeout_s": entry.timeout_s} if entry.timeout_s else {}))
            except Exception as e:  # noqa: BLE001  a rejected submission is this night's failed run
                ids = getattr(e, "run_ids", None) or record_rejected(
                    entry.submission_dir, [entry.profile], [entry.scenario.name], e, db, group_id=group,
                    params=[entry.scenario.to_params()])
                with session_scope(db) as s:
                    NQ.tag_nightly_runs(s, ids, marker, machine_id=machine_id, software=software)
                pending = []
        elif pending:
            action = "resumed"
            if on_progress:
                on_progress(i + 1, len(entries), entry, "resuming")
        if pending:
            with session_scope(db) as s:
                to_run += [(i, Q.get_run(s, rid).trial, rid) for rid in pending]
        planned.append((entry, marker, action))
    order = interleaved(to_run)
    if fleet is not None:
        if order:
            fleet(order)
    else:
        for k, rid in enumerate(order):
            if on_progress:
                i = next(e for e, _, r in to_run if r == rid)
                on_progress(i + 1, len(entries), entries[i], f"running ({k + 1}/{len(order)} of the night's runs, "
                                                              "interleaved by trial)")
            _execute(rid, db)
    outcomes = []
    for i, (entry, marker, action) in enumerate(planned):
        outcomes.append(_entry_outcome(db, group, entry, marker, action, machine_id, software))
        if on_progress:
            o = outcomes[-1]
            on_progress(i + 1, len(entries), entry, f"{action}: {o.status}" + (f" ({o.error})" if o.error else ""))
    if suite.spec.params.trials > 1:
        from heptathlon.bench.app.service import pool_trials

        pool_trials(group, db=db)
    return outcomes


def _entry_outcome(db: str | None, group: str, entry: SuiteEntry, marker: dict[str, Any], action: str,
                   machine_id: int, software: dict[str, Any]) -> EntryOutcome:
    with session_scope(db) as s:
        current = [r for r in NQ.runs_of_night(s, group)
                   if (m := NQ.nightly_marker(r)) and m.get("entry") == marker["entry"] and not m.get("superseded")]
        NQ.tag_nightly_runs(s, [r.id for r in current], marker, machine_id=machine_id, software=software)
        bad = [r for r in current if r.status != RunStatus.SUCCEEDED]
        return EntryOutcome(entry, action, RunStatus.FAILED if bad else RunStatus.SUCCEEDED, tuple(r.id for r in current),
                            bad[-1].error if bad else None)


# ---- from database rows to NightlyRun values -----------------------------------------------------------------
@dataclass
class _NightOfSeries:
    """The runs of one entry on one night (k trials), before they become one NightlyRun."""

    marker: dict[str, Any]
    runs: list[Run] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(r.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) for r in self.runs)

    @property
    def representative(self) -> Run:
        """The run that stands for the night: a failed trial, else the one holding pooled values."""
        failed = [r for r in self.runs if r.status == RunStatus.FAILED]
        if failed:
            return max(failed, key=lambda r: (r.trial, r.created_at))
        pooled = [r for r in self.runs if (r.extra or {}).get("pooled")]
        return max(pooled or self.runs, key=lambda r: (r.finished_at or r.created_at, r.trial))


def _group_by_night(runs: Iterable[Run]) -> list[_NightOfSeries]:
    groups: dict[tuple, _NightOfSeries] = {}
    for r in runs:
        m = NQ.nightly_marker(r)
        if m is None or m.get("superseded"):
            continue
        key = (m.get("suite"), m.get("date"), m.get("host"), m.get("entry"))
        groups.setdefault(key, _NightOfSeries(m)).runs.append(r)
    return list(groups.values())


def _series_of(night: _NightOfSeries) -> SeriesKey:
    """The night's series, named from its marker: its labels for reports and alerts."""
    m, rep = night.marker, night.representative
    fp = rep.machine.specs if rep.machine is not None else None
    key = series_key(m["submission"], m.get("task") or rep.task_name or "", rep.profile_name, rep.scenario,
                     m.get("params") or {}, fp or {})
    return key if fp else replace(key, fingerprint_class=m.get("fingerprint_class", ""))


def _series_id(night: _NightOfSeries) -> str:
    """The stored ``run.series_key`` of the night; a request rejected before it was stored has none."""
    return night.representative.series_key or _series_of(night).id


def _night_start(night: _NightOfSeries) -> datetime:
    """The night's date at the time of day its run was queued: nights order by date, not by when they ran
    (a night re-run or filled in later keeps its place)."""
    t = night.representative.created_at
    return datetime.combine(date.fromisoformat(night.marker["date"]), t.replace(tzinfo=None).time(),
                            tzinfo=timezone.utc)


# Metrics without per-query samples, tested on their per-trial values (heptathlon.bench.regression).
PER_TRIAL_METRICS = ("throughput_sps", "peak_rss_mb", "load_s", "energy_j", "energy_per_sample_j", "gpu_peak_mb",
                     "requests_per_s", "tokens_per_s", "output_tokens_per_s")


def _contended(night: _NightOfSeries) -> bool:
    """Whether any trial of the night was marked contended (its contention_share row)."""
    from heptathlon.bench.contention import is_contended

    return any(m.metric == "contention_share" and is_contended(m.params) for r in night.runs
               for m in (r.measurements or []))


def _what_ran(rep: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    """The artifact (sha256, manifest) and the profile (name, spec hash) of a run, for the context diff."""
    sub, prof = rep.submission, rep.profile
    artifact = {"sha256": sub.artifact_sha256, "manifest": sub.manifest} if sub is not None else {}
    profile = {"name": prof.name, "spec_hash": prof.spec_hash} if prof is not None else {}
    return artifact, profile


def _light_run(night: _NightOfSeries, alerts: Sequence[Any], series: SeriesKey,
               include_contended: bool = False) -> NightlyRun:
    rep = night.representative
    mine = [a for a in alerts if a.candidate_run_id == rep.id]
    artifact, profile = _what_ran(rep)
    return NightlyRun(
        run_id=rep.id, series=series, started_at=_night_start(night),
        status=RunStatus.FAILED if rep.status == RunStatus.FAILED else RunStatus.SUCCEEDED,
        software=dict(rep.software or {}), fingerprint=dict(rep.machine.specs) if rep.machine else {},
        error=rep.error,
        excluded_from_baseline=any(a.status == NQ.OPEN and a.kind in EXCLUDING_KINDS for a in mine)
        or (not include_contended and _contended(night)),
        starts_baseline=any(a.status == NQ.EXPECTED for a in mine),
        artifact=artifact, profile=profile,
    )


def _with_results(s, light: NightlyRun, night: _NightOfSeries) -> NightlyRun:
    """Add metrics, raw latency samples (pooled over trials) and predictions to a run."""
    if light.status != RunStatus.SUCCEEDED:
        return light
    rep = night.representative
    metrics = {name: m.value for name, m in Q.run_measurements(s, rep.id).items() if m.value is not None}
    lat = [x for r in sorted(night.runs, key=lambda r: r.trial)
           if (x := Q.load_samples(s, r.id, SampleKind.LATENCY_NS)) is not None]
    samples: dict[str, Any] = {SampleKind.LATENCY_NS: np.concatenate(lat)} if lat else {}
    if len(night.runs) >= 2:  # per-trial values of the metrics that have no per-query samples
        from heptathlon.bench.metrics import is_detail

        for name in PER_TRIAL_METRICS:
            vals = []
            for r in night.runs:
                own = [m for m in NQ.measurements_of(s, r.id) if m.metric == name and m.value is not None
                       and not (m.params or {}).get("pooled") and not is_detail(m.params)]
                if own:
                    vals.append(float(min(own, key=lambda m: m.id).value))
            if len(vals) == len(night.runs):
                samples[name] = vals
    return replace(light, metrics=metrics, samples=samples,
                   predictions=Q.load_samples(s, rep.id, SampleKind.PREDICTIONS))


@dataclass(frozen=True)
class NightData:
    """Tonight's candidates and their series' history, ready for ``check_night``."""

    candidates: tuple[NightlyRun, ...]
    history: tuple[NightlyRun, ...]
    run_dates: Mapping[str, str]  # run id -> night (YYYY-MM-DD)


def load_night(suite: Suite, night: date, *, db: str | None, host: str, include_contended: bool = False) -> NightData:
    """Build the night's candidate runs (suite order) and the history of their series.

    Only the runs that can enter a baseline window get their samples loaded.
    """
    config = suite.detection_config()
    order = {entry_id(e): i for i, e in enumerate(suite.entries())}
    with session_scope(db) as s:
        tonight = [n for n in _group_by_night(NQ.runs_of_night(s, night_group_id(suite.name, night, host)))
                   if n.marker.get("entry") in order and n.complete]
        tonight.sort(key=lambda n: order[n.marker["entry"]])
        # Membership of a series is the stored key; the candidate's key object names it.
        series = {_series_id(n): _series_of(n) for n in tonight}
        past = {n.representative.id: n
                for n in _group_by_night(NQ.nightly_runs_of(s, series_keys=series, before=night.isoformat()))
                if n.complete and _series_id(n) in series}
        alerts = NQ.alerts_of_runs(s, [n.representative.id for n in [*tonight, *past.values()]])
        cand_light = [_light_run(n, alerts, series[_series_id(n)], include_contended) for n in tonight]
        hist_light = {rid: _light_run(n, alerts, series[_series_id(n)], include_contended) for rid, n in past.items()}
        needed = {r.run_id for c in cand_light for r in select_baseline(hist_light.values(), c, config.window)}
        candidates = tuple(_with_results(s, c, n) for c, n in zip(cand_light, tonight))
        history = tuple(_with_results(s, lr, past[rid]) if rid in needed else lr for rid, lr in hist_light.items())
        dates = {n.representative.id: n.marker["date"] for n in [*tonight, *past.values()]}
    return NightData(candidates, history, dates)


# ---- alerts -------------------------------------------------------------------------------------------------
def _finite(v: float | None) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def store_alerts(results: Sequence[SeriesResult], *, db: str | None, suite: str, night: date,
                 host: str) -> dict[str, int]:
    """Insert tonight's alerts, keeping the status of ones already stored; return {alert key: alert id}.

    Open alerts of tonight's runs that tonight's check no longer finds become ``superseded``.
    """
    found = alerts_from(results)
    by_result = {(r.series.id, r.candidate_run_id): r for r in results}
    ids: dict[str, int] = {}
    with session_scope(db) as s:
        for a in found:
            metric = a.metric or "run"
            row = NQ.find_alert(s, series_key=a.series_id, metric=metric, kind=a.kind,
                                candidate_run_id=a.candidate_run_id)
            if row is None:
                r = by_result[(a.series_id, a.candidate_run_id)]
                d = next((d for d in r.detections if d.metric == a.metric and d.kind == a.kind), None)
                row = NQ.add_alert(
                    s, series_key=a.series_id, metric=metric, kind=a.kind, baseline_run_ids=list(a.baseline_run_ids),
                    candidate_run_id=a.candidate_run_id, test=_test_name(a), p_value=_finite(a.p_value),
                    effect=_finite(a.rel_change), z_score=_finite(a.z_score), status=NQ.OPEN,
                    context_diff=[{"path": c.path, "change": str(c)} for c in r.context_changes],
                    detail={"key": a.key, "series": a.series_label, "suite": suite, "date": night.isoformat(),
                            "host": host, "message": a.message, "flip_rate": _finite(a.flip_rate),
                            "baseline_value": _finite(d.baseline_value) if d else None,
                            "candidate_value": _finite(d.candidate_value) if d else None,
                            "threshold": d.threshold if d else None, "n_baseline": d.n_baseline if d else None,
                            "series_key": {"submission": r.series.submission, "task": r.series.task,
                                           "profile": r.series.profile, "scenario": r.series.scenario,
                                           "params": r.series.params,
                                           "fingerprint_class": r.series.fingerprint_class}})
            ids[a.key] = row.id
        # A night evaluated again (e.g. after an earlier night's alert was acknowledged, which
        # changes the baseline) may no longer find what it found before: such an open alert would
        # otherwise keep its run out of every later baseline.
        for row in NQ.alerts_of_runs(s, [r.candidate_run_id for r in results]):
            if row.status == NQ.OPEN and alert_key(row) not in ids:
                NQ.set_alert_status(s, row, NQ.SUPERSEDED, by="nightly re-evaluation")
    return ids


def _test_name(a: AlertFinding) -> str | None:
    if a.kind in ("regression", "improvement"):
        return "mann-whitney-u+z-score"
    if a.kind == "drift":
        return "flip-rate" if a.flip_rate is not None else "value-change"
    return None


def alert_key(row: Any) -> str:
    """The ``heptathlon.bench.regression.Alert.key`` of a stored alert row."""
    return f"{row.series_key}:{row.metric}:{row.kind}:{row.candidate_run_id}"


def acknowledged_keys(db: str | None, run_ids: Sequence[str]) -> frozenset[str]:
    """Keys of the alerts of these runs that a maintainer acknowledged or marked expected."""
    with session_scope(db) as s:
        return frozenset(alert_key(a) for a in NQ.alerts_of_runs(s, run_ids)
                         if a.status in (NQ.ACKNOWLEDGED, NQ.EXPECTED))


def set_alert_status(db: str | None, alert_ids: Sequence[int], status: str, *, by: str | None = None) -> list[dict]:
    """Acknowledge alerts or mark them expected; every id is checked before any is changed."""
    if status not in (NQ.ACKNOWLEDGED, NQ.EXPECTED, NQ.OPEN):
        raise AlertError(f"alert status {status!r}: expected acknowledged, expected or open")
    by = by or getpass.getuser()
    with session_scope(db) as s:
        rows = [(i, NQ.get_alert(s, i)) for i in alert_ids]
        missing = [str(i) for i, a in rows if a is None]
        if missing:
            raise AlertError(f"alert {', '.join(missing)}: no such alert; list them with: heptathlon alerts --all")
        if status == NQ.EXPECTED:
            broke = [str(i) for i, a in rows if a.kind == "broke"]
            if broke:
                raise AlertError(f"alert {', '.join(broke)}: a failed run cannot start a new baseline; "
                                 "acknowledge it instead (heptathlon alerts ack ID)")
        for _, a in rows:
            if a.status != status:
                NQ.set_alert_status(s, a, status, by=by)
        return [alert_as_dict(a) for _, a in rows]


def alert_as_dict(a: Any) -> dict[str, Any]:
    d = a.detail or {}
    return {"id": a.id, "status": a.status, "kind": a.kind, "series": d.get("series"), "metric": a.metric,
            "suite": d.get("suite"), "date": d.get("date"), "candidate_run_id": a.candidate_run_id,
            "baseline_run_ids": list(a.baseline_run_ids or []), "test": a.test, "p_value": a.p_value,
            "z_score": a.z_score, "rel_change": a.effect, "flip_rate": d.get("flip_rate"),
            "baseline_value": d.get("baseline_value"), "candidate_value": d.get("candidate_value"),
            "message": d.get("message"), "series_key": a.series_key,
            "context_diff": [c.get("change") if isinstance(c, dict) else str(c) for c in (a.context_diff or [])],
            "created_at": a.created_at.isoformat() if a.created_at else None, "history": d.get("history", [])}


def list_alerts(db: str | None, *, include_closed: bool = False) -> list[dict[str, Any]]:
    """Open alerts (every status with ``include_closed``), newest first."""
    ensure_schema(db)
    with session_scope(db) as s:
        return [alert_as_dict(a) for a in NQ.list_alerts(s, None if include_closed else [NQ.OPEN])]


# ---- one night -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NightlyOutcome:
    suite: str
    night: date
    entries: tuple[EntryOutcome, ...]
    report: NightlyReport
    paths: ReportPaths
    alert_ids: Mapping[str, int]  # alert key -> alert table id
    lock_note: str | None = None

    @property
    def exit_code(self) -> int:
        return self.report.exit_code


def earlier_open_alerts(db: str | None, suite: str, tonight_run_ids: Collection[str]) -> tuple[str, ...]:
    """One line per open blocking alert of this suite from another night: they keep the exit code non-zero."""
    with session_scope(db) as s:
        rows = NQ.list_alerts(s, [NQ.OPEN])
        return tuple(f"alert {a.id}: {(a.detail or {}).get('series')} {a.metric} {a.kind} on "
                     f"{(a.detail or {}).get('date')}" for a in rows
                     if (a.detail or {}).get("suite") == suite and a.kind != "improvement"
                     and a.candidate_run_id not in tonight_run_ids)


def run_nightly(suite_path: Path | str, *, night: date | str | None = None, report_dir: Path | str | None = None,
                db: str | None = None, retry_failed: bool = False, host: str | None = None,
                lock_max_age: timedelta = LOCK_MAX_AGE, on_progress: ProgressFn | None = None,
                fleet: Callable[[list[str]], None] | None = None,
                include_contended: bool = False) -> NightlyOutcome:
    """One night of a suite: validate, lock, run what is missing, detect, store alerts, write reports.

    Runs marked contended (heptathlon.bench.contention) stay out of baselines unless
    ``include_contended``. The exit code counts every open blocking alert of the suite, earlier
    nights' too, not only tonight's."""
    suite = load_nightly_suite(suite_path)  # every problem, before anything runs
    night = parse_night(night)
    host = host or this_host()
    ensure_schema(db)
    name, holder = lock_name(suite.name, host), lock_holder(host)
    note = acquire_lock(db, name, holder, host=host, max_age=lock_max_age)
    try:
        fingerprint = collect_fingerprint()
        entries = run_entries(suite, night, db=db, host=host, fingerprint=fingerprint, retry_failed=retry_failed,
                              on_progress=on_progress, fleet=fleet)
        data = load_night(suite, night, db=db, host=host, include_contended=include_contended)
        results = check_night(data.candidates, data.history, suite.detection_config())
        ids = store_alerts(results, db=db, suite=suite.name, night=night, host=host)
        now = datetime.now().astimezone()
        report = NightlyReport(suite.name, datetime.combine(night, now.time(), tzinfo=now.tzinfo), results,
                               acknowledged_keys(db, [c.run_id for c in data.candidates]), run_dates=data.run_dates,
                               earlier_open=earlier_open_alerts(db, suite.name, {c.run_id for c in data.candidates}))
        paths = write_reports(report, report_dir or default_report_dir())
    finally:
        release_lock(db, name, holder)
    return NightlyOutcome(suite.name, night, tuple(entries), report, paths, ids, note)


def run_nightly_on_schedule(cron_expr: str, run_night: Callable[[date], object], stop_event: StopEvent | threading.Event,
                            *, now: Callable[[], datetime] = lambda: datetime.now().astimezone()) -> int:
    """Run ``run_night(date)`` each time ``cron_expr`` fires, dated by the local day it fires on."""
    return run_on_schedule(cron_expr, lambda: run_night(now().date()), stop_event, now=now)
