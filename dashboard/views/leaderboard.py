"""Leaderboard: one comparable group (task, scenario, profile, machine class), every metric,
CI-tie ranks and the heptathlon score with adjustable weights."""

import streamlit as st

from heptathlon.bench.metrics import METRICS
from heptathlon.dashboard import common as C
from heptathlon.dashboard.scoring import (DEFAULT_WEIGHTS, SCORE_FORMULA, format_value, heptathlon_scores, lower_is_better,
                               ordered_metrics, rank_metric, score_ranks)
from heptathlon.db import dashboard_queries as DQ

st.title("Leaderboard")
st.caption("The latest succeeded run of each submission in one comparable group. Hover a value for its "
           "95% CI, n and measurement method. Ranks treat overlapping CIs as ties; estimated values "
           "(≈, amber) are never ranked against measurements.")

url, options, classes = C.load_common()
if options.empty:
    C.no_succeeded_runs()
    st.stop()

group = C.select_group(options, classes, "lb")
if group is None:
    C.no_succeeded_runs()
    st.stop()

runs, meas = DQ.load_latest_results(url, task=group["task"], profile=group["profile"], scenario=group["scenario"],
                                    machine_ids=group["machine_ids"])
# Several machines of one class: keep each submission's newest run.
runs = runs.sort_values("finished_at", ascending=False, kind="stable").drop_duplicates("submission_id")
meas = meas[meas["run_id"].isin(runs["run_id"])]
entries = C.entries_from(meas)
for rid in runs["run_id"]:
    entries.setdefault(rid, {})
metrics = ordered_metrics(meas["metric"].unique())
rankable = [m for m in metrics if lower_is_better(m) is not None]

c1, c2 = st.columns([2, 3])
rank_by = c1.selectbox("Rank by", rankable or ["latency_p50_ms"], key="lb_rank_by",
                       index=rankable.index("latency_p50_ms") if "latency_p50_ms" in rankable else 0,
                       format_func=C.metric_label)
inline_ci = c2.toggle("Show 95% CIs in the table", value=False, key="lb_inline_ci")

with st.expander("Heptathlon score: weights and formula", expanded=False):
    st.markdown(SCORE_FORMULA)
    scorable = ordered_metrics(set(DEFAULT_WEIGHTS) | set(rankable))
    weights = {}
    wcols = st.columns(4)
    for i, m in enumerate(scorable):
        weights[m] = wcols[i % 4].slider(m, 0.0, 5.0, float(DEFAULT_WEIGHTS.get(m, 0.0)), 0.5,
                                         key=f"lb_w_{m}", help=C.metric_help(m))

table = heptathlon_scores(entries, weights)
ranks = rank_metric(entries, rank_by)
by_score = score_ranks(table.scores)

rows = []
for r in runs.to_dict("records"):
    sc = table.scores[r["run_id"]]
    rk = ranks.get(r["run_id"])
    rows.append({**r, "score": sc, "rank": rk,
                 "_sort": (sc.score is None, -(sc.score or 0.0), rk.best if rk else 10**9, r["submission"])})
rows.sort(key=lambda x: x["_sort"])

methods = {m: sorted(meas.loc[meas["metric"] == m, "method"].dropna().unique()) for m in metrics}


def cell(v, metric: str) -> str:
    unit = METRICS[metric].unit if metric in METRICS else (v.unit if v else "")
    tip = C.describe_value(v, unit)
    if v is None or v.value is None:
        return f'<td class="nm" title="{C.esc(tip)}">{C.NOT_MEASURED}</td>'
    text = format_value(v.value, unit)
    ci = ""
    if inline_ci and v.ci_low is not None and v.ci_high is not None:
        ci = f'<div class="ci">[{format_value(v.ci_low, unit)}, {format_value(v.ci_high, unit)}]</div>'
    if v.estimated:
        return (f'<td class="est" title="{C.esc("estimated, not ranked · " + tip)}">≈ {C.esc(text)}'
                f'<span class="badge">est.</span>{ci}</td>')
    return f'<td title="{C.esc(tip)}">{C.esc(text)}{ci}</td>'


head = ["<th title='Rank by the chosen metric; overlapping 95% CIs share a range'>#</th>",
        "<th>submission</th>",
        "<th title='Heptathlon score (0–100); see the formula above the table'>score</th>"]
