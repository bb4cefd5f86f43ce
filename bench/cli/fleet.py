"""``worker``, ``status`` and ``beat``: the measuring fleet (docs/fleet.md); ``submit --fleet`` and
``nightly --fleet`` call :func:`submit_to_fleet` and :func:`wait_with_progress` from here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from heptathlon.bench.cli.options import Db, Json
from heptathlon.bench.cli.render import err, out, progress
from heptathlon.bench.run_status import RunStatus

Broker = Annotated[Optional[str], typer.Option(
    "--broker", envvar="HEPTATHLON_BROKER",
    help="Celery broker URL: redis://host:6379/0 (default, local Redis) or amqp://user:pass@host:5672//.")]
Artifacts = Annotated[Optional[str], typer.Option(
    "--artifacts", envvar="HEPTATHLON_ARTIFACTS",
    help="The shared artifact store: a folder or an fsspec URL such as s3://bucket/prefix "
         "(default: $HEPTATHLON_HOME/artifacts/fleet).")]


def worker(profile: Annotated[Optional[list[str]], typer.Option(
               "--profile", "-p", help="A profile to serve (repeat).")] = None,
           broker: Broker = None, db: Db = None,
           control: Annotated[bool, typer.Option(
               "--control", help="Also run the nightlies Celery beat starts (queue heptathlon.control); "
                                 "start it on the coordinating machine, not a measuring one.")] = False,
           artifacts: Annotated[Optional[str], typer.Option(
               "--artifacts", help="Fetch artifacts from this store instead of the URL each message names.")] = None,
           name: Annotated[Optional[str], typer.Option(
               "--name", help="Worker name (default heptathlon-XXXXXX@host).")] = None,
           loglevel: Annotated[str, typer.Option("--loglevel")] = "INFO") -> None:
    """Serve the profiles' queues on this machine: one run at a time, results into the shared database."""
    from heptathlon.bench.app.fleet import serve

    serve(profile or [], broker=broker, db=db, artifacts=artifacts, name=name, loglevel=loglevel, control=control)


def beat(suite: Annotated[Path, typer.Option("--suite", help="The suite file (YAML; see docs/nightly.md).")],
         schedule: Annotated[str, typer.Option("--schedule", metavar="CRON",
                                               help="When a night starts, five cron fields in local time.")
                             ] = "30 2 * * *",
         report_dir: Annotated[Optional[Path], typer.Option("--report-dir")] = None,
         broker: Broker = None, artifacts: Artifacts = None,
         schedule_file: Annotated[Optional[Path], typer.Option(
             "--schedule-file", help="Celery beat's state (default: $HEPTATHLON_HOME/celerybeat-schedule).")] = None,
         loglevel: Annotated[str, typer.Option("--loglevel")] = "INFO") -> None:
    """Celery beat: start the suite's nightly on the fleet on schedule (run by a `worker --control`)."""
    from heptathlon.bench.app.fleet import NightlyMessage, beat as run_beat
    from heptathlon.bench.app.nightly import load_nightly_suite

    load_nightly_suite(suite)  # every problem in the suite now, not at 02:30
    msg = NightlyMessage(suite=str(suite.resolve()), report_dir=str(report_dir.resolve()) if report_dir else None,
                         artifacts=artifacts)
    run_beat(schedule, msg, broker=broker, schedule_file=schedule_file, loglevel=loglevel)


def status(as_json: Json = False, broker: Broker = None, db: Db = None,
           timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for workers to answer.")] = 1.0
           ) -> None:
    """The fleet: queue depths, workers alive with their profiles, runs queued, running and recently finished."""
    from heptathlon.bench.app.fleet import fleet_status

    st = fleet_status(broker=broker, db=db, timeout_s=timeout)
    if as_json:
        out.print_json(json.dumps(st, default=str))
        return
    t = Table(title="queues")
    for c in ("queue", "waiting"):
        t.add_column(c)
    for q, n in sorted(st["queues"].items()):
        t.add_row(q, "—" if n is None else str(n))
    out.print(t)
    w = Table(title=f"workers alive: {len(st['workers'])}")
    for c in ("worker", "host", "pid", "profiles", "running"):
        w.add_column(c)
    for x in st["workers"]:
        w.add_row(x["name"], x["host"], str(x["pid"]), ", ".join(x["profiles"]),
                  ", ".join(r[:8] for r in x["active"] if r) or "idle")
    out.print(w)
    r = st["runs"]
    out.print(f"runs: {r['queued']} queued, {r['running']} running, {r['succeeded']} succeeded, {r['failed']} failed")
    for row in st["running"]:
        out.print(f"  running {row['run_id'][:8]} {row['profile']}/{row['scenario']} on {row['owner']}")
    for row in st["recent"]:
        mark = "[green]ok[/]" if row["status"] == RunStatus.SUCCEEDED else "[red]failed[/]"
        out.print(f"  {mark} {row['run_id'][:8]} {row['profile']}/{row['scenario']}"
                  + (f": {escape(row['error'])}" if row["error"] else ""), soft_wrap=True)


def submit_to_fleet(folder: Path, opts: Any, *, db: str | None, broker: str | None, artifacts: str | None,
                    wait: bool) -> list[str]:
    from heptathlon.bench.app.fleet import submit_fleet

    ids = submit_fleet(folder, opts.profiles, opts.scenario_configs(), db=db, broker=broker, artifacts=artifacts,
                       **opts.queue_kwargs())
    err.print(f"dispatched {len(ids)} run(s) for {folder} to the fleet: "
              + ", ".join(sorted({f"hw.{p}" for p in opts.profiles})))
    if wait:
        states = wait_with_progress(ids, db)
        if any(s != RunStatus.SUCCEEDED for s in states.values()):
            raise typer.Exit(1)
    else:
        err.print("follow them with: heptathlon status")
    return ids


def wait_with_progress(run_ids: list[str], db: str | None, label: str = "fleet runs") -> dict[str, str]:
    """Follow the runs in the shared database with a Rich progress bar; one line per finished run."""
    from heptathlon.bench.app.fleet import TERMINAL, wait_for_runs
    from heptathlon.db import queries as Q
    from heptathlon.db.session import session_scope

    seen: set[str] = set()
    with progress() as prog:
        task = prog.add_task(label, total=len(run_ids))

        def on_progress(states: dict[str, str]) -> None:
            for rid, st in states.items():
                if st in TERMINAL and rid not in seen:
                    seen.add(rid)
                    with session_scope(db) as s:
                        run = Q.get_run(s, rid)
                        where = f"{run.profile_name}/{run.scenario}"
                        line = (f"[green]ok[/] run {rid[:8]} {where}" if st == RunStatus.SUCCEEDED
                                else f"[red]✗[/] run {rid[:8]} {where}: {escape(run.error or 'failed')}")
                    prog.console.print(line, soft_wrap=True)
            running = sum(st == RunStatus.RUNNING for st in states.values())
            prog.update(task, completed=len(seen), description=f"{label} ({running} running)")

        return wait_for_runs(run_ids, db=db, on_progress=on_progress)


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(status)
    app.command()(beat)
