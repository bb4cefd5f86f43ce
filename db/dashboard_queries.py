"""Read functions for the web leaderboard.

Two layers, one per concern:

- plain query functions that take a ``Session`` and return pandas DataFrames or plain dicts
  (``latest_results``, ``series_history``, ...). They are what the tests and
  ``benchmarks/dashboard_scale.py`` time and check;
- ``load_*`` wrappers that take a database URL, open a session and cache the result with
  ``st.cache_data`` for ``TTL_S`` seconds, so a page rerun on every widget change does not
  hit the database again. Only plain, picklable values cross that boundary, never ORM objects.

Queries use Core ``select`` of columns rather than ORM entities: at 100,000 runs building ORM
objects, not SQL, is what costs time. JSON columns are filtered in Python, which keeps one code
path for SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from heptathlon.bench.metrics import SampleKind
from heptathlon.bench.run_status import FINISHED, RunStatus
from heptathlon.bench.sweep_stats import shown_sweep
from heptathlon.db import queries as Q
from heptathlon.db import results as R
from heptathlon.db.results import chunks as _chunks
from heptathlon.db.nightly_queries import NIGHTLY
from heptathlon.db.models import Alert, GroupMetric, Machine, Measurement, Run, Samples, Submission
from heptathlon.db.session import ensure_schema, session_scope

TTL_S = 30  # seconds a cached read stays fresh; the sidebar's "Reload data" clears it at once

RUN_COLUMNS = ["run_id", "submission_id", "submission", "version", "kind", "task", "profile", "scenario",
               "machine_id", "finished_at", "run_params"]
MEASUREMENT_COLUMNS = ["run_id", "metric", "unit", "value", "ci_low", "ci_high", "n", "method", "note", "params"]


# ---- overview -----------------------------------------------------------------------------------
def database_overview(s: Session) -> dict[str, Any]:
    """Run counts by status, and how many submissions and machines the database knows."""
    by_status = Q.counts(s)
    return {"runs": sum(by_status.values()), "by_status": by_status,
            "submissions": s.scalar(select(func.count()).select_from(Submission)) or 0,
            "machines": s.scalar(select(func.count()).select_from(Machine)) or 0,
            "latest": Q.latest_time(s), "last_nightly": latest_nightly_time(s)}


def machine_classes(s: Session) -> pd.DataFrame:
    """One row per machine: its id, its fingerprint class (heptathlon.bench.regression) and a readable label.

    Results are comparable only within one fingerprint class (DESIGN.md); machines whose
    hardware-identity fields agree share a class even when their software differs.
    """
    from heptathlon.bench.fingerprint import fingerprint_class

    rows = []
    for mid, fph, specs in s.execute(select(Machine.id, Machine.fingerprint_hash, Machine.specs)):
        specs = specs or {}
        rows.append({"machine_id": mid, "fingerprint_hash": fph, "class_id": fingerprint_class(specs),
                     "label": machine_label(specs)})
    return pd.DataFrame(rows, columns=["machine_id", "fingerprint_hash", "class_id", "label"])


def machine_label(specs: dict[str, Any]) -> str:
    parts = [str(specs.get("cpu_model") or "unknown CPU")]
    if specs.get("logical_cores"):
        parts.append(f"{specs['logical_cores']} cores")
    if specs.get("ram_bytes"):
        parts.append(f"{specs['ram_bytes'] / 2**30:.0f} GiB")
    gpus = [g.get("name") if isinstance(g, dict) else str(g) for g in (specs.get("gpus") or [])]
    if gpus:
        parts.append(", ".join(sorted({g for g in gpus if g})))
    return " · ".join(parts)


def result_options(s: Session) -> pd.DataFrame:
    """Every (task, profile, scenario, machine, submission) combination with a succeeded run.

    The filters of every page are built from this one small table. Grouping by the submission id
    (names are looked up after) lets the query read the ix_run_dashboard index alone.
    """
    q = (select(Run.task_name, Run.profile_name, Run.scenario, Run.machine_id, Run.submission_id,
                func.count().label("runs"))
         .where(Run.status == RunStatus.SUCCEEDED, Run.submission_id.is_not(None))
         .group_by(Run.task_name, Run.profile_name, Run.scenario, Run.machine_id, Run.submission_id))
    rows = s.execute(q).all()
    names = dict(s.execute(select(Submission.id, Submission.name)).all()) if rows else {}
    return pd.DataFrame([(t, p, sc, m, names.get(sid, f"submission {sid}"), n) for t, p, sc, m, sid, n in rows],
                        columns=["task", "profile", "scenario", "machine_id", "submission", "runs"])


# ---- latest results ------------------------------------------------------------------------------
def latest_results(s: Session, *, task: str | None = None, profile: str | None = None,
                   scenario: str | None = None, machine_ids: Sequence[int] | None = None,
                   submission: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The latest succeeded run of each series and its headline values (both rules: heptathlon.db.results).

    Returns ``(runs, measurements)``: one row per run (RUN_COLUMNS) and one row per run and
    metric (MEASUREMENT_COLUMNS).
    """
    conds = [Run.submission_id.is_not(None)]
    if task:
        conds.append(Run.task_name == task)
    if profile:
        conds.append(Run.profile_name == profile)
    if scenario:
        conds.append(Run.scenario == scenario)
    if machine_ids is not None:
        conds.append(Run.machine_id.in_(list(machine_ids)))
    if submission:
        conds.append(Run.submission_id.in_(select(Submission.id).where(Submission.name == submission)))
    q = (select(Run.id, Run.submission_id, Submission.name, Submission.version, Submission.kind, Run.task_name,
                Run.profile_name, Run.scenario, Run.machine_id, Run.finished_at, Run.params)
         .join(Submission, Run.submission_id == Submission.id)
         .where(Run.id.in_(R.latest_run_ids(*conds))))
    runs = pd.DataFrame(s.execute(q).all(), columns=RUN_COLUMNS)
    runs = runs.sort_values(["task", "profile", "scenario", "submission", "machine_id"], kind="stable")
    return runs.reset_index(drop=True), headline_measurements(s, list(runs["run_id"]))