for m in metrics:
    unit = METRICS[m].unit if m in METRICS else ""
    meth = ", ".join(methods[m]) or "—"
    head.append(f"<th title='{C.esc(C.metric_help(m))}'>{C.esc(m)}<div class='unit'>{C.esc(unit)}</div>"
                f"<div class='meth'>{C.esc(meth)}</div></th>")
body = []
for r in rows:
    sc, rk = r["score"], r["rank"]
    v_rank = entries[r["run_id"]].get(rank_by)
    rank_tip = ("estimated value: not ranked against measurements" if v_rank is not None and v_rank.estimated
                else f"rank by {rank_by}" if rk else f"{rank_by} not measured: no rank")
    score_txt = (f"{sc.score:.1f}" if sc.score is not None else "—")
    score_tip = (f"score rank {by_score[r['run_id']]} · " + " · ".join(f"{m}: {p:.2f}" for m, p in sc.parts.items())
                 if sc.score is not None else
                 "no score: " + (", ".join(sc.missing) + " not measured" if sc.missing else "no weighted metric"))
    name = f"{r['submission']} v{r['version']}"
    body.append(
        "<tr>"
        f"<td class='rank' title='{C.esc(rank_tip)}'>{C.esc(rk.label if rk else '—')}</td>"
        f"<td class='sub'><a href='run?run={C.esc(r['run_id'])}' target='_self' "
        f"title='{C.esc(r['kind'])} · run {C.esc(r['run_id'])} · finished {C.esc(r['finished_at'])}'>"
        f"{C.esc(name)}</a></td>"
        f"<td class='score' title='{C.esc(score_tip)}'>{score_txt}</td>"
        + "".join(cell(entries[r["run_id"]].get(m), m) for m in metrics) + "</tr>")

STYLE = """
<style>
.hep-wrap { overflow-x: auto; }
table.hep-leaderboard { border-collapse: collapse; font-size: 0.85rem; width: 100%; }
table.hep-leaderboard th, table.hep-leaderboard td { padding: 4px 8px; border-bottom: 1px solid #e5e5e5;
  text-align: right; white-space: nowrap; vertical-align: top; }
table.hep-leaderboard th { background: #f6f6f8; font-weight: 600; position: sticky; top: 0; }
table.hep-leaderboard td.sub, table.hep-leaderboard th:nth-child(2) { text-align: left; }
table.hep-leaderboard td.rank { text-align: center; font-weight: 600; }
table.hep-leaderboard td.score { font-weight: 600; color: #1a5fb4; }
table.hep-leaderboard td.nm { color: #999; font-style: italic; }
table.hep-leaderboard td.est { background: #fff4d6; font-style: italic; }
table.hep-leaderboard .badge { font-size: 0.7em; margin-left: 4px; padding: 0 3px; border: 1px solid #c08a00;
  border-radius: 3px; color: #8a6300; font-style: normal; }
table.hep-leaderboard .unit, table.hep-leaderboard .meth, table.hep-leaderboard .ci { font-weight: 400;
  font-size: 0.75em; color: #777; }
</style>
"""
st.html(STYLE + "<div class='hep-wrap'><table class='hep-leaderboard'><thead><tr>" + "".join(head)
        + "</tr></thead><tbody>" + "".join(body) + "</tbody></table></div>")

notes = [f"{len(rows)} submission(s) on **{group['class_label']}** · {group['task']} · {group['profile']} · "
         f"{group['scenario']}. Ranks are by **{rank_by}**; entries compare only within this group."]
if table.dropped:
    notes.append("Weighted but not measured by any entry here (left out of the score): "
                 + ", ".join(f"`{m}`" for m in table.dropped) + ".")
unscored = [r["submission"] for r in rows if r["score"].score is None]
if unscored:
    notes.append("No score (a weighted metric not measured): " + ", ".join(unscored) + ".")
if any(v.estimated for e in entries.values() for v in e.values()):
    notes.append("≈ amber cells are estimates (`estimate:*`): shown, never ranked or scored against measurements.")
st.caption("  \n".join(notes))

with st.expander("All numbers (sortable, downloadable)"):
    long = meas.merge(runs[["run_id", "submission", "version"]], on="run_id")
    long = long[["submission", "version", "metric", "value", "ci_low", "ci_high", "n", "unit", "method", "note",
                 "run_id"]].sort_values(["submission", "metric"])
    st.dataframe(long, hide_index=True, width="stretch")
    st.download_button("Download CSV", long.to_csv(index=False).encode(), "leaderboard.csv", "text/csv")
