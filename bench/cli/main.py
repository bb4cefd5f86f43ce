"""The ``heptathlon`` command line. Errors map to exit codes; a traceback shows only with --debug."""

from __future__ import annotations

import json
from importlib import resources
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from heptathlon.bench.errors import HeptathlonError
from heptathlon.bench.metrics import HEADLINE, METRICS
from heptathlon.bench.run_status import RunStatus

app = typer.Typer(help="Heptathlon: hardware-aware efficiency benchmarking for ML inference.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
profiles_app = typer.Typer(help="Hardware profiles.", no_args_is_help=True)
db_app = typer.Typer(help="The results database.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
app.add_typer(db_app, name="db")

out = Console(width=None if sys.stdout.isatty() else 200)  # stdout: tables, or JSON and nothing else
err = Console(stderr=True)  # progress and messages
STATE: dict[str, Any] = {"debug": False}

DbOpt = typer.Option(None, "--db", envvar="HEPTATHLON_DB",
                     help="SQLAlchemy URL of the results database (default: SQLite in $HEPTATHLON_HOME or ./.heptathlon).")


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks.")) -> None:
    STATE["debug"] = debug


SHORT = {"latency_p50_ms": "p50 ms", "latency_p99_ms": "p99 ms", "throughput_sps": "samples/s",
         "accuracy": "accuracy", "peak_rss_mb": "peak RSS MB", "load_s": "load s",
         "energy_per_sample_j": "J/sample", "params": "params"}


OPTIONAL_COLUMNS = ["framework_tax", "batch_knee", "fairness_gap", "max_qps_within_slo"]
SHORT.update({"framework_tax": "framework tax", "batch_knee": "knee b*", "fairness_gap": "fairness gap",
              "max_qps_within_slo": "max QPS @SLO"})


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _cell(m) -> str:
    """Value [CI], with the method marked when it is not a plain measurement."""
    if m is None:
        return "[dim]not measured[/]"
    if m.value is None:
        return "[dim]n/a[/]"
    s = _fmt(m.value)
    if m.ci_low is not None and m.ci_high is not None and m.ci_high != m.ci_low and m.value:
        half = max(m.value - m.ci_low, m.ci_high - m.value) / abs(m.value) * 100
        s += f" [dim]±{half:.2g}%[/]"
    if m.method.startswith("estimate:"):
        s += " [yellow](est.)[/]"
    return s


# ---- commands -----------------------------------------------------------------------------------
def _scenario_configs(scenarios: list[str], batch_size, full, min_queries, min_duration, max_duration, seed,
                      warmup=None, **options):
    """Scenario configs from CLI options. A scenario-specific option (--qps, --lambda, ...) goes to
    the requested scenarios it belongs to; given with none of them, it is passed on so that
    validation names the mismatch (e.g. an SLO with single_stream) before anything runs."""
    from heptathlon.bench.scenarios import SCENARIO_OPTIONS, make_scenario

    def opts_for(name: str) -> dict:
        out = {}
        for k, v in options.items():
            owners = SCENARIO_OPTIONS.get(k)
            if v is None or (owners and name not in owners and any(sc in owners for sc in scenarios)):
                continue
            out[k] = v
        return out

    return [make_scenario(s, batch_size=batch_size, full=full, seed=seed, min_queries=min_queries,
                          min_duration_s=min_duration, max_duration_s=max_duration, warmup_queries=warmup,
                          **opts_for(s))
            for s in scenarios]


# Scenario options shared by `run` and `submit`.
LambdaOpt = typer.Option(None, "--lambda", help="poisson_batch: mean of the Poisson batch sizes (default 8).")
QpsOpt = typer.Option(None, "--qps", help="server: target queries/s of the Poisson arrivals (default 100; "
                                          "with --slo-ms, where the search starts).")
MaxBatchOpt = typer.Option(None, "--max-batch", help="server: dynamic batching, at most this many queries per call; "
                                                    "batch_sweep: the largest batch size swept (default 64).")
RepeatsOpt = typer.Option(None, "--repeats", help="batch_sweep: timed (and profiled) calls per batch size (default 10).")
RuntimesOpt = typer.Option(None, "--runtimes", help="batch_sweep, torch models: comma-separated runtimes to derive "
                                                    "and compare (eager,torchscript,torch.compile,onnxruntime; "
                                                    "default: all that apply).")


def _runtimes(text: Optional[str]) -> Optional[tuple[str, ...]]:
    return None if text is None else tuple(r.strip() for r in text.split(",") if r.strip())
MaxWaitOpt = typer.Option(None, "--max-wait-ms", help="server: how long a queued query may wait for a batch to fill.")
SloOpt = typer.Option(None, "--slo-ms", help="server: find the largest QPS whose p99 latency stays within this SLO.")
AdaptiveOpt = typer.Option(False, "--adaptive", help="After the minimums, go on until the 95% CI half-width of "
                                                     "the median is within --ci-target (or the cap).")
CiTargetOpt = typer.Option(None, "--ci-target", help="Adaptive stopping: relative CI half-width (default 0.01).")


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False, disable=not err.is_terminal and False)


def _execute_with_progress(run_ids: list[str], db: str | None, label: str = "runs"):
    from heptathlon.bench.app.service import execute_queued

    with _progress() as prog:
        task = prog.add_task(label, total=len(run_ids))

        def cb(done: int, outcome, rid: str) -> None:
            if outcome is None:
                prog.update(task, description=f"run {rid[:8]}")
            else:
                mark = "[green]ok[/]" if outcome.status == RunStatus.SUCCEEDED else "[red]failed[/]"
                prog.update(task, completed=done, description=f"{outcome.submission} on {outcome.profile}/{outcome.scenario}: {mark}")
                if outcome.error:
                    prog.console.print(f"[red]✗[/] {outcome.error}")

        return execute_queued(run_ids, db=db, on_progress=cb)


@app.command()
def submit(folder: Path = typer.Argument(..., help="A submission folder with a submission.yaml."),
           profile: list[str] = typer.Option(None, "--profile", "-p", help="Profile(s); default: the default profiles."),
           scenario: list[str] = typer.Option(["single_stream"], "--scenario", "-s"),
           trials: int = typer.Option(1, "--trials", min=1, help="Independent trials, each in a fresh worker; pooled."),
           run_now: bool = typer.Option(False, "--run", help="Execute the queued runs now."),
           poisson_lambda: Optional[float] = LambdaOpt, qps: Optional[float] = QpsOpt,
           max_batch: Optional[int] = MaxBatchOpt, max_wait_ms: Optional[float] = MaxWaitOpt,
           slo_ms: Optional[float] = SloOpt, adaptive: bool = AdaptiveOpt, ci_target: Optional[float] = CiTargetOpt,
           repeats: Optional[int] = RepeatsOpt, runtimes: Optional[str] = RuntimesOpt,
           db: Optional[str] = DbOpt) -> None:
    """Validate, hash and store a submission, and queue its runs."""
    from heptathlon.bench.profile import default_profiles
    from heptathlon.bench.app.service import pool_groups_of, queue_runs

    profiles = profile or [p.name for p in default_profiles()]
    cfgs = _scenario_configs(scenario, None, False, None, None, None, 0, poisson_lambda=poisson_lambda, qps=qps,
                             max_batch=max_batch, max_wait_ms=max_wait_ms, slo_ms=slo_ms,
                             adaptive=adaptive or None, ci_target=ci_target, repeats=repeats,
                             runtimes=_runtimes(runtimes))
    ids = queue_runs(folder, profiles, cfgs, db=db, trials=trials)
    err.print(f"queued {len(ids)} run(s) for {folder}")
    if run_now:
        outcomes = _execute_with_progress(ids, db)
        pool_groups_of(ids, db=db)
        if any(o.status != RunStatus.SUCCEEDED for o in outcomes):
            raise typer.Exit(1)
    else:
        err.print("execute them with: heptathlon execute")


@app.command()
def execute(db: Optional[str] = DbOpt) -> None:
    """Execute every queued run."""
    from heptathlon.bench.app.service import queued_run_ids

    ids = queued_run_ids(db)
    if not ids:
        err.print("no queued runs; queue some with: heptathlon submit DIR")
        return
    outcomes = _execute_with_progress(ids, db)
    from heptathlon.bench.app.service import pool_groups_of

    pool_groups_of(ids, db=db)  # trials queued by `submit --trials k`
    if any(o.status != RunStatus.SUCCEEDED for o in outcomes):
        raise typer.Exit(1)


@app.command()
def run(folder: Path = typer.Argument(..., help="A submission folder with a submission.yaml."),
        profile: str = typer.Option("cpu-1core", "--profile", "-p"),
        scenario: str = typer.Option("single_stream", "--scenario", "-s"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="fixed_batch: the batch size."),
        full: bool = typer.Option(False, "--full", help="Serious durations (60 s minimum, 1024 queries) instead of demo ones."),
        min_queries: Optional[int] = typer.Option(None, "--min-queries"),
        min_duration: Optional[float] = typer.Option(None, "--min-duration", help="Seconds."),
        max_duration: Optional[float] = typer.Option(None, "--max-duration", help="Seconds."),
        warmup: Optional[int] = typer.Option(None, "--warmup", help="Warm-up queries before timing."),
        seed: int = typer.Option(0, "--seed"),
        timeout: float = typer.Option(120.0, "--timeout", help="Per-run timeout in seconds."),
        no_meters: bool = typer.Option(False, "--no-meters", help="Run latency without energy meters (to compare)."),
        idle_seconds: float = typer.Option(1.0, "--idle-seconds", help="Idle-power baseline before the window."),
        country: str = typer.Option("USA", "--country", help="ISO code of the grid region for CO2."),
        trials: int = typer.Option(1, "--trials", min=1, help="Independent trials, each in a fresh worker; "
                                                            "per-trial and pooled statistics are stored."),
        poisson_lambda: Optional[float] = LambdaOpt, qps: Optional[float] = QpsOpt,
        max_batch: Optional[int] = MaxBatchOpt, max_wait_ms: Optional[float] = MaxWaitOpt,
        slo_ms: Optional[float] = SloOpt, adaptive: bool = AdaptiveOpt, ci_target: Optional[float] = CiTargetOpt,
        repeats: Optional[int] = RepeatsOpt, runtimes: Optional[str] = RuntimesOpt,
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object and nothing else on stdout."),
        db: Optional[str] = DbOpt) -> None:
    """Benchmark one submission on one profile and scenario, now."""
    import uuid

    from heptathlon.bench.app.service import RunOutcome, execute_run, pool_trials, queue_runs, record_rejected

    cfgs = None
    group_id = str(uuid.uuid4())
    try:
        cfgs = _scenario_configs([scenario], batch_size, full, min_queries, min_duration, max_duration, seed, warmup,
                                 poisson_lambda=poisson_lambda, qps=qps, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                 slo_ms=slo_ms, adaptive=adaptive or None, ci_target=ci_target, repeats=repeats,
                                 runtimes=_runtimes(runtimes))
        ids = queue_runs(folder, [profile], cfgs, db=db, timeout_s=timeout, trials=trials, group_id=group_id,
                         energy={"enabled": not no_meters, "idle_s": idle_seconds, "country_iso": country})
    except HeptathlonError as e:
        rid = (record_rejected(folder, [profile], [scenario], e, db) if cfgs is None else getattr(e, "run_ids", [None]))[0]
        _fail_json(e, folder, profile, scenario, as_json, rid)
    outcomes: list[RunOutcome] = []
    with _progress() as prog:
        for k, rid in enumerate(ids):
            label = f" (trial {k + 1}/{len(ids)})" if len(ids) > 1 else ""
            task_ = prog.add_task(f"{folder.name} on {profile}/{scenario}{label}", total=None)
            outcomes.append(execute_run(rid, db=db))
            prog.update(task_, total=1, completed=1)
    o = outcomes[-1] if len(outcomes) == 1 else _pooled_outcome(outcomes, pool_trials(group_id, db=db), group_id)
    if as_json:
        print(json.dumps(o.to_json() | ({"trials": o.trials} if getattr(o, "trials", None) else {})))
    else:
        _print_outcome(o)
    if o.status != RunStatus.SUCCEEDED:
        if not as_json:
            err.print(f"[red]error:[/] {o.error}")
            if o.stderr_tail:
                err.print("[dim]stderr tail:[/]\n" + o.stderr_tail[-1500:])
        raise typer.Exit(1)


def _pooled_outcome(outcomes, pooled: dict, group_id: str):
    """One outcome for k trials: the pooled values (stored on the last trial) over its own, and a
    failed status if any trial failed."""
    ok = [o for o in outcomes if o.status == RunStatus.SUCCEEDED]
    base = ok[-1] if ok else outcomes[-1]
    values = next((v for rid, v in pooled.items() if rid in {o.run_id for o in ok}), [])
    failed = [o for o in outcomes if o.status != RunStatus.SUCCEEDED]
    o = type(base)(base.run_id, RunStatus.FAILED if failed else base.status, failed[0].error if failed else base.error,
                   base.submission, base.profile, base.scenario, {**base.metrics, **{v.name: v for v in values}},
                   base.stderr_tail)
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
    t = Table(title=f"{o.submission} on {o.profile} / {o.scenario}  (run {o.run_id[:8]}, {o.status})")
    t.add_column("metric")
    t.add_column("value [95% CI]", justify="right")
    t.add_column("unit")
    t.add_column("n", justify="right")
    t.add_column("method")
    for name, m in o.metrics.items():
        t.add_row(name, _cell(m), m.unit, str(m.n or ""), m.method)
    out.print(t)
    if getattr(o, "sweep", None):  # batch_sweep: latency and FT(b) per runtime, knees (bench/sweep_service.py)
        from heptathlon.bench.sweep_stats import sweep_tables

        for title, columns, rows in sweep_tables(o.sweep):
            out.print(f"[bold]{title}[/]")
            st = Table()
            for c in columns:
                st.add_column(c, justify="left" if c in ("runtime", "reason", "sweep stop", "FT method") else "right")
            for r in rows:
                st.add_row(*r)
            out.print(st)


@app.command()
def results(task: Optional[str] = typer.Option(None, "--task"),
            profile: Optional[str] = typer.Option(None, "--profile", "-p"),
            scenario: Optional[str] = typer.Option(None, "--scenario", "-s"),
            rank_by: str = typer.Option("latency_p50_ms", "--rank-by", help="Metric to rank by (ties where 95% CIs overlap)."),
            as_json: bool = typer.Option(False, "--json"),
            db: Optional[str] = DbOpt) -> None:
    """The leaderboard: latest results per submission, profile and scenario, with tie-aware ranks."""
    from heptathlon.bench.app.service import leaderboard_groups

    if rank_by not in METRICS:
        raise HeptathlonError(f"--rank-by: unknown metric {rank_by!r}; known: {', '.join(sorted(METRICS))}")
    groups = leaderboard_groups(db, task=task, profile=profile, scenario=scenario, rank_by=rank_by)
    if as_json:
        print(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for g in groups for r in g["rows"]],
                         default=str))
        return
    if not groups:
        err.print("no results yet. Try: heptathlon demo   or   heptathlon run submissions/arrests-mlp-onnx")
        return
    tables: dict[tuple, list] = {}
    for g in groups:
        tables.setdefault((g["task"], g["scenario"], g["machine_id"]), []).append(g)
    for (task_, scen, mach), gs in tables.items():
        t = Table(title=f"task {task_} · scenario {scen} · machine {mach}", title_justify="left")
        for c in ("profile", "rank", "submission", "kind"):
            t.add_column(c)
        # Headline columns, plus the optional events that some row of this table measured.
        present = {k for g in gs for r in g["rows"] for k, m in r["_m"].items() if m.value is not None}
        cols = HEADLINE + [n for n in OPTIONAL_COLUMNS if n in present]
        for name in cols:
            t.add_column(SHORT.get(name, name), justify="right")
        for g in gs:
            for i, r in enumerate(g["rows"]):
                name = r["submission"] + (f" [dim](pooled, {r['trials']} trials)[/]" if r.get("trials") else "")
                t.add_row(g["profile"] if i == 0 else "", r["rank"], name, r["kind"],
                          *[_cell(r["_m"].get(n)) for n in cols], end_section=i == len(g["rows"]) - 1)
        out.print(t)
    err.print(f"[dim]ranked by {rank_by}; entries whose 95% CIs overlap share a rank range. "
              "Estimated values are marked (est.) and never ranked against measured ones.[/]")


