"""History: one metric of one series (submission, profile, scenario, machine class) over time,
with the nightly regression alerts of the alert table marked on the runs they flagged."""

import streamlit as st

from heptathlon.bench.metrics import METRICS
from heptathlon.bench.run_status import RunStatus
from heptathlon.dashboard import common as C
from heptathlon.dashboard import figures as F
from heptathlon.dashboard.scoring import ordered_metrics
from heptathlon.db import dashboard_queries as DQ

st.title("History")
st.caption("Every finished run of one series night by night (the x-axis is the night a run belongs to), with "
           "95% CI error bars. Failed runs are marked ✕ on the axis; nightly regression alerts are marked on the "
           "run they flagged; estimates are hollow and labelled ≈ est.")

url, options, classes = C.load_common()
if options.empty:
    C.no_succeeded_runs()
    st.stop()
group = C.select_group(options, classes, "hi", submission=True)
if group is None or group.get("submission") is None:
    C.no_succeeded_runs()
    st.stop()

metrics = ordered_metrics(m for m in METRICS if METRICS[m].lower_is_better is not None)
metric = C.pick("Metric", metrics, "hi_metric", fmt=C.metric_label, param="metric", default="latency_p50_ms")
series = DQ.load_series_history(url, submission=group["submission"], profile=group["profile"],
                                scenario=group["scenario"], metric=metric, machine_ids=group["machine_ids"])
alerts = DQ.load_alerts_for_runs(url, tuple(series["run_id"]))

have = series[(series["status"] == RunStatus.SUCCEEDED) & series["value"].notna()]
st.caption(f"Series: {group['submission']} · {group['profile']} · {group['scenario']} · {group['class_label']} — "
           f"{len(series)} run(s), {int((series['status'] == RunStatus.FAILED).sum())} failed.")
if have.empty:
    st.info(f"**{metric}: {C.NOT_MEASURED_YET}** in this series.")
else:
    st.plotly_chart(F.history_figure(series, alerts, metric), key="hi_chart")

st.subheader("Regression alerts")
if alerts.empty:
    st.info("No alerts for this series yet (the nightly suite stores them in the alert table).")
else:
    st.dataframe(C.alerts_table(alerts, metric), hide_index=True, width="stretch")

with st.expander("Runs of this series"):
    st.dataframe(series, hide_index=True, width="stretch")
