"""batch_sweep runs, parent side: the worker's raw sweep payload into MetricValues and run.extra.

The worker (runners/sweep.py) only times and profiles; every statistic is computed here, in the
parent, like every other metric of a run (DESIGN.md, data flow). What a run stores:

- detail rows, per runtime and batch size, with params {"sweep": true, "batch_size": b,
  "runtime": name}: ``latency_p50_ms``, ``throughput_sps`` and ``framework_tax``
  (heptathlon.db.queries.is_detail keeps them out of headline tables; the dashboard draws latency against
  batch size per runtime from them);
- the run's headline values: ``framework_tax`` at b = 1 and ``batch_knee`` of the runtime the
  submission was submitted in, and ``fixed_overhead_ms`` (estimate:intercept); the same
  ``batch_knee`` / ``fixed_overhead_ms`` of derived runtimes are detail rows (params
  {"sweep": true, "runtime": name}, no batch size);
- ``run.extra["sweep"]``: per runtime the knee fit, the stop reason, and the cross-runtime table
  (each runtime's latency relative to the best per batch size; a runtime that could not be
  derived is listed under ``not_available`` with the reason).

With ``--trials k`` (k fresh workers), :func:`pool_sweep` pools every cell over the trials: pooled
detail rows (params ``{"pooled": true, "trials": k}`` beside the cell's keys) and
``run.extra["sweep_pooled"]``, the same record with the pooled numbers, both on the last trial.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from heptathlon.bench.framework_tax import (estimate_fixed_overhead, estimate_framework_tax, fit_batch_knee, knee_metric,
                                 relative_to_best, summarize_tax)
from heptathlon.bench.metrics import MetricValue
from heptathlon.bench.stats import bootstrap_ci, percentile_ci, pool_trial_values

TIMER = "timer:perf_counter_ns"
HEADLINE_BATCH = 1  # the headline framework_tax: one instance per call, as single_stream serves
MIN_SIZES_FOR_KNEE = 3
N_RESAMPLES = 1000


@dataclass(frozen=True)
class SweepSummary:
    """What a batch_sweep run adds to its measurements and to ``run.extra["sweep"]``."""

    values: list[MetricValue]  # headline: framework_tax (b = 1), batch_knee, fixed_overhead_ms
    details: list[MetricValue]  # per runtime (and batch size); params carry {"sweep": true}
    extra: dict[str, Any] = field(default_factory=dict)


def _unavailable_summary(reason: str) -> SweepSummary:
    return SweepSummary(values=[MetricValue.unavailable("framework_tax", reason),
                                MetricValue.unavailable("batch_knee", reason)],
                        details=[], extra={"error": reason})


def _detail(v: MetricValue, **params: Any) -> MetricValue:
    return replace(v, params={**v.params, "sweep": True, **params})


def _headline(v: MetricValue, **params: Any) -> MetricValue:
    """A detail value promoted to the run's headline: no "sweep" / "batch_size" keys (is_detail)."""
    p = {k: x for k, x in v.params.items() if k not in ("sweep", "batch_size")}
    return replace(v, params={**p, **params})


def _latency_value(lat_s: np.ndarray, b: int, runtime: str, seed: int) -> MetricValue:
    ms = lat_s * 1e3
    lo, hi = percentile_ci(ms, 50.0, seed=seed)
    return MetricValue("latency_p50_ms", float(np.median(ms)), TIMER, n=int(ms.size), ci_low=lo, ci_high=hi,
                       params={"sweep": True, "batch_size": b, "runtime": runtime})


def _throughput_value(lat_s: np.ndarray, b: int, runtime: str, seed: int) -> MetricValue:
    """Samples over the time spent in the timed calls at this size (closed loop, back to back).

    b / mean latency; its CI is b over the bootstrap CI of the mean.
    """
    mean_lo, mean_hi = bootstrap_ci(lat_s, lambda x, axis=-1: np.mean(x, axis=axis), seed=seed)
    window_s = float(lat_s.sum())
    return MetricValue("throughput_sps", b * lat_s.size / window_s, TIMER, n=int(lat_s.size),
                       ci_low=None if mean_hi is None else b / mean_hi, ci_high=None if mean_lo is None else b / mean_lo,
                       params={"sweep": True, "batch_size": b, "runtime": runtime, "window_s": window_s,
                               "samples": int(b * lat_s.size)})