@app.command()
def fairness(submission: str = typer.Argument(..., help="Submission name (as in its submission.yaml)."),
             reference: Optional[str] = typer.Option(None, "--reference", help="Reference profile (default cpu-1core: fp32 CPU)."),
             as_json: bool = typer.Option(False, "--json"),
             db: Optional[str] = DbOpt) -> None:
    """Hardware-induced fairness disparity of a submission across every profile it ran on."""
    from heptathlon.bench.fairness import disparity_rows, disparity_summary_rows
    from heptathlon.bench.app.fairness import compute_disparity

    ft = compute_disparity(submission, reference=reference, db=db)
    if as_json:
        print(json.dumps({"submission": ft.submission, "task": ft.task, "reference": ft.reference,
                          "attributes": {a: [{"profile": p, "run_id": rid, "summary": disparity_summary_rows(rep),
                                              "groups": disparity_rows(rep)} for p, rid, rep in items]
                                         for a, items in ft.reports.items()}}))
        return
    if not any(ft.reports.values()):
        err.print(f"only the reference profile {ft.reference!r} has a run; run {submission} on another profile "
                  "(e.g. --profile cpu-1core-int8) to see disparity")
    for attr, items in ft.reports.items():
        for prof, rid, rep in items:
            t = Table(title=f"{ft.submission} · {attr} · {prof} vs reference {ft.reference}", title_justify="left")
            rows = disparity_rows(rep)
            for c in rows[0].keys():
                t.add_column(c, justify="right" if c != "group" else "left")
            for r in rows:
                t.add_row(*[("[yellow]" + v + "[/]") if k == "small" and v not in ("", "no", "False") else v
                            for k, v in r.items()])
            out.print(t)
            s = Table(show_header=True, title_justify="left")
            for c in ("quantity", "value", "ci", "n"):
                s.add_column(c)
            for r in disparity_summary_rows(rep):
                s.add_row(r["quantity"], r["value"], r["ci"], r["n"])
            out.print(s)
    err.print("[dim]95% CIs from a paired bootstrap over examples; McNemar exact test per group. "
              "Small groups are flagged, never hidden.[/]")


