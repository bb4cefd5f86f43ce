"""The generate scenario (LLM-style token generation) as the dashboard shows it: pure rules, no Streamlit.

Generative runs measure other things than the classification scenarios (TTFT, ITL, TPOT, output
tokens/s, energy per token, the largest rate within an SLO), so they get their own table on the
leaderboard and their own page (dashboard/views/generation.py). What is shown, and how it is ranked,
is decided here so that tests can check every rule directly:

- a run's **load** (single stream, concurrency c, Poisson rate r, throughput, with its SLOs and
  token budget) is part of what makes two runs comparable: ranks compare runs under one load only;
- estimated values (``estimate:*``) are labelled "(est.)" and never ranked;
- a contended run (its ``contention_share`` row is marked, heptathlon.bench.contention) and a
  ``--trusted`` run are marked and never ranked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from heptathlon.bench.generation import SWEEP_METRICS, load_label, point_label  # noqa: F401  (re-exported)
from heptathlon.bench.metrics import is_estimate
from heptathlon.dashboard.board import Board, Cell, unit_of, value_cell
from heptathlon.dashboard.scoring import Value, format_si, rank_metric

SCENARIO = "generate"
TRUSTED = "trusted-in-process"  # run.controls["isolation"] of a --trusted run (heptathlon.bench.app.service)
# The leaderboard's columns for generative runs, and the headline table of the Generation page.
BOARD_METRICS = ["ttft_p50_ms", "itl_p50_ms", "output_tokens_per_s", "energy_per_token_j", "max_rate_within_slo"]
HEADLINE_METRICS = ["ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p90_ms", "itl_p99_ms", "tpot_ms",
                    "e2e_p50_ms", "e2e_p99_ms", "output_tokens_per_s", "output_tokens_per_s_per_request",
                    "requests_per_s", "prefill_tokens_per_s", "energy_per_token_j", "max_rate_within_slo"]
GEN_FIXED = ("submission", "#", "load", "status")


def kind_of(method: str | None, value: Any) -> str:
    """measurement, estimate or unavailable: how a stored value is to be read."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "unavailable"
    return "estimate" if is_estimate(method or "") else "measurement"


def headline_table(meas: pd.DataFrame, metrics: Sequence[str] = HEADLINE_METRICS) -> pd.DataFrame:
    """The Generation page's table: one row per metric with value, 95% CI, n, method and what it is.

    ``meas``: a run's headline rows (MEASUREMENT_COLUMNS). An estimate reads "≈ value (est.)" and
    its kind "estimate (not a measurement)"; a metric the run did not store reads "not stored".
    """
    by = {r["metric"]: r for r in meas.to_dict("records")} if not meas.empty else {}
    rows = []
    for m in metrics:
        r = by.get(m)
        unit = unit_of(m)
        if r is None:
            rows.append({"metric": m, "value": "not stored", "95% CI": "—", "n": "—", "method": "—",
                         "kind": "not stored", "note": ""})
            continue
        v = None if pd.isna(r["value"]) else float(r["value"])
        kind = kind_of(r["method"], v)
        lo, hi = r["ci_low"], r["ci_high"]
        if v is None:
            text = "not measured"
        elif kind == "estimate":
            text = f"≈ {format_si(v, unit)} (est.)"
        else:
            text = format_si(v, unit)
        ci = (f"[{format_si(lo, unit, ref=v)}, {format_si(hi, unit, ref=v)}]"
              if v is not None and not pd.isna(lo) and not pd.isna(hi) else "—")
        n = r["n"]
        rows.append({"metric": m, "value": text, "95% CI": ci, "n": "—" if n is None or pd.isna(n) else str(int(n)),
                     "method": r["method"] or "",
                     "kind": "estimate (not a measurement)" if kind == "estimate" else kind,
                     "note": "" if r["note"] is None or pd.isna(r["note"]) else str(r["note"])})
    return pd.DataFrame(rows, columns=["metric", "value", "95% CI", "n", "method", "kind", "note"])


def build_generative_board(runs: Sequence[Mapping[str, Any]], entries: Mapping[str, Mapping[str, Value]], *,
                           rank_by: str, metrics: Sequence[str] = BOARD_METRICS,
                           inline_ci: bool = False) -> Board:
    """The Generative table of the leaderboard: one row per generate run (generative_runs records).

    Ranks (CI ties) by ``rank_by`` among the runs **under the same load** that are neither
    contended nor trusted; estimates are never ranked (scoring.rank_metric ranks measured values only).
    """
    by_load: dict[str, list[str]] = {}
    for r in runs:
        if not r.get("contended") and r.get("isolation") != TRUSTED:
            by_load.setdefault(r["load"], []).append(r["run_id"])
    ranks = {}
    for ids in by_load.values():
        ranks.update(rank_metric({rid: entries.get(rid, {}) for rid in ids}, rank_by))
    headers = [*GEN_FIXED, *metrics]
    titles = {"#": f"Rank by {rank_by} among runs under the same load; overlapping 95% CIs share a range",
              "load": "What the run was measured under: mode, rate or concurrency, SLOs, token budget",
              "status": "ok, or why the run is not ranked",
              **{m: f"{m} [{unit_of(m)}]" for m in metrics}}
    rows, classes, order = [], [], []
    for r in runs:
        rid = r["run_id"]
        e = entries.get(rid, {})
        rk = ranks.get(rid)
        v_rank = e.get(rank_by)
        if r.get("contended"):
            share = e.get("contention_share")
            pct = f" {share.value:.0%}" if share is not None and share.value is not None else ""
            status = Cell(f"contended{pct}: not ranked", "failed",
                          "other processes used this run's cores beyond the contention threshold")
            rank_tip = "contended run: not ranked"
        elif r.get("isolation") == TRUSTED:
            status = Cell("trusted (in-process): not ranked", "changed", "a --trusted run is not comparable")
            rank_tip = "trusted run: not ranked"
        else:
            status = Cell("ok", "ok", f"finished {r.get('finished_at')}")
            rank_tip = ("estimated value: not ranked against measurements" if v_rank is not None and v_rank.estimated
                        else f"rank by {rank_by} under this load" if rk else f"{rank_by} not measured: no rank")
        row = {"submission": Cell(f"{r['submission']} v{r['version']}", "sub",
                                  f"{r.get('kind')} · run {rid} · finished {r.get('finished_at')}",
                                  href=f"generation?run={rid}"),
               "#": Cell(rk.label if rk else "—", "rank", rank_tip),
               "load": Cell(r["load"], "", r["load"]),
               "status": status}
        for m in metrics:
            row[m] = value_cell(e.get(m), m, inline_ci)
        rows.append(row)
        classes.append("older" if r.get("contended") else "")
        order.append((r["load"], rk.best if rk else 10**9, r["submission"], rid))
    idx = sorted(range(len(rows)), key=lambda i: order[i])
    return Board(headers, titles, [rows[i] for i in idx], [classes[i] for i in idx])