def _tax_values(entry: dict[str, Any], runtime: str, sizes: list[int], lats: list[np.ndarray], *,
                n_resamples: int, seed: int) -> dict[int, MetricValue]:
    """FT(b) per swept size: from the profiled pass, or (kind command) the intercept estimate."""
    if entry.get("kind") == "command":
        if len(sizes) < 2:
            why = (f"the sweep reached only batch sizes {sizes} ({entry.get('stop_reason') or 'no reason given'}); "
                   "the intercept estimate needs at least 2")
            return {b: MetricValue.unavailable("framework_tax", why, tried="estimate:intercept", batch_size=b,
                                               runtime=runtime, sweep=True) for b in sizes}
        est = estimate_framework_tax(sizes, lats, n_resamples=n_resamples, seed=seed, runtime=runtime)
        return {b: _detail(v) for b, v in est.items()}
    out: dict[int, MetricValue] = {}
    by_size = {int(d["batch_size"]): d for d in entry.get("decompositions") or []}
    for b in sizes:
        d = by_size.get(b)
        params = {"sweep": True, "batch_size": b, "runtime": runtime}
        if d is None:
            out[b] = MetricValue.unavailable("framework_tax", "no profiled pass was run at this batch size", **params)
        elif d.get("reason") or not d.get("wall_s"):
            out[b] = MetricValue.unavailable("framework_tax", d.get("reason") or "no samples", tried=d.get("method"),
                                             **params)
        else:
            try:
                out[b] = summarize_tax(d["wall_s"], d["compute_s"], d["method"], n_resamples=2 * n_resamples,
                                       seed=seed, **{**(d.get("details") or {}), **params})
            except ValueError as exc:  # malformed samples: a reason, never a failed run
                out[b] = MetricValue.unavailable("framework_tax", str(exc), tried=d.get("method"), **params)
    return out


def _knee_extra(v: MetricValue, fit) -> dict[str, Any]:
    return {"value": v.value, "ci_low": v.ci_low, "ci_high": v.ci_high, "method": v.method,
            "n_resamples": fit.n_resamples, "flat_observed": fit.flat_observed,
            "compute_bound_observed": fit.compute_bound_observed, "flat_latency_ms": fit.flat_latency_s * 1e3,
            "slope_ms_per_sample": fit.slope_s_per_sample * 1e3, "intercept_ms": fit.intercept_s * 1e3,
            "rise_ratio": fit.rise_ratio, "crossover_batch": fit.crossover_batch,
            "crossover_ci_low": fit.crossover_ci_low, "crossover_ci_high": fit.crossover_ci_high}


def _value_extra(v: MetricValue) -> dict[str, Any]:
    return {"value": v.value, "ci_low": v.ci_low, "ci_high": v.ci_high, "n": v.n, "method": v.method,
            **({"note": v.note} if v.note else {})}


