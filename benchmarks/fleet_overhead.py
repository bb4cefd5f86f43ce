"""The fleet's control-plane overhead, beside the local executor's, in one run; and a worker's idle CPU.

    python benchmarks/fleet_overhead.py [--runs 200] [--broker redis://127.0.0.1:6379/14] [--db URL] [--idle 10]
                                        [--json FILE]

Null runs: a run whose execution is empty, so what is timed is the control plane alone.

- local: the loop of ``heptathlon execute`` (``execute_queued``) reduced to its control plane:
  per run, the claim (compare-and-set) and the owner-checked finish, in one process.
- fleet: a Celery worker with the fleet's settings (heptathlon.runners.executors.celery: solo
  pool, concurrency 1, prefetch 1, acks late) whose task does the same claim and finish. The
  submitter publishes one message per run on ``hw.<profile>``; enqueue-to-start is the run's
  ``started_at`` (the worker's claim) minus the publish time, on one machine's clock.

Both print the enqueue-to-start latency (p50, p99) and the dispatch rate (runs/s from the first
publish to the last finish). The ratio fleet/local is the price of the broker per run.

Idle CPU: a real ``heptathlon worker --profile cpu-1core`` is started, left idle for ``--idle``
seconds after it is ready, and its CPU time (user + system, process tree) over that window is
divided by the window: the share of one core the worker takes between tasks (docs/fleet.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psutil


def _make_runs(db: str, n: int) -> list[str]:
    from heptathlon.bench.run_status import RunStatus
    from heptathlon.db import queries as Q
    from heptathlon.db.session import ensure_schema, session_scope

    ensure_schema(db)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    with session_scope(db) as s:
        for rid in ids:
            Q.create_run(s, id=rid, submission_ref="null", profile_name="cpu-1core", scenario="null", params={},
                         status=RunStatus.QUEUED)
    return ids


def _null_run(db: str, rid: str) -> None:
    from heptathlon.bench.run_status import RunStatus
    from heptathlon.db import lifecycle as L
    from heptathlon.db.session import session_scope

    owner = L.Owner.current()
    with session_scope(db) as s:
        if not L.claim_run(s, rid, owner, 60):
            return
    with session_scope(db) as s:
        L.finish_owned(s, rid, owner, RunStatus.SUCCEEDED)


def _started(db: str, ids: list[str]) -> tuple[dict[str, float], float]:
    from sqlalchemy import func, select

    from heptathlon.db.models import Run
    from heptathlon.db.session import session_scope

    with session_scope(db) as s:
        rows = s.execute(select(Run.id, Run.started_at).where(Run.id.in_(ids))).all()
        last = s.scalar(select(func.max(Run.finished_at)).where(Run.id.in_(ids)))
    ts = lambda t: (t if t.tzinfo else t.replace(tzinfo=__import__("datetime").timezone.utc)).timestamp()  # noqa: E731
    return {rid: ts(t) for rid, t in rows if t is not None}, ts(last)


SERIAL = 30  # runs timed one at a time for the latency (no backlog)


def _summary(name: str, publish: dict[str, float], started: dict[str, float], burst: int, burst_s: float) -> dict:
    lat = np.array([started[r] - publish[r] for r in publish]) * 1e3
    return {"path": name, "serial_runs": len(publish), "enqueue_to_start_p50_ms": float(np.percentile(lat, 50)),
            "enqueue_to_start_p99_ms": float(np.percentile(lat, 99)), "burst_runs": burst,
            "runs_per_s": burst / burst_s}


def bench_local(db: str, n: int) -> dict:
    publish = {}
    for rid in _make_runs(db, SERIAL):  # latency: queue one, execute it
        publish[rid] = time.time()
        _null_run(db, rid)
    started, _ = _started(db, list(publish))
    ids = _make_runs(db, n)  # rate: a burst queued at once, like `submit` then `execute`
    t0 = time.time()
    for rid in ids:
        _null_run(db, rid)
    _, last = _started(db, ids)
    return _summary("local (execute loop)", publish, started, n, last - t0)


def serve_null(broker: str, db: str) -> None:
    from heptathlon.runners.executors.celery import TASK_RUN, make_app, queue_for

    app = make_app(broker)

    @app.task(name=TASK_RUN, acks_late=True, ignore_result=True)
    def run(**message):
        _null_run(db, message["run_id"])

    app.worker_main(["worker", "--pool=solo", "--concurrency=1", "--prefetch-multiplier=1",
                     f"--queues={queue_for('cpu-1core')}", "--loglevel=WARNING", "--without-gossip",
                     "--without-mingle", "--without-heartbeat", f"--hostname=null-{uuid.uuid4().hex[:6]}@%h"])


def _wait_ready(proc: subprocess.Popen, log: Path, marker: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while marker not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)


def bench_fleet(broker: str, db: str, n: int, tmp: Path) -> dict:
    from heptathlon.runners.executors.celery import FleetMessage, enqueue, make_app

    log = tmp / "null-worker.log"
    with log.open("wb") as f:
        proc = subprocess.Popen([sys.executable, __file__, "--serve-null", "--broker", broker, "--db", db],
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(1.0)
        app = make_app(broker)
        _wait_for_consumer(app)
        def send(rid: str) -> None:
            enqueue(app, FleetMessage(run_id=rid, sha256="0" * 64, artifacts="null", profile="cpu-1core",
                                      scenario="null"))

        for rid in _make_runs(db, 3):  # warm-up: the worker's first messages (imports, connections)
            send(rid)
            _wait_done(db, [rid], proc, log, poll=0.01)
        publish = {}
        for rid in _make_runs(db, SERIAL):  # latency: publish one, wait until it has finished
            publish[rid] = time.time()
            send(rid)
            _wait_done(db, [rid], proc, log, poll=0.002)
        started, _ = _started(db, list(publish))
        ids = _make_runs(db, n)
        t0 = time.time()
        for rid in ids:
            send(rid)
        _wait_done(db, ids, proc, log, poll=0.05)
        _, last = _started(db, ids)
        return _summary("fleet (Celery, solo worker)", publish, started, n, last - t0)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _wait_done(db: str, ids: list[str], proc: subprocess.Popen, log: Path, poll: float) -> None:
    from heptathlon.bench.app.fleet import run_states

    deadline = time.monotonic() + 600
    while not all(s == "succeeded" for s in run_states(ids, db).values()) or len(run_states(ids, db)) < len(ids):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"fleet runs did not finish:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(poll)


def _wait_for_consumer(app, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.control.inspect(timeout=1).active_queues():
            return
    raise SystemExit("no worker answered")


def idle_cpu_share(broker: str, db: str, seconds: float, tmp: Path) -> dict:
    log = tmp / "idle-worker.log"
    env = dict(os.environ, HEPTATHLON_HOME=str(tmp / "idle-home"))
    with log.open("wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "heptathlon.bench.cli", "worker", "--profile", "cpu-1core",
                                 "--broker", broker, "--db", db], stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        _wait_ready(proc, log, " ready.")
        time.sleep(2.0)  # past start-up

        def cpu() -> float:
            p = psutil.Process(proc.pid)
            total = sum(p.cpu_times()[:2])
            for c in p.children(recursive=True):
                try:
                    total += sum(c.cpu_times()[:2])
                except psutil.Error:
                    pass
            return total

        c0, t0 = cpu(), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu(), time.monotonic()
        return {"idle_window_s": t1 - t0, "idle_cpu_s": c1 - c0, "idle_cpu_share": (c1 - c0) / (t1 - t0),
                "rss_mb": psutil.Process(proc.pid).memory_info().rss / 1e6}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--broker", default=os.environ.get("HEPTATHLON_BROKER", "redis://127.0.0.1:6379/14"))
    ap.add_argument("--db", default=None, help="default: a fresh SQLite file per path")
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--serve-null", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve_null:
        serve_null(a.broker, a.db)
        return
    tmp = Path(tempfile.mkdtemp(prefix="heptathlon-fleet-bench-"))
    os.environ.setdefault("HEPTATHLON_HOME", str(tmp / "home"))
    dbs = {k: a.db or f"sqlite:///{tmp / (k + '.db')}" for k in ("local", "fleet", "idle")}
    rows = [bench_local(dbs["local"], a.runs), bench_fleet(a.broker, dbs["fleet"], a.runs, tmp)]
    idle = idle_cpu_share(a.broker, dbs["idle"], a.idle, tmp)
    print(f"{'path':30} {'enqueue->start p50 ms':>22} {'p99 ms':>8} {'burst runs/s':>13}")
    for r in rows:
        print(f"{r['path']:30} {r['enqueue_to_start_p50_ms']:22.2f} {r['enqueue_to_start_p99_ms']:8.2f} "
              f"{r['runs_per_s']:13.1f}")
    print(f"fleet / local dispatch rate: {rows[1]['runs_per_s'] / rows[0]['runs_per_s']:.2f}")
    print(f"idle worker: {idle['idle_cpu_s'] * 1e3:.1f} ms CPU over {idle['idle_window_s']:.1f} s = "
          f"{idle['idle_cpu_share'] * 100:.3f}% of one core; RSS {idle['rss_mb']:.0f} MB")
    print(f"latency: {SERIAL} runs one at a time (no backlog); rate: {a.runs} runs queued at once, first queued "
          "to last finished")
    if a.json:
        a.json.write_text(json.dumps({"paths": rows, "idle": idle}, indent=2))


if __name__ == "__main__":
    main()
