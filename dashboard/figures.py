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
from heptathlon.dashboard.scoring import format_p, format_si

PALETTE = qualitative.Safe
# One colour per profile and per runtime on every page: fixed for the bundled profiles and the
# runtimes the harness knows, a stable hash into a wider palette for any other name.
FIXED_COLOURS = {
    "cpu-1core": "#1f77b4", "cpu-2core": "#ff7f0e", "cpu-halfcore": "#2ca02c", "cpu-1core-512m": "#9467bd",
    "cpu-1core-int8": "#8c564b", "cpu-1core-bf16": "#e377c2", "cuda-fp16": "#17becf", "cuda-tf32": "#bcbd22",
    "onnxruntime": "#1f77b4", "torch-eager": "#d62728", "torchscript": "#ff7f0e", "torch-compile": "#2ca02c",
    "command": "#7f7f7f", "default": "#7f7f7f",
}
_WIDE = qualitative.Dark24 + qualitative.Light24


def colour(name: str) -> str:
    """The colour of a profile or runtime name, the same in every figure of every page."""
    if name in FIXED_COLOURS:
        return FIXED_COLOURS[name]
    import hashlib

    return _WIDE[int(hashlib.sha1(name.encode()).hexdigest(), 16) % len(_WIDE)]
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


def log_ticks(lo: float, hi: float, unit: str = "") -> tuple[list[float], list[str]]:
    """Tick values and labels for a log axis from ``lo`` to ``hi``: 1-2-5 steps per decade, every
    label a full number (Plotly's own minor labels read ``0.1, 9, 8 … 2`` on short ranges)."""
    if not (lo > 0 and hi > lo):
        return [], []
    vals = []
    for steps in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        vals = [m * 10.0 ** e for e in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
                for m in steps if lo <= m * 10.0 ** e <= hi]
        if len(vals) >= 4:
            break
    if len(vals) < 2:
        vals = sorted({lo, hi, *vals})
    return vals, [format_si(v, unit) if unit else f"{v:g}" for v in vals]


def _estimate_label(method: Any) -> str:
    return f"estimate ({method})" if str(method).startswith("estimate:") else ""


def _layout(fig: go.Figure, **kw: Any) -> go.Figure:
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 50},
                      legend={"orientation": "h", "y": -0.2}, **kw)
    return fig


# ---- trade-offs ----------------------------------------------------------------------------------
def pareto_figure(points: list[dict[str, Any]], front: set[str], x_metric: str) -> go.Figure:
    """Accuracy (y) against a cost (x); one colour per profile, frontier points outlined and joined.

    Estimated points are hollow and labelled "≈ name (est.)"; they never enter the frontier.
    """
    fig = go.Figure()
    profiles = sorted({p["profile"] for p in points})
    for prof in profiles:
        for estimated in (False, True):
            ps = [p for p in points if p["profile"] == prof and (p["x"].estimated or p["y"].estimated) == estimated]
            if not ps:
                continue
            xs, ys = [p["x"].value for p in ps], [p["y"].value for p in ps]
            on = [p["run_id"] in front for p in ps]
            # Names on frontier points and on estimates; dominated points crowd the plot, their names are on hover.
            text = [f"≈ {p['submission']} (est.)" if estimated else p["submission"] if o else ""
                    for p, o in zip(ps, on)]
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="markers+text", name=prof + (" (estimated, hollow)" if estimated else ""),
                text=text, textposition="top center", textfont={"size": 11},
                marker={"size": [16 if o else 11 for o in on], "color": colour(prof),
                        "symbol": "circle-open" if estimated else "circle",
                        "line": {"width": [2.5 if o else (2 if estimated else 0.5) for o in on],
                                 "color": colour(prof) if estimated else "#222"}},
                error_x=_err(xs, [p["x"].ci_low for p in ps], [p["x"].ci_high for p in ps]),
                error_y=_err(ys, [p["y"].ci_low for p in ps], [p["y"].ci_high for p in ps]),
                customdata=[[p["label"], "estimated: not on the frontier" if estimated else
                             "on the frontier" if o else "dominated beyond the CIs", p["x"].method, p["y"].method]
                            for p, o in zip(ps, on)],
                hovertemplate="%{customdata[0]}<br>" + x_metric + " %{x:.4g} (%{customdata[2]})<br>"
                              "accuracy %{y:.4f} (%{customdata[3]})<br>%{customdata[1]}<extra></extra>"))
    fr = sorted((p for p in points if p["run_id"] in front), key=lambda p: p["x"].value)
    if fr:
        fig.add_trace(go.Scatter(x=[p["x"].value for p in fr], y=[p["y"].value for p in fr], mode="lines",
                                 line={"shape": "hv", "width": 2, "color": "#1a5fb4", "dash": "dot"},
                                 name="Pareto frontier (CI-aware)", hoverinfo="skip"))
    return _layout(fig, title=f"Accuracy against {x_metric}", xaxis_title=_axis_title(x_metric),
                   yaxis_title="accuracy (fraction)", height=520)


