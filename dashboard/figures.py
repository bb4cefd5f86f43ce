"""Plotly figures of the dashboard. Data in, ``go.Figure`` out; no Streamlit, no database."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from heptathlon.bench.metrics import METRICS
from heptathlon.bench.run_status import RunStatus
from heptathlon.dashboard.scoring import format_value

PALETTE = qualitative.Safe
ALERT_STYLE = {  # kind -> (marker symbol, colour)
    "regression": ("triangle-up", "#c01c28"),
    "improvement": ("triangle-down", "#26a269"),
    "drift": ("diamond", "#e66100"),
    "broke": ("x", "#000000"),
}


def _unit(metric: str) -> str:
    return METRICS[metric].unit if metric in METRICS else ""


def _axis_title(metric: str) -> str:
    u = _unit(metric)
    return f"{metric} ({u})" if u else metric


def _err(values: list[float | None], lows: list[float | None], highs: list[float | None]) -> dict[str, Any]:
    plus = [0.0 if (v is None or h is None) else max(0.0, h - v) for v, h in zip(values, highs)]
    minus = [0.0 if (v is None or lo is None) else max(0.0, v - lo) for v, lo in zip(values, lows)]
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "thickness": 1.2}


def _nan_none(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) or pd.isna(x) else float(x)


def _layout(fig: go.Figure, **kw: Any) -> go.Figure:
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 50},
                      legend={"orientation": "h", "y": -0.2}, **kw)
    return fig


# ---- trade-offs ----------------------------------------------------------------------------------
def pareto_figure(points: list[dict[str, Any]], front: set[str], x_metric: str) -> go.Figure:
    """Accuracy (y) against a cost (x); one colour per profile, frontier points outlined and joined."""
    fig = go.Figure()
    profiles = sorted({p["profile"] for p in points})
    for i, prof in enumerate(profiles):
        for estimated in (False, True):
            ps = [p for p in points if p["profile"] == prof and (p["x"].estimated or p["y"].estimated) == estimated]
            if not ps:
                continue
            xs, ys = [p["x"].value for p in ps], [p["y"].value for p in ps]
            on = [p["run_id"] in front for p in ps]
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="markers+text", name=prof + (" (estimated)" if estimated else ""),
                # Names on frontier points only: dominated points crowd the plot; their names are on hover.
                text=[p["submission"] if p["run_id"] in front else "" for p in ps], textposition="top center",
                textfont={"size": 11},
                marker={"size": [16 if o else 10 for o in on], "color": PALETTE[i % len(PALETTE)],
                        "symbol": "circle-open" if estimated else "circle",
                        "line": {"width": [2.5 if o else 0.5 for o in on], "color": "#222"}},
                error_x=_err(xs, [p["x"].ci_low for p in ps], [p["x"].ci_high for p in ps]),
                error_y=_err(ys, [p["y"].ci_low for p in ps], [p["y"].ci_high for p in ps]),
                customdata=[[p["label"], "on the frontier" if o else "dominated", p["x"].method, p["y"].method]
                            for p, o in zip(ps, on)],
                hovertemplate="%{customdata[0]}<br>" + x_metric + " %{x:.4g} (%{customdata[2]})<br>"
                              "accuracy %{y:.4f} (%{customdata[3]})<br>%{customdata[1]}<extra></extra>"))
    fr = sorted((p for p in points if p["run_id"] in front), key=lambda p: p["x"].value)
    if fr:
        fig.add_trace(go.Scatter(x=[p["x"].value for p in fr], y=[p["y"].value for p in fr], mode="lines",
                                 line={"shape": "hv", "width": 2, "color": "#1a5fb4", "dash": "dot"},
                                 name="Pareto frontier", hoverinfo="skip"))
    return _layout(fig, title=f"Accuracy against {x_metric}", xaxis_title=_axis_title(x_metric),
                   yaxis_title="accuracy (fraction)", height=520)


# ---- hardware comparison -------------------------------------------------------------------------
def hardware_figure(df: pd.DataFrame, panels: list[str], order: list[str]) -> go.Figure:
    """One bar panel per metric, one bar per profile (``where``), 95% CI error bars."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[_axis_title(m) for m in panels],
                        horizontal_spacing=0.08)
    for j, m in enumerate(panels, start=1):
        sub = df[(df["metric"] == m) & df["value"].notna()].set_index("where").reindex(order).dropna(subset=["value"])
        if sub.empty:
            # Paper coordinates: an axis with no trace is not drawn, so "x3 domain" would not place it.
            xa = fig.layout["xaxis" if j == 1 else f"xaxis{j}"].domain
            fig.add_annotation(text="not measured", showarrow=False, font={"size": 15, "color": "#888"},
                               xref="paper", yref="paper", x=(xa[0] + xa[1]) / 2, y=0.5)
            fig.update_xaxes(showticklabels=False, showgrid=False, row=1, col=j)
            fig.update_yaxes(showticklabels=False, showgrid=False, row=1, col=j)
            continue
        vals = [float(v) for v in sub["value"]]
        est = [str(mt).startswith("estimate:") for mt in sub["method"]]
        fig.add_trace(go.Bar(
            x=list(sub.index), y=vals, name=m, showlegend=False,
            marker={"color": [PALETTE[order.index(w) % len(PALETTE)] for w in sub.index],
                    "pattern": {"shape": ["/" if e else "" for e in est]}},
            error_y=_err(vals, [_nan_none(x) for x in sub["ci_low"]], [_nan_none(x) for x in sub["ci_high"]]),
            text=[("≈ " if e else "") + format_value(v, _unit(m)) for v, e in zip(vals, est)],
            textposition="outside",
            customdata=np.stack([sub["method"].astype(str), sub["n"].astype(str)], axis=-1),
            hovertemplate="%{x}<br>%{y:.4g}<br>method %{customdata[0]} · n %{customdata[1]}<extra></extra>"),
            row=1, col=j)
    return _layout(fig, height=430, title="Side by side (hatched bars are estimates)")