def summarize_sweep(payload: dict[str, Any] | None, *, n_resamples: int = N_RESAMPLES, seed: int = 0) -> SweepSummary:
    """Every value and the run.extra["sweep"] record of one batch_sweep run, from the worker's payload."""
    if not isinstance(payload, dict) or not isinstance(payload.get("runtimes"), dict):
        return _unavailable_summary("the worker returned no sweep payload")
    primary = payload.get("primary_runtime")
    values: list[MetricValue] = []
    details: list[MetricValue] = []
    extra_rt: dict[str, dict[str, Any]] = {}
    medians: dict[str, dict[int, float]] = {}
    not_available: dict[str, str] = {}
    for runtime, entry in payload["runtimes"].items():
        is_primary = runtime == primary
        rec: dict[str, Any] = {"available": bool(entry.get("available")), "reason": entry.get("reason"),
                               "primary": is_primary, "how": entry.get("how"), "convert_s": entry.get("convert_s")}
        extra_rt[runtime] = rec
        if not entry.get("available"):
            not_available[runtime] = entry.get("reason") or "not available"
            continue
        sizes = [int(b) for b in entry.get("batch_sizes") or []]
        lats = [np.asarray(x, dtype=float) for x in entry.get("latencies_s") or []]
        rec.update(batch_sizes=sizes, stopped_at=entry.get("stopped_at"), stop_reason=entry.get("stop_reason"),
                   sweep_s=entry.get("sweep_s"), profile_s=entry.get("profile_s"))
        if not sizes:
            why = f"the sweep measured no batch size ({entry.get('stop_reason') or 'no reason given'})"
            not_available[runtime] = why
            rec["reason"] = why
            if is_primary:
                values += [MetricValue.unavailable("framework_tax", why, runtime=runtime),
                           MetricValue.unavailable("batch_knee", why, runtime=runtime)]
            continue
        medians[runtime] = {b: float(np.median(x)) for b, x in zip(sizes, lats)}
        rec["median_latency_ms"] = {str(b): m * 1e3 for b, m in medians[runtime].items()}
        for b, x in zip(sizes, lats):
            details += [_latency_value(x, b, runtime, seed), _throughput_value(x, b, runtime, seed)]
        taxes = _tax_values(entry, runtime, sizes, lats, n_resamples=n_resamples, seed=seed)
        details += list(taxes.values())
        rec["framework_tax"] = {str(b): v.value for b, v in taxes.items()}
        rec["framework_tax_method"] = sorted({v.method for v in taxes.values()})
        rec["framework_tax_unavailable"] = {str(b): v.note for b, v in taxes.items() if v.value is None} or None
        # The truth lies between this and the profiled FT (profiler cost all outside the operators).
        rec["framework_tax_lower_bound"] = {str(b): v.params["tax_lower_bound"] for b, v in taxes.items()
                                            if v.value is not None and "tax_lower_bound" in v.params} or None
        if is_primary:
            head = taxes.get(HEADLINE_BATCH)
            values.append(_headline(head, runtime=runtime, at_batch_size=HEADLINE_BATCH) if head is not None else
                          MetricValue.unavailable("framework_tax", f"the sweep did not measure batch size "
                                                  f"{HEADLINE_BATCH}", runtime=runtime))
        # the knee
        if len(sizes) >= MIN_SIZES_FOR_KNEE:
            fit = fit_batch_knee(sizes, lats, n_resamples=n_resamples, seed=seed)
            knee = knee_metric(fit, runtime=runtime)
            rec["knee"] = _knee_extra(knee, fit)
        else:
            stop = entry.get("stop_reason")
            why = (f"the sweep covered batch sizes {sizes}" + (f" and stopped at {entry.get('stopped_at')}: {stop}"
                                                                if stop else "")
                   + f"; a knee needs at least {MIN_SIZES_FOR_KNEE} batch sizes")
            knee = MetricValue.unavailable("batch_knee", why, runtime=runtime)
            rec["knee"] = None
            rec["knee_unavailable"] = why
        if is_primary:
            values.append(knee)
        else:
            details.append(_detail(knee))
        # fixed per-call overhead: estimate:intercept, never ranked against a measurement
        if len(sizes) >= 2:
            fixed = estimate_fixed_overhead(sizes, lats, n_resamples=n_resamples, seed=seed, runtime=runtime)
            rec["fixed_overhead_ms"] = _value_extra(fixed)
            if is_primary:
                values.append(fixed)
            else:
                details.append(_detail(fixed))
    extra: dict[str, Any] = {
        "kind": payload.get("kind"), "primary_runtime": primary,
        "batch_sizes_requested": payload.get("batch_sizes_requested"), "max_batch": payload.get("max_batch"),
        "repeats": payload.get("repeats"), "runtimes_requested": payload.get("runtimes_requested"),
        "stopped_at": extra_rt.get(primary, {}).get("stopped_at"),
        "stop_reason": extra_rt.get(primary, {}).get("stop_reason"),
        "runtimes": extra_rt,
        "relative_to_best": {rt: {str(b): r for b, r in by_b.items()} for rt, by_b in relative_to_best(medians).items()},
        "not_available": not_available,
        "threads": payload.get("threads"),
        "timing_s": {k: payload.get(k) for k in ("derive_s", "phase_s")},
    }
    if not any(v.name == "framework_tax" for v in values):  # the primary runtime was not swept at all
        values.append(MetricValue.unavailable("framework_tax", f"no sweep of the submitted runtime {primary!r}"))
    if payload.get("sequence_length") is not None:
        extra["sequence_length"] = payload["sequence_length"]
    by_len = payload.get("by_sequence_length")
    if isinstance(by_len, dict) and by_len:
        # Batch x sequence length (the Framework Tax paper's central figure): each length summarised
        # like the run's own sweep; all its values are detail rows tagged with the length.
        extra["by_sequence_length"] = {}
        for length, sub in by_len.items():
            if not isinstance(sub, dict) or not isinstance(sub.get("runtimes"), dict):
                continue
            part = summarize_sweep({k: v for k, v in payload.items() if k != "by_sequence_length"} | sub,
                                   n_resamples=n_resamples, seed=seed)
            details += [_detail(v, sequence_length=int(length)) for v in part.values + part.details]
            extra["by_sequence_length"][str(length)] = {k: part.extra[k] for k in
                                                        ("runtimes", "relative_to_best", "not_available")}
    return SweepSummary(values=values, details=details, extra=extra)


