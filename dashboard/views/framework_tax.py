"""Framework tax: latency against batch size per runtime with the knee b*, and FT(b) per batch size;
for a batch_sweep run with a sequence-length axis, FT(b, s) as a heatmap and as curves per length
(heptathlon.db.dashboard_queries.ft_cells).

Reads measurement rows whose params carry ``batch_size`` (``runtime`` names the runtime) and knees
stored as ``batch_knee`` measurements or in ``run.extra["sweep"]`` (heptathlon.db.dashboard_queries.sweep_points).
"""

import numpy as np
import pandas as pd
import streamlit as st

from heptathlon.bench.framework_tax import fit_batch_knee, relative_to_best
from heptathlon.dashboard import common as C
from heptathlon.dashboard import figures as F
from heptathlon.db import dashboard_queries as DQ

st.title("Framework tax")
st.caption("Fernandez et al. 2023: at small batches latency is framework overhead (flat), past the knee b* "
           "it grows with the batch (compute-bound). FT(b) = (T_wall − T_compute) / T_wall.")

url, options, classes = C.load_common()
if options.empty:
    C.no_succeeded_runs()
    st.stop()

c1, c2, c3 = st.columns(3)
task = C.pick("Task", C.most_common(options, "task"), "ft_task", container=c1, param="task")
submission = C.pick("Submission", sorted(options.loc[options["task"] == task, "submission"].unique()),
                    "ft_submission", container=c2, param="submission")
points, knees = DQ.load_sweep_points(url, submission=submission)
if points.empty:
    st.info(f"**Framework tax: {C.NOT_MEASURED_YET}** for {submission}. This page fills in once runs store a "
            "batch sweep: measurements of `latency_p50_ms` and `framework_tax` whose params carry "
            "`batch_size` (and `runtime`).")
    st.stop()

profile = C.pick("Profile", sorted(points["profile"].unique()), "ft_profile", container=c3, param="profile")
points = points[points["profile"] == profile]
if points["machine_id"].nunique() > 1:
    cls = C.class_options(points.assign(submission=submission), classes)
    cid = C.pick("Machine class", list(cls), "ft_machine", fmt=lambda c: cls[c][0], param="machine")
    points = points[points["machine_id"].isin(cls[cid][1])]
knees = [k for k in knees if k["profile"] == profile and k["machine_id"] in set(points["machine_id"])]

lat_metrics = [m for m in ("latency_p50_ms", "latency_mean_ms", "latency_p90_ms", "latency_p99_ms")
               if m in set(points["metric"])]
st.subheader("Latency against batch size")
if not lat_metrics:
    st.info(f"Latency sweep: {C.NOT_MEASURED_YET}.")
else:
    lat_metric = C.pick("Latency statistic", lat_metrics, "ft_lat", param="stat") if len(lat_metrics) > 1 \
        else lat_metrics[0]
    lat = points[points["metric"] == lat_metric]
    # Newest stored knee per runtime; where none is stored, fit one here from the stored medians.
    shown: dict[str, dict] = {}
    for k in knees:
        shown.setdefault(k["runtime"], {**k, "fitted": False})
    for rt, g in lat.groupby("runtime"):
        g = g.sort_values("batch_size")
        if rt in shown or len(g) < 3 or (g["value"] <= 0).any() or g["value"].isna().any():
            continue
        fit = fit_batch_knee(g["batch_size"].tolist(), (g["value"] / 1e3).tolist(), n_resamples=0)
        shown[rt] = {"runtime": rt, "knee": fit.knee_batch, "ci_low": None, "ci_high": None,
                     "method": "fitted here: heptathlon.bench.framework_tax.fit_batch_knee on the stored medians",
                     "fitted": True, "source": "dashboard"}
    st.plotly_chart(F.sweep_figure(lat, list(shown.values()), lat_metric), key="ft_sweep")
    mixed, sources = C.sweep_sources(lat)
    if mixed:  # the newest value per runtime and batch size: comparisons here cross runs
        st.warning(f"These curves come from more than one run ({sources}), the newest per runtime and batch "
                   "size: comparisons between them cross runs. The batch × sequence length section below shows "
                   "one run at a time.")
    else:
        st.caption(f"From {sources}.")
    if shown:
        st.dataframe([{"runtime": k["runtime"], "knee b*": round(k["knee"], 1),
                       "95% CI": "—" if k.get("ci_low") is None else f"[{k['ci_low']:.1f}, {k['ci_high']:.1f}]",
                       "source": k.get("source"), "method": k.get("method") or "—"} for k in shown.values()],
                     hide_index=True, width="stretch")
    else:
        st.caption(f"Knee b*: {C.NOT_MEASURED_YET} (fewer than 3 batch sizes and none stored).")
    by_rt = {rt: dict(zip(g["batch_size"], g["value"])) for rt, g in lat.dropna(subset=["value"]).groupby("runtime")}
    if len(by_rt) > 1:
        rel = relative_to_best({rt: {b: v for b, v in d.items() if v > 0} for rt, d in by_rt.items()})
        st.markdown("**Latency relative to the best runtime** (1.00 = best at that batch size)")
        st.dataframe(pd.DataFrame(rel).T.sort_index(axis=1).map(lambda x: "—" if pd.isna(x) else f"{x:.2f}"),
                     width="stretch")

