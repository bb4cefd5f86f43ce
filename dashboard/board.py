"""The leaderboard table as data: one cell list that the page draws as HTML and offers as CSV.

No Streamlit and no database: the page passes what it loaded, and gets back a ``Board`` whose
rows are exactly what is shown, so the download holds the very table on the screen (the rows
left by the search, the columns chosen, the text of each cell).
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from heptathlon.bench.metrics import METRICS
from heptathlon.dashboard.scoring import Score, Value, format_si, heptathlon_scores, rank_metric, score_ranks

NOT_MEASURED = "not measured"
FIXED = ("submission", "#", "score", "status")  # always shown; "submission" is pinned left


@dataclass(frozen=True)
class Cell:
    text: str
    cls: str = ""
    title: str = ""
    ci: str = ""  # the CI line under the value when CIs are shown inline
    href: str = ""


@dataclass
class Board:
    headers: list[str]
    header_titles: dict[str, str]
    rows: list[dict[str, Cell]]
    row_classes: list[str]
    scores: dict[str, Score] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()
    hidden_by_search: int = 0

    def csv(self) -> str:
        """The table shown, as CSV: the same rows, columns and cell text (with the CI when shown)."""
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(self.headers)
        for row in self.rows:
            w.writerow([(c.text + (f" {c.ci}" if c.ci else "")) for c in (row[h] for h in self.headers)])
        return out.getvalue()


def unit_of(metric: str, v: Value | None = None) -> str:
    return METRICS[metric].unit if metric in METRICS else (v.unit if v else "")


def describe(v: Value | None, unit: str) -> str:
    if v is None:
        return "not stored for this run"
    parts = []
    if v.value is not None:
        if v.ci_low is not None and v.ci_high is not None:
            parts.append(f"95% CI [{format_si(v.ci_low, unit, ref=v.value)}, "
                         f"{format_si(v.ci_high, unit, ref=v.value)}]")
        else:
            parts.append("no CI (a single observation or a derived value)")
    if v.n is not None:
        parts.append(f"n = {v.n}")
    parts.append(f"method: {v.method or 'unknown'}")
    if v.note:
        parts.append(str(v.note))
    return " · ".join(parts)


def value_cell(v: Value | None, metric: str, inline_ci: bool) -> Cell:
    unit = unit_of(metric, v)
    tip = describe(v, unit)
    if v is None or v.value is None:
        return Cell(NOT_MEASURED, "nm", tip)
    text = format_si(v.value, unit)
    ci = ""
    if inline_ci and v.ci_low is not None and v.ci_high is not None:
        ci = f"[{format_si(v.ci_low, unit, ref=v.value)}, {format_si(v.ci_high, unit, ref=v.value)}]"
    if v.estimated:
        return Cell(f"≈ {text}", "est", "estimated, not ranked · " + tip, ci)
    return Cell(text, "", tip, ci)


def _short(error: str | None, limit: int = 120) -> str:
    """The reason, without the "run ID (name on profile/scenario): " prefix the row already says."""
    text = re.sub(r"^run \S+ \([^)]*\): ", "", " ".join((error or "no reason recorded").split()))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _when(t: Any) -> str:
    return f"{t:%Y-%m-%d %H:%M}" if hasattr(t, "strftime") else str(t or "")


def build_board(runs: Sequence[Mapping[str, Any]], entries: Mapping[str, Mapping[str, Value]],
                attempts: Sequence[Mapping[str, Any]], *, metrics: Sequence[str], rank_by: str,
                weights: Mapping[str, float], inline_ci: bool = False, search: str = "",
                changed: Mapping[str, int] | None = None) -> Board:
    """The rows of one comparable group.

    ``runs``: the newest succeeded run of each submission name (RUN_COLUMNS records);
    ``attempts``: the newest finished run of each name, any status (latest_attempts records), so a
    submission whose newest run failed shows that failure and its reason, its last good result
    marked older, and one that never succeeded still gets a row; ``changed``: name -> how many
    artifacts the name had in this group (an artifact change leaves one row, marked).
    """
    changed = changed or {}
    table = heptathlon_scores(entries, weights)
    ranks = rank_metric(entries, rank_by)
    by_score = score_ranks(table.scores)
    latest = {a["submission"]: a for a in attempts}
    good = {r["submission"]: r for r in runs}
    headers = [*FIXED, *metrics]
    titles = {"#": f"Rank by {rank_by}; overlapping 95% CIs share a range",
              "score": "Heptathlon score (0–100); see the formula above the table",
              "status": "The submission's newest run in this group: ok, or failed with its reason",
              **{m: f"{m} [{unit_of(m)}]" for m in metrics}}
    rows, classes, order = [], [], []
    needle = search.strip().lower()
    hidden = 0
    for name in sorted(set(good) | {n for n, a in latest.items() if a["status"] == "failed"}):
        if needle and needle not in name.lower():
            hidden += 1
            continue
        r, a = good.get(name), latest.get(name)
        failed_since = a if a is not None and a["status"] == "failed" and (
            r is None or a["run_id"] != r["run_id"]) else None
        row: dict[str, Cell] = {}
        if r is None:  # never succeeded here: the failure is the entry
            row["submission"] = Cell(f"{name} v{a['version']}", "sub", f"run {a['run_id']}", href=f"run?run={a['run_id']}")
            row["#"] = Cell("—", "rank", "no result: not ranked")
            row["score"] = Cell("—", "score", "no result: no score")
            row["status"] = Cell(f"failed {_when(a['when'])}: {_short(a.get('error'))}", "failed",
                                 a.get("error") or "no reason recorded", href=f"run?run={a['run_id']}")
            for m in metrics:
                row[m] = Cell("—", "nm", "the latest run failed: nothing measured")
            rows.append(row)
            classes.append("failed")
            order.append((2, 0.0, 10**9, name))
            continue
        rid = r["run_id"]
        sc, rk = table.scores[rid], ranks.get(rid)
        v_rank = entries[rid].get(rank_by)
        rank_tip = ("estimated value: not ranked against measurements" if v_rank is not None and v_rank.estimated
                    else f"rank by {rank_by}" if rk else f"{rank_by} not measured: no rank")
        score_tip = (f"score rank {by_score[rid]} · " + " · ".join(f"{m}: {p:.2f}" for m, p in sc.parts.items())
                     if sc.score is not None else "no score: " + (sc.reason or "no weighted metric"))
        row["submission"] = Cell(f"{name} v{r['version']}", "sub",
                                 f"{r['kind']} · run {rid} · finished {r['finished_at']}", href=f"run?run={rid}")
        row["#"] = Cell(rk.label if rk else "—", "rank", rank_tip)
        row["score"] = Cell(f"{sc.score:.1f}" if sc.score is not None else "—", "score", score_tip)
        if failed_since is not None:
            row["status"] = Cell(f"latest run failed {_when(failed_since['when'])}: {_short(failed_since.get('error'))}"
                                 f" · result shown is older ({_when(r['finished_at'])})", "failed",
                                 failed_since.get("error") or "no reason recorded",
                                 href=f"run?run={failed_since['run_id']}")
        elif changed.get(name, 1) > 1:
            row["status"] = Cell("ok · new artifact", "changed",
                                 f"{changed[name]} artifacts of {name} ran in this group; the newest is shown")
        else:
            row["status"] = Cell("ok", "ok", f"finished {_when(r['finished_at'])}")
        for m in metrics:
            row[m] = value_cell(entries[rid].get(m), m, inline_ci)
        rows.append(row)
        classes.append("older" if failed_since is not None else "")
        order.append((0 if sc.score is not None else 1, -(sc.score or 0.0), rk.best if rk else 10**9, name))
    idx = sorted(range(len(rows)), key=lambda i: order[i])
    return Board(headers, titles, [rows[i] for i in idx], [classes[i] for i in idx], table.scores, table.dropped,
                 hidden)


STYLE = """
<style>
.hep-wrap { overflow-x: auto; max-width: 100%; }
table.hep-leaderboard { border-collapse: separate; border-spacing: 0; font-size: 0.85rem; }
table.hep-leaderboard th, table.hep-leaderboard td { padding: 4px 8px; border-bottom: 1px solid #e5e5e5;
  text-align: right; white-space: nowrap; vertical-align: top; background: #fff; }
table.hep-leaderboard th { background: #f6f6f8; font-weight: 600; position: sticky; top: 0; }
/* The name column stays in view while the metric columns scroll. */
table.hep-leaderboard td.sub, table.hep-leaderboard th.sub { position: sticky; left: 0; z-index: 2; text-align: left;
  box-shadow: 2px 0 0 #e5e5e5; }
table.hep-leaderboard th.sub { z-index: 3; background: #f6f6f8; }
table.hep-leaderboard td.rank { text-align: center; font-weight: 600; }
table.hep-leaderboard td.score { font-weight: 600; color: #1a5fb4; }
table.hep-leaderboard td.nm { color: #999; font-style: italic; }
table.hep-leaderboard td.est { background: #fff4d6; font-style: italic; }
table.hep-leaderboard td.failed { color: #c01c28; font-weight: 600; white-space: normal; min-width: 14em; }
table.hep-leaderboard td.changed { color: #8a6300; }
table.hep-leaderboard tr.older td:not(.sub):not(.failed) { color: #888; }
table.hep-leaderboard tr.failed td { background: #fdecec; }
table.hep-leaderboard .badge { font-size: 0.7em; margin-left: 4px; padding: 0 3px; border: 1px solid #c08a00;
  border-radius: 3px; color: #8a6300; font-style: normal; }
table.hep-leaderboard .meth, table.hep-leaderboard .ci { font-weight: 400; font-size: 0.75em; color: #777; }
</style>
"""


def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def board_html(board: Board, methods: Mapping[str, Sequence[str]] | None = None, *, extra_class: str = "") -> str:
    """The board as an HTML table; ``extra_class`` is added to the table's class (another board on one page)."""
    methods = methods or {}
    head = []
    for h in board.headers:
        meth = ", ".join(methods.get(h, ()))
        extra = f"<div class='meth'>{_esc(meth)}</div>" if meth else ""
        head.append(f"<th class='{'sub' if h == 'submission' else ''}' title='{_esc(board.header_titles.get(h, ''))}'>"
                    f"{_esc(h)}{extra}</th>")
    body = []
    for row, rcls in zip(board.rows, board.row_classes):
        cells = []
        for h in board.headers:
            c = row[h]
            text = _esc(c.text)
            if c.href:
                text = f"<a href='{_esc(c.href)}' target='_self'>{text}</a>"
            if c.cls == "est":
                text += "<span class='badge'>est.</span>"
            if c.ci:
                text += f"<div class='ci'>{_esc(c.ci)}</div>"
            cells.append(f"<td class='{_esc(c.cls)}' title='{_esc(c.title)}'>{text}</td>")
        body.append(f"<tr class='{_esc(rcls)}'>" + "".join(cells) + "</tr>")
    cls = f"hep-leaderboard {_esc(extra_class)}".strip()
    return (STYLE + f"<div class='hep-wrap'><table class='{cls}'><thead><tr>" + "".join(head)
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table></div>")
