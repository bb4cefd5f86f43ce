"""What every page shares: the database URL, the empty state, filters and table helpers.

Pages read the database only through the cached ``load_*`` functions of db/dashboard_queries.py.
"""

from __future__ import annotations

import html
import json
from typing import Any

import pandas as pd
import streamlit as st

import heptathlon.bench.framework_tax  # noqa: F401  registers batch_knee and fixed_overhead_ms in METRICS
from heptathlon.bench.metrics import METRICS
from heptathlon.dashboard.scoring import Value, format_si
from heptathlon.db import dashboard_queries as DQ
from heptathlon.db.session import default_url

NOT_MEASURED = "not measured"
NOT_MEASURED_YET = "not measured yet"

FIRST_STEPS = """
**No results yet.** This database holds no runs. To put a first model on the board:

```bash
make install                                   # or: python -m venv .venv && .venv/bin/pip install -e '.[dev]'
.venv/bin/heptathlon demo                      # builds the bundled example models and benchmarks them all
# or one model on one profile:
.venv/bin/heptathlon run submissions/arrests-mlp-onnx --profile cpu-1core --scenario single_stream
.venv/bin/heptathlon dashboard --db {url}
```

A submission is a folder with a `submission.yaml` (name, version, task, model kind and path); the
examples in `submissions/` show every kind (ONNX, TorchScript, PyTorch, stdio command). Runs appear
here as soon as they finish; use **Reload data** in the sidebar to skip the cache.
"""


def db_url() -> str:
    """The database the dashboard reads: HEPTATHLON_DB (set by `heptathlon dashboard --db`) or the default."""
    return default_url()


def show_empty_state(url: str) -> None:
    st.info("The database is empty: nothing has been benchmarked yet.", icon="ℹ️")
    st.markdown(FIRST_STEPS.format(url=url))


def sidebar(url: str, overview: dict[str, Any]) -> None:
    with st.sidebar:
        st.caption(f"Database: `{safe_url(url)}`")
        by = overview["by_status"]
        st.caption(" · ".join(f"{n} {k}" for k, n in sorted(by.items())) or "no runs")
        if st.button("Reload data", help="Clear the query cache (entries otherwise refresh every "
                                         f"{DQ.TTL_S} s)."):
            st.cache_data.clear()
            st.rerun()


def safe_url(url: str) -> str:
    """The URL with any password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  an unparsable URL is shown as is; the engine reports the error
        return url


def metric_label(metric: str) -> str:
    spec = METRICS.get(metric)
    return f"{metric} ({spec.unit})" if spec else metric


def metric_help(metric: str) -> str:
    spec = METRICS.get(metric)
    if spec is None:
        return f"{metric}: not in the metric registry"
    direction = {True: "lower is better", False: "higher is better", None: "no direction"}[spec.lower_is_better]
    return f"{spec.description} [{spec.unit}; {direction}]"


# ---- values ------------------------------------------------------------------------------------
def to_value(row: Any) -> Value:
    def opt(x):
        return None if x is None or (isinstance(x, float) and pd.isna(x)) else x

    n = opt(row["n"])
    return Value(value=opt(row["value"]), ci_low=opt(row["ci_low"]), ci_high=opt(row["ci_high"]),
                 method=row["method"] or "", n=None if n is None else int(n), unit=row.get("unit") or "",
                 note=opt(row.get("note")))


def entries_from(measurements: pd.DataFrame) -> dict[str, dict[str, Value]]:
    """run_id -> metric -> Value, from the long table of heptathlon.db.dashboard_queries.latest_results."""
    out: dict[str, dict[str, Value]] = {}
    for row in measurements.to_dict("records"):
        out.setdefault(row["run_id"], {})[row["metric"]] = to_value(row)
    return out


def opt(x: Any) -> Any:
    """None for a missing value (None, NaN, NaT), else the value."""
    if x is None:
        return None
    try:
        return None if pd.isna(x) else x
    except (TypeError, ValueError):  # lists and dicts
        return x


def esc_md(x: Any) -> str:
    """Text safe inside Markdown (a submission name cannot inject links or emphasis)."""
    text = "" if x is None else str(x)
    for ch in "\\`*_[]<>#|$~":
        text = text.replace(ch, "\\" + ch)
    return text


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def as_json(x: Any) -> str:
    return json.dumps(x, indent=2, sort_keys=True, default=str)


# ---- filters -----------------------------------------------------------------------------------
def class_options(options: pd.DataFrame, classes: pd.DataFrame) -> dict[str, tuple[str, tuple[int, ...]]]:
    """class_id -> (label, machine ids) for the machines that appear in ``options``."""
    present = set(options["machine_id"].dropna().astype(int)) if not options.empty else set()
    out: dict[str, tuple[str, list[int]]] = {}
    for row in classes.to_dict("records"):
        if row["machine_id"] in present:
            label, ids = out.get(row["class_id"], (row["label"], []))
            out[row["class_id"]] = (label, ids + [int(row["machine_id"])])
    labels = [lab for lab, _ in out.values()]
    return {cid: ((f"{lab} [{cid[:6]}]" if labels.count(lab) > 1 else lab), tuple(sorted(ids)))
            for cid, (lab, ids) in sorted(out.items(), key=lambda kv: kv[1][0])}


_UNSET = object()


def _from_url(param: str | None, values: list[Any]) -> Any:
    """The value among ``values`` that the URL's ``param`` names (compared as text), or _UNSET."""
    if not param or param not in st.query_params:
        return _UNSET
    wanted = st.query_params.get(param)
    return next((v for v in values if str(v) == wanted), _UNSET)


