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
cid = C.pick("Machine class", list(cls), "fa_machine", fmt=lambda c: cls[c][0], container=c3)
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
    attribute = d1.selectbox("Group attribute", attrs, key="fa_attr")
    heat_metrics = [m for m in metrics if m not in ("delta_accuracy", "flip_rate")] or metrics
    metric = d2.selectbox("Metric", heat_metrics, key="fa_metric",
                          index=heat_metrics.index("accuracy") if "accuracy" in heat_metrics else 0)
    g = groups[groups["attribute"] == attribute]
    st.subheader(f"{metric} by group and profile")
    st.plotly_chart(F.group_heatmap(g[g["metric"] == metric], metric), key="fa_heat")

    st.subheader("Δ against the reference profile")
    delta = g[g["metric"] == "delta_accuracy"]
    if not delta.empty:
        st.plotly_chart(F.group_bars(delta, "delta_accuracy", zero_line=True), key="fa_delta")
    else:
        st.info(f"Δ_a(h) with paired-bootstrap CIs: {C.NOT_MEASURED_YET} (no `delta_accuracy` rows).")
        acc = g[g["metric"] == "accuracy"]
        profiles = sorted(acc["profile"].unique())
        if len(profiles) > 1:
            ref = st.selectbox("Reference profile for a point difference", profiles, key="fa_ref",
                               index=profiles.index("cpu-1core") if "cpu-1core" in profiles else 0)
            base = acc[acc["profile"] == ref].set_index("group")["value"]
            diff = acc[acc["profile"] != ref].assign(value=lambda d: d["value"] - d["group"].map(base),
                                                     ci_low=None, ci_high=None)
            st.caption("Point differences of stored group accuracies, **without CIs** (a CI needs the paired "
                       "bootstrap over examples that `delta_accuracy` rows carry).")
            st.plotly_chart(F.group_bars(diff, f"accuracy − accuracy({ref})", zero_line=True), key="fa_delta_pt")

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
