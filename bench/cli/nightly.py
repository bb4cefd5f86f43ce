"""``heptathlon nightly`` and ``heptathlon alerts``: the CLI shell around bench/nightly.py.

``heptathlon.bench.cli`` registers these with ``register(app)``. Exit codes of ``nightly``: 0 quiet night,
3 (``heptathlon.bench.app.report.EXIT_REGRESSION``) an unacknowledged regression, drift or broken run,
75 (``heptathlon.bench.app.nightly.EXIT_LOCKED``) another nightly process holds the suite's lock, 2 bad input.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import date, datetime
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from heptathlon.bench.cli.options import Db
from heptathlon.bench.cli.render import err, out
from heptathlon.bench.errors import HeptathlonError, OptionsError


alerts_app = typer.Typer(help="Nightly regression alerts: list them, acknowledge them, mark them expected.",
                         invoke_without_command=True)


# ---- nightly ------------------------------------------------------------------------------------------
def nightly(suite: Path = typer.Option(..., "--suite", help="The suite file (YAML; see docs/nightly.md)."),
            night: Optional[str] = typer.Option(None, "--date", help="The night, YYYY-MM-DD (default: today). "
                                                                      "Running a night again resumes it."),
            report_dir: Optional[Path] = typer.Option(None, "--report-dir",
                                                      help="Where the Markdown and JUnit reports go "
                                                           "(default: $HEPTATHLON_HOME/nightly)."),
            schedule: Optional[str] = typer.Option(None, "--schedule", metavar="CRON",
                                                   help="Stay running and start a night each time this cron "
                                                        "expression fires, e.g. '30 2 * * *' (local time)."),
            retry_failed: bool = typer.Option(False, "--retry-failed",
                                              help="Run again the entries that failed earlier on this night "
                                                   "(default: a failed run is the night's result)."),
            include_contended: bool = typer.Option(False, "--include-contended",
                                                   help="Let runs marked contended (other processes used their "
                                                        "cores) enter baselines."),
            trusted: bool = typer.Option(False, "--trusted", hidden=True,
                                         help="Refused: the nightly never runs a model in its measuring process."),
            db: Db = None,
            fleet: bool = typer.Option(False, "--fleet", help="Run the night's runs on the measuring fleet's "
                                                               "queues (docs/fleet.md), then detect and report here."),
            broker: Optional[str] = typer.Option(None, "--broker", envvar="HEPTATHLON_BROKER",
                                                 help="--fleet: the Celery broker URL."),
            artifacts: Optional[str] = typer.Option(None, "--artifacts", envvar="HEPTATHLON_ARTIFACTS",
                                                    help="--fleet: the shared artifact store URL.")) -> None:
    """Run a nightly regression suite: run what the night still lacks, detect changes, store alerts, write reports."""
    from heptathlon.bench.app.nightly import load_nightly_suite, parse_night
    from heptathlon.bench.app.schedule import validate_cron

    if trusted:
        raise OptionsError("nightly: --trusted is refused: a nightly series must be measured with the model in its "
                           "sandboxed model process (use `heptathlon run --trusted` on your own machine)")

    load_nightly_suite(suite)  # every problem in the suite at once, before anything runs or waits
    dispatch = None
    if fleet:
        from heptathlon.bench.app.fleet import nightly_dispatcher

        seen = {"done": -1}

        def fleet_progress(states: dict[str, str]) -> None:  # one line each time another run finishes
            done = sum(st in ("succeeded", "failed") for st in states.values())
            if done != seen["done"]:
                seen["done"] = done
                err.print(f"[dim]fleet:[/] {done}/{len(states)} run(s) finished, "
                          f"{sum(st == 'running' for st in states.values())} running")

        dispatch = nightly_dispatcher(db=db, broker=broker, artifacts=artifacts, on_progress=fleet_progress)
    if schedule is None:
        raise typer.Exit(_run_night(suite, parse_night(night), report_dir, db, retry_failed, dispatch, include_contended))
    if night is not None:
        raise OptionsError("--date and --schedule exclude each other: a scheduled night is dated by the day it fires")
    validate_cron(schedule)
    _serve_schedule(schedule, suite, report_dir, db, retry_failed, dispatch, include_contended)


def _run_night(suite: Path, night: date, report_dir: Optional[Path], db: Optional[str], retry_failed: bool,
               dispatch: Any = None, include_contended: bool = False) -> int:
    from heptathlon.bench.app.nightly import run_nightly
    from heptathlon.bench.app.report import format_alert

    def progress(done: int, total: int, entry, note: str) -> None:
        what = f"{entry.submission_dir.name} on {entry.profile}/{entry.scenario.name}"
        err.print(f"[dim][{done}/{total}][/] {escape(what)}: {escape(note)}")

    err.print(f"nightly suite {suite} for {night.isoformat()}")
    o = run_nightly(suite, night=night, report_dir=report_dir, db=db, retry_failed=retry_failed, on_progress=progress,
                    fleet=dispatch, include_contended=include_contended)
    if o.lock_note:
        err.print(f"[yellow]{escape(o.lock_note)}[/]")
    reused = sum(e.action == "reused" for e in o.entries)
    counts = {k: sum(a.kind == k for a in o.report.alerts) for k in ("regression", "broke", "drift", "improvement")}
    verdict = "[red]FAIL[/]" if o.report.open_alerts or o.report.earlier_open else "[green]PASS[/]"
    out.print(f"{verdict} nightly {o.suite} {o.night.isoformat()}: {len(o.report.results)} series, "
              f"{counts['regression']} regression(s), {counts['broke']} broke, {counts['drift']} drift, "
              f"{counts['improvement']} improvement(s); {len(o.entries) - reused} entries run, {reused} reused")
    for a in o.report.alerts:
        state = "acknowledged" if o.report.is_acknowledged(a) else ("open" if a.blocking else "info")
        out.print(f"  alert {o.alert_ids.get(a.key, '?')} ({state}): {escape(format_alert(a))}", soft_wrap=True)
    for line in o.report.earlier_open:
        out.print(f"  still open from another night: {escape(line)}", soft_wrap=True)
    out.print(f"report: {o.paths.markdown}\njunit:  {o.paths.junit}")
    if o.report.open_alerts or o.report.earlier_open:
        err.print("acknowledge with: heptathlon alerts ack ID   or accept a change with: heptathlon alerts expected ID")
    return o.exit_code


def _serve_schedule(cron: str, suite: Path, report_dir: Optional[Path], db: Optional[str], retry_failed: bool,
                    dispatch: Any = None, include_contended: bool = False) -> None:
    from heptathlon.bench.app.nightly import run_nightly_on_schedule
    from heptathlon.bench.app.schedule import next_fire_times

    # The schedule's own log lines (heptathlon.bench.app.schedule, heptathlon.bench.app.nightly); other libraries only warn.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def night_job(night: date) -> int:
        try:
            code = _run_night(suite, night, report_dir, db, retry_failed, dispatch, include_contended)
        except HeptathlonError as e:  # a bad suite edit or a held lock: say so, wait for the next night
            err.print(f"[red]error:[/] {escape(str(e))}")
            return e.exit_code
        err.print(f"night {night.isoformat()} finished with exit code {code}; next at "
                  f"{next_fire_times(cron, datetime.now().astimezone())[0].isoformat()}")
        return code

    err.print(f"nightly schedule {cron!r} for {suite}: first night at "
              f"{next_fire_times(cron, datetime.now().astimezone())[0].isoformat()} (Ctrl-C or SIGTERM stops)")
    runs = run_nightly_on_schedule(cron, night_job, stop)
    err.print(f"schedule stopped after {runs} night(s)")


# ---- alerts ------------------------------------------------------------------------------------------------
def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def _print_alerts(rows: list[dict[str, Any]], include_closed: bool) -> None:
    if not rows:
        err.print("no open alerts" if not include_closed else "no alerts yet")
        return
    t = Table(title="nightly alerts" + ("" if include_closed else " (open; --all for every status)"),
              title_justify="left")
    for c in ("id", "status", "kind", "series", "metric", "change", "p", "z", "night", "run", "message"):
        t.add_column(c, justify="right" if c in ("id", "change", "p", "z") else "left")
    for a in rows:
        t.add_row(str(a["id"]), a["status"], a["kind"], escape(a["series"] or a["series_key"]), a["metric"],
                  _fmt(a["rel_change"], "+.1%"), _fmt(a["p_value"], ".2g"), _fmt(a["z_score"], "+.1f"),
                  a["date"] or "", (a["candidate_run_id"] or "")[:8], escape((a["message"] or "")[:80]))
    out.print(t)


def _list(include_closed: bool, as_json: bool, db: Optional[str]) -> None:
    from heptathlon.bench.app.nightly import list_alerts

    rows = list_alerts(db, include_closed=include_closed)
    if as_json:
        print(json.dumps(rows, default=str))
    else:
        _print_alerts(rows, include_closed)


AllOpt = typer.Option(False, "--all", help="Every alert, not only open ones.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON list and nothing else on stdout.")


@alerts_app.callback()
def alerts_main(ctx: typer.Context, include_closed: bool = AllOpt, as_json: bool = JsonOpt,
                db: Db = None) -> None:
    """Without a sub-command: list the open alerts (as `alerts list`)."""
    ctx.obj = {"db": db}  # `alerts --db URL ack ID` as well as `alerts ack ID --db URL`
    if ctx.invoked_subcommand is None:
        _list(include_closed, as_json, db)


@alerts_app.command("list")
def alerts_list(ctx: typer.Context, include_closed: bool = AllOpt, as_json: bool = JsonOpt,
                db: Db = None) -> None:
    """List alerts, newest first: open ones, or every one with --all."""
    _list(include_closed, as_json, _db(ctx, db))


def _db(ctx: typer.Context, db: Optional[str]) -> Optional[str]:
    return db or (ctx.obj or {}).get("db")


def _set_status(ids: list[int], status: str, db: Optional[str]) -> list[dict[str, Any]]:
    from heptathlon.bench.app.nightly import set_alert_status
    from heptathlon.db.session import ensure_schema

    ensure_schema(db)
    return set_alert_status(db, ids, status)


@alerts_app.command("ack")
def alerts_ack(ctx: typer.Context,
               alert_ids: list[int] = typer.Argument(..., metavar="ID...", help="Alert id(s), as listed."),
               db: Db = None) -> None:
    """Acknowledge alerts: the night no longer fails on them, and their runs rejoin the baseline."""
    for a in _set_status(alert_ids, "acknowledged", _db(ctx, db)):
        err.print(f"alert {a['id']} acknowledged: {a['kind']} {escape(a['series'] or '')} {a['metric']} "
                  f"(run {(a['candidate_run_id'] or '')[:8]}, night {a['date']})")


@alerts_app.command("expected")
def alerts_expected(ctx: typer.Context,
                    alert_ids: list[int] = typer.Argument(..., metavar="ID...", help="Alert id(s), as listed."),
                    db: Db = None) -> None:
    """Mark alerts as expected changes: their run starts a new baseline segment of its series."""
    from heptathlon.bench.app.nightly import EXCLUDING_KINDS, list_alerts

    db = _db(ctx, db)
    marked = _set_status(alert_ids, "expected", db)
    for a in marked:
        err.print(f"alert {a['id']} marked expected: {a['kind']} {escape(a['series'] or '')} {a['metric']}; "
                  f"run {(a['candidate_run_id'] or '')[:8]} (night {a['date']}) starts a new baseline")
    runs = {a["candidate_run_id"] for a in marked}
    still = [a for a in list_alerts(db) if a["candidate_run_id"] in runs and a["kind"] in EXCLUDING_KINDS]
    if still:
        err.print(f"[yellow]note:[/] the same run still has open alert(s) {', '.join(str(a['id']) for a in still)}; "
                  "while any is open the run stays out of the baseline. Mark them too: "
                  f"heptathlon alerts expected {' '.join(str(a['id']) for a in still)}")


def register(app: typer.Typer) -> None:
    """Add ``nightly`` and the ``alerts`` group to the main CLI."""
    app.command("nightly")(nightly)
    app.add_typer(alerts_app, name="alerts")