@profiles_app.command("list")
def profiles_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the hardware profiles in hw_profiles/."""
    from heptathlon.bench.profile import list_profiles
    from heptathlon.runners.adapters.registry import validate_runtime_sections

    profs = [validate_runtime_sections(p) for p in list_profiles()]
    if as_json:
        print(json.dumps([p.model_dump(mode="json") for p in profs]))
        return
    t = Table(title="hardware profiles")
    for c in ("name", "device", "cores", "threads", "precision", "memory", "default", "description"):
        t.add_column(c)
    for p in profs:
        t.add_row(p.name, p.device, str(p.cpu.cores or "all"), str(p.cpu.threads), p.precision,
                  p.memory_limit or "—", "yes" if p.default else "", p.description)
    out.print(t)


@profiles_app.command("check")
def profiles_check(name: str = typer.Argument(..., help="Profile name (see `heptathlon profiles list`)."),
                   spin_s: float = typer.Option(1.0, "--spin-seconds", help="Length of the CPU-bound probes."),
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Run probes under a profile and show, control by control, that it really holds."""
    from dataclasses import asdict

    from heptathlon.bench.profile import load_profile
    from heptathlon.runners.adapters.registry import validate_runtime_sections
    from heptathlon.runners.probe import check_profile

    prof = validate_runtime_sections(load_profile(name))
    with _progress() as prog:
        prog.add_task(f"probing {name}", total=None)
        results = check_profile(prof, spin_s=spin_s)
    if as_json:
        print(json.dumps([asdict(r) for r in results], default=str))
    else:
        t = Table(title=f"profile {name}: do its controls hold?", title_justify="left")
        for c in ("control", "requested", "observed", "mechanism", "holds", "detail"):
            t.add_column(c)
        for r in results:
            mark = {True: "[green]yes[/]", False: "[red]NO[/]", None: "[dim]—[/]"}[r.ok]
            t.add_row(r.control, str(r.requested), str(r.observed), r.mechanism or "—", mark, r.detail)
        out.print(t)
    if any(r.ok is False for r in results):
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(db: Optional[str] = DbOpt) -> None:
    """Apply the Alembic migrations to the database."""
    from heptathlon.db.session import default_url, upgrade

    head = upgrade(db)
    err.print(f"database {db or default_url()} is at revision {head}")


