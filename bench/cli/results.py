"""``results`` and ``fairness``: the leaderboard and the hardware-induced fairness disparity."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from heptathlon.bench.cli.options import Db, Json
from heptathlon.bench.cli.render import (GENERATE_COLUMNS, GENERATE_OPTIONAL, OPTIONAL_COLUMNS, SHORT, cell,
                                         contended_mark, err, out)
from heptathlon.bench.errors import OptionsError
from heptathlon.bench.metrics import HEADLINE, METRICS


def results(task: Annotated[Optional[str], typer.Option("--task")] = None,
            profile: Annotated[Optional[str], typer.Option("--profile", "-p")] = None,
            scenario: Annotated[Optional[str], typer.Option("--scenario", "-s")] = None,
            rank_by: Annotated[str, typer.Option(
                "--rank-by", help="Metric to rank by (ties where 95% CIs overlap).")] = "latency_p50_ms",
            include_contended: Annotated[bool, typer.Option(
                "--include-contended", help="Rank runs marked contended too (other processes used their cores).")]
            = False,
            as_json: Json = False,
            db: Db = None) -> None:
    """The leaderboard: latest results per submission, profile and scenario, with tie-aware ranks."""
    print_leaderboard(db, task=task, profile=profile, scenario=scenario, rank_by=rank_by, as_json=as_json,
                      include_contended=include_contended)


def print_leaderboard(db: Optional[str], *, task: Optional[str] = None, profile: Optional[str] = None,
                      scenario: Optional[str] = None, rank_by: str = "latency_p50_ms", as_json: bool = False,
                      include_contended: bool = False) -> None:
    from heptathlon.bench.app.service import leaderboard_groups

    if rank_by not in METRICS:
        raise OptionsError(f"--rank-by: unknown metric {rank_by!r}; known: {', '.join(sorted(METRICS))}")
    groups = leaderboard_groups(db, task=task, profile=profile, scenario=scenario, rank_by=rank_by,
                                include_contended=include_contended)
    if as_json:
        print(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for g in groups for r in g["rows"]],
                         default=str))
        return
    if not groups:
        err.print("no results yet. Try: heptathlon demo   or   heptathlon run submissions/arrests-mlp-onnx")
        return
    tables: dict[tuple, list] = {}
    for g in groups:
        tables.setdefault((g["task"], g["scenario"], g["machine_id"], g.get("load")), []).append(g)
    for (task_, scen, mach, load), gs in tables.items():
        title = f"task {task_} · scenario {scen}" + (f" · {load}" if load else "") + f" · machine {mach}"
        t = Table(title=title + (f" · ranked by {gs[0]['rank_by']}" if gs[0]["rank_by"] != rank_by else ""),
                  title_justify="left")
        for c in ("profile", "rank", "submission", "kind"):
            # A submission's name is never cut short: five "arrests-mlp-…" rows cannot be told apart.
            t.add_column(c, **({"no_wrap": True, "min_width": max(len(r["submission"]) for g in gs
                                                                  for r in g["rows"])} if c == "submission" else {}))
        # Headline columns, plus the optional events that some row of this table measured.
        present = {k for g in gs for r in g["rows"] for k, m in r["_m"].items() if m.value is not None}
        head, optional = (GENERATE_COLUMNS, GENERATE_OPTIONAL) if scen == "generate" else (HEADLINE, OPTIONAL_COLUMNS)
        cols = head + [n for n in optional if n in present]
        for name in cols:
            t.add_column(SHORT.get(name, name), justify="right")
        for g in gs:
            for i, r in enumerate(g["rows"]):
                name = r["submission"] + (f" [dim](pooled, {r['trials']} trials)[/]" if r.get("trials") else "")
                name += " [yellow](unsandboxed)[/]" if r.get("unsandboxed") else ""
                if r.get("isolation") == "trusted-in-process":  # --trusted: never ranked, always marked
                    name += " [yellow](trusted: in-process, unranked)[/]"
                name += contended_mark(r["_m"].get("contention_share"))
                t.add_row(g["profile"] if i == 0 else "", r["rank"], name, r["kind"],
                          *[cell(r["_m"].get(n)) for n in cols], end_section=i == len(g["rows"]) - 1)
        out.print(t)
    by = sorted({g["rank_by"] for g in groups})
    err.print(f"[dim]ranked by {', '.join(by)}; generate runs only among runs of the same load; entries whose 95% CIs overlap share a rank range. "
              "Estimated values are marked (est.) and never ranked against measured ones; "
              "--trusted runs (model in the measuring process) are marked and never ranked. "
              + ("Contended runs are ranked too (--include-contended).[/]" if include_contended else
                 "Runs marked (contended) are not ranked: other processes used their cores.[/]"))


def fairness(submission: Annotated[str, typer.Argument(help="Submission name (as in its submission.yaml).")],
             reference: Annotated[Optional[str], typer.Option(
                 "--reference", help="Reference profile (default cpu-1core: fp32 CPU).")] = None,
             as_json: Json = False,
             db: Db = None) -> None:
    """Hardware-induced fairness disparity of a submission across every profile it ran on."""
    from heptathlon.bench.app.fairness import compute_disparity
    from heptathlon.bench.fairness import disparity_rows, disparity_summary_rows

    ft = compute_disparity(submission, reference=reference, db=db)
    if as_json:
        print(json.dumps({"submission": ft.submission, "task": ft.task, "reference": ft.reference,
                          "majority_baseline": ft.majority,
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
            maj = (ft.majority or {}).get(attr, {})
            if maj:  # accuracy means little beside the constant answer's
                t.add_column("majority baseline", justify="right")
            for r in rows:
                cells = [("[yellow]" + v + "[/]") if k == "small" and v not in ("", "no", "False") else v
                         for k, v in r.items()]
                if maj:
                    cells.append(f"{maj[r['group']]:.3f}" if r.get("group") in maj else "")
                t.add_row(*cells)
            out.print(t)
            if maj:
                err.print(f"[dim]majority-class baseline (always the majority answer): {maj['overall']:.4f} overall[/]")
            s = Table(show_header=True, title_justify="left")
            for c in ("quantity", "value", "ci", "n"):
                s.add_column(c)
            for r in disparity_summary_rows(rep):
                s.add_row(r["quantity"], r["value"], r["ci"], r["n"])
            out.print(s)
    err.print("[dim]95% CIs from a paired bootstrap over examples; McNemar exact test per group. "
              "Small groups are flagged, never hidden.[/]")


def print_fairness_summary(submissions: list[str], db: Optional[str]) -> None:
    """The demo's closing table: each fairness submission's disparity at its finest grouping."""
    from heptathlon.bench.app.demo import fairness_summary

    rows, notes = fairness_summary(submissions, db)
    for note in notes:
        err.print(f"[yellow]{note}[/]")
    if not submissions:
        return
    t = Table(title="hardware-induced fairness disparity vs the fp32 reference (finest grouping)", title_justify="left")
    for c in ("submission", "grouping", "profile", "hw_disparity [95% CI]", "largest group flip rate", "small groups"):
        t.add_column(c)
    for r in rows:
        t.add_row(r.submission, r.grouping, r.profile, r.disparity, r.largest_flip, r.small_groups)
    out.print(t)
    err.print("[dim]details: heptathlon fairness <submission>[/]")


def register(app: typer.Typer) -> None:
    app.command()(results)
    app.command()(fairness)