# ---- k trials: one pooled sweep ----------------------------------------------------------------------
CELL_KEYS = ("runtime", "sequence_length", "batch_size")
# Per-trial bookkeeping a pooled cell does not inherit: it gets its own CI record and sums.
_TRIAL_ONLY = ("trial", "ci_sampling", "ci_method", "noise_model", "tax_lower_bound", "window_s", "samples",
               "group_id", "trial_run_ids")


def _cell(m: MetricValue) -> tuple:
    return (m.name, *(m.params.get(k) for k in CELL_KEYS))


def _mean_ci(ms: Sequence[Any]) -> tuple[float | None, float | None]:
    """The mean of the trials' own sampling CIs (before any between-run widening: pooling adds that)."""
    cis = [(m.params.get("ci_sampling") or [m.ci_low, m.ci_high]) if hasattr(m, "params") else
           [m.get("ci_low"), m.get("ci_high")] for m in ms]
    if any(c[0] is None or c[1] is None for c in cis):
        return None, None
    return float(np.mean([c[0] for c in cis])), float(np.mean([c[1] for c in cis]))


def _pool_cell(ms: list[MetricValue], k: int) -> MetricValue:
    last = ms[-1]
    params = {p: x for p, x in last.params.items() if p not in _TRIAL_ONLY}
    vals = [m.value for m in ms if m.value is not None]
    if len(vals) < k:
        why = next((m.note for m in reversed(ms) if m.value is None and m.note), None)
        return MetricValue.unavailable(last.name, f"measured in {len(vals)} of {k} trials; a pooled cell needs "
                                       "every trial" + (f" ({why})" if why else ""), **params, pooled=True, trials=k)
    method = next(m.method for m in ms if m.value is not None)
    value = None
    if last.name == "throughput_sps" and all("window_s" in m.params and "samples" in m.params for m in ms):
        value = sum(m.params["samples"] for m in ms) / sum(m.params["window_s"] for m in ms)
        params.update(window_s=sum(m.params["window_s"] for m in ms), samples=sum(m.params["samples"] for m in ms))
    v = pool_trial_values(last.name, vals, method, value=value, n=sum(m.n or 0 for m in ms) or None, ci=_mean_ci(ms))
    bounds = [m.params.get("tax_lower_bound") for m in ms]
    if last.name == "framework_tax" and all(b is not None for b in bounds):
        params["tax_lower_bound"] = min(float(np.mean(bounds)), v.value)  # a bound never above the value
    return replace(v, note=f"{v.note}; each cell's mean over the trials", params={**params, **v.params})