st.subheader("Framework tax per batch size")
tax = points[points["metric"] == "framework_tax"]
if tax.empty or tax["value"].isna().all():
    st.info(f"FT(b): {C.NOT_MEASURED_YET} (no `framework_tax` rows with a `batch_size`).")
else:
    st.plotly_chart(F.tax_figure(tax), key="ft_tax")
    methods = sorted(tax["method"].dropna().unique())
    st.caption("Method: " + ", ".join(f"`{m}`" for m in methods)
               + ("  ·  `estimate:*` values are intercept estimates (kind: command), not profiler measurements."
                  if any(str(m).startswith("estimate:") for m in methods) else ""))

# Batch size x sequence length (batch_sweep --seq-lengths): the Framework Tax paper's central figure.
seq_runs = DQ.load_seq_sweep_runs(url, submission=submission, profile=profile,
                                  machine_ids=tuple(sorted(int(m) for m in points["machine_id"].unique())))
if not seq_runs.empty:
    st.subheader("Framework tax over batch size × sequence length")
    labels = {r["run_id"]: f"{r['run_id'][:8]} · " + ("" if pd.isna(r["finished_at"]) else
                                                      f"{r['finished_at']:%Y-%m-%d %H:%M} · ")
              + "s = " + ", ".join(str(x) for x in r["lengths"]) for r in seq_runs.to_dict("records")}
    run_id = C.pick("Run (batch × sequence length)", list(labels), "ft_seq_run", fmt=labels.get, param="seq_run") \
        if len(labels) > 1 else next(iter(labels))
    grid = DQ.load_ft_cells(url, run_id)
    if grid is None or grid["cells"].empty:
        st.info(f"Batch × sequence length: {C.NOT_MEASURED_YET} for run {run_id[:8]}.")
    else:
        cells = grid["cells"]
        rts = grid["runtimes"]
        primary = grid.get("primary_runtime")
        s1, s2 = st.columns(2)
        rt = C.pick("Runtime", rts, "ft_seq_runtime", container=s1, param="seq_runtime",
                    default=primary if primary in rts else rts[0])
        y_opts = {"ft": "FT(b)", "latency": "latency p50"}
        y = C.pick("Curves of", list(y_opts), "ft_seq_y", fmt=y_opts.get, container=s2, param="seq_y")
        trials = grid.get("trials")
        st.caption(f"Run {run_id[:8]} (batch_sweep; submitted runtime: {primary}). "
                   + (f"Pooled over {trials} trials in fresh workers: each cell is the mean of its trials, its CI "
                      "covers the spread between them. " if trials else "") + "One sweep over batch sizes "
                   f"{', '.join(str(b) for b in grid['batch_sizes'])} at each sequence length "
                   f"{', '.join(str(x) for x in grid['lengths'])}; FT from a separate profiled pass. "
                   "Blank cells were not measured: the reason is on hover."
                   + (f" The sections above show this run's own sweep, at s = {grid['own_sequence_length']}."
                      if grid.get("own_sequence_length") is not None else ""))
        st.plotly_chart(F.ft_heatmap(cells, rt), key="ft_seq_heatmap")
        st.plotly_chart(F.ft_curves_by_length(cells, rt, y=y), key="ft_seq_curves")
        mine = cells[cells["runtime"] == rt]
        knee_rows = mine.drop_duplicates("sequence_length")
        st.dataframe([{"sequence length": int(k["sequence_length"]),
                       "knee b*": "—" if pd.isna(k["knee"]) else round(float(k["knee"]), 1),
                       "95% CI": "—" if pd.isna(k["knee_ci_low"]) or pd.isna(k["knee_ci_high"])
                       else f"[{k['knee_ci_low']:.1f}, {k['knee_ci_high']:.1f}]",
                       "note": k["knee_note"] or (k["knee_method"] or "")} for k in knee_rows.to_dict("records")],
                     hide_index=True, width="stretch")
        gaps = mine[~mine["available"]]
        if not gaps.empty:
            st.markdown(f"**FT not measured** for {rt} at {len(gaps)} of {len(mine)} cells:")
            st.dataframe(gaps.groupby("reason", sort=False).apply(
                lambda g: ", ".join(f"(s = {a}, b = {b})" for a, b in zip(g["sequence_length"], g["batch_size"])),
                include_groups=False).rename("cells").reset_index(), hide_index=True, width="stretch")
        if len(rts) > 1:
            rel = cells.pivot_table(index=["runtime", "sequence_length"], columns="batch_size",
                                    values="relative_to_best", aggfunc="first")
            st.markdown("**Latency relative to the best runtime per cell** (1.00 = best at that batch size and length)")
            st.dataframe(rel.map(lambda x: "—" if pd.isna(x) else f"{x:.2f}"), width="stretch")

with st.expander("Sweep rows"):
    st.dataframe(points.drop(columns=["machine_id"]).assign(value=lambda d: np.round(d["value"], 6)),
                 hide_index=True, width="stretch")