@app.command()
def demo(full: bool = typer.Option(False, "--full", help="Serious durations instead of demo ones."),
         rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild the example models even if present."),
         db: Optional[str] = DbOpt) -> None:
    """Build the example models, benchmark every bundled submission on the default profiles, print the leaderboard."""
    from heptathlon.bench.profile import default_profiles
    from heptathlon.bench.app.service import build_examples, example_folders, queue_runs

    folders = example_folders()
    with _progress() as prog:
        task = prog.add_task("building example models", total=len(folders))
        for f in folders:
            prog.update(task, description=f"building {f.name}")
            build_examples([f], rebuild=rebuild)
            prog.advance(task)
    profiles = [p.name for p in default_profiles()]
    cfgs = _scenario_configs(["single_stream", "offline"], None, full, None, None, None, 0)
    # Framework tax: one batch sweep per submission (b = 1..64, every runtime that applies) on the first
    # profile. No energy meters there: the single_stream run measures that pass's energy already.
    sweep_cfgs = _scenario_configs(["batch_sweep"], None, full, None, None, None, 0)
    # Fairness: torch models of group tasks also run under int8 and bf16 numerics, so that
    # hardware-induced disparity against the fp32 reference is in the database after the demo.
    from heptathlon.bench.manifest import load_manifest
    from heptathlon.bench.tasks import resolve_task

    fair_profiles = ["cpu-1core-bf16", "cpu-1core-int8"]
    fair_cfgs = _scenario_configs(["single_stream"], None, False, None, None, None, 0)
    fair_subs = []
    ids = []
    for f in folders:
        ids += queue_runs(f, profiles, cfgs, db=db)
        ids += queue_runs(f, profiles[:1], sweep_cfgs, db=db, timeout_s=300.0, energy={"enabled": False})
        m = load_manifest(f)
        if m.model.kind == "torch" and resolve_task(m.task, f).group_attributes:
            ids += queue_runs(f, fair_profiles, fair_cfgs, db=db, energy={"enabled": False})
            fair_subs.append(m.name)
    outcomes = _execute_with_progress(ids, db, "benchmarking")
    results(task=None, profile=None, scenario=None, rank_by="latency_p50_ms", as_json=False, db=db)
    _print_fairness_summary(fair_subs, db)
    failed = [o for o in outcomes if o.status != RunStatus.SUCCEEDED]
    if failed:
        err.print(f"[red]{len(failed)} run(s) failed[/]")
        raise typer.Exit(1)
    err.print("next: heptathlon dashboard   (the web leaderboard)")