# ---- hardware comparison -------------------------------------------------------------------------
def hardware_figure(df: pd.DataFrame, panels: list[str], order: list[str],
                    profile_of: dict[str, str] | None = None) -> go.Figure:
    """One bar panel per metric, one bar per profile (``where``), 95% CI error bars.

    Bars take their profile's colour (``profile_of`` maps a ``where`` label to its profile);
    estimates are hatched, faded and labelled ≈ … (est.).
    """
    profile_of = profile_of or {}
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
            marker={"color": [colour(profile_of.get(w, w)) for w in sub.index],
                    "opacity": [0.45 if e else 1.0 for e in est],
                    "pattern": {"shape": ["/" if e else "" for e in est]}},
            error_y=_err(vals, [_nan_none(x) for x in sub["ci_low"]], [_nan_none(x) for x in sub["ci_high"]]),
            text=[("≈ " if e else "") + format_si(v, _unit(m)) + (" (est.)" if e else "") for v, e in zip(vals, est)],
            textposition="outside",
            customdata=np.stack([sub["method"].astype(str), sub["n"].astype(str)], axis=-1),
            hovertemplate="%{x}<br>%{y:.4g}<br>method %{customdata[0]} · n %{customdata[1]}<extra></extra>"),
            row=1, col=j)
    return _layout(fig, height=430, title="Side by side (hatched bars are estimates)")


# ---- framework tax --------------------------------------------------------------------------------
def _from_the_start(ci_high: Any, sizes: list[int]) -> str:
    """A knee whose whole CI lies below the second batch size measured says "no flat region": the
    latency grows from the first batch (one CPU core running BERT); the legend says so in words."""
    hi = _nan_none(ci_high)
    return (f"compute-bound from b = {sizes[0]}: " if len(sizes) >= 2 and hi is not None and hi < sizes[1]
            else "")


def sweep_figure(lat: pd.DataFrame, knees: list[dict[str, Any]], metric: str) -> go.Figure:
    """Latency against batch size per runtime (log-2 axes), knee b* marked per runtime.

    A knee's CI band is clipped to the batch sizes measured and drawn only when it says
    something: a CI that covers every batch size is stated in the legend instead.
    """
    fig = go.Figure()
    runtimes = sorted(lat["runtime"].unique())
    for rt in runtimes:
        g = lat[lat["runtime"] == rt].sort_values("batch_size")
        vals = [_nan_none(v) for v in g["value"]]
        est = [str(mt).startswith("estimate:") for mt in g["method"]]
        fig.add_trace(go.Scatter(
            x=g["batch_size"], y=vals, mode="lines+markers", name=rt + (" (≈ estimated, hollow)" if any(est) else ""),
            line={"color": colour(rt)},
            marker={"symbol": ["circle-open" if e else "circle" for e in est], "size": 8},
            error_y=_err(vals, [_nan_none(x) for x in g["ci_low"]], [_nan_none(x) for x in g["ci_high"]]),
            hovertemplate=f"{rt}<br>batch %{{x}}<br>%{{y:.4g}} {_unit(metric)}<extra></extra>"))
    # Knees as traces, not layout shapes: shapes on a log axis take log10 coordinates, traces data ones.
    y = [v for v in lat["value"] if _nan_none(v) is not None and v > 0]
    lo_y, hi_y = (min(y) * 0.8, max(y) * 1.25) if y else (0.1, 10.0)
    batches = sorted(int(b) for b in lat["batch_size"].unique()) or [1]
    b_lo, b_hi = batches[0], batches[-1]
    for k in knees:
        c = colour(k["runtime"])
        label = (_from_the_start(k.get("ci_high"), batches)
                 + f"b* = {k['knee']:.0f} ({k['runtime']}{', fitted here' if k.get('fitted') else ''})")
        lo, hi = _nan_none(k.get("ci_low")), _nan_none(k.get("ci_high"))
        if lo is not None and hi is not None:
            lo, hi = max(lo, b_lo), min(hi, b_hi)
            if lo <= b_lo and hi >= b_hi:
                label += ", CI spans every batch size"
            elif hi > lo:
                fig.add_trace(go.Scatter(x=[lo, hi, hi, lo, lo], y=[lo_y, lo_y, hi_y, hi_y, lo_y], fill="toself",
                                         fillcolor=c, opacity=0.12, line={"width": 0}, mode="lines",
                                         hoverinfo="skip", showlegend=False, legendgroup=k["runtime"]))
        fig.add_trace(go.Scatter(x=[k["knee"], k["knee"]], y=[lo_y, hi_y], mode="lines", name=label,
                                 line={"color": c, "dash": "dash", "width": 2}, legendgroup=k["runtime"],
                                 hovertemplate=label + "<extra></extra>"))
    yt, ytext = log_ticks(lo_y, hi_y, _unit(metric))
    fig.update_xaxes(type="log", tickvals=batches, ticktext=[str(b) for b in batches], title="batch size",
                     range=[np.log10(b_lo) - 0.1, np.log10(b_hi) + 0.1])
    fig.update_yaxes(type="log", title=_axis_title(metric), range=[np.log10(lo_y), np.log10(hi_y)],
                     tickvals=yt, ticktext=ytext)
    return _layout(fig, height=480, title=f"{metric} against batch size (dashed: knee b*, band: its 95% CI)")


