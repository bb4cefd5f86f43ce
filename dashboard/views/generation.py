"""Generation: one run of the generate scenario (LLM-style token generation). Open as
/generation?run=<id> or pick a run below.

TTFT and ITL distributions, the sweep's per-user against aggregate output tokens/s, p99 latency
against the request rate with the SLOs, and the headline values with their CIs. Estimates are
labelled (est.) and never read as measurements.
"""

import streamlit as st

from heptathlon.dashboard import common as C
from heptathlon.dashboard import figures as F
from heptathlon.dashboard import generative as G
from heptathlon.dashboard.scoring import format_si
from heptathlon.db import dashboard_queries as DQ

st.title("Generation")
st.caption("One run of the `generate` scenario: time to first token (TTFT), inter-token latency (ITL, every gap "
           "between two streamed tokens), time per output token (TPOT) and output tokens/s. Values carry their "
           "95% CI, n and method; estimates are marked (est.) and are not measurements.")
url = C.db_url()

runs = DQ.load_generate_run_list(url)
wanted = st.query_params.get("run")
ids = list(runs["run_id"])
if wanted and wanted not in ids:
    ids = [wanted] + ids
if not ids:
    st.info("No succeeded `generate` runs yet: every generation metric is **not measured**. Run one with "
            "`heptathlon run <submission> --scenario generate` (add `--sweep` and `--ttft-slo-ms/--tpot-slo-ms` "
            "for the sweep and SLO charts).")
    st.stop()
info = runs.set_index("run_id").to_dict("index")


def run_label(rid: str) -> str:
    r = info.get(rid)
    if r is None:
        return rid
    return f"{r['submission']} · {r['profile']} · {r['load']} · {r['finished_at']:%Y-%m-%d %H:%M} · {rid[:8]}"


run_id = C.pick("Generate run (newest first)", ids, "gen_run", fmt=run_label, param="run")
rec = DQ.load_generate_record(url, run_id)
if rec is None:
    st.error(f"No generate run with id {run_id!r} in this database.")
    st.stop()

gen = rec["generate"]
st.subheader(f"{rec['submission']} v{rec['version']} · {rec['profile']} · {rec['load']}")
m1, m2, m3, m4 = st.columns(4)
m1.metric("Mode (headline pass)", G.point_label(gen.get("mode"), gen.get("rate"), gen.get("concurrency")))
m2.metric("Requests", gen.get("requests", "—"))
m3.metric("Max new tokens", gen.get("max_new_tokens", "—"))
m4.metric("Stopped by", gen.get("stopped_by", "—"))
st.caption(f"Run `{rec['run_id']}` · task {rec['task'] or '—'} · backend {gen.get('backend') or '—'} · "
           f"seed {gen.get('seed', '—')} · EOS {'ignored' if gen.get('ignore_eos') else 'stops a request'} · "
           f"truncated prompts {gen.get('truncated_prompts', '—')} · finished {rec['finished_at']} · "
           f"[run detail](run?run={rec['run_id']})")
if rec["contended"]:
    st.warning("This run is **contended**: other processes used its cores beyond the threshold. Its values are "
               "shown but it is not ranked on the leaderboard.")
if rec["isolation"] == G.TRUSTED:
    st.warning("A `--trusted` run (model loaded in the measuring process): not comparable, not ranked.")

st.subheader("Headline values")
table = G.headline_table(rec["measurements"])
st.dataframe(table, hide_index=True, width="stretch")
if (table["kind"] == "estimate (not a measurement)").any():
    st.caption("≈ … (est.): an estimate (`estimate:*` method), e.g. energy modelled from a TDP; not a measurement.")

st.subheader("TTFT and ITL distributions")
heads = rec["measurements"].set_index("metric")["value"].to_dict() if not rec["measurements"].empty else {}
marks = {k: {q: heads.get(f"{k}_{q}_ms") for q in ("p50", "p99")} for k in ("ttft", "itl")}
if rec["ttft_ms"] is None and rec["itl_ms"] is None:
    st.info(f"Raw TTFT and ITL samples: {C.NOT_MEASURED} for this run.")
else:
    st.plotly_chart(F.token_latency_figure(rec["ttft_ms"], rec["itl_ms"], marks), key="gen_latency")
    st.caption("Samples of the headline pass. p50/p99 lines are the run's stored headline values.")

sweep = DQ.load_generate_sweep(url, rec["run_id"])
points, slo = sweep["points"], sweep["slo"]
st.subheader("Sweep: per-user against aggregate throughput")
if points.empty:
    st.info("This run has no sweep points (run with `--sweep`): the sweep charts are **not measured**.")
else:
    st.plotly_chart(F.token_pareto_figure(points), key="gen_pareto")
    st.caption(f"{len(points)} sweep point(s): " + ", ".join(str(x) for x in points["label"]) + ". Moving right "
               "serves more tokens in total; moving up serves each user faster.")

st.subheader("Latency against request rate")
if slo:
    if slo.get("met") and sweep["max_rate"] and sweep["max_rate"].get("value") is not None:
        st.success(f"Max rate within SLO (p99 TTFT ≤ {slo.get('ttft_ms')} ms, p99 TPOT ≤ {slo.get('tpot_ms')} ms): "
                   f"**{format_si(sweep['max_rate']['value'], 'requests/s')}** "
                   f"({sweep['max_rate'].get('method')}; {sweep['max_rate'].get('note') or ''})")
    else:
        reason = slo.get("reason") or (sweep["max_rate"] or {}).get("note") or ""
        st.warning(f"**SLO not met at any rate.** {C.esc_md(reason)}")
if points.empty and not (slo or {}).get("probes"):
    st.info("No sweep points and no SLO probes: the rate curve is **not measured** for this run.")
else:
    st.plotly_chart(F.rate_sweep_figure(points, slo, sweep["max_rate"]), key="gen_rate")
    if not slo:
        st.caption("This run had no SLOs (`--ttft-slo-ms`, `--tpot-slo-ms`): no SLO lines, no max rate.")

if rec["outputs"]:
    with st.expander(f"Generated text ({rec['n_outputs']} requests, first {len(rec['outputs'])} shown)"):
        st.dataframe([{k: o.get(k) for k in ("index", "output_tokens", "text")} for o in rec["outputs"]],
                     hide_index=True, width="stretch")
with st.expander("The run's generate record (run.extra)"):
    st.json(gen, expanded=False)