def _print_fairness_summary(submissions: list[str], db) -> None:
    from heptathlon.bench.app.fairness import compute_disparity

    t = Table(title="hardware-induced fairness disparity vs the fp32 reference (finest grouping)", title_justify="left")
    for c in ("submission", "grouping", "profile", "hw_disparity [95% CI]", "largest group flip rate", "small groups"):
        t.add_column(c)
    for name in submissions:
        try:
            ft = compute_disparity(name, db=db)
        except HeptathlonError as e:
            err.print(f"[yellow]fairness for {name}: {e}[/]")
            continue
        attr = list(ft.reports)[-1]
        for prof, _, rep in ft.reports[attr]:
            hd = rep.hw_disparity
            worst = max(rep.groups, key=lambda g: g.flip.value)
            small = ", ".join(g.group for g in rep.groups if g.small) or "—"
            t.add_row(name, attr, prof, f"{hd.value:+.3f} [{hd.ci_low:+.3f}, {hd.ci_high:+.3f}]",
                      f"{worst.group}: {worst.flip.value:.3f}", small)
    if submissions:
        out.print(t)
        err.print("[dim]details: heptathlon fairness <submission>[/]")


@app.command()
def dashboard(db: Optional[str] = DbOpt, port: int = typer.Option(8501, "--port")) -> None:
    """Launch the Streamlit web leaderboard."""
    from heptathlon.db.session import default_url

    env = dict(os.environ, HEPTATHLON_DB=db or default_url())
    app_path = Path(str(resources.files("heptathlon.dashboard") / "app.py"))
    raise typer.Exit(subprocess.call([sys.executable, "-m", "streamlit", "run", str(app_path), "--server.port", str(port),
                                      "--server.headless", "true", "--browser.gatherUsageStats", "false"], env=env))


from heptathlon.bench.cli.nightly import register as _register_nightly  # noqa: E402  `nightly` and `alerts`

_register_nightly(app)


def main() -> None:
    try:
        rv = app(standalone_mode=False)  # returns the exit code of a typer.Exit in this mode
        sys.exit(rv if isinstance(rv, int) else 0)
    except HeptathlonError as e:
        if STATE["debug"]:
            raise
        err.print(f"[red]error:[/] {e}")
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as e:  # click usage errors and the like
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if STATE["debug"]:
            raise
        err.print(f"[red]internal error:[/] {type(e).__name__}: {e} (re-run with --debug for a traceback)")
        sys.exit(70)


if __name__ == "__main__":
    main()