def _pool_knee(knees: list[dict | None], k: int) -> tuple[dict | None, str | None]:
    """A run.extra knee (or fixed overhead) record pooled over the trials' records."""
    have = [x for x in knees if x and x.get("value") is not None]
    if len(have) < k:
        return None, f"a knee in {len(have)} of {k} trials; a pooled knee needs every trial"
    v = pool_trial_values("batch_knee", [x["value"] for x in have], "estimate:pooled", ci=_mean_ci(have))
    return {**have[-1], "value": v.value, "ci_low": v.ci_low, "ci_high": v.ci_high,
            "trial_values": v.params["trial_values"], "between_trial_sd": v.params["between_trial_sd"]}, None


def _pool_level(level: dict[str, Any], trial_levels: list[dict[str, Any]], cells: dict[tuple, MetricValue],
                seq: int | None, k: int) -> dict[str, Any]:
    """One sweep record (the run's own length, or one entry of by_sequence_length) with pooled numbers."""
    out = copy.deepcopy(level)
    medians: dict[str, dict[int, float]] = {}
    for rt, rec in (out.get("runtimes") or {}).items():
        if not rec.get("median_latency_ms"):
            continue
        sizes = sorted({b for (name, r, s, b) in cells if r == rt and s == seq and b is not None})
        lat = {b: cells[("latency_p50_ms", rt, seq, b)] for b in sizes if ("latency_p50_ms", rt, seq, b) in cells}
        tax = {b: cells[("framework_tax", rt, seq, b)] for b in sizes if ("framework_tax", rt, seq, b) in cells}
        rec["median_latency_ms"] = {str(b): m.value for b, m in lat.items() if m.value is not None}
        rec["latency_unavailable"] = {str(b): m.note for b, m in lat.items() if m.value is None} or None
        rec["framework_tax"] = {str(b): m.value for b, m in tax.items()}
        rec["framework_tax_unavailable"] = {str(b): m.note for b, m in tax.items() if m.value is None} or None
        rec["framework_tax_lower_bound"] = {str(b): m.params["tax_lower_bound"] for b, m in tax.items()
                                            if m.value is not None and "tax_lower_bound" in m.params} or None
        medians[rt] = {b: m.value for b, m in lat.items() if m.value is not None}
        trial_recs = [(t.get("runtimes") or {}).get(rt) or {} for t in trial_levels]
        if rec.get("knee") is not None:
            rec["knee"], why = _pool_knee([t.get("knee") for t in trial_recs], k)
            if why:
                rec["knee_unavailable"] = why
        if rec.get("fixed_overhead_ms") is not None:
            fo, _ = _pool_knee([t.get("fixed_overhead_ms") for t in trial_recs], k)
            rec["fixed_overhead_ms"] = fo
    medians = {rt: m for rt, m in medians.items() if m}
    out["relative_to_best"] = {rt: {str(b): r for b, r in by_b.items()} for rt, by_b in relative_to_best(medians).items()}
    return out


