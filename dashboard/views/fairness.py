"""Fairness: per-group quality by profile, Δ against the reference profile, flip rates.

Shows whatever group metrics the database holds (group_metric rows): accuracy and loss per group,
and ``delta_accuracy`` / ``flip_rate`` once the fairness work stores them.
"""

import pandas as pd
import streamlit as st

from heptathlon.dashboard import common as C
from heptathlon.dashboard import figures as F
from heptathlon.dashboard.scoring import format_value
from heptathlon.db import dashboard_queries as DQ

st.title("Fairness")
st.caption("Nelaturu et al. 2024: the same weights on different hardware change accuracy unevenly across "
           "groups. † marks groups below the minimum size: flagged, not hidden.")

url, options, classes = C.load_common()
if options.empty:
    C.no_succeeded_runs()
    st.stop()

c1, c2, c3 = st.columns(3)
task = C.pick("Task", C.most_common(options, "task"), "fa_task", container=c1, param="task")
sel = options[options["task"] == task]
submission = C.pick("Submission", sorted(sel["submission"].unique()), "fa_submission",
                    container=c2, param="submission")
sel = sel[sel["submission"] == submission]
cls = C.class_options(sel, classes)
cid = C.pick("Machine class", list(cls), "fa_machine", fmt=lambda c: cls[c][0], container=c3, param="machine")
groups = DQ.load_group_results(url, submission=submission, machine_ids=cls[cid][1] if cid else None)

# Per-profile summary measurements (fairness_gap, hw_disparity) come with the latest results.
runs, meas = DQ.load_latest_results(url, task=task, submission=submission,
                                    machine_ids=cls[cid][1] if cid else None)

if groups.empty:
    st.info(f"**Per-group metrics: {C.NOT_MEASURED_YET}** for {submission} (the task may have no group "
            "labels, or its runs predate fairness measurement).")
else:
    attrs = list(dict.fromkeys(groups["attribute"]))
    metrics = list(dict.fromkeys(groups["metric"]))
    d1, d2 = st.columns(2)
    attribute = C.pick("Group attribute", attrs, "fa_attr", container=d1, param="attr")
    heat_metrics = [m for m in metrics if m not in ("delta_accuracy", "flip_rate")] or metrics
    metric = C.pick("Metric", heat_metrics, "fa_metric", container=d2, param="metric", default="accuracy")
    g = groups[groups["attribute"] == attribute]
    st.subheader(f"{metric} by group and profile")
    st.plotly_chart(F.group_heatmap(g[g["metric"] == metric], metric), key="fa_heat")

    # The Δ chart follows the chosen metric: stored paired-bootstrap Δ rows exist for accuracy only
    # (``delta_accuracy``); any other metric gets point differences against a reference profile.
    st.subheader(f"Δ {metric} against the reference profile")
    delta = g[g["metric"] == f"delta_{metric}"]
    if not delta.empty:
        st.plotly_chart(F.group_bars(delta, f"delta_{metric}", zero_line=True), key="fa_delta")
    else:
        st.info(f"Δ {metric} with paired-bootstrap CIs: {C.NOT_MEASURED_YET} (no `delta_{metric}` rows).")
        acc = g[g["metric"] == metric]
        profiles = sorted(acc["profile"].unique())
        if len(profiles) > 1:
            ref = C.pick("Reference profile for a point difference", profiles, "fa_ref", param="ref",
                         default="cpu-1core")
            base = acc[acc["profile"] == ref].set_index("group")["value"]
            diff = acc[acc["profile"] != ref].assign(value=lambda d: d["value"] - d["group"].map(base),
                                                     ci_low=None, ci_high=None)
            st.caption(f"Point differences of stored group {metric} values, **without CIs** (a CI needs the "
                       "paired bootstrap over examples that `delta_*` rows carry).")
            st.plotly_chart(F.group_bars(diff, f"{metric} − {metric}({ref})", zero_line=True), key="fa_delta_pt")

    st.subheader("Flip rate against the reference")
    flips = g[g["metric"] == "flip_rate"]
    if flips.empty:
        st.info(f"Flip rates: {C.NOT_MEASURED_YET} (no `flip_rate` rows).")
    else:
        st.plotly_chart(F.group_bars(flips, "flip_rate"), key="fa_flip")

    with st.expander("Group rows"):
        st.dataframe(groups.drop(columns=["machine_id"]), hide_index=True, width="stretch")

st.subheader("Gap and hardware disparity per profile")
summary = meas[meas["metric"].isin(["fairness_gap", "hw_disparity"])].merge(runs[["run_id", "profile", "scenario"]],
                                                                            on="run_id")
rows = []
for prof in sorted(runs["profile"].unique()):
    row = {"profile": prof}
    for m in ("fairness_gap", "hw_disparity"):
        hit = summary[(summary["profile"] == prof) & (summary["metric"] == m)]
        if hit.empty or pd.isna(hit.iloc[0]["value"]):
            row[m] = C.NOT_MEASURED
        else:
            v = C.to_value(hit.iloc[0])
            ci = (f" [{format_value(v.ci_low, 'fraction')}, {format_value(v.ci_high, 'fraction')}]"
                  if v.ci_low is not None and v.ci_high is not None else "")
            row[m] = format_value(v.value, "fraction") + ci
    rows.append(row)
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