# ---- framework tax --------------------------------------------------------------------------------
def sweep_figure(lat: pd.DataFrame, knees: list[dict[str, Any]], metric: str) -> go.Figure:
    """Latency against batch size per runtime (log-2 axes), knee b* marked per runtime."""
    fig = go.Figure()
    runtimes = sorted(lat["runtime"].unique())
    colour = {rt: PALETTE[i % len(PALETTE)] for i, rt in enumerate(runtimes)}
    for rt in runtimes:
        g = lat[lat["runtime"] == rt].sort_values("batch_size")
        vals = [_nan_none(v) for v in g["value"]]
        fig.add_trace(go.Scatter(
            x=g["batch_size"], y=vals, mode="lines+markers", name=rt, line={"color": colour[rt]},
            error_y=_err(vals, [_nan_none(x) for x in g["ci_low"]], [_nan_none(x) for x in g["ci_high"]]),
            hovertemplate=f"{rt}<br>batch %{{x}}<br>%{{y:.4g}} {_unit(metric)}<extra></extra>"))
    # Knees as traces, not layout shapes: shapes on a log axis take log10 coordinates, traces data ones.
    y = [v for v in lat["value"] if _nan_none(v) is not None]
    lo_y, hi_y = (min(y) * 0.8, max(y) * 1.25) if y else (0.1, 10.0)
    for k in knees:
        c = colour.get(k["runtime"], "#555")
        label = f"b* = {k['knee']:.0f} ({k['runtime']}{', fitted here' if k.get('fitted') else ''})"
        if k.get("ci_low") is not None and k.get("ci_high") is not None:
            fig.add_trace(go.Scatter(x=[k["ci_low"], k["ci_high"], k["ci_high"], k["ci_low"], k["ci_low"]],
                                     y=[lo_y, lo_y, hi_y, hi_y, lo_y], fill="toself", fillcolor=c, opacity=0.15,
                                     line={"width": 0}, mode="lines", hoverinfo="skip", showlegend=False,
                                     legendgroup=k["runtime"]))
        fig.add_trace(go.Scatter(x=[k["knee"], k["knee"]], y=[lo_y, hi_y], mode="lines", name=label,
                                 line={"color": c, "dash": "dash", "width": 2}, legendgroup=k["runtime"],
                                 hovertemplate=label + "<extra></extra>"))
    fig.update_xaxes(type="log", dtick=np.log10(2), title="batch size")
    fig.update_yaxes(type="log", title=_axis_title(metric), range=[np.log10(lo_y), np.log10(hi_y)])
    return _layout(fig, height=480, title=f"{metric} against batch size (dashed: knee b*, band: its 95% CI)")


