"""Leaderboard: one comparable group (task, scenario, profile, machine class), the chosen metrics,
CI-tie ranks, the heptathlon score with adjustable weights, and each submission's status.

Every setting (filters, rank-by, search, columns, CIs, weights) lives in the URL.

Generative runs (the generate scenario) measure other things (TTFT, ITL, output tokens/s, energy per
token, the largest rate within an SLO): they are kept out of the main table and listed in their own
"Generative" table below it (heptathlon.dashboard.generative), ranked only among runs under the same load.
"""

import streamlit as st

from heptathlon.bench.metrics import HEADLINE
from heptathlon.dashboard import board as B
from heptathlon.dashboard import common as C
from heptathlon.dashboard import generative as G
from heptathlon.dashboard.scoring import DEFAULT_WEIGHTS, SCORE_LATEX, SCORE_RULES, lower_is_better, ordered_metrics
from heptathlon.db import dashboard_queries as DQ

st.title("Leaderboard")
st.caption("The latest succeeded run of each submission in one comparable group. Hover a value for its "
           "95% CI, n and measurement method. Ranks treat overlapping CIs as ties; estimated values "
           "(≈, amber) are never ranked against measurements. A submission whose newest run failed is marked "
           "in red, with its last good result greyed as older.")

url, options, classes = C.load_common()
gen_options = options[options["scenario"] == G.SCENARIO] if not options.empty else options
options = options[options["scenario"] != G.SCENARIO] if not options.empty else options


def generative_section() -> None:
    """The Generative table: generate runs of one task, profile and machine class (nothing without any)."""
    if gen_options.empty:
        return
    st.header("Generative (generate scenario)")
    st.caption("The latest succeeded run of each generate series. Their metrics differ from the table above "
               "(token latencies and throughputs), so they are listed here. Ranks compare only runs under the "
               "**same load** (mode, rate or concurrency, SLOs, token budget) with overlapping 95% CIs as ties; "
               "estimates (≈, amber), contended and --trusted runs are shown but never ranked.")
    cols = st.columns(4)
    task = C.pick("Task", C.most_common(gen_options, "task"), "lbg_task", container=cols[0], param="gtask")
    sel = gen_options[gen_options["task"] == task]
    prof = C.pick("Profile", C.most_common(sel, "profile"), "lbg_profile", container=cols[1], param="gprofile")
    sel = sel[sel["profile"] == prof]
    cls = C.class_options(sel, classes)
    cid = C.pick("Machine class", list(cls), "lbg_machine", fmt=lambda c: cls[c][0], container=cols[2],
                 help="Results are comparable only within one hardware fingerprint class.", param="gmachine")
    if cid is None:
        st.info("No generate runs on a known machine.")
        return
    rank_by = C.pick("Rank by", G.BOARD_METRICS, "lbg_rank_by", fmt=C.metric_label, container=cols[3],
                     param="grank", default="ttft_p50_ms")
    g_ci = C.toggle("Show 95% CIs", "lbg_inline_ci", param="gci")
    g_runs, g_meas = DQ.load_generative_runs(url, task=task, profile=prof, machine_ids=cls[cid][1])
    g_entries = C.entries_from(g_meas)
    gb = G.build_generative_board(g_runs.to_dict("records"), g_entries, rank_by=rank_by, inline_ci=g_ci)
    g_methods = {m: sorted(g_meas.loc[g_meas["metric"] == m, "method"].dropna().unique()) for m in G.BOARD_METRICS}
    st.html(B.board_html(gb, g_methods, extra_class="hep-generative"))
    n_cont = int(g_runs["contended"].sum())
    notes = [f"{len(gb.rows)} generate run(s) on **{cls[cid][0]}** · {task} · {prof}. Ranks are by **{rank_by}**, "
             "within one load. Open a run for its TTFT/ITL distributions, sweep and SLO curves."]
    if n_cont:
        notes.append(f"{n_cont} contended run(s): marked, not ranked.")
    if any(v.estimated for e in g_entries.values() for v in e.values()):
        notes.append("≈ amber cells are estimates (`estimate:*`): shown, never ranked.")
    st.caption("  \n".join(notes))
    st.download_button(f"Download the generative table ({len(gb.rows)} rows, CSV)", gb.csv().encode(),
                       "leaderboard-generative.csv", "text/csv", key="lbg_download")


if options.empty:
    if gen_options.empty:
        C.no_succeeded_runs()
    else:
        st.info("No succeeded runs of the non-generative scenarios yet; the generate runs are listed below.")
    generative_section()
    st.stop()

group = C.select_group(options, classes, "lb")
if group is None:
    C.no_succeeded_runs()
    generative_section()
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


generative_section()