def tax_figure(tax: pd.DataFrame) -> go.Figure:
    """FT(b) per batch size, one bar group per runtime, 95% CI error bars."""
    fig = go.Figure()
    for rt in sorted(tax["runtime"].unique()):
        g = tax[tax["runtime"] == rt].sort_values("batch_size")
        vals = [_nan_none(v) for v in g["value"]]
        est = [str(mt).startswith("estimate:") for mt in g["method"]]
        fig.add_trace(go.Bar(
            x=[str(b) for b in g["batch_size"]], y=vals, name=rt + (" (≈ estimated, hatched)" if any(est) else ""),
            marker={"color": colour(rt), "opacity": [0.45 if e else 1.0 for e in est],
                    "pattern": {"shape": ["/" if e else "" for e in est]}},
            text=["≈ est." if e else "" for e in est], textposition="outside",
            error_y=_err(vals, [_nan_none(x) for x in g["ci_low"]], [_nan_none(x) for x in g["ci_high"]]),
            customdata=g["method"].astype(str), hovertemplate=f"{rt}<br>batch %{{x}}<br>FT %{{y:.1%}}"
                                                             "<br>%{customdata}<extra></extra>"))
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05], title="framework tax (share of wall time)")
    fig.update_xaxes(type="category", title="batch size")
    return _layout(fig, barmode="group", height=400, title="Framework tax FT(b) (hatched bars are estimates)")


NOT_MEASURED = "not measured"


def _fmt_ci(lo: Any, hi: Any, fmt: str = ".3f") -> str:
    lo, hi = _nan_none(lo), _nan_none(hi)
    return "no CI" if lo is None or hi is None else f"[{lo:{fmt}}, {hi:{fmt}}]"


def _cells_of(cells: pd.DataFrame, runtime: str) -> tuple[pd.DataFrame, list[int], list[int]]:
    c = cells[cells["runtime"] == runtime]
    return c, sorted(int(b) for b in c["batch_size"].unique()), sorted(int(x) for x in c["sequence_length"].unique())


def _length_colours(lengths: list[int]) -> dict[int, str]:
    from plotly.colors import sample_colorscale

    pos = [0.5] if len(lengths) < 2 else [0.1 + 0.75 * i / (len(lengths) - 1) for i in range(len(lengths))]
    return dict(zip(lengths, sample_colorscale("Viridis", pos)))


FT_SCALE_CEILINGS = (0.05, 0.1, 0.2, 0.5, 1.0)


def ft_heatmap(cells: pd.DataFrame, runtime: str) -> go.Figure:
    """FT(b, s) of one runtime: x = batch size, y = sequence length, colour and text = FT.

    ``cells`` are heptathlon.db.dashboard_queries.ft_cells rows. A cell without an FT value (the
    runtime was not derived, the sweep stopped before it, the profiler could not decompose the
    call) is left blank (NaN, never 0) and labelled "not measured", its reason on hover.
    """
    c, sizes, lengths = _cells_of(cells, runtime)
    xs, ys = [str(b) for b in sizes], [str(x) for x in lengths]
    z = np.full((len(lengths), len(sizes)), np.nan)
    text = [["" for _ in sizes] for _ in lengths]
    hover = [["" for _ in sizes] for _ in lengths]
    gaps: list[tuple[str, str, str]] = []
    for r in c.to_dict("records"):
        i, j = lengths.index(int(r["sequence_length"])), sizes.index(int(r["batch_size"]))
        head = f"{runtime} · sequence length {r['sequence_length']} · batch {r['batch_size']}"
        v = _nan_none(r["ft"]) if r["available"] else None
        if v is None:
            why = r.get("reason") or "no value stored"
            hover[i][j] = f"{head}<br>FT {NOT_MEASURED}: {why}"
            gaps.append((xs[j], ys[i], hover[i][j]))
            continue
        z[i, j] = v
        text[i][j] = f"{v:.2f}" + (" ≈" if r.get("estimated") else "")
        lb = _nan_none(r.get("ft_lower_bound"))
        lat = _nan_none(r.get("latency_p50_ms"))
        rel = _nan_none(r.get("relative_to_best"))
        hover[i][j] = (f"{head}<br>FT {v:.3f}, 95% CI {_fmt_ci(r['ft_ci_low'], r['ft_ci_high'])}"
                       f"<br>n = {r['ft_n']} · {r['ft_method']}"
                       + (f"<br>lower bound {lb:.3f} (profiler cost outside the operators)" if lb is not None else "")
                       + (f"<br>latency p50 {lat:.4g} ms {_fmt_ci(r['lat_ci_low'], r['lat_ci_high'], '.4g')}"
                          if lat is not None else "")
                       + (f" · ×{rel:.2f} the best runtime" if rel is not None else ""))
    # Lists with None, not a NaN array: the blanks stay null in the figure's JSON (a typed array would
    # carry NaN, which some readers turn into 0).
    zl = [[None if np.isnan(v) else float(v) for v in row] for row in z]
    # The colour scale runs from 0 to the first of 5%, 10%, 20%, 50%, 100% above the largest FT: a
    # BERT-base on CPU has FT of 1-12%, which a fixed 0-100% scale paints one colour.
    top = float(np.nanmax(z)) if np.isfinite(z).any() else 1.0
    zmax = next(c for c in FT_SCALE_CEILINGS if c >= top)
    fig = go.Figure(go.Heatmap(z=zl, x=xs, y=ys, text=text, texttemplate="%{text}", hovertext=hover,
                               hoverinfo="text", hoverongaps=False, colorscale="YlOrRd", zmin=0.0, zmax=zmax,
                               xgap=2, ygap=2, colorbar={"title": "FT", "tickformat": ".0%"}, name="framework_tax"))
    if gaps:  # blank cells: a label and the reason, on a trace of their own (no value, no colour)
        fig.add_trace(go.Scatter(x=[g[0] for g in gaps], y=[g[1] for g in gaps], mode="markers+text",
                                 text=[NOT_MEASURED] * len(gaps), textfont={"color": "#555", "size": 11},
                                 marker={"symbol": "square-open", "size": 1, "color": "rgba(0,0,0,0)"},
                                 hovertext=[g[2] for g in gaps], hoverinfo="text", name=NOT_MEASURED,
                                 showlegend=False))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=xs, title="batch size")
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=ys, title="sequence length (tokens)")
    return _layout(fig, height=max(300, 70 * len(lengths) + 160),
                   title=f"Framework tax FT(b, s) of {runtime} (blank: not measured, reason on hover)")