def tax_figure(tax: pd.DataFrame) -> go.Figure:
    """FT(b) per batch size, one bar group per runtime, 95% CI error bars."""
    fig = go.Figure()
    for i, rt in enumerate(sorted(tax["runtime"].unique())):
        g = tax[tax["runtime"] == rt].sort_values("batch_size")
        vals = [_nan_none(v) for v in g["value"]]
        fig.add_trace(go.Bar(
            x=[str(b) for b in g["batch_size"]], y=vals, name=rt, marker_color=PALETTE[i % len(PALETTE)],
            error_y=_err(vals, [_nan_none(x) for x in g["ci_low"]], [_nan_none(x) for x in g["ci_high"]]),
            customdata=g["method"].astype(str), hovertemplate=f"{rt}<br>batch %{{x}}<br>FT %{{y:.1%}}"
                                                             "<br>%{customdata}<extra></extra>"))
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05], title="framework tax (share of wall time)")
    fig.update_xaxes(type="category", title="batch size")
    return _layout(fig, barmode="group", height=400, title="Framework tax FT(b)")


# ---- fairness ------------------------------------------------------------------------------------
def group_heatmap(df: pd.DataFrame, metric: str) -> go.Figure:
    """Group (rows) by profile (columns); cell text is the value, † marks a small group."""
    groups = list(dict.fromkeys(df["group"]))
    profiles = sorted(df["profile"].unique())
    z = np.full((len(groups), len(profiles)), np.nan)
    text = [["" for _ in profiles] for _ in groups]
    hover = [["" for _ in profiles] for _ in groups]
    for r in df.to_dict("records"):
        i, j = groups.index(r["group"]), profiles.index(r["profile"])
        v = _nan_none(r["value"])
        if v is None:
            text[i][j] = "not measured"
            continue
        z[i, j] = v
        text[i][j] = f"{v:.3f}" + (" †" if r["small"] else "")
        ci = (f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if _nan_none(r["ci_low"]) is not None
              and _nan_none(r["ci_high"]) is not None else "no CI")
        hover[i][j] = f"{r['group']} on {r['profile']}<br>{metric} {v:.4f}<br>95% CI {ci}<br>n = {r['n']}" + (
            "<br>† below the minimum group size" if r["small"] else "")
    reverse = METRICS[metric].lower_is_better if metric in METRICS else metric.endswith("loss")
    fig = go.Figure(go.Heatmap(z=z, x=profiles, y=groups, text=text, texttemplate="%{text}", hovertext=hover,
                               hoverinfo="text", colorscale="RdYlGn_r" if reverse else "RdYlGn",
                               colorbar={"title": metric}))
    return _layout(fig, height=max(260, 70 * len(groups) + 120), title=f"{metric} per group",
                   xaxis_title="profile", yaxis_title="group")


def group_bars(df: pd.DataFrame, label: str, zero_line: bool = False) -> go.Figure:
    """Grouped bars: x = group, one bar per profile, 95% CI error bars where stored."""
    fig = go.Figure()
    for i, prof in enumerate(sorted(df["profile"].unique())):
        g = df[df["profile"] == prof]
        vals = [_nan_none(v) for v in g["value"]]
        fig.add_trace(go.Bar(
            x=list(g["group"]), y=vals, name=prof, marker_color=PALETTE[i % len(PALETTE)],
            error_y=_err(vals, [_nan_none(x) for x in g["ci_low"]], [_nan_none(x) for x in g["ci_high"]]),
            text=[("" if v is None else f"{v:+.3f}" if zero_line else f"{v:.3f}") for v in vals],
            textposition="outside", hovertemplate=f"{prof}<br>%{{x}}<br>%{{y:.4f}}<extra></extra>"))
    if zero_line:
        fig.add_hline(y=0, line={"color": "#444", "width": 1})
    return _layout(fig, barmode="group", height=380, title=label, yaxis_title=label, xaxis_title="group")


