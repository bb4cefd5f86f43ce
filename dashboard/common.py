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
from heptathlon.dashboard.scoring import Value, format_value
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


def describe_value(v: Value | None, unit: str = "") -> str:
    """Tooltip text: CI, n, method and note."""
    if v is None:
        return "not stored for this run"
    parts = []
    if v.value is not None:
        if v.ci_low is not None and v.ci_high is not None:
            parts.append(f"95% CI [{format_value(v.ci_low, unit)}, {format_value(v.ci_high, unit)}] {unit}".strip())
        else:
            parts.append("no CI (a single observation or a derived value)")
    if v.n is not None:
        parts.append(f"n = {v.n}")
    parts.append(f"method: {v.method or 'unknown'}")
    if v.note:
        parts.append(str(v.note))
    return " · ".join(parts)


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


def pick(label: str, values: list[Any], key: str, *, fmt=None, help: str | None = None, container=st,
         param: str | None = None) -> Any:
    """A selectbox over ``values``; keeps a previous choice when it is still offered.

    ``param`` names a URL query parameter that preselects the value on first load, so that a
    view can be linked to (``/framework-tax?submission=arrests-mlp-onnx``).
    """
    if not values:
        return None
    if key in st.session_state and st.session_state[key] not in values:
        del st.session_state[key]
    index = 0
    if param and key not in st.session_state:
        wanted = st.query_params.get(param)
        index = values.index(wanted) if wanted in values else 0
    kwargs = {"format_func": fmt} if fmt else {}
    return container.selectbox(label, values, index=index, key=key, help=help, **kwargs)


def most_common(options: pd.DataFrame, column: str) -> list[Any]:
    """Distinct values of ``column``, the one with the most submissions first, then A-Z."""
    if options.empty:
        return []
    counts = options.groupby(column)["submission"].nunique()
    return sorted(counts.index, key=lambda v: (-counts[v], str(v)))


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