def headline_measurements(s: Session, run_ids: Sequence[str]) -> pd.DataFrame:
    """One row per (run, metric): the run's headline value of each metric it stored."""
    cols = (Measurement.run_id, Measurement.metric, Measurement.unit, Measurement.value, Measurement.ci_low,
            Measurement.ci_high, Measurement.n, Measurement.method, Measurement.note, Measurement.params,
            Measurement.id)
    rows = [row for chunk in _chunks(list(run_ids)) for row in s.execute(select(*cols).where(
        Measurement.run_id.in_(chunk)))]
    best = R.pick_headlines(rows, run_id=lambda r: r[0], metric=lambda r: r[1], params=lambda r: r[9],
                            row_id=lambda r: r[10])
    return pd.DataFrame([tuple(r[:10]) for r in best.values()], columns=MEASUREMENT_COLUMNS)


ATTEMPT_COLUMNS = ["run_id", "submission", "version", "status", "when", "error", "machine_id", "artifact_sha256"]


def latest_attempts(s: Session, *, task: str, profile: str, scenario: str,
                    machine_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """The newest finished run (succeeded or failed) of each submission name in one group.

    The leaderboard marks a submission whose newest run failed: its last good result is then
    older than what the submitter last sent. A failed run may have no machine (it broke before the
    fingerprint), so it counts for every machine class; succeeded runs only for ``machine_ids``.
    """
    q = (select(Run.id, Submission.name, Submission.version, Run.status,
                func.coalesce(Run.finished_at, Run.created_at), Run.error, Run.machine_id, Submission.artifact_sha256)
         .join(Submission, Run.submission_id == Submission.id)
         .where(Run.task_name == task, Run.profile_name == profile, Run.scenario == scenario,
                Run.status.in_(FINISHED)))
    wanted = None if machine_ids is None else set(machine_ids)
    newest: dict[str, tuple] = {}
    for row in s.execute(q):
        if wanted is not None and row[6] is not None and row[6] not in wanted:
            continue
        if wanted is not None and row[6] is None and row[3] != RunStatus.FAILED:
            continue
        cur = newest.get(row[1])
        if cur is None or (_utc(row[4]), row[0]) > (_utc(cur[4]), cur[0]):
            newest[row[1]] = tuple(row)
    return pd.DataFrame(sorted(newest.values(), key=lambda r: r[1]), columns=ATTEMPT_COLUMNS)


def _utc(t: Any) -> Any:
    """Timestamps compare across backends: SQLite returns naive UTC, PostgreSQL aware."""
    from datetime import UTC

    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


# ---- framework tax sweeps ------------------------------------------------------------------------
SWEEP_COLUMNS = ["run_id", "profile", "scenario", "machine_id", "finished_at", "runtime", "batch_size", "metric",
                 "unit", "value", "ci_low", "ci_high", "n", "method", "note"]


def sweep_points(s: Session, *, submission: str, profile: str | None = None,
                 machine_ids: Sequence[int] | None = None) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Batch-sweep measurements (params carry ``batch_size``) of one submission, and stored knees.

    Returns ``(points, knees)``. For each (profile, machine, runtime, batch size, metric) only the
    newest run's value is kept. ``knees`` collects ``batch_knee`` measurements and knees found in
    ``run.extra["sweep"]``, newest first, as plain dicts with at least ``runtime`` and ``knee``.
    """
    conds = [Run.status == RunStatus.SUCCEEDED,
             Run.submission_id.in_(select(Submission.id).where(Submission.name == submission))]
    if profile:
        conds.append(Run.profile_name == profile)
    if machine_ids is not None:
        conds.append(Run.machine_id.in_(list(machine_ids)))
    runs = {r[0]: r for r in s.execute(select(Run.id, Run.profile_name, Run.scenario, Run.machine_id,
                                              Run.finished_at, Run.extra).where(*conds))}
    points, knees = [], []
    for chunk in _chunks(list(runs)):
        q = select(Measurement.run_id, Measurement.metric, Measurement.unit, Measurement.value, Measurement.ci_low,
                   Measurement.ci_high, Measurement.n, Measurement.method, Measurement.note,
                   Measurement.params).where(Measurement.run_id.in_(chunk))
        for rid, metric, unit, value, lo, hi, n, method, note, params in s.execute(q):
            params = params or {}
            _, prof, scen, mid, fin, extra = runs[rid]
            runtime = str(params.get("runtime") or "default")
            if bool(params.get("pooled")) != _holds_pooled_sweep(extra):
                continue  # a run with trials pooled shows its pooled cells, not its last trial's own
            if "sequence_length" in params:
                continue  # the batch x sequence-length axis: ft_cells reads it, one run at a time
            if metric == "batch_knee":
                knees.append({"run_id": rid, "profile": prof, "machine_id": mid, "finished_at": fin,
                              "runtime": runtime, "knee": value, "ci_low": lo, "ci_high": hi, "method": method,
                              "source": "measurement"})
                continue
            if "batch_size" not in params:
                continue
            try:
                b = int(params["batch_size"])
            except (TypeError, ValueError):
                continue
            points.append((rid, prof, scen, mid, fin, runtime, b, metric, unit, value, lo, hi, n, method, note))
    for rid, prof, _scen, mid, fin, extra in runs.values():
        for k in knees_from_extra(shown_sweep(extra)):
            knees.append({"run_id": rid, "profile": prof, "machine_id": mid, "finished_at": fin, **k,
                          "source": "run.extra"})
    df = pd.DataFrame(points, columns=SWEEP_COLUMNS)
    if not df.empty:
        df = (df.sort_values("finished_at", ascending=False, kind="stable")
                .drop_duplicates(["profile", "machine_id", "runtime", "batch_size", "metric"])
                .sort_values(["profile", "runtime", "metric", "batch_size"], kind="stable").reset_index(drop=True))
    knees.sort(key=lambda k: (k["finished_at"] is None, k["finished_at"]), reverse=True)
    return df, knees


def _holds_pooled_sweep(extra: Any) -> bool:
    return isinstance(extra, dict) and isinstance(extra.get("sweep_pooled"), dict)


_KNEE_KEYS = ("knee", "batch_knee", "knee_batch", "b_star")


def knees_from_extra(sweep: Any) -> list[dict[str, Any]]:
    """Knees stored in ``run.extra["sweep"]``.

    Accepted shapes: ``{"knee": 16, "runtime": "onnxruntime"}``, ``{"knee": {"value": 16,
    "ci_low": 8, "ci_high": 32}}``, or either of those keyed by runtime
    (``{"onnxruntime": {"knee": 16}, ...}`` or ``{"runtimes": {...}}``). Anything else yields nothing.
    """
    out: list[dict[str, Any]] = []
    if not isinstance(sweep, dict):
        return out

    def one(d: dict[str, Any], runtime: str) -> None:
        for key in _KNEE_KEYS:
            if key in d and d[key] is not None:
                v = d[key]
                lo = hi = None
                if isinstance(v, dict):
                    v, lo, hi = v.get("value"), v.get("ci_low"), v.get("ci_high")
                lo = d.get("knee_ci_low", d.get("ci_low")) if lo is None else lo
                hi = d.get("knee_ci_high", d.get("ci_high")) if hi is None else hi
                try:
                    out.append({"runtime": str(d.get("runtime") or runtime), "knee": float(v),
                                "ci_low": None if lo is None else float(lo),
                                "ci_high": None if hi is None else float(hi), "method": d.get("method")})
                except (TypeError, ValueError):
                    pass
                return

    one(sweep, "default")
    nested = sweep.get("runtimes") if isinstance(sweep.get("runtimes"), dict) else sweep
    for rt, d in nested.items():
        if isinstance(d, dict):
            one(d, str(rt))
    return out


# ---- framework tax over batch size x sequence length -------------------------------------------------
FT_CELL_COLUMNS = ["runtime", "sequence_length", "batch_size", "available", "reason", "ft", "ft_ci_low",
                   "ft_ci_high", "ft_n", "ft_method", "ft_lower_bound", "estimated", "latency_p50_ms", "lat_ci_low",
                   "lat_ci_high", "lat_n", "relative_to_best", "knee", "knee_ci_low", "knee_ci_high", "knee_method",
                   "knee_note"]
SEQ_RUN_COLUMNS = ["run_id", "finished_at", "machine_id", "lengths", "runtimes", "primary_runtime"]


def _int_or_none(x: Any) -> int | None:
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


def seq_sweep_runs(s: Session, *, submission: str, profile: str | None = None,
                   machine_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Succeeded batch_sweep runs of one submission with a sequence-length axis, newest first.

    A run has the axis when its ``run.extra["sweep"]["by_sequence_length"]`` holds at least one
    length (heptathlon.bench.sweep_stats.summarize_sweep; ``--seq-lengths`` with two or more lengths).
    """
    conds = [Run.status == RunStatus.SUCCEEDED, Run.scenario == "batch_sweep",
             Run.submission_id.in_(select(Submission.id).where(Submission.name == submission))]
    if profile:
        conds.append(Run.profile_name == profile)
    if machine_ids is not None:
        conds.append(Run.machine_id.in_(list(machine_ids)))
    rows = []
    for rid, fin, mid, extra in s.execute(select(Run.id, Run.finished_at, Run.machine_id, Run.extra).where(*conds)):
        sweep = shown_sweep(extra) or {}
        by_len = sweep.get("by_sequence_length")
        if not isinstance(by_len, dict) or not by_len:
            continue
        lengths = sorted(x for x in (_int_or_none(k) for k in by_len) if x is not None)
        runtimes = list(dict.fromkeys(rt for sub in by_len.values() if isinstance(sub, dict)
                                      for rt in (sub.get("runtimes") or {})))
        if lengths:
            rows.append((rid, fin, mid, lengths, runtimes, sweep.get("primary_runtime")))
    df = pd.DataFrame(rows, columns=SEQ_RUN_COLUMNS)
    return df.sort_values(["finished_at", "run_id"], ascending=False, kind="stable").reset_index(drop=True)


def ft_cells(s: Session, run_id: str) -> dict[str, Any] | None:
    """One batch_sweep run's (runtime, sequence length, batch size) cells; None without a length axis.

    Returns ``{"run_id", "cells", "lengths", "batch_sizes", "runtimes", "primary_runtime",
    "own_sequence_length"}`` (the length of the run's own sweep: its headline values and the rows
    without ``sequence_length`` that sweep_points reads).
    ``cells`` has one row per runtime x length x batch size of the run's grid (FT_CELL_COLUMNS):
    FT(b) with its 95% CI, n, method and ``tax_lower_bound`` (the framework_tax detail rows tagged
    with ``sequence_length``), latency p50 with its CI (latency_p50_ms rows), the latency relative to
    the best runtime at that cell (run.extra["sweep"]["by_sequence_length"][L]["relative_to_best"]),
    and the knee b* of that (runtime, length) with its CI (batch_knee rows; ``knee_note`` says why
    one is missing). A cell the run did not measure (runtime not derived, sweep stopped earlier,
    profiler could not decompose the call) has ``ft`` None and the reason in ``reason`` — never 0.
    """
    extra = s.scalar(select(Run.extra).where(Run.id == run_id))
    sweep = shown_sweep(extra) or {}  # pooled over the run's trials where it holds a pooled set
    pooled = _holds_pooled_sweep(extra)
    by_len = sweep.get("by_sequence_length")
    if not isinstance(by_len, dict) or not by_len:
        return None
    ft: dict[tuple[str, int, int], tuple] = {}
    lat: dict[tuple[str, int, int], tuple] = {}
    knee: dict[tuple[str, int], tuple] = {}
    q = select(Measurement.metric, Measurement.value, Measurement.ci_low, Measurement.ci_high, Measurement.n,
               Measurement.method, Measurement.note, Measurement.params).where(
        Measurement.run_id == run_id, Measurement.metric.in_(["framework_tax", "latency_p50_ms", "batch_knee"]))
    for metric, value, lo, hi, n, method, note, params in s.execute(q):
        p = params or {}
        if bool(p.get("pooled")) != pooled:
            continue
        length, b = _int_or_none(p.get("sequence_length")), _int_or_none(p.get("batch_size"))
        rt = p.get("runtime")
        if length is None or rt is None:
            continue
        if metric == "batch_knee":
            knee[(str(rt), length)] = (value, lo, hi, method, note)
        elif b is not None:
            (ft if metric == "framework_tax" else lat)[(str(rt), length, b)] = (value, lo, hi, n, method, note, p)
    lengths = sorted(x for x in (_int_or_none(k) for k in by_len) if x is not None)
    runtimes = list(dict.fromkeys(rt for sub in by_len.values() if isinstance(sub, dict)
                                  for rt in (sub.get("runtimes") or {})))
    sizes = sorted({b for (_, _, b) in ft} | {b for (_, _, b) in lat}
                   | {int(b) for b in (sweep.get("batch_sizes_requested") or []) if _int_or_none(b) is not None})
    rows = []
    for length in lengths:
        sub = by_len.get(str(length)) or {}
        rts = sub.get("runtimes") or {}
        rel = sub.get("relative_to_best") or {}
        for rt in runtimes:
            rec = rts.get(rt) or {}
            gone = (sub.get("not_available") or {}).get(rt) or (None if rt in rts else "not swept at this length")
            kv = knee.get((rt, length))
            k_note = kv[4] if kv is not None and kv[0] is None else (
                None if kv is not None else gone or rec.get("knee_unavailable") or "no knee stored")
            k = (kv[0], kv[1], kv[2], kv[3]) if kv is not None and kv[0] is not None else (None,) * 4
            for b in sizes:
                f, la = ft.get((rt, length, b)), lat.get((rt, length, b))
                reason = gone
                if reason is None and f is None and la is None:
                    stop = rec.get("stop_reason")
                    reason = ("the sweep stopped before this batch size" + (f" ({stop})" if stop else "")
                              if rec.get("batch_sizes") else "not measured")
                elif reason is None and (f is None or f[0] is None):
                    reason = (f[5] if f is not None else None) or "no framework_tax row at this cell"
                fv = f if f is not None and f[0] is not None else None
                r = rel.get(rt, {}).get(str(b)) if isinstance(rel.get(rt), dict) else None
                rows.append((rt, length, b, fv is not None, reason,
                             *(fv[:5] if fv else (None,) * 5),
                             None if fv is None else fv[6].get("tax_lower_bound"),
                             bool(fv and str(fv[4]).startswith("estimate:")),
                             *(la[:4] if la is not None and la[0] is not None else (None,) * 4),
                             r, *k, k_note))
    cells = pd.DataFrame(rows, columns=FT_CELL_COLUMNS)
    return {"run_id": run_id, "cells": cells, "lengths": lengths, "batch_sizes": sizes, "runtimes": runtimes,
            "primary_runtime": sweep.get("primary_runtime"), "own_sequence_length": sweep.get("sequence_length"),
            "trials": (sweep.get("pooled") or {}).get("trials")}


# ---- fairness ------------------------------------------------------------------------------------
GROUP_COLUMNS = ["run_id", "profile", "scenario", "machine_id", "finished_at", "attribute", "group", "metric",
                 "value", "ci_low", "ci_high", "n", "small"]


def group_results(s: Session, *, submission: str, machine_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Per-group metrics of one submission: the newest succeeded run with group rows, per profile."""
    conds = [Run.status == RunStatus.SUCCEEDED,
             Run.submission_id.in_(select(Submission.id).where(Submission.name == submission))]
    if machine_ids is not None:
        conds.append(Run.machine_id.in_(list(machine_ids)))
    has_groups = select(GroupMetric.run_id).where(GroupMetric.run_id == Run.id).exists()
    ranked = (select(Run.id.label("rid"),
                     func.row_number().over(partition_by=Run.profile_name,
                                            order_by=(Run.finished_at.desc(), Run.id.desc())).label("k"))
              .where(*conds, has_groups).subquery())
    q = (select(Run.id, Run.profile_name, Run.scenario, Run.machine_id, Run.finished_at, GroupMetric.attribute,
                GroupMetric.group, GroupMetric.metric, GroupMetric.value, GroupMetric.ci_low, GroupMetric.ci_high,
                GroupMetric.n, GroupMetric.small)
         .join(ranked, (ranked.c.rid == Run.id) & (ranked.c.k == 1))
         .join(GroupMetric, GroupMetric.run_id == Run.id)
         .order_by(Run.profile_name, GroupMetric.attribute, GroupMetric.group, GroupMetric.metric))
    return pd.DataFrame(s.execute(q).all(), columns=GROUP_COLUMNS)


# ---- runs ------------------------------------------------------------------------------------------
def recent_runs(s: Session, *, limit: int = 200, status: str | None = None,
                submission: str | None = None) -> pd.DataFrame:
    """The newest runs (any status), for pickers: id, submission, profile, scenario, status, times, error."""
    q = (select(Run.id, func.coalesce(Submission.name, Run.submission_ref), Run.profile_name, Run.scenario,
                Run.status, Run.created_at, Run.finished_at, Run.error)
         .outerjoin(Submission, Run.submission_id == Submission.id)
         .order_by(Run.created_at.desc(), Run.id).limit(limit))
    if status:
        q = q.where(Run.status == status)
    if submission:
        q = q.where(Submission.name == submission)
    return pd.DataFrame(s.execute(q).all(), columns=["run_id", "submission", "profile", "scenario", "status",
                                                     "created_at", "finished_at", "error"])


def run_detail(s: Session, run_id: str) -> dict[str, Any] | None:
    """Everything stored about one run, as plain values; None when no run has this id (or prefix)."""
    run = Q.get_run(s, run_id)
    if run is None and len(run_id) >= 4:  # a unique prefix, as the CLI prints ids shortened
        hits = list(s.scalars(select(Run.id).where(Run.id.like(f"{run_id}%")).limit(2)))
        run = Q.get_run(s, hits[0]) if len(hits) == 1 else None
    if run is None:
        return None
    sub, prof, mach = run.submission, run.profile, run.machine
    meas = list(s.execute(select(Measurement.metric, Measurement.unit, Measurement.value, Measurement.ci_low,
                                 Measurement.ci_high, Measurement.n, Measurement.method, Measurement.note,
                                 Measurement.params).where(Measurement.run_id == run.id).order_by(Measurement.id)))
    groups = list(s.execute(select(GroupMetric.attribute, GroupMetric.group, GroupMetric.metric, GroupMetric.value,
                                   GroupMetric.ci_low, GroupMetric.ci_high, GroupMetric.n, GroupMetric.small)
                            .where(GroupMetric.run_id == run.id).order_by(GroupMetric.id)))
    sample_kinds = list(s.execute(select(Samples.kind, Samples.n).where(Samples.run_id == run.id)))
    alerts = list(s.execute(select(Alert.kind, Alert.metric, Alert.status, Alert.p_value, Alert.effect,
                                   Alert.z_score, Alert.created_at, Alert.detail)
                            .where(Alert.candidate_run_id == run.id)))
    return {
        "run_id": run.id, "status": run.status, "error": run.error, "stderr_tail": run.stderr_tail,
        "submission_ref": run.submission_ref, "profile": run.profile_name, "task": run.task_name,
        "scenario": run.scenario, "params": run.params or {}, "trial": run.trial, "group_id": run.group_id,
        "created_at": run.created_at, "started_at": run.started_at, "finished_at": run.finished_at,
        "software": run.software or {}, "controls": run.controls or {}, "extra": run.extra or {},
        "submission": None if sub is None else {
            "name": sub.name, "version": sub.version, "task": sub.task, "kind": sub.kind,
            "artifact_sha256": sub.artifact_sha256, "manifest": sub.manifest, "store_path": sub.store_path},
        "profile_yaml": None if prof is None else prof.yaml,
        "profile_spec_hash": None if prof is None else prof.spec_hash,
        "machine": None if mach is None else {"id": mach.id, "fingerprint_hash": mach.fingerprint_hash,
                                              "specs": mach.specs, "label": machine_label(mach.specs or {})},
        "measurements": pd.DataFrame(meas, columns=["metric", "unit", "value", "ci_low", "ci_high", "n", "method",
                                                    "note", "params"]),
        "groups": pd.DataFrame(groups, columns=["attribute", "group", "metric", "value", "ci_low", "ci_high", "n",
                                                "small"]),
        "samples": {k: n for k, n in sample_kinds},
        "alerts": pd.DataFrame(alerts, columns=["kind", "metric", "status", "p_value", "effect", "z_score",
                                                "created_at", "detail"]),
    }


def latency_samples_ms(s: Session, run_id: str) -> np.ndarray | None:
    """The run's raw per-query latencies in ms (samples kind ``latency_ns``), or None."""
    arr = Q.load_samples(s, run_id, SampleKind.LATENCY_NS)
    return None if arr is None else arr.astype(np.float64) / 1e6


# ---- history -------------------------------------------------------------------------------------
HISTORY_COLUMNS = ["run_id", "status", "created_at", "finished_at", "machine_id", "trial", "error", "value",
                   "ci_low", "ci_high", "n", "method", "unit", "series_key", "night"]


def series_history(s: Session, *, submission: str | None = None, profile: str | None = None,
                   scenario: str | None = None, metric: str, machine_ids: Sequence[int] | None = None,
                   series_key: str | None = None) -> pd.DataFrame:
    """Every finished run of one series, oldest first, with its headline value of ``metric``.

    The series is ``series_key`` (the indexed ``run.series_key``: one parameter set on one
    fingerprint class), or every series of ``submission`` on ``profile`` and ``scenario``.
    Failed runs are kept (value None) so that the chart can show when a series broke. A failed run
    may have no machine, so the machine filter applies to succeeded runs only.
    """
    q = (select(Run.id, Run.status, Run.created_at, Run.finished_at, Run.machine_id, Run.trial, Run.error,
                Run.series_key, Run.extra)
         .where(Run.status.in_(FINISHED)).order_by(Run.created_at, Run.id))
    if series_key is not None:
        q = q.where(Run.series_key == series_key)
    else:
        q = (q.join(Submission, Run.submission_id == Submission.id)
             .where(Submission.name == submission, Run.profile_name == profile, Run.scenario == scenario))
    rows = [r for r in s.execute(q).all()
            if machine_ids is None or r[1] == RunStatus.FAILED or r[4] in set(machine_ids)]
    best = R.headline_measurements(s, [r[0] for r in rows if r[1] == RunStatus.SUCCEEDED], metric=metric)
    out = []
    for rid, status, created, finished, mid, trial, error, key, extra in rows:
        m = best.get(rid, {}).get(metric)
        values = (None,) * 6 if m is None else (m.value, m.ci_low, m.ci_high, m.n, m.method, m.unit)
        out.append((rid, status, created, finished, mid, trial, error, *values, key, night_of(extra, created)))
    return pd.DataFrame(out, columns=HISTORY_COLUMNS)


def night_of(extra: dict[str, Any] | None, created: Any) -> str | None:
    """The night a run belongs to (YYYY-MM-DD): its nightly marker's date, else its creation date."""
    marker = (extra or {}).get(NIGHTLY)
    if isinstance(marker, dict) and marker.get("date"):
        return str(marker["date"])[:10]
    return None if created is None else created.date().isoformat()


ALERT_COLUMNS = ["id", "series_key", "metric", "kind", "candidate_run_id", "test", "p_value", "effect", "z_score",
                 "status", "created_at", "context_diff", "detail"]


def alerts_for_runs(s: Session, run_ids: Sequence[str]) -> pd.DataFrame:
    """Alerts whose candidate is one of these runs (the runs of one series)."""
    rows = []
    cols = (Alert.id, Alert.series_key, Alert.metric, Alert.kind, Alert.candidate_run_id, Alert.test, Alert.p_value,
            Alert.effect, Alert.z_score, Alert.status, Alert.created_at, Alert.context_diff, Alert.detail)
    for chunk in _chunks(list(run_ids)):
        rows += s.execute(select(*cols).where(Alert.candidate_run_id.in_(chunk)).order_by(Alert.created_at)).all()
    return pd.DataFrame(rows, columns=ALERT_COLUMNS)


# ---- last night ------------------------------------------------------------------------------------
NIGHT_COLUMNS = ["series_key", "label", "submission", "task", "profile", "scenario", "suite", "night", "host",
                 "run_id", "run_status", "error", "verdict", "alert_id", "alert_status", "kind", "metric", "unit",
                 "test", "p_value", "z_score", "rel_change", "baseline_value", "baseline_ci_low",
                 "baseline_ci_high", "n_baseline", "candidate_value", "candidate_ci_low", "candidate_ci_high",
                 "context_diff", "message", "baseline_run_ids", "good_before"]
VERDICT_OF_KIND = {"broke": "broke", "regression": "regressed", "drift": "drifted", "improvement": "improved"}
VERDICT_ORDER = ["broke", "regressed", "drifted", "improved", "skipped", "pass"]


def latest_nightly_time(s: Session) -> Any:
    """When the newest nightly run was created (None when no nightly ever ran)."""
    q = (select(Run.created_at, Run.extra).where(Run.group_id.is_not(None))
         .order_by(Run.created_at.desc()).limit(200))
    return next((t for t, extra in s.execute(q) if isinstance((extra or {}).get(NIGHTLY), dict)), None)


def last_night(s: Session, *, night: str | None = None, min_window: int = 2) -> pd.DataFrame:
    """Every series of the newest night (or ``night``, YYYY-MM-DD) of nightly runs, with its verdict.

    One row per series and alert (a series without an alert has one row with no alert). The
    verdict of a series is: ``broke`` (its run failed), ``regressed`` / ``drifted`` / ``improved``
    (an alert of that kind, whatever its status), ``skipped`` (succeeded, but fewer than
    ``min_window`` good nightly runs came before it: nothing to compare with) or ``pass``.
    Superseded runs and alerts are left out. The baseline of an alert is the mean of its baseline
    runs' headline values, with a 95% CI from their spread (normal approximation; none for one run).
    """
    newest = latest_nightly_time(s)
    if newest is None:
        return pd.DataFrame(columns=NIGHT_COLUMNS)
    from datetime import timedelta

    # The night's runs were created within a day or so of its newest run (a night may run long);
    # reading only those keeps the JSON filter in Python cheap on a large database.
    since = newest - timedelta(days=2)
    q = (select(Run.id, Run.status, Run.error, Run.series_key, Run.extra, Run.created_at, Run.profile_name,
                Run.scenario, Run.task_name, func.coalesce(Submission.name, Run.submission_ref))
         .outerjoin(Submission, Run.submission_id == Submission.id)
         .where(Run.group_id.is_not(None), Run.created_at >= since))
    runs = []
    for rid, status, error, key, extra, created, prof, scen, task, name in s.execute(q):
        m = (extra or {}).get(NIGHTLY)
        if isinstance(m, dict) and not m.get("superseded") and status in FINISHED:
            runs.append((rid, status, error, key or m.get("series"), m, created, prof, scen, task, name))
    if not runs:
        return pd.DataFrame(columns=NIGHT_COLUMNS)
    night = night or max(str(r[4].get("date", "")) for r in runs)
    runs = [r for r in runs if str(r[4].get("date", "")) == night]
    alerts = alerts_for_runs(s, [r[0] for r in runs])
    alerts = alerts[alerts["status"] != "superseded"] if not alerts.empty else alerts
    by_run: dict[str, list[dict[str, Any]]] = {}
    for a in alerts.to_dict("records"):
        by_run.setdefault(a["candidate_run_id"], []).append(a)
    # Good nightly runs of each series before this night (for "skipped").
    keys = sorted({r[3] for r in runs if r[3]})
    start = min(r[5] for r in runs)
    before: dict[str, int] = {}
    for chunk in _chunks(keys):
        for key, n in s.execute(select(Run.series_key, func.count()).where(
                Run.series_key.in_(chunk), Run.group_id.is_not(None), Run.status == RunStatus.SUCCEEDED,
                Run.created_at < start).group_by(Run.series_key)):
            before[key] = int(n)
    # Headline values of the candidate and baseline runs of each alerted metric.
    wanted = {r[0] for r in runs}
    baseline_ids = {a["id"]: list(_baseline_ids(s, a["id"])) for a in alerts.to_dict("records")}
    wanted |= {b for ids in baseline_ids.values() for b in ids}
    heads = R.headline_measurements(s, sorted(wanted))
    out = []
    for rid, status, error, key, m, _created, prof, scen, task, name in sorted(runs, key=lambda r: (r[9] or "", r[6])):
        label = f"{name} · {prof} · {scen}" + (f" · {_params_label(m.get('params'))}" if m.get("params") else "")
        common = [key, label, name, task or m.get("task"), prof, scen, m.get("suite"), night, m.get("host"), rid,
                  status, error]
        mine = by_run.get(rid, [])
        if status == RunStatus.FAILED:
            verdict = "broke"
        elif mine:
            kinds = {a["kind"] for a in mine}
            verdict = next(VERDICT_OF_KIND[k] for k in ("broke", "regression", "drift", "improvement") if k in kinds)
        else:
            verdict = "skipped" if before.get(key, 0) < min_window else "pass"
        if not mine:
            out.append([*common, verdict, *([None] * 16), [], None, [], before.get(key, 0)])
            continue
        for a in mine:
            metric = a["metric"]
            cand = heads.get(rid, {}).get(metric)
            base_vals = [heads[b][metric].value for b in baseline_ids.get(a["id"], [])
                         if metric in heads.get(b, {}) and heads[b][metric].value is not None]
            detail = a.get("detail") or {}
            b_mean, b_lo, b_hi = _mean_ci(base_vals)
            if b_mean is None and detail.get("baseline_value") is not None:
                b_mean = float(detail["baseline_value"])
            c_val = cand.value if cand is not None else detail.get("candidate_value")
            out.append([*common, verdict, int(a["id"]), a["status"], a["kind"], metric,
                        (cand.unit if cand is not None else None), a["test"], a["p_value"], a["z_score"], a["effect"],
                        b_mean, b_lo, b_hi, len(base_vals) or detail.get("n_baseline"), c_val,
                        cand.ci_low if cand is not None else None, cand.ci_high if cand is not None else None,
                        [c.get("change") if isinstance(c, dict) else str(c) for c in (a["context_diff"] or [])],
                        detail.get("message"), baseline_ids.get(a["id"], []), before.get(key, 0)])
    df = pd.DataFrame(out, columns=NIGHT_COLUMNS)
    return df.assign(_o=df["verdict"].map(VERDICT_ORDER.index)).sort_values(["_o", "label"], kind="stable").drop(
        columns="_o").reset_index(drop=True)


def _baseline_ids(s: Session, alert_id: int) -> list[str]:
    ids = s.scalar(select(Alert.baseline_run_ids).where(Alert.id == alert_id))
    return [str(i) for i in (ids or [])]


def _params_label(params: Any) -> str:
    if not isinstance(params, dict):
        return str(params)
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def _mean_ci(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """Mean of the baseline runs' values, with a normal-approximation 95% CI (none below 2 runs)."""
    if not values:
        return None, None, None
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, None, None
    half = 1.96 * float(arr.std(ddof=1)) / np.sqrt(arr.size)
    return mean, mean - half, mean + half


# ---- compare two runs ----------------------------------------------------------------------------
def compare_runs(s: Session, a: str, b: str) -> dict[str, Any] | None:
    """Two runs side by side: their details (run_detail) and headline measurements; None if either is missing."""
    da, db_ = run_detail(s, a), run_detail(s, b)
    if da is None or db_ is None:
        return None
    heads = headline_measurements(s, [da["run_id"], db_["run_id"]])
    return {"a": da, "b": db_, "measurements": heads}


# ---- generate (token generation) ------------------------------------------------------------------
GENERATE = "generate"
GEN_RUN_COLUMNS = RUN_COLUMNS + ["load", "contended", "isolation"]
GEN_LIST_COLUMNS = ["run_id", "submission", "version", "task", "profile", "machine_id", "finished_at", "load",
                    "sweep", "slo"]


def generative_runs(s: Session, *, task: str | None = None, profile: str | None = None,
                    machine_ids: Sequence[int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The latest succeeded generate run of each series, with its headline values (latest_results).

    The runs table adds ``load`` (heptathlon.bench.generation.load_label of its parameters),
    ``contended`` (its contention_share row is marked) and ``isolation`` (run.controls).
    """
    from heptathlon.bench.contention import is_contended
    from heptathlon.bench.generation import load_label

    runs, meas = latest_results(s, task=task, profile=profile, scenario=GENERATE, machine_ids=machine_ids)
    contended = {r["run_id"]: is_contended(r["params"]) for r in meas.to_dict("records")
                 if r["metric"] == "contention_share"}
    controls: dict[str, Any] = {}
    for chunk in _chunks(list(runs["run_id"])):
        controls.update({rid: c for rid, c in s.execute(select(Run.id, Run.controls).where(Run.id.in_(chunk)))})
    runs = runs.assign(load=[load_label(p) for p in runs["run_params"]],
                       contended=[bool(contended.get(r, False)) for r in runs["run_id"]],
                       isolation=[(controls.get(r) or {}).get("isolation") for r in runs["run_id"]])
    return runs[GEN_RUN_COLUMNS].reset_index(drop=True), meas


def generate_run_list(s: Session, *, limit: int = 300) -> pd.DataFrame:
    """Succeeded generate runs, newest first, for the Generation page's picker."""
    from heptathlon.bench.generation import load_label

    q = (select(Run.id, Submission.name, Submission.version, Run.task_name, Run.profile_name, Run.machine_id,
                Run.finished_at, Run.params)
         .join(Submission, Run.submission_id == Submission.id)
         .where(Run.scenario == GENERATE, Run.status == RunStatus.SUCCEEDED)
         .order_by(Run.finished_at.desc(), Run.id).limit(limit))
    rows = [(rid, name, ver, task, prof, mid, fin, load_label(p), bool((p or {}).get("sweep")),
             (p or {}).get("ttft_slo_ms") is not None or (p or {}).get("tpot_slo_ms") is not None)
            for rid, name, ver, task, prof, mid, fin, p in s.execute(q)]
    return pd.DataFrame(rows, columns=GEN_LIST_COLUMNS)


def _ms(arr: np.ndarray | None) -> np.ndarray | None:
    return None if arr is None else arr.astype(np.float64) / 1e6


def generate_record(s: Session, run_id: str) -> dict[str, Any] | None:
    """One generate run: who and where, its run.extra["generate"] record (outputs cut to
    ``n_outputs`` and the first few), its headline rows, and its raw TTFT, ITL (every gap) and
    end-to-end latencies in ms. None when no generate run has this id."""
    from heptathlon.bench.contention import is_contended
    from heptathlon.bench.generation import load_label

    q = (select(Run.id, Run.status, Run.scenario, Run.task_name, Run.profile_name, Run.machine_id, Run.finished_at,
                Run.params, Run.extra, Run.controls, func.coalesce(Submission.name, Run.submission_ref),
                Submission.version)
         .outerjoin(Submission, Run.submission_id == Submission.id).where(Run.id == run_id))
    row = s.execute(q).first()
    if row is None or row[2] != GENERATE:
        return None
    rid, status, _scen, task, prof, mid, fin, params, extra, controls, name, version = row
    gen = dict((extra or {}).get(GENERATE) or {})
    outputs = gen.pop("outputs", None) or []
    gen.pop("cohorts", None)  # internal batching trace
    meas = headline_measurements(s, [rid])
    share = meas[meas["metric"] == "contention_share"]
    return {"run_id": rid, "status": status, "task": task, "profile": prof, "machine_id": mid, "finished_at": fin,
            "submission": name, "version": version, "params": params or {}, "load": load_label(params),
            "isolation": (controls or {}).get("isolation"),
            "contended": bool(len(share)) and is_contended(share.iloc[0]["params"]),
            "generate": gen, "n_outputs": len(outputs), "outputs": outputs[:20], "measurements": meas,
            "ttft_ms": _ms(Q.load_samples(s, rid, SampleKind.TTFT_NS)),
            "itl_ms": _ms(Q.load_samples(s, rid, SampleKind.ITL_NS)),
            "e2e_ms": _ms(Q.load_samples(s, rid, SampleKind.E2E_NS))}


SWEEP_POINT_COLUMNS = ["point", "mode", "rate", "concurrency", "label", "achieved_rate", "tpot_p99_ms"]


def generate_sweep(s: Session, run_id: str) -> dict[str, Any]:
    """One generate run's sweep points and SLO search.

    ``points``: one row per sweep point (SWEEP_POINT_COLUMNS, then ``<metric>``, ``<metric>_ci_low``,
    ``<metric>_ci_high`` for each swept metric), from its ``params.sweep`` measurement rows; the
    achieved request rate is the point's requests_per_s, and ``tpot_p99_ms`` (no measurement row
    of its own) comes from run.extra["generate"]["sweep"] where stored. ``slo``: the
    run.extra["generate"]["slo"] record (None without SLOs); ``max_rate``: the headline
    max_rate_within_slo row as a dict (value None and the reason in ``note`` when not met).
    """
    from heptathlon.bench.generation import SWEEP_METRICS, point_label

    extra = s.scalar(select(Run.extra).where(Run.id == run_id)) or {}
    gen = extra.get(GENERATE) or {}
    q = select(Measurement.metric, Measurement.value, Measurement.ci_low, Measurement.ci_high,
               Measurement.params).where(Measurement.run_id == run_id)
    pts: dict[int, dict[str, Any]] = {}
    for metric, value, lo, hi, params in s.execute(q):
        p = params or {}
        if not p.get("sweep") or "sweep_point" not in p:
            continue
        i = int(p["sweep_point"])
        d = pts.setdefault(i, {"point": i, "mode": p.get("mode"), "rate": p.get("rate"),
                               "concurrency": p.get("concurrency")})
        d[metric], d[f"{metric}_ci_low"], d[f"{metric}_ci_high"] = value, lo, hi
    stored = {int(x["point"]): x for x in (gen.get("sweep") or []) if isinstance(x, dict) and "point" in x}
    for i, d in pts.items():
        d["label"] = point_label(d["mode"], d["rate"], d["concurrency"])
        d["achieved_rate"] = d.get("requests_per_s", stored.get(i, {}).get("achieved_requests_per_s"))
        d["tpot_p99_ms"] = stored.get(i, {}).get("tpot_p99_ms")
    cols = SWEEP_POINT_COLUMNS + [f"{m}{sfx}" for m in SWEEP_METRICS for sfx in ("", "_ci_low", "_ci_high")]
    points = pd.DataFrame([pts[i] for i in sorted(pts)], columns=cols)
    heads = headline_measurements(s, [run_id])
    mr = heads[heads["metric"] == "max_rate_within_slo"]
    max_rate = None if mr.empty else {k: _opt(v) for k, v in mr.iloc[0].to_dict().items()}
    slo = gen.get("slo")
    return {"points": points, "slo": slo if isinstance(slo, dict) else None, "max_rate": max_rate}


def _opt(x: Any) -> Any:
    """None for NaN (pandas reads a NULL float as NaN), else the value."""
    return None if isinstance(x, float) and np.isnan(x) else x


# ---- cached wrappers (what the dashboard calls) --------------------------------------------------
@st.cache_resource(show_spinner=False)
def prepare_database(url: str) -> str:
    """Create or upgrade the schema once per URL and process, so a fresh database just reads empty."""
    ensure_schema(url)
    return url


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_overview(url: str) -> dict[str, Any]:
    with session_scope(url) as s:
        return database_overview(s)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_machine_classes(url: str) -> pd.DataFrame:
    with session_scope(url) as s:
        return machine_classes(s)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_result_options(url: str) -> pd.DataFrame:
    with session_scope(url) as s:
        return result_options(s)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_latest_results(url: str, *, task: str | None = None, profile: str | None = None,
                        scenario: str | None = None, machine_ids: tuple[int, ...] | None = None,
                        submission: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    with session_scope(url) as s:
        return latest_results(s, task=task, profile=profile, scenario=scenario, machine_ids=machine_ids,
                              submission=submission)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_last_night(url: str, *, night: str | None = None, min_window: int = 2) -> pd.DataFrame:
    with session_scope(url) as s:
        return last_night(s, night=night, min_window=min_window)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_compare_runs(url: str, a: str, b: str) -> dict[str, Any] | None:
    with session_scope(url) as s:
        return compare_runs(s, a, b)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_latest_attempts(url: str, *, task: str, profile: str, scenario: str,
                         machine_ids: tuple[int, ...] | None = None) -> pd.DataFrame:
    with session_scope(url) as s:
        return latest_attempts(s, task=task, profile=profile, scenario=scenario, machine_ids=machine_ids)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_sweep_points(url: str, *, submission: str, profile: str | None = None,
                      machine_ids: tuple[int, ...] | None = None) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    with session_scope(url) as s:
        return sweep_points(s, submission=submission, profile=profile, machine_ids=machine_ids)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_seq_sweep_runs(url: str, *, submission: str, profile: str | None = None,
                        machine_ids: tuple[int, ...] | None = None) -> pd.DataFrame:
    with session_scope(url) as s:
        return seq_sweep_runs(s, submission=submission, profile=profile, machine_ids=machine_ids)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_ft_cells(url: str, run_id: str) -> dict[str, Any] | None:
    with session_scope(url) as s:
        return ft_cells(s, run_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_group_results(url: str, *, submission: str, machine_ids: tuple[int, ...] | None = None) -> pd.DataFrame:
    with session_scope(url) as s:
        return group_results(s, submission=submission, machine_ids=machine_ids)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_recent_runs(url: str, *, limit: int = 200, status: str | None = None,
                     submission: str | None = None) -> pd.DataFrame:
    with session_scope(url) as s:
        return recent_runs(s, limit=limit, status=status, submission=submission)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_run_detail(url: str, run_id: str) -> dict[str, Any] | None:
    with session_scope(url) as s:
        return run_detail(s, run_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_latency_samples_ms(url: str, run_id: str) -> np.ndarray | None:
    with session_scope(url) as s:
        return latency_samples_ms(s, run_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_series_history(url: str, *, submission: str | None = None, profile: str | None = None,
                        scenario: str | None = None, metric: str, machine_ids: tuple[int, ...] | None = None,
                        series_key: str | None = None) -> pd.DataFrame:
    with session_scope(url) as s:
        return series_history(s, submission=submission, profile=profile, scenario=scenario, metric=metric,
                              machine_ids=machine_ids, series_key=series_key)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_alerts_for_runs(url: str, run_ids: tuple[str, ...]) -> pd.DataFrame:
    with session_scope(url) as s:
        return alerts_for_runs(s, run_ids)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_generative_runs(url: str, *, task: str | None = None, profile: str | None = None,
                         machine_ids: tuple[int, ...] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    with session_scope(url) as s:
        return generative_runs(s, task=task, profile=profile, machine_ids=machine_ids)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_generate_run_list(url: str, *, limit: int = 300) -> pd.DataFrame:
    with session_scope(url) as s:
        return generate_run_list(s, limit=limit)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_generate_record(url: str, run_id: str) -> dict[str, Any] | None:
    with session_scope(url) as s:
        return generate_record(s, run_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load_generate_sweep(url: str, run_id: str) -> dict[str, Any]:
    with session_scope(url) as s:
        return generate_sweep(s, run_id)
