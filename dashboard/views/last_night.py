"""Last night: every series of the newest nightly run at a glance, with its verdict, the effect in
the metric's unit with its CI, the test that fired, the context diff, a link to its history and the
acknowledge / expected actions of ``heptathlon alerts``.

The landing page when a nightly ran in the last 24 hours (dashboard/app.py).
"""

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from heptathlon.bench.errors import HeptathlonError
from heptathlon.bench.metrics import METRICS
from heptathlon.bench.regression import DetectionConfig
from heptathlon.dashboard import actions
from heptathlon.dashboard import common as C
from heptathlon.dashboard.scoring import Value, difference_ci, format_p, format_si, format_signed
from heptathlon.db import dashboard_queries as DQ

# Material icons, not emoji: headless and minimal browsers often lack an emoji font.
ICON = {"pass": ":material/check_circle:", "regressed": ":material/trending_up:", "broke": ":material/cancel:",
        "drifted": ":material/swap_vert:", "improved": ":material/trending_down:", "skipped": ":material/skip_next:"}
TEST_NAMES = {"mann-whitney-u+z-score": "Mann-Whitney U and z-score", "flip-rate": "prediction flip rate",
              "value-change": "value change", None: "—"}

st.title("Last night")
url = C.db_url()
night = DQ.load_last_night(url, min_window=DetectionConfig().min_window)
if night.empty:
    st.info("No nightly run in this database yet. Run one with `heptathlon nightly suites/nightly-demo.yaml`; "
            "its verdicts show here the next morning.")
    st.stop()

first = night.iloc[0]
per_series = night.drop_duplicates("series_key")
counts = per_series["verdict"].value_counts().to_dict()
st.caption(f"Night **{first['night']}** · suite `{first['suite']}` · host `{first['host']}` · "
           f"{len(per_series)} series: " + " · ".join(f"{ICON[v]} {counts[v]} {v}" for v in DQ.VERDICT_ORDER
                                                      if v in counts))

verdicts = [v for v in DQ.VERDICT_ORDER if v in counts]
shown = C.pick_many("Verdicts", verdicts, "ln_verdicts", param="verdicts",
                    default=[v for v in verdicts if v != "pass"] or verdicts,
                    help="Passing series are hidden by default; choose them here.")


def history_link(r) -> str:
    q = {"task": r["task"], "scenario": r["scenario"], "profile": r["profile"], "submission": r["submission"]}
    if r["metric"] and r["metric"] in METRICS:
        q["metric"] = r["metric"]
    return "history?" + urlencode({k: v for k, v in q.items() if v})


def effect_text(r) -> tuple[str, str]:
    """("+1.2 ms [+0.9, +1.5] (+25%)", how it was computed) for one alert row."""
    unit = r["unit"] or (METRICS[r["metric"]].unit if r["metric"] in METRICS else "")
    cand = Value(C.opt(r["candidate_value"]), C.opt(r["candidate_ci_low"]), C.opt(r["candidate_ci_high"]))
    base = Value(C.opt(r["baseline_value"]), C.opt(r["baseline_ci_low"]), C.opt(r["baseline_ci_high"]))
    d, lo, hi = difference_ci(cand, base)
    if d is None:
        return "—", "no values stored"
    text = format_signed(d, unit)
    if lo is not None:
        text += f" [{format_signed(lo, unit, ref=abs(d))}, {format_signed(hi, unit, ref=abs(d))}]"
    rel = C.opt(r["rel_change"])
    if rel is not None:
        text += f" ({rel:+.1%})"
    how = (f"last night {format_si(cand.value, unit)} against the baseline mean {format_si(base.value, unit)} "
           f"of {int(r['n_baseline'] or 0)} good nightly run(s); 95% CI of the difference from both CIs (MOVER)"
           if lo is not None else "point difference (a CI needs both runs' CIs)")
    return text, how


for verdict in [v for v in verdicts if v in shown]:
    rows = night[night["verdict"] == verdict]
    st.subheader(f"{ICON[verdict]} {verdict} ({rows['series_key'].nunique()})")
    for r in rows.to_dict("records"):
        r["alert_id"] = None if C.opt(r["alert_id"]) is None else int(r["alert_id"])
        with st.container(border=True):
            head, links = st.columns([4, 1])
            head.markdown(f"**{C.esc_md(r['label'])}**")
            links.markdown(f"[history]({history_link(r)}) · [run](run?run={r['run_id']})")
            if verdict == "broke" and r["alert_id"] is None:
                st.error(f"The run failed: {r['error'] or 'no reason recorded'}")
            if verdict == "skipped":
                st.caption(f"Not tested: {int(r['good_before'])} good nightly run(s) before this one; "
                           f"{DetectionConfig().min_window} needed for a baseline.")
            if r["alert_id"] is None:
                continue
            c1, c2, c3 = st.columns([3, 2, 2])
            if r["kind"] == "broke":
                c1.markdown("**broke**: the run failed")
                c2.markdown("test: none (a failed run is its own verdict)")
            else:
                eff, how = effect_text(r)
                c1.markdown(f"**{r['kind']}** of `{r['metric']}`: **{eff}**", help=how)
                test = C.opt(r["test"])
                c2.markdown(f"test: {TEST_NAMES.get(test, test)} · {format_p(C.opt(r['p_value']))}"
                            + (f" · z = {r['z_score']:+.1f}" if C.opt(r["z_score"]) is not None else ""))
            c3.markdown(f"alert #{r['alert_id']} · **{r['alert_status']}**")
            if r["kind"] == "broke":
                st.error(f"The run failed: {C.opt(r['error']) or C.opt(r['message']) or 'no reason recorded'}")
            diff = r["context_diff"] or []
            st.markdown("**Context diff** since the baseline: " + ("; ".join(f"`{c}`" for c in diff)
                                                                    if diff else "none (same artifact, profile, "
                                                                                 "software and machine)"))
            if r["alert_status"] == "open":
                b1, b2, _ = st.columns([1, 1, 4])
                ack = b1.button("Acknowledge", key=f"ln_ack_{r['alert_id']}",
                                help=f"Same as: heptathlon alerts ack {r['alert_id']}")
                exp = b2.button("Expected", key=f"ln_exp_{r['alert_id']}", disabled=r["kind"] == "broke",
                                help=f"Same as: heptathlon alerts expected {r['alert_id']} (the run starts a new "
                                     "baseline segment)")
                if ack or exp:
                    try:
                        actions.set_alert_status(url, r["alert_id"], actions.ACKNOWLEDGED if ack else actions.EXPECTED)
                    except HeptathlonError as e:
                        st.error(str(e))
                    else:
                        DQ.load_last_night.clear()
                        st.rerun()

with st.expander("Every series of the night (table)"):
    table = night.assign(effect=[effect_text(r)[0] if C.opt(r["alert_id"]) is not None else "" for r in
                                 night.to_dict("records")],
                         p=[format_p(C.opt(p)) if C.opt(p) is not None else "" for p in night["p_value"]],
                         context=[", ".join(c) for c in night["context_diff"]])
    st.dataframe(pd.DataFrame(table[["verdict", "label", "kind", "metric", "effect", "test", "p", "alert_id",
                                     "alert_status", "context", "run_id"]]), hide_index=True, width="stretch")
