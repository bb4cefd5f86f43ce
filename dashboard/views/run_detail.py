"""Run detail: everything stored about one run. Open as /run?run=<id> or pick a run below."""

import pandas as pd
import streamlit as st

from heptathlon.bench.metrics import SampleKind
from heptathlon.bench.run_status import RunStatus
from heptathlon.dashboard import common as C
from heptathlon.dashboard import figures as F
from heptathlon.dashboard.scoring import format_si
from heptathlon.db import dashboard_queries as DQ

st.title("Run detail")
url = C.db_url()

wanted = st.query_params.get("run")
c1, c2 = st.columns([1, 3])
status = C.pick("Status", ["any", RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.QUEUED, RunStatus.RUNNING],
                "rd_status", container=c1, param="status")
recent = DQ.load_recent_runs(url, limit=300, status=None if status == "any" else status)
ids = list(recent["run_id"])
if wanted and wanted not in ids:
    ids = [wanted] + ids
info = recent.set_index("run_id").to_dict("index")


def run_label(rid: str) -> str:
    r = info.get(rid)
    if r is None:
        return rid
    when = r["finished_at"] or r["created_at"]
    return f"{r['submission']} · {r['profile']} · {r['scenario']} · {r['status']} · {when:%Y-%m-%d %H:%M} · {rid[:8]}"


if not ids:
    st.info("No runs with this status.")
    st.stop()
run_id = C.pick("Run (newest first)", ids, "rd_run", fmt=run_label, container=c2, param="run")
d = DQ.load_run_detail(url, run_id)
if d is None:
    st.error(f"No run with id {run_id!r} in this database.")
    st.stop()
if st.query_params.get("run") != d["run_id"]:
    st.query_params["run"] = d["run_id"]

sub = d["submission"]
st.subheader(f"{sub['name'] if sub else d['submission_ref']} · {d['profile']} · {d['scenario']}")
m1, m2, m3, m4 = st.columns(4)
m1.metric("Status", d["status"])
took = (d["finished_at"] - d["started_at"]).total_seconds() if d["finished_at"] and d["started_at"] else None
m2.metric("Duration", f"{took:.1f} s" if took is not None else "—")
m3.metric("Queries", d["extra"].get("n_queries", "—"))
m4.metric("Stopped by", d["extra"].get("stopped_by", "—"))
st.caption(f"Run `{d['run_id']}` · task {d['task'] or '—'} · trial {d['trial']} · created {d['created_at']} · "
           f"finished {d['finished_at'] or '—'}")

if d["status"] == RunStatus.FAILED:
    st.error(f"**Failed:** {d['error'] or 'no reason recorded'}")
    st.markdown("**stderr (tail)**")
    st.code(d["stderr_tail"] or "(empty)", language="text")

st.subheader("Measurements")
meas = d["measurements"]
if meas.empty:
    st.info(f"Every metric: {C.NOT_MEASURED} for this run.")
else:
    view = meas.assign(value=[format_si(v, u) if pd.notna(v) else C.NOT_MEASURED
                              for v, u in zip(meas["value"], meas["unit"])],
                       ci=[f"[{format_si(lo, u, ref=v)}, {format_si(hi, u, ref=v)}]" if pd.notna(lo) and pd.notna(hi)
                           else "—" for v, lo, hi, u in zip(meas["value"], meas["ci_low"], meas["ci_high"], meas["unit"])],
                       estimated=meas["method"].str.startswith("estimate:"),
                       params=[C.as_json(p) if p else "" for p in meas["params"]], note=meas["note"].fillna(""))
    st.dataframe(view[["metric", "value", "unit", "ci", "n", "method", "estimated", "note", "params"]],
                 hide_index=True, width="stretch")

st.subheader("Latency distribution")
lat = DQ.load_latency_samples_ms(url, d["run_id"]) if SampleKind.LATENCY_NS in d["samples"] else None
if lat is None or lat.size == 0:
    st.info(f"Raw latency samples: {C.NOT_MEASURED} for this run.")
else:
    st.plotly_chart(F.latency_histogram(lat), key="rd_hist")
if d["status"] == RunStatus.SUCCEEDED:
    st.markdown(f"[Compare this run with another](compare?a={d['run_id']})")

left, right = st.columns(2)
with left:
    st.subheader("Submission")
    if sub is None:
        st.info(f"The submission never validated; requested: `{d['submission_ref']}`.")
    else:
        st.markdown(f"**{sub['name']}** v{sub['version']} · kind `{sub['kind']}` · task `{sub['task']}`")
        st.markdown(f"Artifact sha256: `{sub['artifact_sha256']}`")
        st.caption("Manifest")
        st.json(sub["manifest"], expanded=True)
with right:
    st.subheader("Profile")
    if d["profile_yaml"]:
        st.caption(f"spec hash {d['profile_spec_hash']}")
        st.code(d["profile_yaml"], language="yaml")
    else:
        st.info("Profile not resolved for this run.")

st.subheader("Applied controls")
controls = d["controls"]
if not controls:
    st.info("No controls recorded (the run did not reach the worker).")
else:
    rows = []
    for name, c in controls.items():
        if isinstance(c, dict) and ("requested" in c or "effective" in c or "took_effect" in c):
            rows.append({"control": name, "requested": C.as_json(c.get("requested")),
                         "effective": C.as_json(c.get("effective")), "mechanism": c.get("mechanism", ""),
                         "took effect": c.get("took_effect")})
        else:
            rows.append({"control": name, "requested": "", "effective": C.as_json(c), "mechanism": "",
                         "took effect": None})
    st.dataframe(rows, hide_index=True, width="stretch")

st.subheader("Machine fingerprint")
if d["machine"] is None:
    st.info("No machine recorded (the run did not finish).")
else:
    st.markdown(f"{d['machine']['label']} · fingerprint `{d['machine']['fingerprint_hash'][:16]}`")
    st.json(d["machine"]["specs"], expanded=False)

with st.expander("Software context, scenario parameters, extra"):
    st.json({"software": d["software"], "params": d["params"], "extra": d["extra"]}, expanded=True)

if not d["groups"].empty:
    st.subheader("Per-group metrics")
    st.dataframe(d["groups"], hide_index=True, width="stretch")
if not d["alerts"].empty:
    st.subheader("Alerts on this run")
    st.dataframe(C.alerts_table(d["alerts"]), hide_index=True, width="stretch")
if d["status"] != RunStatus.FAILED and d["stderr_tail"]:
    with st.expander("stderr (tail)"):
        st.code(d["stderr_tail"], language="text")