# ---- run detail ----------------------------------------------------------------------------------
def latency_histogram(lat_ms: np.ndarray) -> go.Figure:
    """Histogram of raw per-query latencies with p50 and p99 marked.

    Binned here, not in the browser: a long run stores millions of samples, and only the bin
    counts need to travel.
    """
    p50, p99 = np.percentile(lat_ms, [50, 99])
    # Bins over the bulk (up to p99.9); the few slower queries are folded into the last bin.
    hi = float(np.percentile(lat_ms, 99.9))
    lo = float(lat_ms.min())
    n_bins = int(min(80, max(10, np.sqrt(lat_ms.size) * 2)))
    counts, edges = np.histogram(np.clip(lat_ms, lo, hi), bins=n_bins, range=(lo, hi if hi > lo else lo + 1e-9))
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centres.tolist(), y=counts.tolist(), width=float(edges[1] - edges[0]),
                           marker_color=PALETTE[0], name="queries",
                           customdata=np.stack([edges[:-1], edges[1:]], axis=-1).tolist(),
                           hovertemplate="%{customdata[0]:.4g}–%{customdata[1]:.4g} ms<br>%{y} queries<extra></extra>"))
    fig.add_vline(x=p50, line={"dash": "dash", "color": "#1a5fb4"}, annotation_text=f"p50 {p50:.4g} ms")
    fig.add_vline(x=p99, line={"dash": "dot", "color": "#c01c28"}, annotation_text=f"p99 {p99:.4g} ms",
                  annotation_position="top left")
    return _layout(fig, height=360, title=f"Per-query latency, {lat_ms.size:,} queries (slowest 0.1% in the last bin)",
                   xaxis_title="latency (ms)", yaxis_title="queries", bargap=0.02)


# ---- history -------------------------------------------------------------------------------------
def history_figure(series: pd.DataFrame, alerts: pd.DataFrame, metric: str) -> go.Figure:
    """A metric over time with CI error bars; failed runs and alerts marked."""
    ok = series[(series["status"] == RunStatus.SUCCEEDED) & series["value"].notna()].copy()
    ok["t"] = ok["finished_at"].fillna(ok["created_at"])
    vals = [float(v) for v in ok["value"]]
    est = ok["method"].astype(str).str.startswith("estimate:").tolist()
    fig = go.Figure(go.Scatter(
        x=ok["t"], y=vals, mode="lines+markers", name=metric, line={"color": PALETTE[0]},
        marker={"symbol": ["circle-open" if e else "circle" for e in est], "size": 8},
        error_y=_err(vals, [_nan_none(x) for x in ok["ci_low"]], [_nan_none(x) for x in ok["ci_high"]]),
        customdata=np.stack([ok["run_id"], ok["method"].astype(str)], axis=-1),
        hovertemplate="%{x}<br>%{y:.4g}<br>%{customdata[1]}<br>run %{customdata[0]}<extra></extra>"))
    floor = min(vals) if vals else 0.0
    failed = series[series["status"] == RunStatus.FAILED]
    if not failed.empty:
        fig.add_trace(go.Scatter(x=failed["finished_at"].fillna(failed["created_at"]), y=[floor] * len(failed),
                                 mode="markers", name="failed run", marker={"symbol": "x", "size": 11,
                                                                            "color": "#c01c28"},
                                 text=failed["error"].fillna("").str.slice(0, 160),
                                 hovertemplate="failed<br>%{text}<extra></extra>"))
    if not alerts.empty:
        by_run = {r["run_id"]: r for r in series.to_dict("records")}
        mine = alerts[alerts["metric"].isna() | alerts["metric"].isin(["run", metric])]
        for kind, g in mine.groupby("kind"):
            symbol, colour = ALERT_STYLE.get(kind, ("star", "#613583"))
            xs, ys, texts = [], [], []
            for a in g.to_dict("records"):
                run = by_run.get(a["candidate_run_id"])
                if run is None:
                    continue
                xs.append(run["finished_at"] or run["created_at"])
                ys.append(_nan_none(run["value"]) if _nan_none(run["value"]) is not None else floor)
                p = "" if _nan_none(a["p_value"]) is None else f" · p = {a['p_value']:.2g}"
                z = "" if _nan_none(a["z_score"]) is None else f" · z = {a['z_score']:.1f}"
                texts.append(f"{kind} ({a['status']}){p}{z}")
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=f"alert: {kind}", text=texts,
                                         marker={"symbol": symbol, "size": 18, "color": colour,
                                                 "line": {"width": 1, "color": "#fff"}},
                                         hovertemplate="%{text}<extra></extra>"))
    return _layout(fig, height=440, title=f"{metric} over time", xaxis_title="finished",
                   yaxis_title=_axis_title(metric))