def set_param(param: str | None, value: Any) -> None:
    """Write one view setting into the URL (only when it changed: each write is a history entry)."""
    if not param:
        return
    text = "" if value is None else str(value)
    if st.query_params.get(param) != text:
        st.query_params[param] = text


def drop_params(*params: str) -> None:
    for p in params:
        if p in st.query_params:
            del st.query_params[p]


def pick(label: str, values: list[Any], key: str, *, fmt=None, help: str | None = None, container=st,
         param: str | None = None, default: Any = _UNSET) -> Any:
    """A selectbox over ``values`` whose choice lives in session state and in the URL.

    The choice is, in order: the previous choice when it is still offered; on a fresh session the
    value the URL's ``param`` names; ``default`` when offered; the first value. The widget's state
    is set before it is drawn (never through ``index``), so that a box whose options changed can
    never show a stale value while the page uses another. The choice is written back to
    ``st.query_params[param]``, so that every view can be bookmarked
    (``/hardware?task=arrests&submission=arrests-mlp-onnx``).
    """
    if not values:
        drop_params(*([param] if param else []))
        return None
    cur = st.session_state.get(key, _UNSET)
    if cur is _UNSET or cur not in values:
        chosen = _from_url(param, values) if cur is _UNSET else _UNSET
        if chosen is _UNSET:
            chosen = default if default is not _UNSET and default in values else values[0]
        st.session_state[key] = chosen
    kwargs = {"format_func": fmt} if fmt else {}
    value = container.selectbox(label, values, key=key, help=help, **kwargs)
    set_param(param, value)
    return value


def pick_many(label: str, values: list[Any], key: str, *, param: str | None = None, container=st,
              help: str | None = None, default: list[Any] | None = None) -> list[Any]:
    """A multiselect whose choice lives in session state and in the URL (comma-separated).

    ``default`` (all values when None) is chosen on a fresh view. When the offered values change
    (another group), the choice starts again from the default, so a fresh load and a switched view
    show the same thing.
    """
    opts_key = f"{key}__options"
    cur = st.session_state.get(key, _UNSET)
    if cur is _UNSET or st.session_state.get(opts_key) != list(values):
        chosen: list[Any] = list(values) if default is None else [v for v in values if v in default]
        if cur is _UNSET and param and param in st.query_params:
            wanted = st.query_params.get(param).split(",")
            chosen = [v for v in values if str(v) in wanted]
        st.session_state[key] = chosen
        st.session_state[opts_key] = list(values)
    chosen = container.multiselect(label, values, key=key, help=help)
    set_param(param, ",".join(str(v) for v in chosen))
    return chosen


