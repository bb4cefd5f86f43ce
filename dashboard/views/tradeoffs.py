"""Trade-offs: accuracy against a cost (latency, energy, memory) with the Pareto frontier highlighted."""

import streamlit as st

from heptathlon.dashboard import common as C
from heptathlon.dashboard import figures as F
from heptathlon.dashboard.scoring import format_si, lower_is_better, pareto_front_ci
from heptathlon.db import dashboard_queries as DQ

COSTS = ["latency_p50_ms", "latency_p99_ms", "energy_per_sample_j", "energy_j", "peak_rss_mb", "gpu_peak_mb",
         "load_s", "artifact_mb"]

st.title("Trade-offs")
st.caption("Each point is one submission on one profile (its latest run). The frontier joins the points that no "
           "other point beats **beyond the 95% CIs** (better beyond the CIs on one axis, not worse beyond them on "
           "the other); estimated values are drawn hollow, labelled ≈ … (est.), and never enter the frontier.")

url, options, classes = C.load_common()
if options.empty:
    C.no_succeeded_runs()
    st.stop()
group = C.select_group(options, classes, "to", profile=False)
if group is None:
    C.no_succeeded_runs()
    st.stop()

runs, meas = DQ.load_latest_results(url, task=group["task"], scenario=group["scenario"],
                                    machine_ids=group["machine_ids"])
runs = runs.sort_values("finished_at", ascending=False, kind="stable").drop_duplicates(["submission_id", "profile"])
meas = meas[meas["run_id"].isin(runs["run_id"])]
entries = C.entries_from(meas)

c1, c2 = st.columns([1, 2])
x_metric = C.pick("Cost axis", COSTS, "to_x", fmt=C.metric_label, container=c1, param="x")
profiles = sorted(runs["profile"].unique())
chosen = C.pick_many("Profiles", profiles, "to_profiles", param="profiles", container=c2)
runs = runs[runs["profile"].isin(chosen)]

points = []
for r in runs.to_dict("records"):
    e = entries.get(r["run_id"], {})
    x, y = e.get(x_metric), e.get("accuracy")
    points.append({"run_id": r["run_id"], "label": f"{r['submission']} @ {r['profile']}",
                   "submission": r["submission"], "profile": r["profile"], "x": x, "y": y})
have = [p for p in points if p["x"] is not None and p["x"].value is not None
        and p["y"] is not None and p["y"].value is not None]
if not have:
    st.info(f"**{x_metric}** against accuracy: {C.NOT_MEASURED_YET} for this selection "
            f"({len(points)} run(s), none with both values).")
    st.stop()

measured = [(p["run_id"], p["x"], p["y"]) for p in have if p["x"].measured and p["y"].measured]
front = pareto_front_ci(measured, x_lower_is_better=lower_is_better(x_metric) is not False,
                        y_lower_is_better=False)
st.plotly_chart(F.pareto_figure(have, front, x_metric), key="to_chart")

missing = [p["label"] for p in points if p not in have]
if missing:
    st.caption(f"Not measured ({x_metric} or accuracy), not plotted: " + ", ".join(missing))
st.subheader("On the frontier")
st.dataframe([{"submission": p["submission"], "profile": p["profile"],
               x_metric: format_si(p["x"].value, p["x"].unit), "accuracy": format_si(p["y"].value, "fraction"),
               "run": p["run_id"]}
              for p in sorted(have, key=lambda p: p["x"].value) if p["run_id"] in front],
             hide_index=True, width="stretch")