def pool_sweep(trials: Sequence[tuple[dict[str, Any] | None, Sequence[MetricValue]]]
               ) -> tuple[list[MetricValue], dict[str, Any] | None]:
    """One batch_sweep pooled over k trials, each ``(run.extra["sweep"], its sweep detail rows)``.

    Every cell (metric, runtime, sequence length, batch size) becomes the mean of its k trial
    values (throughput: total samples over total time), with a CI that is the union of the mean of
    the trials' own CIs and the t-interval over the trial values (bench/stats.py pool_trial_values),
    so it is never narrower than the spread between fresh workers. A cell that some trial did not
    measure is unavailable, with how many trials measured it: a mean over fewer trials would mix
    samples of different sizes. Returns the pooled rows and the pooled ``run.extra["sweep"]``
    (latencies, FT, knees, fixed overheads and relative_to_best recomputed from the pooled numbers;
    ``pooled``: {"trials": k}); (rows, None) when no trial has a sweep record.
    """
    k = len(trials)
    by_cell: dict[tuple, list[MetricValue]] = {}
    for _, rows in trials:
        for m in rows:
            if m.params.get("sweep") and not m.params.get("pooled"):
                by_cell.setdefault(_cell(m), []).append(m)
    cells = {key: _pool_cell(ms, k) for key, ms in by_cell.items()}
    extras = [e for e, _ in trials if isinstance(e, dict) and isinstance(e.get("runtimes"), dict)]
    if not extras:
        return list(cells.values()), None
    pooled = _pool_level(extras[-1], extras, cells, None, k)  # the run's own sweep: rows without a length
    by_len = extras[-1].get("by_sequence_length")
    if isinstance(by_len, dict):
        pooled["by_sequence_length"] = {
            length: _pool_level(sub, [((e.get("by_sequence_length") or {}).get(length) or {}) for e in extras],
                                cells, int(length), k)
            for length, sub in by_len.items() if isinstance(sub, dict)}
    pooled["pooled"] = {"trials": k}
    return list(cells.values()), pooled


def shown_sweep(extra: dict[str, Any] | None) -> dict[str, Any] | None:
    """The sweep record a run shows: pooled over its trials where it holds one, else its own."""
    extra = extra if isinstance(extra, dict) else {}
    for key in ("sweep_pooled", "sweep"):
        if isinstance(extra.get(key), dict):
            return extra[key]
    return None


# ---- presentation (the CLI renders these rows) -------------------------------------------------------
def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}f}"


def sweep_tables(extra: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, columns, rows) tables of a run's ``extra["sweep"]``: latency, FT(b), knees."""
    rts = {rt: r for rt, r in (extra.get("runtimes") or {}).items() if r.get("median_latency_ms")}
    if not rts:
        return [("batch sweep", ["runtime", "not available"],
                 [[rt, r.get("reason") or ""] for rt, r in (extra.get("runtimes") or {}).items()]
                 or [["—", extra.get("error") or "no sweep"]])]
    sizes = sorted({int(b) for r in rts.values() for b in r["median_latency_ms"]})
    rel = extra.get("relative_to_best") or {}
    names = list(rts)
    lat_rows = [[str(b)] + [(f"{r['median_latency_ms'][str(b)]:.4g} ({_fmt(rel.get(rt, {}).get(str(b)), 2)}x)"
                             if str(b) in r["median_latency_ms"] else "—") for rt, r in rts.items()] for b in sizes]
    tax_rows = [[str(b)] + [_tax_cell(r, b) for r in rts.values()] for b in sizes]
    knee_rows = []
    for rt, r in rts.items():
        k = r.get("knee")
        fo = r.get("fixed_overhead_ms") or {}
        knee = _knee_cell(k) if k else "n/a: " + (r.get("knee_unavailable") or "")
        cross = _fmt(k.get("crossover_batch"), 0) if k else "—"
        knee_rows.append([rt, knee, ("yes" if k["flat_observed"] else "no") if k else "—", cross,
                          _fmt(fo.get("value"), 4), ", ".join(r.get("framework_tax_method") or []),
                          r.get("stop_reason") or "reached the cap"])
    own = (f", at sequence length {extra['sequence_length']}" if extra.get("sequence_length") is not None
           and len(extra.get("by_sequence_length") or {}) > 1 else "")
    tables = [
        ("batch sweep: latency p50 ms (relative to the best runtime)" + own, ["batch"] + names, lat_rows),
        ("framework tax FT(b) = (T_wall - T_compute) / T_wall, profiled pass (>= lower bound if the profiler's "
         "own cost lies outside the operators; (est.) = intercept estimate)",
         ["batch"] + names, tax_rows),
        ("knee b* [95% CI], crossover batch, fixed overhead (estimate:intercept)",
         ["runtime", "knee b*", "flat seen", "crossover b", "fixed ms", "FT method", "sweep stop"], knee_rows),
    ]
    tables += _length_tables(extra)
    na = [[rt, why] for rt, why in (extra.get("not_available") or {}).items()]
    levels = [("", rts)] + [(f"s = {L}, ", sub.get("runtimes") or {}) for L, sub in
                            (extra.get("by_sequence_length") or {}).items()
                            if isinstance(sub, dict) and str(L) != str(extra.get("sequence_length"))]
    for at, recs in levels:  # a runtime that ran, but whose profiler could not decompose a call
        for rt, r in recs.items():
            for key, metric in (("latency_unavailable", "latency"), ("framework_tax_unavailable", "framework_tax")):
                for why in dict.fromkeys((r.get(key) or {}).values()):  # latency: a cell some trial missed
                    sizes_ = [b for b, w in r[key].items() if w == why]
                    na.append([rt, f"{at}{metric} at b = {', '.join(sizes_)}: {why}"])
    if na:
        tables.append(("not available", ["runtime", "reason"], na))
    k = (extra.get("pooled") or {}).get("trials")
    if k:  # every number is a mean over k fresh workers; cells some trial missed read "—"
        tables = [(f"{t} — pooled over {k} trials", c, r) for t, c, r in tables]
    return tables