def ft_curves_by_length(cells: pd.DataFrame, runtime: str, *, y: str = "ft") -> go.Figure:
    """FT(b) (``y="ft"``) or latency p50 (``y="latency"``) against batch size, one curve per
    sequence length, 95% CI error bars, the knee b* of each length dashed.

    Points without a value are gaps in the curve (never 0); the batch sizes missing are named in
    the curve's legend entry and the reasons on its hover.
    """
    c, sizes, lengths = _cells_of(cells, runtime)
    col, lo_col, hi_col = ("ft", "ft_ci_low", "ft_ci_high") if y == "ft" else (
        "latency_p50_ms", "lat_ci_low", "lat_ci_high")
    cols = _length_colours(lengths)
    fig = go.Figure()
    all_y: list[float] = []
    for length in lengths:
        g = c[c["sequence_length"] == length].sort_values("batch_size")
        vals = [(_nan_none(v) if ok or y != "ft" else None) for v, ok in zip(g[col], g["available"])]
        missing = [(int(b), r) for b, v, r in zip(g["batch_size"], vals, g["reason"]) if v is None]
        all_y += [v for v in vals if v is not None]
        name = f"s = {length}" + (f" ({NOT_MEASURED} at b = {', '.join(str(b) for b, _ in missing)})"
                                   if missing else "")
        hover = []
        for r, v in zip(g.to_dict("records"), vals):
            if v is None:
                hover.append(f"s = {length}, batch {r['batch_size']}: {NOT_MEASURED}: {r['reason'] or 'no value'}")
            elif y == "ft":
                hover.append(f"s = {length}, batch {r['batch_size']}<br>FT {v:.3f} "
                             f"{_fmt_ci(r['ft_ci_low'], r['ft_ci_high'])}<br>n = {r['ft_n']} · {r['ft_method']}")
            else:
                rel = _nan_none(r.get("relative_to_best"))
                hover.append(f"s = {length}, batch {r['batch_size']}<br>p50 {v:.4g} ms "
                             f"{_fmt_ci(r['lat_ci_low'], r['lat_ci_high'], '.4g')}<br>n = {r['lat_n']}"
                             + (f" · ×{rel:.2f} the best runtime" if rel is not None else ""))
        fig.add_trace(go.Scatter(
            x=list(g["batch_size"]), y=vals, mode="lines+markers", name=name, connectgaps=False,
            line={"color": cols[length]}, marker={"size": 8, "color": cols[length]}, legendgroup=str(length),
            error_y=_err(vals, [_nan_none(x) for x in g[lo_col]], [_nan_none(x) for x in g[hi_col]]),
            hovertext=hover, hoverinfo="text"))
    if y == "ft":
        lo_y, hi_y = 0.0, 1.0
    else:
        pos = [v for v in all_y if v > 0]
        lo_y, hi_y = (min(pos) * 0.8, max(pos) * 1.25) if pos else (0.1, 10.0)
    b_lo, b_hi = (sizes[0], sizes[-1]) if sizes else (1, 1)
    for length in lengths:
        g = c[c["sequence_length"] == length]
        if g.empty:
            continue
        k = g.iloc[0]
        kv = _nan_none(k["knee"])
        if kv is None:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", legendgroup=str(length),
                                     line={"color": cols[length], "dash": "dot"},
                                     name=f"b* (s = {length}): {NOT_MEASURED}: {k['knee_note'] or 'no knee'}"))
            continue
        label = (_from_the_start(k["knee_ci_high"], sizes)
                 + f"b* = {kv:.1f} (s = {length}), 95% CI {_fmt_ci(k['knee_ci_low'], k['knee_ci_high'], '.1f')}")
        fig.add_trace(go.Scatter(x=[kv, kv], y=[lo_y, hi_y], mode="lines", name=label, legendgroup=str(length),
                                 line={"color": cols[length], "dash": "dash", "width": 2},
                                 hovertemplate=label + "<extra></extra>"))
    ticks = sizes or [1]
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=[str(b) for b in ticks], title="batch size",
                     range=[np.log10(b_lo) - 0.1, np.log10(b_hi) + 0.1])
    if y == "ft":
        fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title="framework tax (share of wall time)")
        title = f"FT(b) of {runtime} per sequence length (dashed: knee b* of the latency curve)"
    else:
        yt, ytext = log_ticks(lo_y, hi_y, "ms")
        fig.update_yaxes(type="log", title="latency_p50_ms (ms)", range=[np.log10(lo_y), np.log10(hi_y)],
                         tickvals=yt, ticktext=ytext)
        title = f"Latency p50 of {runtime} against batch size per sequence length (dashed: knee b*)"
    return _layout(fig, height=460, title=title)


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
    zmin, zmax = heatmap_range(metric, z)
    fig = go.Figure(go.Heatmap(z=z, x=profiles, y=groups, text=text, texttemplate="%{text}", hovertext=hover,
                               hoverinfo="text", colorscale="RdYlGn_r" if reverse else "RdYlGn",
                               zmin=zmin, zmax=zmax, colorbar={"title": metric}))
    return _layout(fig, height=max(260, 70 * len(groups) + 120), title=f"{metric} per group",
                   xaxis_title="profile", yaxis_title="group")


