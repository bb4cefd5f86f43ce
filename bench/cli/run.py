"""``submit``, ``execute``, ``run`` and ``demo``: queue and execute runs, print their outcomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from heptathlon.bench.cli.options import (Adaptive, AllowUnsandboxed, CiTarget, Concurrency, Db, Folder, IgnoreEos,
                                          MaxBatch, MaxNewTokens, MaxWaitMs, PoissonLambda, Qps, Rate, Repeats,
                                          Runtimes, SeqLengths, SloMs, Sweep, TpotSloMs, TtftSloMs, WaitQuiet,
                                          WaitQuietTimeout)
from heptathlon.bench.cli.render import (RichProgress, cell, err, execute_with_progress, out, print_failure,
                                         print_sweep)
from heptathlon.bench.errors import HeptathlonError
from heptathlon.bench.run_status import RunStatus


def submit(ctx: typer.Context, folder: Folder,
           profile: Annotated[Optional[list[str]], typer.Option(
               "--profile", "-p", help="Profile(s); default: the default profiles.")] = None,
           scenario: Annotated[list[str], typer.Option("--scenario", "-s")] = ["single_stream"],  # noqa: B006
           trials: Annotated[int, typer.Option(
               "--trials", min=1, help="Independent trials, each in a fresh worker; pooled.")] = 1,
           run_now: Annotated[bool, typer.Option("--run", help="Execute the queued runs now.")] = False,
           poisson_lambda: PoissonLambda = None, qps: Qps = None, max_batch: MaxBatch = None,
           max_wait_ms: MaxWaitMs = None, slo_ms: SloMs = None, adaptive: Adaptive = False,
           ci_target: CiTarget = None, repeats: Repeats = None, runtimes: Runtimes = None,
           seq_lengths: SeqLengths = None,
           concurrency: Concurrency = None, rate: Rate = None, max_new_tokens: MaxNewTokens = None,
           ignore_eos: IgnoreEos = False, ttft_slo_ms: TtftSloMs = None, tpot_slo_ms: TpotSloMs = None,
           sweep: Sweep = False,
           allow_unsandboxed: AllowUnsandboxed = False,
           wait_quiet: WaitQuiet = False, wait_quiet_timeout: WaitQuietTimeout = 300.0,
           db: Db = None,
           fleet: Annotated[bool, typer.Option(
               "--fleet", help="Dispatch the runs to the measuring fleet's queues (docs/fleet.md).")] = False,
           broker: Annotated[Optional[str], typer.Option(
               "--broker", envvar="HEPTATHLON_BROKER", help="--fleet: the Celery broker URL.")] = None,
           artifacts: Annotated[Optional[str], typer.Option(
               "--artifacts", envvar="HEPTATHLON_ARTIFACTS", help="--fleet: the shared artifact store URL.")] = None,
           wait: Annotated[bool, typer.Option("--wait", help="--fleet: follow the runs to the end.")] = False) -> None:
    """Validate, hash and store a submission, and queue its runs (on this machine, or --fleet)."""
    from heptathlon.bench.app.options import RunOptions
    from heptathlon.bench.app.service import pool_groups_of, queue_runs
    from heptathlon.bench.profile import default_profiles

    opts = RunOptions.from_cli(ctx.params, profiles=profile or [p.name for p in default_profiles()],
                               scenarios=scenario, trials=trials, allow_unsandboxed=allow_unsandboxed)
    if fleet:
        if run_now:
            raise typer.BadParameter("--run executes here; --fleet dispatches to the fleet: pick one",
                                     param_hint="--run")
        from heptathlon.bench.cli.fleet import submit_to_fleet

        submit_to_fleet(folder, opts, db=db, broker=broker, artifacts=artifacts, wait=wait)
        return
    if wait:
        raise typer.BadParameter("--wait follows fleet runs; add --fleet (or use --run here)", param_hint="--wait")
    ids = queue_runs(folder, opts.profiles, opts.scenario_configs(), db=db, **opts.queue_kwargs())
    err.print(f"queued {len(ids)} run(s) for {folder}")
    if run_now:
        outcomes = execute_with_progress(ids, db, allow_unsandboxed=allow_unsandboxed,
                                         wait_quiet_s=wait_quiet_timeout if wait_quiet else None)
        pool_groups_of(ids, db=db)
        if any(o.status != RunStatus.SUCCEEDED for o in outcomes):
            raise typer.Exit(1)
    else:
        err.print("execute them with: heptathlon execute")


Trusted = Annotated[bool, typer.Option(
    "--trusted", help="Load a torch/torchscript model in the measuring process itself (no sandboxed model "
                      "process): lowest overhead, for your own model on your own machine. Such runs are "
                      "marked and never ranked; the nightly refuses them.")]


def execute(allow_unsandboxed: AllowUnsandboxed = False, db: Db = None, trusted: Trusted = False,
            wait_quiet: WaitQuiet = False, wait_quiet_timeout: WaitQuietTimeout = 300.0) -> None:
    """Execute every queued run."""
    from heptathlon.bench.app.service import pool_groups_of, queued_run_ids

    ids = queued_run_ids(db)
    if not ids:
        err.print("no queued runs; queue some with: heptathlon submit DIR")
        return
    if trusted:
        err.print("[yellow]--trusted:[/] torch/torchscript models run in the measuring process; these runs are marked")
    outcomes = execute_with_progress(ids, db, allow_unsandboxed=allow_unsandboxed, trusted=trusted or None,
                                     wait_quiet_s=wait_quiet_timeout if wait_quiet else None)
    pool_groups_of(ids, db=db)  # trials queued by `submit --trials k`
    if any(o.status != RunStatus.SUCCEEDED for o in outcomes):
        raise typer.Exit(1)


def run(ctx: typer.Context, folder: Folder,
        profile: Annotated[str, typer.Option("--profile", "-p")] = "cpu-1core",
        scenario: Annotated[str, typer.Option("--scenario", "-s")] = "single_stream",
        batch_size: Annotated[Optional[int], typer.Option(
            "--batch-size", "-b", help="fixed_batch: the batch size.")] = None,
        full: Annotated[bool, typer.Option(
            "--full", help="Serious durations (60 s minimum, 1024 queries) instead of demo ones.")] = False,
        min_queries: Annotated[Optional[int], typer.Option("--min-queries")] = None,
        min_duration_s: Annotated[Optional[float], typer.Option("--min-duration", help="Seconds.")] = None,
        max_duration_s: Annotated[Optional[float], typer.Option("--max-duration", help="Seconds.")] = None,
        warmup_queries: Annotated[Optional[int], typer.Option("--warmup", help="Warm-up queries before timing.")] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        timeout: Annotated[float, typer.Option("--timeout", help="Per-run timeout in seconds.")] = 120.0,
        no_meters: Annotated[bool, typer.Option(
            "--no-meters", help="Run latency without energy meters (to compare).")] = False,
        idle_seconds: Annotated[float, typer.Option(
            "--idle-seconds", help="Idle-power baseline before the window.")] = 1.0,
        country: Annotated[str, typer.Option("--country", help="ISO code of the grid region for CO2.")] = "USA",
        trials: Annotated[int, typer.Option(
            "--trials", min=1, help="Independent trials, each in a fresh worker; "
                                    "per-trial and pooled statistics are stored.")] = 1,
        poisson_lambda: PoissonLambda = None, qps: Qps = None, max_batch: MaxBatch = None,
        max_wait_ms: MaxWaitMs = None, slo_ms: SloMs = None, adaptive: Adaptive = False,
        ci_target: CiTarget = None, repeats: Repeats = None, runtimes: Runtimes = None,
        seq_lengths: SeqLengths = None,
        concurrency: Concurrency = None, rate: Rate = None, max_new_tokens: MaxNewTokens = None,
        ignore_eos: IgnoreEos = False, ttft_slo_ms: TtftSloMs = None, tpot_slo_ms: TpotSloMs = None,
        sweep: Sweep = False,
        wait_quiet: WaitQuiet = False, wait_quiet_timeout: WaitQuietTimeout = 300.0,
        as_json: Annotated[bool, typer.Option(
            "--json", help="Print one JSON object and nothing else on stdout.")] = False,
        trusted: Trusted = False,
        allow_unsandboxed: AllowUnsandboxed = False, db: Db = None) -> None:
    """Benchmark one submission on one profile and scenario, now."""
    import uuid

    from heptathlon.bench.app.options import EnergyOptions, RunOptions
    from heptathlon.bench.app.service import (RunOutcome, execute_run, pool_trials, queue_runs, record_rejected,
                                              wait_quiet_for_run)

    cfgs = None
    group_id = str(uuid.uuid4())
    try:
        opts = RunOptions.from_cli(ctx.params, profiles=[profile], scenarios=[scenario], trials=trials,
                                   timeout_s=timeout, trusted=trusted,
                                   energy=EnergyOptions(enabled=not no_meters, idle_s=idle_seconds, country_iso=country),
                                   allow_unsandboxed=allow_unsandboxed)
        cfgs = opts.scenario_configs()
        ids = queue_runs(folder, opts.profiles, cfgs, db=db, group_id=group_id, **opts.queue_kwargs())
    except HeptathlonError as e:
        rid = (record_rejected(folder, [profile], [scenario], e, db) if cfgs is None else getattr(e, "run_ids", [None]))[0]
        _fail_json(e, folder, profile, scenario, as_json, rid)
    outcomes: list[RunOutcome] = []
    with RichProgress() as prog:
        for k, rid in enumerate(ids):
            label = f" (trial {k + 1}/{len(ids)})" if len(ids) > 1 else ""
            prog.phase(f"{folder.name} on {profile}/{scenario}{label}", total=None)
            if wait_quiet:
                rec = wait_quiet_for_run(rid, wait_quiet_timeout, db=db, on_wait=prog.step)
                if not rec["quiet"]:
                    err.print(f"[yellow]cores {rec['cores']} still {rec['busy_share']:.0%} busy after "
                              f"{rec['waited_s']:.0f} s; running anyway (the run will likely be marked contended)[/]")
            o = execute_run(rid, db=db, allow_unsandboxed=allow_unsandboxed)
            if not o.claimed:  # a concurrent `heptathlon execute` took it first
                o.error = f"{o.note}; another executor claimed it first (see: heptathlon runs show {rid[:8]})"
            outcomes.append(o)
            prog.step(f"{folder.name} on {profile}/{scenario}{label}", completed=1, total=1)
    o = (outcomes[-1] if len(outcomes) == 1 else
         _pooled_outcome(outcomes, pool_trials(group_id, db=db), group_id, db))
    if as_json:
        print(json.dumps(o.to_json() | ({"trials": o.trials} if getattr(o, "trials", None) else {})))
    else:
        _print_outcome(o)
    if o.status != RunStatus.SUCCEEDED:
        if not as_json:
            print_failure(o.error, o.stderr_tail)
        raise typer.Exit(1)


def _pooled_outcome(outcomes, pooled: dict, group_id: str, db: str | None = None):
    """One outcome for k trials: the pooled values (stored on the last trial) over its own, and a
    failed status if any trial failed; a batch_sweep's tables are the pooled ones."""
    from heptathlon.bench.app.runs import pooled_sweep

    ok = [o for o in outcomes if o.status == RunStatus.SUCCEEDED]
    base = ok[-1] if ok else outcomes[-1]
    values = next((v for rid, v in pooled.items() if rid in {o.run_id for o in ok}), [])
    failed = [o for o in outcomes if o.status != RunStatus.SUCCEEDED]
    o = type(base)(base.run_id, RunStatus.FAILED if failed else base.status, failed[0].error if failed else base.error,
                   base.submission, base.profile, base.scenario, {**base.metrics, **{v.name: v for v in values}},
                   base.stderr_tail)
    o.sweep = next((sw for rid in pooled if (sw := pooled_sweep(rid, db=db))), None) or getattr(base, "sweep", None)
    o.trials = {"k": len(outcomes), "group_id": group_id, "pooled": bool(values),
                "runs": [{"run_id": t.run_id, "status": t.status, "error": t.error} for t in outcomes]}
    return o