def toggle(label: str, key: str, *, param: str, default: bool = False, container=st) -> bool:
    """A toggle kept in the URL as ``param=1`` / ``param=0``."""
    if key not in st.session_state:
        st.session_state[key] = (st.query_params.get(param) == "1") if param in st.query_params else default
    value = container.toggle(label, key=key)
    set_param(param, "1" if value else "0")
    return value


def text(label: str, key: str, *, param: str, container=st, placeholder: str = "") -> str:
    """A text input kept in the URL (empty: no parameter)."""
    if key not in st.session_state:
        st.session_state[key] = st.query_params.get(param, "")
    value = container.text_input(label, key=key, placeholder=placeholder)
    if value:
        set_param(param, value)
    else:
        drop_params(param)
    return value


def weight_sliders(metrics: list[str], defaults: dict[str, float], *, key: str, param: str,
                   columns: int = 4) -> dict[str, float]:
    """One 0–5 slider per metric; the weights that differ from the defaults go into the URL as
    ``param=metric:weight,metric:weight``."""
    url: dict[str, float] = {}
    for part in (st.query_params.get(param) or "").split(","):
        name, _, w = part.partition(":")
        try:
            url[name] = min(5.0, max(0.0, float(w)))
        except ValueError:
            continue
    cols = st.columns(columns)
    weights = {}
    for i, m in enumerate(metrics):
        k = f"{key}_{m}"
        if k not in st.session_state:
            st.session_state[k] = url.get(m, float(defaults.get(m, 0.0)))
        weights[m] = cols[i % columns].slider(m, 0.0, 5.0, step=0.5, key=k, help=metric_help(m))
    changed = [f"{m}:{w:g}" for m, w in weights.items() if w != float(defaults.get(m, 0.0))]
    if changed:
        set_param(param, ",".join(changed))
    else:
        drop_params(param)
    return weights


# Preferred defaults where options tie: the scenario readers expect first.
PREFERRED = {"scenario": ("single_stream", "server", "offline"), "profile": ("cpu-1core",)}


def most_common(options: pd.DataFrame, column: str) -> list[Any]:
    """Distinct values of ``column``: preferred ones first (single_stream for scenarios), then the
    one with the most submissions, then A-Z."""
    if options.empty:
        return []
    counts = options.groupby(column)["submission"].nunique()
    prefer = PREFERRED.get(column, ())
    return sorted(counts.index, key=lambda v: (prefer.index(v) if v in prefer else len(prefer), -counts[v], str(v)))


def select_group(options: pd.DataFrame, classes: pd.DataFrame, key: str, *, profile: bool = True,
                 submission: bool = False) -> dict[str, Any] | None:
    """Cascading filters (task, scenario, profile, machine class[, submission]) in one row.

    Each box offers only values that have results under the choices to its left. Returns the
    choices and the machine ids of the chosen class, or None when nothing matches.
    """
    n = 3 + int(profile) + int(submission)
    cols = st.columns(n)
    i = 0
    chosen: dict[str, Any] = {}
    sel = options
    task = pick("Task", most_common(sel, "task"), f"{key}_task", container=cols[i], param="task")
    i += 1
    sel = sel[sel["task"] == task]
    scenario = pick("Scenario", most_common(sel, "scenario"), f"{key}_scenario", container=cols[i],
                    param="scenario")
    i += 1
    sel = sel[sel["scenario"] == scenario]
    chosen.update(task=task, scenario=scenario)
    if profile:
        prof = pick("Profile", most_common(sel, "profile"), f"{key}_profile", container=cols[i],
                    param="profile")
        i += 1
        sel = sel[sel["profile"] == prof]
        chosen["profile"] = prof
    cls = class_options(sel, classes)
    cid = pick("Machine class", list(cls), f"{key}_machine", fmt=lambda c: cls[c][0], container=cols[i],
               help="Results are comparable only within one hardware fingerprint class.", param="machine")
    i += 1
    if cid is None:
        return None
    chosen["class_id"], chosen["class_label"], chosen["machine_ids"] = cid, cls[cid][0], cls[cid][1]
    sel = sel[sel["machine_id"].isin(cls[cid][1])]
    if submission:
        chosen["submission"] = pick("Submission", sorted(sel["submission"].unique()), f"{key}_submission",
                                    container=cols[i], param="submission")
    return chosen


