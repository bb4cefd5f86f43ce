"""Compare two runs side by side (Conbench style): every metric with both 95% CIs and the
difference with its CI, the context diff, and the latency distributions overlaid.

Open as /compare?a=<run id>&b=<run id>; the Run-detail page links here.
"""

import pandas as pd
import streamlit as st

from heptathlon.bench.metrics import SampleKind
from heptathlon.bench.run_status import RunStatus
from heptathlon.dashboard import common as C
from heptathlon.dashboard import figures as F
from heptathlon.dashboard.scoring import (Value, difference_ci, format_si, format_signed, lower_is_better,
                                          ordered_metrics)
from heptathlon.db import dashboard_queries as DQ

st.title("Compare runs")
st.caption("A is the reference, B the candidate: differences are B − A. A difference is called only when its 95% "
           "CI (from both runs' CIs, MOVER) excludes zero; otherwise it is inside the noise.")
url = C.db_url()

recent = DQ.load_recent_runs(url, limit=300, status=RunStatus.SUCCEEDED)
ids = list(recent["run_id"])
for p in ("b", "a"):  # runs named in the URL are offered even when older than the newest 300
    wanted = st.query_params.get(p)
    if wanted and wanted not in ids:
        ids.insert(0, wanted)
info = recent.set_index("run_id").to_dict("index")


def label(rid: str) -> str:
    r = info.get(rid)
    if r is None:
        return rid
    when = r["finished_at"] or r["created_at"]
    return f"{r['submission']} · {r['profile']} · {r['scenario']} · {when:%Y-%m-%d %H:%M} · {rid[:8]}"


if len(ids) < 2:
    st.info("Comparing needs two succeeded runs; this database has fewer.")
    st.stop()
c1, c2 = st.columns(2)
a = C.pick("A (reference)", ids, "cmp_a", fmt=label, container=c1, param="a")
b = C.pick("B (candidate)", ids, "cmp_b", fmt=label, container=c2, param="b", default=ids[1] if ids[0] == a else ids[0])
if a == b:
    st.warning("A and B are the same run: choose two different runs.")
data = DQ.load_compare_runs(url, a, b)
if data is None:
    st.error(f"No run with id {a!r} or {b!r} in this database.")
    st.stop()
da, db_ = data["a"], data["b"]

st.subheader("Metrics")
meas = data["measurements"]
va = C.entries_from(meas[meas["run_id"] == da["run_id"]]).get(da["run_id"], {})
vb = C.entries_from(meas[meas["run_id"] == db_["run_id"]]).get(db_["run_id"], {})


def show(v: Value | None, unit: str) -> str:
    if v is None or v.value is None:
        return C.NOT_MEASURED
    ci = (f" [{format_si(v.ci_low, unit, ref=v.value)}, {format_si(v.ci_high, unit, ref=v.value)}]"
          if v.ci_low is not None and v.ci_high is not None else "")
    return ("≈ " if v.estimated else "") + format_si(v.value, unit) + ci


rows = []
for m in ordered_metrics(set(va) | set(vb)):
    x, y = va.get(m), vb.get(m)
    unit = (x or y).unit
    d, lo, hi = difference_ci(y, x) if x is not None and y is not None else (None, None, None)
    direction = lower_is_better(m)
    if d is None:
        verdict = "not comparable" if (x is None or y is None or x.value is None or y.value is None) else ""
    elif lo is None:
        verdict = "no CI: not called"
    elif lo <= 0 <= hi:
        verdict = "inside the noise"
    elif direction is None:
        verdict = "changed"
    else:
        verdict = "B better" if (d < 0) == direction else "B worse"
    if (x is not None and x.estimated) or (y is not None and y.estimated):
        verdict += " · ≈ estimate"

    rel = (d / x.value) if d is not None and x is not None and x.value else None
    rows.append({"metric": m, "A": show(x, unit), "B": show(y, unit),
                 "B − A": format_signed(d, unit) + (f" [{format_signed(lo, unit, ref=abs(d))}, "
                                                    f"{format_signed(hi, unit, ref=abs(d))}]" if lo is not None else ""),
                 "relative": "—" if rel is None else f"{rel:+.1%}", "verdict": verdict})
if rows:
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="cmp_metrics")
else:
    st.info(f"Both runs: every metric {C.NOT_MEASURED}.")

st.subheader("Context diff")
diff = C.context_diff(da, db_)
if diff:
    st.dataframe(pd.DataFrame(diff), hide_index=True, width="stretch", key="cmp_context")
else:
    st.success("Same artifact, profile, scenario, software and machine.")

st.subheader("Latency distributions")
lat = {}
for tag, d in (("A", da), ("B", db_)):
    if SampleKind.LATENCY_NS in d["samples"]:
        lat[f"{tag} · {d['run_id'][:8]}"] = DQ.load_latency_samples_ms(url, d["run_id"])
if lat:
    st.plotly_chart(F.latency_figure(lat), key="cmp_latency")
    missing = [t for t in ("A", "B") if not any(k.startswith(t) for k in lat)]
    if missing:
        st.caption(f"Raw latency samples: {C.NOT_MEASURED} for {', '.join(missing)}.")
else:
    st.info(f"Raw latency samples: {C.NOT_MEASURED} for either run.")