def heatmap_range(metric: str, z: np.ndarray) -> tuple[float, float]:
    """A fixed colour scale: [0, 1] for fractions (accuracy, rates), [0, max] otherwise, so that
    0.418 against 0.428 is two shades of one colour, not red against green."""
    unit = _unit(metric)
    if unit == "fraction" or metric in ("accuracy", "flip_rate", "fairness_gap") or metric.endswith("_rate"):
        return 0.0, 1.0
    finite = z[np.isfinite(z)] if z.size else z
    top = float(finite.max()) if finite.size else 1.0
    bottom = min(0.0, float(finite.min())) if finite.size else 0.0
    return bottom, top if top > bottom else bottom + 1.0


def group_bars(df: pd.DataFrame, label: str, zero_line: bool = False) -> go.Figure:
    """Grouped bars: x = group, one bar per profile, 95% CI error bars where stored."""
    fig = go.Figure()
    for prof in sorted(df["profile"].unique()):
        g = df[df["profile"] == prof]
        vals = [_nan_none(v) for v in g["value"]]
        fig.add_trace(go.Bar(
            x=list(g["group"]), y=vals, name=prof, marker_color=colour(prof),
            error_y=_err(vals, [_nan_none(x) for x in g["ci_low"]], [_nan_none(x) for x in g["ci_high"]]),
            text=[("" if v is None else f"{v:+.3f}" if zero_line else f"{v:.3f}") for v in vals],
            textposition="outside", hovertemplate=f"{prof}<br>%{{x}}<br>%{{y:.4f}}<extra></extra>"))
    if zero_line:
        fig.add_hline(y=0, line={"color": "#444", "width": 1})
    return _layout(fig, barmode="group", height=380, title=label, yaxis_title=label, xaxis_title="group")


# ---- run detail ----------------------------------------------------------------------------------
def latency_histogram(lat_ms: np.ndarray) -> go.Figure:
    """The latency distribution of one run: log-binned histogram and CDF (see latency_figure)."""
    return latency_figure({"queries": lat_ms})


def _cdf_points(x: np.ndarray, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    q = np.linspace(0.0, 1.0, min(n, x.size))
    return np.quantile(x, q), q


def latency_figure(runs: dict[str, np.ndarray], colours: dict[str, str] | None = None) -> go.Figure:
    """Per-query latency distributions, one or several runs overlaid.

    Left: a histogram over log-spaced bins (drawn on log10 coordinates with labels in the
    latency's unit), so one 200 ms outlier takes its own bar instead of squeezing the bulk into
    one. Right: the empirical CDF on a log axis. Binned here, not in the browser: a long run
    stores millions of samples and only the counts need to travel. With one run the bars are
    query counts; with several they are shares of each run's queries, so runs of different
    lengths overlay. p50 and p99 are legend entries (no labels on the plot to collide).
    """
    colours = colours or {}
    runs = {k: np.asarray(v, dtype=np.float64) for k, v in runs.items() if v is not None and np.size(v)}
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.09,
                        subplot_titles=["histogram (log-spaced bins)", "cumulative share of queries"])
    if not runs:
        return _layout(fig, height=380, title="Per-query latency: not measured")
    allv = np.concatenate(list(runs.values()))
    pos = allv[allv > 0]
    lo = float(pos.min()) if pos.size else 1e-6
    hi = float(allv.max()) if allv.size else lo * 10
    hi = hi if hi > lo else lo * 1.01
    n_bins = int(min(80, max(10, np.sqrt(allv.size) * 2)))
    edges = np.geomspace(lo, hi, n_bins + 1)
    le = np.log10(edges)
    single = len(runs) == 1
    for i, (name, x) in enumerate(runs.items()):
        c = colours.get(name) or (PALETTE[0] if single else _WIDE[i % len(_WIDE)])
        counts, _ = np.histogram(np.clip(x, lo, hi), bins=edges)
        y = counts if single else counts / max(1, x.size)
        fig.add_trace(go.Bar(x=((le[:-1] + le[1:]) / 2).tolist(), y=y.tolist(), width=(le[1:] - le[:-1]).tolist(),
                             marker_color=c, opacity=1.0 if single else 0.55, name=name, legendgroup=name,
                             customdata=np.stack([edges[:-1], edges[1:]], axis=-1).tolist(),
                             hovertemplate=name + "<br>%{customdata[0]:.4g}–%{customdata[1]:.4g} ms<br>%{y}"
                                           "<extra></extra>"), row=1, col=1)
        cx, cy = _cdf_points(x)
        fig.add_trace(go.Scatter(x=cx.tolist(), y=cy.tolist(), mode="lines", line={"color": c}, name=name,
                                 legendgroup=name, showlegend=False,
                                 hovertemplate=name + "<br>%{x:.4g} ms<br>%{y:.1%} of queries<extra></extra>"),
                      row=1, col=2)
        p50, p99 = np.percentile(x, [50, 99])
        top = float(y.max()) if y.size else 1.0
        for q, v, dash in (("p50", p50, "dash"), ("p99", p99, "dot")):
            label = f"{'' if single else name + ' '}{q} {format_si(v, 'ms')}"
            fig.add_trace(go.Scatter(x=[np.log10(max(v, lo))] * 2, y=[0, top], mode="lines", name=label,
                                     line={"color": "#1a5fb4" if single and q == "p50" else
                                           "#c01c28" if single else c, "dash": dash, "width": 1.5},
                                     legendgroup=name, hovertemplate=label + "<extra></extra>"), row=1, col=1)
    tv, tt = log_ticks(lo, hi, "ms")
    fig.update_xaxes(tickvals=np.log10(tv).tolist(), ticktext=tt, title="latency", row=1, col=1)
    fig.update_xaxes(type="log", tickvals=tv, ticktext=tt, title="latency", row=1, col=2)
    fig.update_yaxes(title="queries" if single else "share of queries", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=2)
    total = sum(x.size for x in runs.values())
    return _layout(fig, height=400, bargap=0.02, barmode="overlay",
                   title=(f"Per-query latency, {total:,} queries" if single else
                          f"Per-query latency of {len(runs)} runs overlaid"))