def load_common() -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """URL, the filter-options table and the machine classes (all cached)."""
    url = db_url()
    return url, DQ.load_result_options(url), DQ.load_machine_classes(url)


def no_succeeded_runs() -> None:
    st.info("No succeeded runs yet: every metric is **not measured**. Failed runs are listed on the "
            "Run detail page.")


def alerts_table(alerts: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Alert rows as readers read them: the series by name (not its hash), p-values as ``p < 0.0001``,
    the effect as a signed percentage with the values it compares in the metric's unit."""
    from heptathlon.dashboard.scoring import format_p

    rows = []
    for a in alerts.to_dict("records"):
        detail = a.get("detail") or {}
        unit = METRICS[a["metric"]].unit if a["metric"] in METRICS else ""
        base, cand = detail.get("baseline_value"), detail.get("candidate_value")
        effect = "" if opt(a["effect"]) is None else f"{a['effect']:+.1%}"
        if base is not None and cand is not None:
            effect += f" ({format_si(base, unit)} → {format_si(cand, unit)})"
        rows.append({"id": a.get("id"), "kind": a["kind"], "metric": a["metric"], "status": a["status"],
                     "series": detail.get("series") or a.get("series_key"), "test": a.get("test") or "—",
                     "p": format_p(opt(a["p_value"])) if opt(a["p_value"]) is not None else "—",
                     "z": "—" if opt(a["z_score"]) is None else f"{a['z_score']:+.1f}", "effect": effect or "—",
                     "on this metric": metric is None or a["metric"] in (None, "run", metric),
                     "night": detail.get("date") or "", "run": a.get("candidate_run_id")})
    return pd.DataFrame(rows)


# ---- comparing two runs ------------------------------------------------------------------------------
def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": value}`` (lists stay values)."""
    if not isinstance(d, dict):
        return {prefix: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def context_diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, str]]:
    """What differs between two runs' contexts (run_detail dicts): artifact, submission, profile,
    scenario parameters, software and machine. One row per differing field: area, field, A, B."""
    def ctx(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
        sub = d.get("submission") or {}
        mach = d.get("machine") or {}
        return {
            "artifact": {"sha256": sub.get("artifact_sha256"), "kind": sub.get("kind")},
            "submission": {"name": sub.get("name") or d.get("submission_ref"), "version": sub.get("version"),
                           "task": d.get("task")},
            "profile": {"name": d.get("profile"), "spec_hash": d.get("profile_spec_hash")},
            "scenario": {"name": d.get("scenario"), **flatten(d.get("params") or {})},
            "software": flatten(d.get("software") or {}),
            "machine": {"fingerprint": mach.get("fingerprint_hash"), **flatten(mach.get("specs") or {})},
        }

    ca, cb = ctx(a), ctx(b)
    rows = []
    for area in ca:
        keys = sorted(set(ca[area]) | set(cb[area]))
        for k in keys:
            va, vb = ca[area].get(k), cb[area].get(k)
            if va != vb:
                rows.append({"area": area, "field": k, "A": "—" if va is None else str(va),
                             "B": "—" if vb is None else str(vb)})
    return rows


def sweep_sources(points: pd.DataFrame) -> tuple[bool, str]:
    """Which runs a per-runtime sweep chart's points come from (sweep_points keeps the newest value
    per runtime and batch size, so runtimes swept in different runs share one chart).

    Returns ``(mixed, text)``: ``mixed`` when the points come from more than one run, and a line
    naming each runtime's run(s), newest first."""
    if points.empty:
        return False, ""
    parts = []
    for rt, g in points.groupby("runtime", sort=True):
        g = g.sort_values("finished_at", ascending=False, kind="stable")
        rids = list(dict.fromkeys(g["run_id"]))
        parts.append(f"{rt}: run{'s' if len(rids) > 1 else ''} {', '.join(r[:8] for r in rids)}")
    mixed = points["run_id"].nunique() > 1
    return mixed, "; ".join(parts)