def _fail_json(e: HeptathlonError, folder: Path, profile: str, scenario: str, as_json: bool, run_id) -> None:
    if as_json:
        print(json.dumps({"run_id": run_id, "status": RunStatus.FAILED, "error": str(e),
                          "submission": str(folder), "profile": profile, "scenario": scenario, "metrics": {}}))
        raise typer.Exit(e.exit_code)
    raise e


def _print_outcome(o) -> None:
    trusted = " [yellow]· trusted: in-process, unranked[/]" if getattr(o, "isolation", None) == "trusted-in-process" else ""
    t = Table(title=f"{o.submission} on {o.profile} / {o.scenario}  (run {o.run_id[:8]}, {o.status}){trusted}")
    t.add_column("metric")
    t.add_column("value [95% CI]", justify="right")
    t.add_column("unit")
    t.add_column("n", justify="right")
    t.add_column("method")
    for name, m in o.metrics.items():
        t.add_row(name, cell(m), m.unit, str(m.n or ""), m.method)
    out.print(t)
    if getattr(o, "sweep", None):  # batch_sweep: latency and FT(b) per runtime, knees (bench/sweep_stats.py)
        print_sweep(o.sweep)


def demo(full: Annotated[bool, typer.Option("--full", help="Serious durations instead of demo ones.")] = False,
         rebuild: Annotated[bool, typer.Option(
             "--rebuild", help="Rebuild the example models even if present.")] = False,
         bert_base: Annotated[bool, typer.Option(
             "--bert-base", help="Also build and run the BERT-base examples of submissions/large/ "
                                 "(~440 MB each, minutes per run on 2 cores).")] = False,
         db: Db = None) -> None:
    """Build the example models, benchmark every bundled submission on the default profiles, print the leaderboard."""
    from heptathlon.bench.app.demo import run_demo
    from heptathlon.bench.cli.results import print_fairness_summary, print_leaderboard

    with RichProgress() as prog:
        o = run_demo(prog, full=full, rebuild=rebuild, db=db, bert_base=bert_base)
    if o.note:
        err.print(f"[yellow]note:[/] {o.note}")
    print_leaderboard(db, rank_by="latency_p50_ms")
    print_fairness_summary(o.fairness_submissions, db)
    failed = [r for r in o.outcomes if r.status != RunStatus.SUCCEEDED]
    if failed:
        err.print(f"[red]{len(failed)} run(s) failed[/]")
        raise typer.Exit(1)
    err.print("next: heptathlon dashboard   (the web leaderboard)")


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(execute)
    app.command()(run)


def register_demo(app: typer.Typer) -> None:
    app.command()(demo)