# ---- history -------------------------------------------------------------------------------------
def history_figure(series: pd.DataFrame, alerts: pd.DataFrame, metric: str) -> go.Figure:
    """A metric over time with CI error bars; failed runs and alerts marked."""
    series = series.assign(t=_night(series))
    ok = series[(series["status"] == RunStatus.SUCCEEDED) & series["value"].notna()].copy()
    vals = [float(v) for v in ok["value"]]
    est = ok["method"].astype(str).str.startswith("estimate:").tolist()
    fig = go.Figure(go.Scatter(
        x=ok["t"], y=vals, mode="lines+markers+text", name=metric, line={"color": PALETTE[0]},
        text=["≈ est." if e else "" for e in est], textposition="top center",
        marker={"symbol": ["circle-open" if e else "circle" for e in est], "size": 8},
        error_y=_err(vals, [_nan_none(x) for x in ok["ci_low"]], [_nan_none(x) for x in ok["ci_high"]]),
        customdata=np.stack([ok["run_id"], ok["method"].astype(str)], axis=-1),
        hovertemplate="%{x}<br>%{y:.4g}<br>%{customdata[1]}<br>run %{customdata[0]}<extra></extra>"))
    floor = min(vals) if vals else 0.0
    failed = series[series["status"] == RunStatus.FAILED]
    if not failed.empty:
        fig.add_trace(go.Scatter(x=failed["t"], y=[floor] * len(failed),
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
                xs.append(run["t"])
                ys.append(_nan_none(run["value"]) if _nan_none(run["value"]) is not None else floor)
                p = "" if _nan_none(a["p_value"]) is None else f" · {format_p(a['p_value'])}"
                z = "" if _nan_none(a["z_score"]) is None else f" · z = {a['z_score']:.1f}"
                texts.append(f"{kind} ({a['status']}){p}{z}")
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=f"alert: {kind}", text=texts,
                                         marker={"symbol": symbol, "size": 18, "color": colour,
                                                 "line": {"width": 1, "color": "#fff"}},
                                         hovertemplate="%{text}<extra></extra>"))
    fig.update_xaxes(type="date", tickformat="%Y-%m-%d", dtick=86_400_000 if ok["t"].nunique() <= 31 else None)
    return _layout(fig, height=440, title=f"{metric} night by night", xaxis_title="night",
                   yaxis_title=_axis_title(metric))


def _night(series: pd.DataFrame) -> pd.Series:
    """The night each run belongs to: the nightly marker's date where the run has one, else the
    UTC date it was created (a run that finished after midnight still belongs to its night)."""
    created = pd.to_datetime(series["created_at"], utc=True).dt.tz_localize(None).dt.normalize()
    if "night" not in series.columns:
        return created
    night = pd.to_datetime(series["night"], errors="coerce")
    return night.fillna(created)


# ---- generation (the generate scenario) ----------------------------------------------------------
def _quantile_marks(x: np.ndarray, stored: dict[str, float | None] | None) -> dict[str, float]:
    """p50 and p99 of ``x``: the stored headline values where given, else computed from the samples."""
    stored = stored or {}
    out = {}
    for q, pct in (("p50", 50), ("p99", 99)):
        v = _nan_none(stored.get(q)) if stored.get(q) is not None else None
        out[q] = v if v is not None else float(np.percentile(x, pct))
    return out


