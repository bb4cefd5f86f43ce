"""Hardware comparison: one submission across profiles, side by side with 95% CI error bars."""

import pandas as pd
import streamlit as st

from heptathlon.dashboard import common as C
from heptathlon.dashboard import figures as F
from heptathlon.dashboard.scoring import format_si, ordered_metrics
from heptathlon.db import dashboard_queries as DQ

PANELS = ["latency_p50_ms", "throughput_sps", "energy_per_sample_j"]

st.title("Hardware comparison")
st.caption("The same submission on every profile it ran on: the latest run per profile and machine. "
           "Error bars are 95% CIs; a panel says *not measured* where no run stored the metric.")

url, options, classes = C.load_common()
if options.empty:
    C.no_succeeded_runs()
    st.stop()

c1, c2, c3 = st.columns(3)
task = C.pick("Task", C.most_common(options, "task"), "hw_task", container=c1, param="task")
sel = options[options["task"] == task]
submission = C.pick("Submission", sorted(sel["submission"].unique()), "hw_submission",
                    container=c2, param="submission")
sel = sel[sel["submission"] == submission]
scenario = C.pick("Scenario", C.most_common(sel, "scenario"), "hw_scenario", container=c3, param="scenario")

runs, meas = DQ.load_latest_results(url, task=task, scenario=scenario, submission=submission)
if runs.empty:
    st.info(f"{submission}: {C.NOT_MEASURED_YET} in {scenario}.")
    st.stop()
labels = classes.set_index("machine_id")["label"].to_dict() if not classes.empty else {}
several = runs["machine_id"].nunique() > 1
runs = runs.assign(where=[f"{p} · {labels.get(m, f'machine {m}')}" if several else p
                          for p, m in zip(runs["profile"], runs["machine_id"])])
df = meas.merge(runs[["run_id", "where", "profile"]], on="run_id")

st.plotly_chart(F.hardware_figure(df, PANELS, list(runs["where"]), dict(zip(runs["where"], runs["profile"]))),
                key="hw_chart")
if several:
    st.caption("Several machine classes ran this submission: bars are labelled profile · machine; only bars "
               "on the same machine class are comparable.")

st.subheader("Every metric, side by side")
table = {}
for m in ordered_metrics(df["metric"].unique()):
    row = {}
    for w in runs["where"]:
        hit = df[(df["metric"] == m) & (df["where"] == w)]
        if hit.empty or pd.isna(hit.iloc[0]["value"]):
            row[w] = C.NOT_MEASURED
            continue
        v = C.to_value(hit.iloc[0])
        txt = format_si(v.value, v.unit)
        if v.ci_low is not None and v.ci_high is not None:
            txt += f"  [{format_si(v.ci_low, v.unit, ref=v.value)}, {format_si(v.ci_high, v.unit, ref=v.value)}]"
        row[w] = ("≈ " + txt + " (est.)") if v.estimated else txt
    table[C.metric_label(m)] = row
st.dataframe(pd.DataFrame(table).T, width="stretch")
