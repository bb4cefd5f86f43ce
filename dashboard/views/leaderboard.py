"""Leaderboard: one comparable group (task, scenario, profile, machine class), the chosen metrics,
CI-tie ranks, the heptathlon score with adjustable weights, and each submission's status.

Every setting (filters, rank-by, search, columns, CIs, weights) lives in the URL.
"""

import streamlit as st

from heptathlon.bench.metrics import HEADLINE
from heptathlon.dashboard import board as B
from heptathlon.dashboard import common as C
from heptathlon.dashboard.scoring import DEFAULT_WEIGHTS, SCORE_LATEX, SCORE_RULES, lower_is_better, ordered_metrics
from heptathlon.db import dashboard_queries as DQ

st.title("Leaderboard")
st.caption("The latest succeeded run of each submission in one comparable group. Hover a value for its "
           "95% CI, n and measurement method. Ranks treat overlapping CIs as ties; estimated values "
           "(≈, amber) are never ranked against measurements. A submission whose newest run failed is marked "
           "in red, with its last good result greyed as older.")

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
# One row per submission name: several machines of one class, or a new artifact under the same name,
# leave the newest run (the count of artifacts marks the row).
changed = runs.groupby("submission")["submission_id"].nunique().to_dict()
runs = runs.sort_values("finished_at", ascending=False, kind="stable").drop_duplicates("submission")
meas = meas[meas["run_id"].isin(runs["run_id"])]
attempts = DQ.load_latest_attempts(url, task=group["task"], profile=group["profile"], scenario=group["scenario"],
                                   machine_ids=group["machine_ids"])
entries = C.entries_from(meas)
for rid in runs["run_id"]:
    entries.setdefault(rid, {})
metrics = ordered_metrics(meas["metric"].unique())
rankable = [m for m in metrics if lower_is_better(m) is not None]

c1, c2, c3 = st.columns([2, 2, 1])
rank_by = C.pick("Rank by", rankable or ["latency_p50_ms"], "lb_rank_by", fmt=C.metric_label, container=c1,
                 param="rank", default="latency_p50_ms")
search = C.text("Search submissions", "lb_search", param="q", container=c2, placeholder="name contains…")
inline_ci = C.toggle("Show 95% CIs", "lb_inline_ci", param="ci", container=c3)
default_cols = [m for m in metrics if m in HEADLINE or m in DEFAULT_WEIGHTS] or metrics
shown_metrics = C.pick_many("Columns", metrics, "lb_cols", param="cols", default=default_cols,
                            help="The metric columns of the table (and of the download).")

with st.expander("Heptathlon score: weights and formula", expanded=False):
    st.latex(SCORE_LATEX)
    st.markdown(SCORE_RULES)
    scorable = ordered_metrics(set(DEFAULT_WEIGHTS) | set(rankable))
    weights = C.weight_sliders(scorable, DEFAULT_WEIGHTS, key="lb_w", param="w")

board = B.build_board(runs.to_dict("records"), entries, attempts.to_dict("records"), metrics=shown_metrics,
                      rank_by=rank_by, weights=weights, inline_ci=inline_ci, search=search, changed=changed)
methods = {m: sorted(meas.loc[meas["metric"] == m, "method"].dropna().unique()) for m in shown_metrics}
st.html(B.board_html(board, methods))

n_rows = len(board.rows)
notes = [(f"{n_rows} submission(s) on **{group['class_label']}** · {group['task']} · {group['profile']} · "
          f"{group['scenario']}. Ranks are by **{rank_by}**; entries compare only within this group.")]
if board.hidden_by_search:
    notes.append(f"{board.hidden_by_search} submission(s) hidden by the search “{search}”.")
if len(shown_metrics) < len(metrics):
    notes.append(f"{len(metrics) - len(shown_metrics)} metric column(s) hidden; choose them under **Columns**.")
if board.dropped:
    notes.append("Weighted but not measured by any entry here (left out of the score): "
                 + ", ".join(f"`{m}`" for m in board.dropped) + ".")
unscored = [r["submission"].text.rsplit(" v", 1)[0] for r in board.rows if r["score"].text == "—"]
if unscored:
    notes.append("No score: " + ", ".join(unscored) + " (hover the — for the reason).")
if any(v.estimated for e in entries.values() for v in e.values()):
    notes.append("≈ amber cells are estimates (`estimate:*`): shown, never ranked or scored against measurements.")
st.caption("  \n".join(notes))
st.download_button(f"Download this table ({n_rows} rows, CSV)", board.csv().encode(), "leaderboard.csv", "text/csv",
                   key="lb_download")

with st.expander("All numbers (sortable, raw values in stored units)"):
    long = meas.merge(runs[["run_id", "submission", "version"]], on="run_id")
    long = long[["submission", "version", "metric", "value", "ci_low", "ci_high", "n", "unit", "method", "note",
                 "run_id"]].sort_values(["submission", "metric"])
    st.dataframe(long, hide_index=True, width="stretch")