def token_latency_figure(ttft_ms: np.ndarray | None, itl_ms: np.ndarray | None,
                         marks: dict[str, dict[str, float | None]] | None = None) -> go.Figure:
    """TTFT (per request) and ITL (every inter-token gap) distributions side by side.

    Each panel is a histogram with the empirical CDF on a second axis; p50 and p99 are dashed and
    dotted vertical lines, named in the legend ("TTFT p50 25.9 ms"). ``marks`` (``{"ttft": {"p50":
    v, "p99": v}, "itl": {...}}``) are the run's stored headline values; missing ones are computed
    from the samples. A panel without samples says "not measured".
    """
    marks = marks or {}
    panels = [("TTFT", "ttft", ttft_ms, "requests"), ("ITL", "itl", itl_ms, "inter-token gaps")]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, specs=[[{"secondary_y": True}] * 2],
                        subplot_titles=[f"{name} ({what}{', n = ' + format(np.size(x), ',') if x is not None else ''})"
                                        for name, _, x, what in panels])
    for j, (name, key, x, what) in enumerate(panels, start=1):
        if x is None or np.size(x) == 0:
            fig.add_annotation(text="not measured", showarrow=False, font={"size": 15, "color": "#888"},
                               xref="paper", yref="paper", x=0.22 if j == 1 else 0.78, y=0.5)
            continue
        x = np.asarray(x, dtype=np.float64)
        c = PALETTE[j - 1]
        fig.add_trace(go.Histogram(x=x.tolist(), nbinsx=int(min(60, max(8, np.sqrt(x.size) * 2))), marker_color=c,
                                   opacity=0.75, name=f"{name} histogram", legendgroup=key,
                                   hovertemplate=f"{name} %{{x}} ms<br>%{{y}} {what}<extra></extra>"),
                      row=1, col=j, secondary_y=False)
        cx, cy = _cdf_points(x)
        fig.add_trace(go.Scatter(x=cx.tolist(), y=cy.tolist(), mode="lines", line={"color": "#444", "width": 1.5},
                                 name=f"{name} ECDF", legendgroup=key,
                                 hovertemplate=f"{name} %{{x:.4g}} ms<br>%{{y:.1%}} of {what}<extra></extra>"),
                      row=1, col=j, secondary_y=True)
        for q, v in _quantile_marks(x, marks.get(key)).items():
            label = f"{name} {q} {format_si(v, 'ms')}"
            fig.add_trace(go.Scatter(x=[v, v], y=[0, 1], mode="lines", name=label, legendgroup=key,
                                     line={"color": "#1a5fb4" if q == "p50" else "#c01c28",
                                           "dash": "dash" if q == "p50" else "dot", "width": 2},
                                     hovertemplate=label + "<extra></extra>"),
                          row=1, col=j, secondary_y=True)
        fig.update_xaxes(title=f"{name} (ms)", row=1, col=j)
        fig.update_yaxes(title=what, row=1, col=j, secondary_y=False)
        fig.update_yaxes(range=[0, 1.02], tickformat=".0%", showgrid=False, row=1, col=j, secondary_y=True)
    return _layout(fig, height=420, bargap=0.03, title="Time to first token and inter-token latency "
                                                       "(dashed: p50, dotted: p99; line: cumulative share)")


def _col(df: pd.DataFrame, name: str) -> list[float | None]:
    return [_nan_none(v) for v in df[name]] if name in df.columns else [None] * len(df)


def token_pareto_figure(points: pd.DataFrame) -> go.Figure:
    """Output tokens/s per request (per user, y) against aggregate output tokens/s (x) over the sweep
    points, as vLLM's sweep plots draw them; each point labelled by its mode or rate, 95% CI error bars,
    and the points that no other point beats on both axes joined (higher is better on both)."""
    from heptathlon.dashboard.scoring import pareto_front

    fig = go.Figure()
    xm, ym = "output_tokens_per_s", "output_tokens_per_s_per_request"
    ok = points[[(_nan_none(a) is not None and _nan_none(b) is not None)
                 for a, b in zip(points.get(xm, []), points.get(ym, []))]] if not points.empty else points
    if ok.empty:
        fig.add_annotation(text="no sweep points: not measured", showarrow=False, font={"size": 15, "color": "#888"},
                           xref="paper", yref="paper", x=0.5, y=0.5)
        return _layout(fig, height=440, title="Per-user against aggregate output tokens/s: no sweep")
    xs, ys = _col(ok, xm), _col(ok, ym)
    labels = [str(lab) for lab in ok["label"]]
    front = pareto_front([(str(p), x, y) for p, x, y in zip(ok["point"], xs, ys)], x_lower_is_better=False,
                         y_lower_is_better=False)
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers+text", text=labels, textposition="top center", name="sweep point",
        marker={"size": 12, "color": [colour(str(m)) if str(m) in FIXED_COLOURS else PALETTE[i % len(PALETTE)]
                                      for i, m in enumerate(ok["mode"])], "line": {"width": 1, "color": "#222"}},
        error_x=_err(xs, _col(ok, f"{xm}_ci_low"), _col(ok, f"{xm}_ci_high")),
        error_y=_err(ys, _col(ok, f"{ym}_ci_low"), _col(ok, f"{ym}_ci_high")),
        customdata=[[lab, "on the frontier" if str(p) in front else "dominated"]
                    for lab, p in zip(labels, ok["point"])],
        hovertemplate="%{customdata[0]}<br>aggregate %{x:.4g} tokens/s<br>per request %{y:.4g} tokens/s"
                      "<br>%{customdata[1]}<extra></extra>"))
    fr = sorted(((x, y) for p, x, y in zip(ok["point"], xs, ys) if str(p) in front))
    if len(fr) > 1:
        fig.add_trace(go.Scatter(x=[x for x, _ in fr], y=[y for _, y in fr], mode="lines", name="Pareto frontier",
                                 line={"color": "#1a5fb4", "dash": "dot", "width": 2}, hoverinfo="skip"))
    return _layout(fig, height=460, title="Per-user against aggregate output tokens/s over the sweep",
                   xaxis_title="aggregate output tokens/s (1/s)", yaxis_title="output tokens/s per request (1/s)")


