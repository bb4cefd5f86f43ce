"""The measuring fleet (docs/fleet.md): submit to the profiles' queues, serve a queue, watch the fleet.

- :func:`submit_fleet` queues the runs in the shared database exactly as ``submit`` does, puts
  the stored artifact in the shared store (heptathlon.bench.app.artifacts) and publishes one
  :class:`~heptathlon.runners.executors.celery.FleetMessage` per run on ``hw.<profile>``.
- :func:`serve` is ``heptathlon worker``: it checks this machine can serve each profile, then
  consumes those queues with a Celery solo-pool worker (one process, one task at a time).
- :func:`handle_message` is the task body: the local ``execute`` path
  (:func:`heptathlon.bench.app.service.execute_run`: claim, execute, store in one transaction),
  with the artifact fetched by sha256 from the store. Delivery is at least once (acks late);
  the run's compare-and-set claim makes execution exactly once:

  =========================================  ==================================================
  the run, when a message arrives            what the worker does
  =========================================  ==================================================
  queued                                     claims, executes, stores, acks
  succeeded, or failed for its own reason    acks without running (a redelivery)
  failed with an interruption (its harness   requeues it (heptathlon.db.lifecycle.requeue_run),
  died, its lease expired)                   then claims and runs it from scratch
  running, owner alive or lease not expired  retries the message when the lease would expire
  missing                                    acks, with a warning
  =========================================  ==================================================
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from heptathlon.bench.app.artifacts import ArtifactStore
from heptathlon.bench.errors import HeptathlonError, ProfileError, RunError
from heptathlon.bench.profile import list_profiles, load_profile
from heptathlon.bench.run_status import RunStatus
from heptathlon.bench.scenarios import ScenarioConfig
from heptathlon.db import lifecycle as L
from heptathlon.db import queries as Q
from heptathlon.db.models import Run, utcnow
from heptathlon.db.session import ensure_schema, session_scope
from heptathlon.runners.executors.celery import (CONTROL_QUEUE, TASK_NIGHTLY, TASK_RUN, CeleryExecutor, FleetError,
                                                 FleetMessage, enqueue, make_app,
                                                 profile_of_queue, queue_depths, queue_for)

log = logging.getLogger(__name__)
TERMINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED)


class FleetUnavailable(HeptathlonError):
    """The broker cannot be reached, or a message cannot be published."""


def _app(broker: str | None):
    try:
        return make_app(broker)
    except FleetError as e:
        raise FleetUnavailable(str(e)) from None


# ---- submitting ---------------------------------------------------------------------------------------
def dispatch_runs(run_ids: list[str], *, db: str | None, broker: str | None = None,
                  artifacts: str | None = None, publish: Callable[[FleetMessage], str] | None = None) -> list[str]:
    """Put each queued run's artifact in the store and publish its message; returns the task ids.

    A run whose message cannot be published is failed with the reason (it would otherwise sit
    queued with nobody to run it), and the error is raised after the others were tried.
    ``publish``: how a message is sent (default: on the broker's ``hw.<profile>`` queue).
    """
    if publish is None:
        app = _app(broker)

        def publish(m: FleetMessage) -> str:
            return enqueue(app, m)
    store = ArtifactStore(artifacts)
    with session_scope(db) as s:
        rows = [(r.id, r.profile_name, r.scenario, r.submission.artifact_sha256, r.submission.store_path, r.status)
                for rid in run_ids if (r := Q.get_run(s, rid)) is not None and r.submission is not None]
    stored: set[str] = set()
    task_ids, failures = [], []
    for rid, profile, scenario, sha, store_path, status in rows:
        if status != RunStatus.QUEUED:
            continue
        try:
            if sha not in stored:
                store.put(Path(store_path), sha)
                stored.add(sha)
            with session_scope(db) as s:  # before the message: a fast worker must find it
                run = Q.get_run(s, rid)
                run.extra = {**(run.extra or {}), "fleet": {"queue": queue_for(profile), "artifacts": store.url}}
            task_ids.append(publish(FleetMessage(run_id=rid, sha256=sha, artifacts=store.url, profile=profile,
                                                 scenario=scenario)))
        except Exception as e:  # noqa: BLE001  the broker or the store: this run fails with the reason
            why = f"run {rid[:8]}: could not be dispatched to the fleet ({type(e).__name__}: {e})"
            with session_scope(db) as s:
                if _still_queued(s, rid):
                    Q.record_failure(s, rid, why)
            failures.append(why)
    if failures:
        raise FleetUnavailable(failures[0] + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""))
    return task_ids


def _still_queued(s, rid: str) -> bool:
    run = Q.get_run(s, rid)
    return run is not None and run.status == RunStatus.QUEUED


def submit_fleet(folder: Path, profiles: list[str], scenarios: list[ScenarioConfig], *, db: str | None,
                 broker: str | None = None, artifacts: str | None = None, **queue_kwargs: Any) -> list[str]:
    """``submit --fleet``: queue the runs in the shared database, then dispatch them."""
    from heptathlon.bench.app.service import queue_runs

    _app(broker)  # a bad broker URL is refused before anything is written
    ids = queue_runs(folder, profiles, scenarios, db=db, **queue_kwargs)
    dispatch_runs(ids, db=db, broker=broker, artifacts=artifacts)
    return ids


# ---- following runs -----------------------------------------------------------------------------------
REDELIVERED = (L.Interruption.HARNESS_DIED, L.Interruption.LEASE_EXPIRED)
AWAITING_REDELIVERY = "awaiting-redelivery"


def run_states(run_ids: list[str], db: str | None) -> dict[str, str]:
    """{run id: status}; a fleet run whose worker died (reaped, "harness died" or "lease expired")
    reads ``awaiting-redelivery``: its unacknowledged message comes back and runs it again."""
    from sqlalchemy import select

    with session_scope(db) as s:
        rows = s.execute(select(Run.id, Run.status, Run.interruption).where(Run.id.in_(run_ids))).all()
    return {rid: AWAITING_REDELIVERY if st == RunStatus.FAILED and intr in REDELIVERED else st
            for rid, st, intr in rows}


def wait_for_runs(run_ids: list[str], *, db: str | None, poll_s: float = 0.5, timeout_s: float | None = None,
                  on_progress: Callable[[dict[str, str]], None] | None = None) -> dict[str, str]:
    """Poll the shared database until every run is succeeded or failed; returns {run id: status}."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        states = run_states(run_ids, db)
        if on_progress:
            on_progress(states)
        if all(states.get(r) in TERMINAL for r in run_ids):
            return states
        if deadline is not None and time.monotonic() > deadline:
            left = [r[:8] for r in run_ids if states.get(r) not in TERMINAL]
            raise RunError(f"{len(left)} run(s) not finished after {timeout_s:g} s: {', '.join(left[:5])}"
                           "; follow them with: heptathlon status")
        time.sleep(poll_s)


# ---- the worker ---------------------------------------------------------------------------------------
def check_profiles(names: list[str]) -> list[str]:
    """Each profile this machine can serve, or ProfileError naming the first it cannot."""
    from heptathlon.runners.adapters.registry import validate_runtime_sections
    from heptathlon.runners.controls import validate_profile_for_machine

    if not names:
        raise ProfileError("worker: give at least one --profile to serve")
    out = []
    for n in names:
        try:
            prof = validate_runtime_sections(load_profile(n))
            validate_profile_for_machine(prof)  # CUDA present, cores exist, memory suffices
        except ProfileError as e:
            raise ProfileError(f"worker refuses profile {n!r}: this machine cannot serve it: {e}") from None
        out.append(prof.name)
    return out


@dataclass
class WorkerConfig:
    db: str | None
    profiles: list[str]
    artifacts: str | None = None  # overrides the URL in the messages (a worker-side mirror of the store)
    control: bool = False  # also consume heptathlon.control: nightlies that Celery beat starts
    broker: str | None = None


def handle_message(cfg: WorkerConfig, message: dict[str, Any]) -> dict[str, Any]:
    """One task message. Returns what it did; raises _RetryLater while another owner may hold the run."""
    from heptathlon.bench.app.service import execute_run

    try:
        msg = FleetMessage.model_validate(message)
    except Exception as e:  # noqa: BLE001  a malformed message is acknowledged and dropped, with a line
        log.error("fleet message %r refused: %s", message, str(e).replace("\n", "; "))
        return {"action": "refused", "error": str(e)}
    rid = msg.run_id
    ensure_schema(cfg.db)  # also reaps runs of dead harnesses on this host
    with session_scope(cfg.db) as s:
        run = Q.get_run(s, rid)
        if run is None:
            log.warning("run %s: not in the database; message dropped", rid[:8])
            return {"action": "missing"}
        if run.status == RunStatus.RUNNING:
            lease = L._aware(run.lease_expires_at)
            wait = max(1.0, (lease - utcnow()).total_seconds() + 1.0) if lease else L.lease_seconds()
            owner = L.owner_of(run)
            raise _RetryLater(wait, f"run {rid[:8]} is running under {owner.describe() if owner else '?'}")
        if run.status == RunStatus.FAILED and run.interruption:
            L.requeue_run(s, run)  # its harness died or its lease expired: run it again from scratch
            log.warning("run %s: requeued after %s (%s)", rid[:8], run.interruption, run.error)
        elif run.status in TERMINAL:
            return {"action": "already", "status": run.status}
        profile, sha = run.profile_name, run.submission.artifact_sha256 if run.submission else None
    if profile != msg.profile or profile not in cfg.profiles or sha != msg.sha256:
        why = (f"run {rid[:8]}: its message (profile {msg.profile}, artifact {msg.sha256[:12]}) does not match the "
               f"run (profile {profile}, artifact {(sha or '?')[:12]}) or this worker's profiles {cfg.profiles}")
        _fail_claimed(cfg.db, rid, why)
        return {"action": "refused", "error": why}
    store = ArtifactStore(cfg.artifacts or msg.artifacts)
    out = execute_run(rid, db=cfg.db, executor=CeleryExecutor(), fetch_store=store.fetch,
                      trusted=False)  # a fleet never runs a model in its measuring process
    if not out.claimed:
        return {"action": "not-claimed", "note": out.note}
    return {"action": "ran", "status": out.status, "error": out.error}


def _fail_claimed(db: str | None, rid: str, why: str) -> None:
    owner = L.Owner.current()
    with session_scope(db) as s:
        if L.claim_run(s, rid, owner, L.lease_seconds()):
            L.finish_owned(s, rid, owner, RunStatus.FAILED, error=why, stderr_tail=why)


class _RetryLater(Exception):
    def __init__(self, seconds: float, why: str) -> None:
        super().__init__(why)
        self.seconds = seconds


def register_tasks(app, cfg: WorkerConfig) -> None:
    @app.task(name=TASK_NIGHTLY, acks_late=False, ignore_result=True)  # a night is resumable: ack at start
    def nightly(**message: Any) -> dict[str, Any]:
        return handle_nightly(cfg, message)

    @app.task(name=TASK_RUN, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True,
              max_retries=None)
    def run(self, **message: Any) -> dict[str, Any]:
        try:
            return handle_message(cfg, message)
        except _RetryLater as e:
            log.info("%s; looking again in %.0f s", e, e.seconds)
            raise self.retry(countdown=e.seconds, max_retries=None) from None


def worker_name(host: str | None = None) -> str:
    return f"heptathlon-{uuid.uuid4().hex[:6]}@{host or socket.gethostname()}"


def serve(profiles: list[str], *, broker: str | None, db: str | None, artifacts: str | None = None,
          name: str | None = None, loglevel: str = "INFO", control: bool = False) -> None:
    """``heptathlon worker``: check the profiles, check the database, then consume their queues
    (and, with ``control``, the queue of nightlies that Celery beat starts)."""
    served = check_profiles(profiles) if profiles or not control else []
    ensure_schema(db)
    app = _app(broker)
    register_tasks(app, WorkerConfig(db=db, profiles=served, artifacts=artifacts, control=control, broker=broker))
    queues = ",".join([queue_for(p) for p in served] + ([CONTROL_QUEUE] if control else []))
    logging.basicConfig(level=getattr(logging, loglevel.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.warning("worker %s serving %s on %s (database %s)", name or "?", queues,
                app.conf.broker_url.split("@")[-1], _redact(db))
    app.worker_main(["worker", "--pool=solo", "--concurrency=1", "--prefetch-multiplier=1", f"--queues={queues}",
                     f"--hostname={name or worker_name()}", f"--loglevel={loglevel}", "--without-gossip",
                     "--without-mingle", "--without-heartbeat"])


def _redact(url: str | None) -> str:
    from sqlalchemy.engine import make_url

    from heptathlon.db.session import default_url

    try:
        return make_url(url or default_url()).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "?"


# ---- status -------------------------------------------------------------------------------------------
def fleet_status(*, broker: str | None, db: str | None, timeout_s: float = 1.0, recent: int = 10) -> dict[str, Any]:
    """Queue depths, the workers alive (Celery inspect) with their profiles, and the runs."""
    from sqlalchemy import func, select

    app = _app(broker)
    try:
        insp = app.control.inspect(timeout=timeout_s)
        active_queues = insp.active_queues() or {}
        stats = insp.stats() or {}
        active = insp.active() or {}
    except Exception as e:  # noqa: BLE001
        raise FleetUnavailable(f"broker {app.conf.broker_url.split('@')[-1]}: cannot be reached ({e})") from None
    workers = []
    for wname, qs in sorted(active_queues.items()):
        st = stats.get(wname, {})
        workers.append({"name": wname, "host": wname.split("@", 1)[-1], "pid": st.get("pid"),
                        "profiles": sorted(p for q in qs if (p := profile_of_queue(q.get("name", "")))),
                        "active": [t.get("kwargs", {}).get("run_id") for t in active.get(wname, [])]})
    names = sorted({p.name for p in list_profiles()} | {p for w in workers for p in w["profiles"]})
    depths = queue_depths(app, [queue_for(n) for n in names])
    ensure_schema(db)
    with session_scope(db) as s:
        counts = dict(s.execute(select(Run.status, func.count()).group_by(Run.status)).all())
        running = [_run_row(r) for r in s.scalars(select(Run).where(Run.status == RunStatus.RUNNING)
                                                  .order_by(Run.started_at))]
        since = utcnow() - timedelta(days=1)
        done = [_run_row(r) for r in s.scalars(select(Run).where(Run.status.in_(TERMINAL), Run.finished_at >= since)
                                               .order_by(Run.finished_at.desc()).limit(recent))]
    served = {queue_for(p) for w in workers for p in w["profiles"]}
    return {"queues": {q: n for q, n in depths.items() if n or q in served},
            "workers": workers,
            "runs": {"queued": counts.get(RunStatus.QUEUED, 0), "running": counts.get(RunStatus.RUNNING, 0),
                     "succeeded": counts.get(RunStatus.SUCCEEDED, 0), "failed": counts.get(RunStatus.FAILED, 0)},
            "running": running, "recent": done}


def _run_row(r: Run) -> dict[str, Any]:
    return {"run_id": r.id, "status": r.status, "profile": r.profile_name, "scenario": r.scenario,
            "owner": f"{r.owner_host}:{r.owner_pid}" if r.owner_host else None,
            "executor": (r.extra or {}).get("executor"),
            "finished_at": r.finished_at.isoformat() if r.finished_at else None, "error": r.error}


# ---- nightly on the fleet -------------------------------------------------------------------------------
def nightly_dispatcher(*, db: str | None, broker: str | None = None, artifacts: str | None = None,
                       timeout_s: float | None = None,
                       on_progress: Callable[[dict[str, str]], None] | None = None) -> Callable[[list[str]], None]:
    """The ``fleet`` argument of heptathlon.bench.app.nightly.run_nightly: dispatch the night's
    pending runs to the profiles' queues, then wait until every one has finished."""
    _app(broker)  # a bad broker URL is refused before the night takes its lock and queues anything

    def dispatch_and_wait(run_ids: list[str]) -> None:
        if not run_ids:
            return
        with session_scope(db) as s:
            queued = [rid for rid in run_ids if (r := Q.get_run(s, rid)) is not None and r.status == RunStatus.QUEUED]
        try:
            dispatch_runs(queued, db=db, broker=broker, artifacts=artifacts)
        except FleetUnavailable as e:  # those runs are failed with the reason; the night reports them
            log.error("%s", e)
        wait_for_runs(run_ids, db=db, timeout_s=timeout_s, on_progress=on_progress)

    return dispatch_and_wait


class NightlyMessage(BaseModel):
    """What Celery beat sends to the control queue: which suite, and where its reports go."""

    model_config = ConfigDict(extra="forbid")

    suite: str = Field(min_length=1, max_length=4096)
    report_dir: str | None = None
    artifacts: str | None = None
    retry_failed: bool = False


def handle_nightly(cfg: WorkerConfig, message: dict[str, Any]) -> dict[str, Any]:
    """A night that Celery beat started, run by a control worker: dispatched to the fleet, waited
    for, detected and reported as ``heptathlon nightly --fleet`` does. The DB lock still makes a
    second concurrent night of the suite (another beat, a manual run) do nothing."""
    from heptathlon.bench.app.nightly import run_nightly

    try:
        msg = NightlyMessage.model_validate(message)
    except Exception as e:  # noqa: BLE001
        log.error("nightly message %r refused: %s", message, str(e).replace("\n", "; "))
        return {"action": "refused", "error": str(e)}
    try:
        o = run_nightly(msg.suite, db=cfg.db, report_dir=msg.report_dir, retry_failed=msg.retry_failed,
                        fleet=nightly_dispatcher(db=cfg.db, broker=cfg.broker,
                                                 artifacts=msg.artifacts or cfg.artifacts))
    except HeptathlonError as e:  # a held lock, a broken suite: one line in the log, the next night tries again
        log.error("nightly %s: %s", msg.suite, e)
        return {"action": "failed", "error": str(e), "exit_code": e.exit_code}
    log.warning("nightly %s %s: exit code %s, report %s", o.suite, o.night.isoformat(), o.exit_code, o.paths.markdown)
    return {"action": "ran", "exit_code": o.exit_code, "report": str(o.paths.markdown)}


def beat_schedule(cron: str, message: NightlyMessage) -> dict[str, Any]:
    """Celery beat's schedule for one suite: the five-field cron expression, in local time."""
    from celery.schedules import crontab

    from heptathlon.bench.app.schedule import validate_cron

    validate_cron(cron)
    fields = cron.split()
    if len(fields) != 5:
        from heptathlon.bench.errors import ScheduleError

        raise ScheduleError(f"schedule {cron!r}: Celery beat takes five fields (minute hour day-of-month month "
                            "day-of-week), e.g. '30 2 * * *'")
    minute, hour, dom, month, dow = fields
    return {"heptathlon-nightly": {"task": TASK_NIGHTLY, "kwargs": message.model_dump(),
                                   "schedule": crontab(minute=minute, hour=hour, day_of_month=dom,
                                                       month_of_year=month, day_of_week=dow),
                                   "options": {"queue": CONTROL_QUEUE}}}


def beat(cron: str, message: NightlyMessage, *, broker: str | None, schedule_file: Path | None = None,
         loglevel: str = "INFO") -> None:
    """``heptathlon beat``: Celery beat sending the suite's nightly to the control queue on schedule."""
    from heptathlon.db.session import home_dir

    app = _app(broker)
    app.conf.beat_schedule = beat_schedule(cron, message)
    app.conf.timezone = None  # the machine's local time, like the in-process schedule and the systemd timer
    app.conf.enable_utc = False
    sf = Path(schedule_file or home_dir() / "celerybeat-schedule")
    sf.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=getattr(logging, loglevel.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app.start(["beat", f"--schedule={sf}", f"--loglevel={loglevel}"])