def _tax_cell(r: dict[str, Any], b: int, bound: bool = True) -> str:
    """FT at batch size ``b`` of one runtime's summary: the value, its lower bound, (est.) for an estimate."""
    cell = _fmt((r.get("framework_tax") or {}).get(str(b)))
    lower = (r.get("framework_tax_lower_bound") or {}).get(str(b)) if bound else None
    estimated = any(m.startswith("estimate:") for m in r.get("framework_tax_method") or [])
    return cell + (f" (>= {lower:.3f})" if lower is not None else "") + (" (est.)" if estimated and cell != "—" else "")


def _knee_cell(k: dict[str, Any]) -> str:
    return f"{_fmt(k['value'], 1)} [{_fmt(k['ci_low'], 1)}, {_fmt(k['ci_high'], 1)}]"


def _length_tables(extra: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """One batch x sequence-length grid per runtime (``--seq-lengths`` with two or more lengths):
    FT(b, s), latency p50 and its ratio to the best runtime in that cell, and the knee per length."""
    by_len = {int(k): v for k, v in (extra.get("by_sequence_length") or {}).items() if isinstance(v, dict)}
    if len(by_len) < 2:
        return []
    lengths = sorted(by_len)
    runtimes = list(dict.fromkeys(rt for L in lengths for rt in (by_len[L].get("runtimes") or {})))
    out = []
    for rt in runtimes:
        per = {L: (by_len[L].get("runtimes") or {}).get(rt) or {} for L in lengths}
        sizes = sorted({int(b) for r in per.values() for b in (r.get("median_latency_ms") or {})})
        if not sizes:
            continue
        rows = []
        for b in sizes:
            row = [str(b)]
            for L in lengths:
                r, rel = per[L], (by_len[L].get("relative_to_best") or {}).get(rt, {}).get(str(b))
                lat = (r.get("median_latency_ms") or {}).get(str(b))
                row.append("—" if lat is None else
                           f"{_tax_cell(r, b, bound=False)} · {lat:.4g} ms" + (f" ({rel:.2f}x)" if rel is not None else ""))
            rows.append(row)
        rows.append(["knee b*"] + [_knee_cell(per[L]["knee"]) if per[L].get("knee") else "—" for L in lengths])
        out.append((f"{rt}: FT(b, s) · latency p50 (relative to the best runtime in the cell), batch x sequence "
                    "length", ["batch"] + [f"s = {L}" for L in lengths], rows))
    return out
