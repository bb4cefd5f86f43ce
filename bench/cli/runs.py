"""``runs`` (list), ``runs show RUN`` (the whole record) and ``requeue RUN...``."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from heptathlon.bench.cli.options import Db
from heptathlon.bench.cli.render import err, out

runs_app = typer.Typer(help="Runs: list them (with --status), show one whole record, requeue failed ones.",
                       invoke_without_command=True)
StatusOpt = typer.Option(None, "--status", help="Only runs in this state: queued, running, succeeded or failed.")
LimitOpt = typer.Option(50, "--limit", help="At most this many runs, newest first.")
JsonOpt = typer.Option(False, "--json", help="Print JSON and nothing else on stdout.")


@runs_app.callback()
def runs_main(ctx: typer.Context, status: Optional[str] = StatusOpt, limit: int = LimitOpt,
              as_json: bool = JsonOpt, db: Db = None) -> None:
    """Without a sub-command: list runs, newest first (`heptathlon runs --status running`)."""
    ctx.obj = {"db": db}
    if ctx.invoked_subcommand is None:
        from heptathlon.bench.app.runs import list_runs

        rows = list_runs(db, status=status, limit=limit)
        if as_json:
            print(json.dumps(rows))
            return
        _print_runs(rows, status)


def _print_runs(rows: list[dict[str, Any]], status: Optional[str]) -> None:
    if not rows:
        err.print(f"no {status + ' ' if status else ''}runs")
        return
    t = Table(title=f"{len(rows)} {status + ' ' if status else ''}run(s), newest first")
    for c in ("run", "status", "submission", "profile", "scenario", "created", "owner / reason"):
        t.add_column(c)
    for r in rows:
        owner = r["owner"]
        note = (r["error"] or "") if r["status"] == "failed" else (
            f"pid {owner['pid']} on {owner['host']}, lease until {r['lease_expires_at']}" if owner
            and r["status"] == "running" else "")
        t.add_row(r["run_id"][:8], r["status"], escape(r["submission"] or r["submission_ref"] or ""), r["profile"],
                  r["scenario"], (r["created_at"] or "")[:19], escape(note))
    out.print(t)


@runs_app.command("show")
def runs_show(ctx: typer.Context, run: Annotated[str, typer.Argument(help="A run id, or its first characters.")],
              as_json: bool = JsonOpt, db: Db = None) -> None:
    """The whole record of one run: reason, stderr tail, owner, lease, params, controls."""
    from heptathlon.bench.app.runs import show_run

    rec = show_run(db or (ctx.obj or {}).get("db"), run)
    if as_json:
        print(json.dumps(rec, default=str))
        return
    for k, v in rec.items():
        if k == "stderr_tail":
            continue
        if isinstance(v, (dict, list)):
            v = json.dumps(v, sort_keys=True, default=str)
        out.print(f"[bold]{k}[/]: {escape('' if v is None else str(v))}", soft_wrap=True)
    out.print("[bold]stderr_tail[/]:" + ("" if rec["stderr_tail"] else " (none)"))
    if rec["stderr_tail"]:
        out.print(escape(rec["stderr_tail"]), soft_wrap=True, highlight=False)
    from heptathlon.bench.sweep_stats import shown_sweep

    sweep = shown_sweep(rec.get("extra"))  # pooled over the trials where the run holds a pooled set
    if sweep:  # a batch_sweep run: the same tables `heptathlon run` printed when it finished
        from heptathlon.bench.cli.render import print_sweep

        print_sweep(sweep)


def requeue(runs: Annotated[list[str], typer.Argument(metavar="RUN...", help="Run ids, or their first characters.")],
            db: Db = None) -> None:
    """Queue failed or stuck runs again (running runs with a live owner and succeeded runs are refused)."""
    from heptathlon.bench.app.runs import requeue_runs

    refused = 0
    for _ref, rid, msg in requeue_runs(db, runs):
        if rid is None:
            refused += 1
            err.print(f"[red]error:[/] {escape(msg)}", soft_wrap=True)
        else:
            err.print(escape(msg), soft_wrap=True)
    if refused:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
    app.command()(requeue)