def rate_sweep_figure(points: pd.DataFrame, slo: dict[str, Any] | None = None,
                      max_rate: dict[str, Any] | None = None) -> go.Figure:
    """p99 TTFT (top) and p99 TPOT (bottom) against the achieved request rate, over the sweep points
    and the SLO search's probes.

    TPOT p99 comes from the sweep record where stored; a point without it shows its p99 ITL instead
    (named so in the legend). With SLOs: horizontal SLO lines, the probes coloured met/not met, and
    max_rate_within_slo as a vertical line; an SLO met at no rate is said in the title and on the plot.
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=["p99 time to first token", "p99 time per output token"])
    has = False
    if not points.empty:
        pts = points.sort_values("achieved_rate", kind="stable")
        x = _col(pts, "achieved_rate")
        labels = [str(lab) for lab in pts["label"]]
        ttft = _col(pts, "ttft_p99_ms")
        fig.add_trace(go.Scatter(x=x, y=ttft, mode="lines+markers+text", text=labels, textposition="top center",
                                 name="sweep: p99 TTFT", line={"color": PALETTE[0]},
                                 error_y=_err(ttft, _col(pts, "ttft_p99_ms_ci_low"), _col(pts, "ttft_p99_ms_ci_high")),
                                 hovertemplate="%{text}<br>%{x:.3g} req/s<br>p99 TTFT %{y:.4g} ms<extra></extra>"),
                      row=1, col=1)
        tpot = _col(pts, "tpot_p99_ms")
        if any(v is not None for v in tpot):
            fig.add_trace(go.Scatter(x=x, y=tpot, mode="lines+markers", text=labels, name="sweep: p99 TPOT",
                                     line={"color": PALETTE[1]},
                                     hovertemplate="%{text}<br>%{x:.3g} req/s<br>p99 TPOT %{y:.4g} ms<extra></extra>"),
                          row=2, col=1)
        else:
            itl = _col(pts, "itl_p99_ms")
            fig.add_trace(go.Scatter(x=x, y=itl, mode="lines+markers", text=labels,
                                     name="sweep: p99 ITL (no p99 TPOT stored)", line={"color": PALETTE[1]},
                                     error_y=_err(itl, _col(pts, "itl_p99_ms_ci_low"), _col(pts, "itl_p99_ms_ci_high")),
                                     hovertemplate="%{text}<br>%{x:.3g} req/s<br>p99 ITL %{y:.4g} ms<extra></extra>"),
                          row=2, col=1)
        has = True
    probes = [p for p in ((slo or {}).get("probes") or [])
              if isinstance(p, dict) and p.get("achieved_rate") is not None]
    for met in (True, False):
        ps = [p for p in probes if bool(p.get("met")) == met]
        if not ps:
            continue
        style = {"symbol": "circle" if met else "x", "size": 11, "color": "#26a269" if met else "#c01c28"}
        text = [f"probe {point_label_of(p)}: SLO {'met' if met else 'not met'}" for p in ps]
        for row, key, what in ((1, "ttft_p99_ms", "TTFT"), (2, "tpot_p99_ms", "TPOT")):
            fig.add_trace(go.Scatter(x=[p["achieved_rate"] for p in ps], y=[p.get(key) for p in ps], mode="markers",
                                     marker=style, text=text, name=f"SLO probe, {'met' if met else 'not met'}",
                                     legendgroup=f"probe-{met}", showlegend=row == 1,
                                     hovertemplate="%{text}<br>%{x:.3g} req/s<br>p99 " + what
                                                   + " %{y:.4g} ms<extra></extra>"), row=row, col=1)
        has = True
    title = "p99 latency against achieved request rate"
    if slo:
        for row, key, what in ((1, "ttft_ms", "TTFT"), (2, "tpot_ms", "TPOT")):
            if slo.get(key) is not None:
                fig.add_hline(y=float(slo[key]), line={"color": "#e66100", "dash": "dash", "width": 2}, row=row, col=1,
                              annotation_text=f"SLO p99 {what} ≤ {float(slo[key]):g} ms",
                              annotation_position="top left")
        rate = _nan_none((max_rate or {}).get("value")) if max_rate else None
        rate = rate if rate is not None else (_nan_none(slo.get("max_rate")) if slo.get("met") else None)
        if slo.get("met") is False or rate is None:
            title += " · SLO not met at any rate"
            fig.add_annotation(text="SLO not met at any rate", showarrow=False, xref="paper", yref="paper",
                               x=0.5, y=1.08, font={"size": 14, "color": "#c01c28"})
        else:
            title += f" · max rate within SLO {rate:.3g} req/s"
            for row in (1, 2):
                fig.add_vline(x=rate, line={"color": "#26a269", "dash": "dot", "width": 2}, row=row, col=1)
            fig.add_trace(go.Scatter(x=[rate, rate], y=[None, None], mode="lines", showlegend=True,
                                     line={"color": "#26a269", "dash": "dot", "width": 2},
                                     name=f"max_rate_within_slo {rate:.3g} req/s (offered Poisson rate)"),
                          row=1, col=1)
    if not has:
        fig.add_annotation(text="no sweep points or SLO probes: not measured", showarrow=False,
                           font={"size": 15, "color": "#888"}, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_xaxes(title="achieved request rate (requests/s)", row=2, col=1)
    fig.update_yaxes(title="ms", row=1, col=1)
    fig.update_yaxes(title="ms", row=2, col=1)
    return _layout(fig, height=620, title=title)


def point_label_of(p: dict[str, Any]) -> str:
    from heptathlon.dashboard.generative import point_label

    return point_label(p.get("mode"), p.get("rate"), p.get("concurrency"))
