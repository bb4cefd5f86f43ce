"""Submit, queue, execute and store: the data flow of DESIGN.md, as functions the CLI calls.

A run's results are written in one transaction. Any failure - a bad manifest, an unknown
profile, a crashing model - ends as a failed run record with a one-line reason and the
stderr tail; nothing else in the database changes and the other queued runs still run.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from heptathlon.bench.contention import contention_metric, is_contended
from heptathlon.bench.errors import HeptathlonError, RunError
from heptathlon.bench.app.fairness import run_fairness
from heptathlon.bench.fingerprint import fingerprint_hash
from heptathlon.bench.manifest import IGNORED, Manifest, artifact_files, hash_folder, load_manifest
from heptathlon.bench.metrics import MetricValue, SampleKind, is_detail
from heptathlon.bench.profile import Profile, load_profile
from heptathlon.bench.run_status import RunStatus
from heptathlon.bench.scenarios import ScenarioConfig
from heptathlon.bench.stats import stop_reason, summarize_accuracy, summarize_loop
from heptathlon.bench.tasks import resolve_task, task_data_files
from heptathlon.bench.types import MeterSettings, WorkerJob
from heptathlon.db import queries as Q
from heptathlon.db.session import ensure_schema, home_dir, session_scope
from heptathlon.runners.adapters.registry import validate_runtime_names, validate_runtime_sections
from heptathlon.runners.controls.cores import resolve_cores, wait_for_quiet
from heptathlon.runners.executors.base import Executor, WorkerOutcome
from heptathlon.runners.executors.local import LocalExecutor
from heptathlon.runners.metering import energy_values

DEFAULT_TIMEOUT_S = 120.0
RUN_PARAMS = ("timeout_s", "energy")  # run.params keys that are not part of the scenario config


@dataclass
class RunOutcome:
    run_id: str
    status: str
    error: str | None
    submission: str
    profile: str
    scenario: str
    metrics: dict[str, MetricValue]
    stderr_tail: str | None = None
    sweep: dict[str, Any] | None = None  # batch_sweep: run.extra["sweep"]

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "error": self.error, "submission": self.submission,
                "profile": self.profile, "scenario": self.scenario,
                "metrics": {k: v.to_json() for k, v in self.metrics.items()},
                **({"sweep": self.sweep} if self.sweep is not None else {})}


# ---- artifact store -----------------------------------------------------------------------------
def store_submission(folder: Path, home: Path | None = None) -> tuple[Manifest, str, Path]:
    """Validate, hash and keep an immutable copy, so a result always points at exactly what ran."""
    folder = Path(folder)
    manifest = load_manifest(folder)
    task = resolve_task(manifest.task, folder)  # unknown task: a clear error before anything is stored
    task.load()  # a task file whose data does not parse fails here, before anything is stored
    sha = hash_folder(folder)
    dest = Path(home or home_dir()) / "artifacts" / sha
    if not dest.exists():
        tmp = Path(tempfile.mkdtemp(dir=dest.parent.parent if dest.parent.exists() else None))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(folder, tmp / "copy", ignore=shutil.ignore_patterns(*IGNORED))
        for p in (tmp / "copy").rglob("*"):
            if p.is_file():
                p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.replace(tmp / "copy", dest)
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest, sha, dest


# ---- queueing -----------------------------------------------------------------------------------
def queue_runs(folder: Path, profiles: list[str], scenarios: list[ScenarioConfig], *, db: str | None = None,
               trials: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S, group_id: str | None = None,
               extra: dict[str, Any] | None = None, energy: dict[str, Any] | None = None) -> list[str]:
    """Register the submission and queue one run per profile x scenario x trial.

    A validation error still leaves one failed run per requested combination, then re-raises.
    """
    ensure_schema(db)
    group_id = group_id or str(uuid.uuid4())
    ref = str(Path(folder))
    try:
        manifest, sha, store = store_submission(Path(folder))
        resolved = [validate_runtime_sections(load_profile(p)) for p in profiles]
        for sc in scenarios:
            validate_runtime_names(sc.validate())
    except HeptathlonError as e:
        e.run_ids = record_rejected(ref, profiles, [sc.name for sc in scenarios], e, db, group_id=group_id,
                                    params=[sc.to_params() for sc in scenarios])
        raise
    ids = []
    with session_scope(db) as s:
        sub = Q.get_or_create_submission(s, name=manifest.name, version=manifest.version, task=manifest.task,
                                         kind=manifest.model.kind, sha256=sha, manifest=manifest.model_dump(mode="json"),
                                         store_path=str(store))
        task = resolve_task(manifest.task, folder)
        Q.get_or_create_task(s, task.name, {"description": task.description, "metric": task.metric,
                                            "group_attributes": list(task.group_attributes)})
        for prof in resolved:
            prow = Q.get_or_create_profile(s, prof)
            for sc in scenarios:
                for trial in range(trials):
                    rid = str(uuid.uuid4())
                    Q.create_run(s, id=rid, submission_id=sub.id, profile_id=prow.id, submission_ref=ref,
                                 profile_name=prof.name, task_name=task.name, scenario=sc.name,
                                 params={**sc.to_params(), "timeout_s": timeout_s, "energy": dict(energy or {})},
                                 status=RunStatus.QUEUED, trial=trial,
                                 group_id=group_id, extra=dict(extra or {}))
                    ids.append(rid)
    return ids


def record_rejected(ref: str | Path, profiles: list[str], scenario_names: list[str], error: Exception,
                    db: str | None = None, group_id: str | None = None, params: list[dict] | None = None) -> list[str]:
    """Failed-run records for a request rejected before anything ran. Nothing else is written."""
    ensure_schema(db)
    ids = []
    with session_scope(db) as s:
        for p in profiles:
            for i, name in enumerate(scenario_names):
                rid = str(uuid.uuid4())
                Q.create_run(s, id=rid, submission_ref=str(ref), profile_name=p, scenario=name, task_name=None,
                             params=params[i] if params else {}, status=RunStatus.FAILED, error=str(error),
                             stderr_tail=str(error), group_id=group_id, finished_at=Q.utcnow())
                ids.append(rid)
    return ids


def queued_run_ids(db: str | None = None) -> list[str]:
    ensure_schema(db)
    with session_scope(db) as s:
        return [r.id for r in Q.queued_runs(s)]


# ---- reading ----------------------------------------------------------------------------------------
def leaderboard_groups(db: str | None = None, *, task=None, profile=None, scenario=None,
                       rank_by: str = "latency_p50_ms", include_contended: bool = False) -> list[dict[str, Any]]:
    """Leaderboard rows grouped by (task, profile, scenario, machine), ranked with CI ties.

    Only measured values are ranked: an entry whose rank metric is an estimate or missing gets
    no rank rather than a place among measurements. A contended run (its ``contention_share``
    row is marked, heptathlon.bench.contention) gets no rank either unless ``include_contended``;
    every row says ``contended``.
    """
    from heptathlon.bench.metrics import METRICS
    from heptathlon.bench.ranking import rank_with_ties

    ensure_schema(db)
    with session_scope(db) as s:
        rows = Q.leaderboard(s, task=task, profile=profile, scenario=scenario)  # pooled values where k trials ran
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["profile"], r["scenario"], r["machine_id"]), []).append(r)
    lower = METRICS[rank_by].lower_is_better is not False
    out = []
    for (task_, prof, scen, mach), rs in groups.items():
        for r in rs:
            c = r["metrics"].get("contention_share")
            r["contended"] = c is not None and is_contended(c.params)
        rankable = [(r["run_id"], m.value, m.ci_low, m.ci_high) for r in rs
                    if (m := r["metrics"].get(rank_by)) is not None and m.value is not None
                    and not m.method.startswith("estimate:") and (include_contended or not r["contended"])]
        ranks = {x.key: x for x in rank_with_ties(rankable, lower_is_better=lower)}
        for r in rs:
            rk = ranks.get(r["run_id"])
            r["rank"] = rk.label if rk else "—"
            r["_sort"] = (rk.best, rk.worst) if rk else (10**9, 10**9)
            r["_m"] = r["metrics"]
            r["metrics"] = {k: {"value": m.value, "unit": m.unit, "ci_low": m.ci_low, "ci_high": m.ci_high,
                                "n": m.n, "method": m.method} for k, m in r["metrics"].items()}
        rs.sort(key=lambda r: r["_sort"])
        out.append({"task": task_, "profile": prof, "scenario": scen, "machine_id": mach,
                    "rows": [{k: v for k, v in r.items() if not k.startswith("_")} | {"_m": r["_m"]} for r in rs]})
    return out


# ---- execution ----------------------------------------------------------------------------------
def prepare_job(run_id: str, manifest: Manifest, store: Path, profile: Profile, cfg: ScenarioConfig,
                params: dict[str, Any], run_dir: Path, data: Any) -> tuple[WorkerJob, dict | None]:
    """The worker's own writable copy of the stored submission (labels removed), its inputs,
    and the typed job; with the precision record when the model was derived (ONNX int8/fp16)."""
    if not store.exists():
        raise RunError(f"run {run_id}: stored artifact {store} is missing; submit the folder again")
    workdir = run_dir / "work"
    shutil.copytree(store, workdir)
    for p in workdir.rglob("*"):
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
    for rel in task_data_files(manifest.task, workdir):  # labels never reach the model
        (workdir / rel).unlink(missing_ok=True)
    inputs = run_dir / "inputs.npy"
    np.save(inputs, data.x_test)  # inputs only: labels stay in this process
    context, precision_record = derive_precision(manifest, workdir, profile)
    job = WorkerJob(run_id=run_id, folder=workdir, manifest=manifest, profile=profile, scenario=cfg.to_params(),
                    inputs=inputs, out_dir=run_dir, context=context,
                    meters=MeterSettings.model_validate(params.get("energy") or {}))
    return job, precision_record


def derive_precision(manifest: Manifest, workdir: Path, profile: Profile) -> tuple[dict[str, Any], dict | None]:
    """For ONNX under a non-fp32 profile, derive the model (int8: ORT dynamic quantisation, cached by
    content hash) in the parent and place it in the worker's copy. The weights stay the
    submitter's; only the numerics change. Torch precisions are applied in the worker."""
    if manifest.model.kind != "onnx" or profile.precision == "fp32":
        return {}, None
    from heptathlon.runners.quantize import prepare_onnx_precision

    path, record = prepare_onnx_precision(workdir / manifest.model.path, profile.precision,
                                          home_dir() / "cache" / "precision", device=profile.device,
                                          profile_name=profile.name,
                                          best_effort=profile.allows_best_effort("precision"))
    if path == workdir / manifest.model.path:
        return {}, record
    derived = workdir / f".heptathlon-{profile.precision}.onnx"
    shutil.copyfile(path, derived)
    return {"model_path_override": str(derived)}, record


MEMORY_RULE = ("the run's own cgroup counter where the run had its own memory cgroup; else the sampled "
               "process-tree PSS; the other is stored beside it as a detail row")


def memory_values(outcome: WorkerOutcome) -> list[MetricValue]:
    """peak_rss_mb by the headline rule (MEMORY_RULE, docs/performance.md "Memory"), the other method beside."""
    rss, cg = outcome.tree_rss, outcome.cgroup_peak
    sampled = rss.to_metric("peak_rss_mb")
    if cg is not None and cg.peak_bytes:  # the kernel's exact counter of the run's own cgroup
        source = Path(cg.source).name if cg.source else "?"
        head = MetricValue("peak_rss_mb", cg.peak_bytes / 1e6, f"{cg.method}:{source}", n=1,
                           note=f"high-water mark of the run's own cgroup ({source}): every process of the run, "
                                f"page cache included; sampled tree PSS peak {(rss.peak_bytes or 0) / 1e6:.1f} MB "
                                "beside it",
                           params={"headline_rule": MEMORY_RULE, "producer": cg.source,
                                   "sampled_peak_mb": (rss.peak_bytes or 0) / 1e6, "sampled_method": rss.method})
        beside = replace_params(sampled, detail=True, role="beside the cgroup headline")
        return [head, beside]
    why = "no memory cgroup of its own for this run" if cg is None else (cg.note or "the cgroup counter read 0")
    return [replace_params(sampled, headline_rule=MEMORY_RULE, producer="psutil memory_full_info().pss per process",
                           cgroup=why)]


def replace_params(v: MetricValue, **params: Any) -> MetricValue:
    from dataclasses import replace

    return replace(v, params={**v.params, **params})


def compute_metrics(outcome: WorkerOutcome, y_true: np.ndarray, manifest: Manifest, store: Path,
                    meters: MeterSettings | None = None) -> list[MetricValue]:
    """Statistics from raw samples, computed in the parent (the worker only timestamps)."""
    result = outcome.result
    a = result.arrays
    # latency (+ early stopping), throughput, and per scenario: adaptive width, server rates and SLO, issue drift
    values = summarize_loop(a.issue_ns, a.done_ns, a.batch, result.loop)
    values.append(summarize_accuracy(y_true, a.preds))
    values += memory_values(outcome)
    values.append(MetricValue("load_s", result.ready_time - outcome.spawn_time, "timer:wall-clock", n=1,
                              note="process spawn to model ready"))
    d = result.describe
    if d.get("params") is not None:
        values.append(MetricValue("params", float(d["params"]), d["params_method"], n=1))
    else:
        values.append(MetricValue.unavailable("params", d.get("params_note", "not derivable from this artifact")))
    size = sum(p.stat().st_size for p in artifact_files(store, manifest))
    values.append(MetricValue("artifact_mb", size / 1e6, "artifact:file-size", n=1))
    if d.get("torch_cuda_max_allocated_bytes") is not None:  # beside NVML's per-process peak (the headline)
        values.append(MetricValue("gpu_peak_mb", d["torch_cuda_max_allocated_bytes"] / 1e6,
                                  "counter:torch-cuda-allocator", n=1,
                                  note="torch.cuda.max_memory_allocated: tensors only, no CUDA context or workspace",
                                  params={"detail": True}))
    values.append(contention_metric(outcome.contention, int(a.issue_ns[0]), int(a.done_ns[-1])))
    values = apply_noise_model(values, result.machine)  # between-run component, where the class has a model
    meters = meters or MeterSettings()
    values += energy_values(result.energy, (int(a.done_ns[-1]) - int(a.issue_ns[0])) / 1e9, int(a.batch.sum()),
                            meters.country_iso, None if meters.enabled else "meters disabled for this run (--no-meters)")
    return values


def apply_noise_model(values: list[MetricValue], fingerprint: dict | None, *, pooled: bool = False
                      ) -> list[MetricValue]:
    """Widen latency and throughput CIs by the machine class's between-run noise (heptathlon.bench.noise)."""
    from heptathlon.bench.app.noise import load_noise_model
    from heptathlon.bench.noise import NOISE_METRICS, widen_pooled, widen_single

    model = load_noise_model(fingerprint)
    if model is None:
        return values
    widen = widen_pooled if pooled else widen_single
    return [widen(v, model) if v.name in NOISE_METRICS else v for v in values]


def execute_run(run_id: str, *, db: str | None = None, executor: Executor | None = None,
                keep_dir: bool = False) -> RunOutcome:
    """Execute one queued run and store its results (or its failure) in one transaction."""
    executor = executor or LocalExecutor()
    with session_scope(db) as s:
        run = Q.get_run(s, run_id)
        if run is None:
            raise RunError(f"run {run_id}: no such run")
        sub = run.submission
        Q.mark_running(s, run_id)
        info = dict(submission=sub.name, profile=run.profile_name, scenario=run.scenario,
                    store=Path(sub.store_path), manifest=Manifest.model_validate(sub.manifest), params=dict(run.params))
    out = RunOutcome(run_id, RunStatus.FAILED, None, info["submission"], info["profile"], info["scenario"], {})
    run_dir = Path(tempfile.mkdtemp(prefix=f"heptathlon-run-{run_id[:8]}-"))
    try:
        profile, cores_record = resolve_cores(validate_runtime_sections(load_profile(info["profile"])))
        task = resolve_task(info["manifest"].task, info["store"])
        data = task.load()
        cfg = ScenarioConfig.from_params({k: v for k, v in info["params"].items() if k not in RUN_PARAMS})
        job, precision_record = prepare_job(run_id, info["manifest"], info["store"], profile, cfg, info["params"],
                                            run_dir, data)
        outcome = executor.execute(job, float(info["params"].get("timeout_s", DEFAULT_TIMEOUT_S)),
                                   hide=[str(home_dir())])
        out.stderr_tail = outcome.stderr_tail
        if not outcome.ok:
            raise RunError(outcome.error)
        result, arrays = outcome.result, outcome.result.arrays
        values = compute_metrics(outcome, data.y_test, info["manifest"], info["store"], job.meters)
        group_rows, fair_values = run_fairness(data, arrays.preds, arrays.scores)
        values += fair_values
        sweep = None
        if cfg.name == "batch_sweep":  # per-batch-size rows, knee and cross-runtime table (docs/framework-tax.md)
            from heptathlon.bench.sweep_stats import summarize_sweep

            sweep = summarize_sweep(result.sweep)
            values += sweep.values
        with session_scope(db) as s:
            # the fingerprint the worker took: a remote worker's machine, not this one
            machine = Q.get_or_create_machine(s, fingerprint_hash(result.machine), result.machine)
            run = Q.get_run(s, run_id)
            run.machine_id = machine.id
            run.status = RunStatus.SUCCEEDED
            run.finished_at = Q.utcnow()
            run.stderr_tail = outcome.stderr_tail[-2000:] or None
            run.controls = {**result.controls, "sandbox": outcome.sandbox,
                            **({"precision": precision_record} if precision_record else {}),
                            **({"cores_picked": cores_record} if cores_record else {})}
            run.software = result.machine["software"]  # software_context() on the worker's machine
            run.extra = {**(run.extra or {}), "describe": result.describe,
                         "n_queries": result.n_queries, "stopped_by": stop_reason(result.stopped_by, values),
                         "loop": result.loop, "executor": executor.name,
                         **({"sweep": sweep.extra} if sweep is not None else {})}
            Q.add_measurements(s, run_id, values)
            if sweep is not None:
                Q.add_measurements(s, run_id, sweep.details)  # params {"sweep": true, ...}: detail rows
            Q.add_samples(s, run_id, SampleKind.LATENCY_NS, arrays.done_ns - arrays.issue_ns)
            Q.add_samples(s, run_id, SampleKind.PREDICTIONS, arrays.preds)
            if arrays.scores is not None:
                Q.add_samples(s, run_id, SampleKind.SCORES, arrays.scores.astype(np.float32))
            Q.add_group_metrics(s, run_id, group_rows)
        out.status = RunStatus.SUCCEEDED
        # a metric's headline row, not a detail stored beside it (a detail only where it is all there is)
        out.metrics = {v.name: v for v in values if is_detail(v.params)} | \
            {v.name: v for v in values if not is_detail(v.params)}
        out.sweep = sweep.extra if sweep is not None else None
    except Exception as e:  # noqa: BLE001  every failure is recorded, then reported
        msg = str(e) if isinstance(e, HeptathlonError) else f"{type(e).__name__}: {e}"
        out.error = f"run {run_id[:8]} ({info['submission']} on {info['profile']}/{info['scenario']}): {msg}"
        with session_scope(db) as s:
            Q.record_failure(s, run_id, out.error, out.stderr_tail)
    finally:
        if not keep_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    return out


def wait_quiet_for_run(run_id: str, timeout_s: float, *, db: str | None = None,
                       on_wait: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``--wait-quiet``: before a run, wait (at most ``timeout_s``) until its cores are quiet,
    i.e. busy at most the contention threshold (heptathlon.bench.contention). Returns the record."""
    from heptathlon.bench.contention import contention_threshold

    with session_scope(db) as s:
        run = Q.get_run(s, run_id)
        if run is None:
            raise RunError(f"run {run_id}: no such run")
        name = run.profile_name
    profile = load_profile(name)
    threshold = contention_threshold()

    def progress(share: float, waited: float) -> None:
        if on_wait:
            on_wait(f"waiting for quiet cores for run {run_id[:8]} ({name}): busy {share:.0%} > {threshold:.0%}, "
                    f"{waited:.0f}/{timeout_s:.0f} s")

    return wait_for_quiet(profile, threshold, timeout_s, progress)


def execute_queued(run_ids: list[str], *, db: str | None = None,
                   on_progress: Callable[[int, RunOutcome | None, str], None] | None = None,
                   wait_quiet_s: float | None = None, on_wait: Callable[[str], None] | None = None
                   ) -> list[RunOutcome]:
    """Execute runs one after another; a failing run never stops the others. With
    ``wait_quiet_s``, each run first waits for its cores to be quiet (``wait_quiet_for_run``)."""
    outcomes = []
    for i, rid in enumerate(run_ids):
        if on_progress:
            on_progress(i, None, rid)
        if wait_quiet_s:
            wait_quiet_for_run(rid, wait_quiet_s, db=db, on_wait=on_wait)
        o = execute_run(rid, db=db)
        outcomes.append(o)
        if on_progress:
            on_progress(i + 1, o, rid)
    return outcomes


# ---- trials: pooled statistics; statistics again from stored samples ---------------------------------
_FROM_SAMPLES = ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_p90_early_ms",
                 "latency_p99_early_ms")
_SAME_EVERY_TRIAL = ("params", "artifact_mb")  # properties of the artifact, not of a trial


def pool_trials(group_id: str, *, db: str | None = None) -> dict[str, list[MetricValue]]:
    """Pool every series in a group (same submission, profile, scenario, parameters and machine)
    that has two or more succeeded trials, each run in its own fresh worker.

    Latency statistics come from the trials' raw samples pooled; every other value is the mean
    over trials (throughput: total samples over total window). Each pooled value's CI is at least
    the between-trial t-interval, and its params say {"pooled": true, "trials": k,
    "between_trial_sd": ...}. The set is stored on the series' last trial; that trial's own
    values stay beside it, and every trial's measurements are tagged {"trial": i}. Running it
    again replaces the pooled set. Returns {run id holding a pooled set: its values}.
    """
    import json

    from sqlalchemy import select

    from heptathlon.bench.stats import pool_latency_trials, pool_trial_values
    from heptathlon.db.models import Measurement, Run

    pooled_sets: dict[str, list[MetricValue]] = {}
    with session_scope(db) as s:
        # A query on the group's runs; heptathlon.db.queries has no group-level reader yet.
        runs = list(s.scalars(select(Run).where(Run.group_id == group_id, Run.status == RunStatus.SUCCEEDED)
                              .order_by(Run.trial, Run.finished_at)))
        series: dict[tuple, list[Run]] = {}
        for r in runs:
            key = (r.submission_id, r.profile_name, r.scenario, r.machine_id,
                   json.dumps(r.params or {}, sort_keys=True, default=str))
            series.setdefault(key, []).append(r)
        for trial_runs in series.values():
            if len(trial_runs) < 2:
                continue
            target = max(trial_runs, key=lambda r: (r.finished_at, r.trial))
            own: dict[str, dict[str, Measurement]] = {}
            for r in trial_runs:
                rows = list(s.scalars(select(Measurement).where(Measurement.run_id == r.id)))
                for m in rows:
                    if (m.params or {}).get("pooled"):
                        s.delete(m)  # an earlier pooled set: replaced below
                    elif (m.params or {}).get("trial") != r.trial:
                        m.params = {**(m.params or {}), "trial": r.trial}
                own[r.id] = {m.metric: m for m in rows if not (m.params or {}).get("pooled")
                             and not (m.params or {}).get("sweep")}
            values = pool_latency_trials([Q.load_samples(s, r.id, SampleKind.LATENCY_NS) for r in trial_runs])
            first = own[trial_runs[0].id]
            for name, m0 in first.items():
                if name in _FROM_SAMPLES or name in _SAME_EVERY_TRIAL or m0.value is None:
                    continue
                ms = [own[r.id].get(name) for r in trial_runs]
                if any(m is None or m.value is None for m in ms):
                    continue
                vals = [m.value for m in ms]
                # each trial's sampling CI (before any between-run widening: pooling adds that once)
                cis = [(m.params or {}).get("ci_sampling") or [m.ci_low, m.ci_high] for m in ms]
                ci = ((float(np.mean([c[0] for c in cis])), float(np.mean([c[1] for c in cis])))
                      if all(c[0] is not None and c[1] is not None for c in cis) else (None, None))
                if name == "throughput_sps" and all("window_s" in (m.params or {}) for m in ms):
                    total = sum(m.params["samples"] for m in ms) / sum(m.params["window_s"] for m in ms)
                    values.append(pool_trial_values(name, vals, m0.method, value=total, n=sum(m.n or 0 for m in ms),
                                                    ci=ci))
                else:
                    values.append(pool_trial_values(name, vals, m0.method, ci=ci))
            ids = [r.id for r in trial_runs]
            values = apply_noise_model(values, target.machine.specs if target.machine else None, pooled=True)
            values = [_with_params(v, group_id=group_id, trial_run_ids=ids) for v in values]
            s.flush()
            Q.add_measurements(s, target.id, values)
            target.extra = {**(target.extra or {}), "pooled": {"trials": len(ids), "run_ids": ids}}
            pooled_sets[target.id] = values
    return pooled_sets


def _with_params(v: MetricValue, **params: Any) -> MetricValue:
    from dataclasses import replace

    return replace(v, params={**v.params, **params})


def pool_groups_of(run_ids: list[str], *, db: str | None = None) -> dict[str, list[MetricValue]]:
    """Pool the trial groups these runs belong to (after ``execute``/``submit --run``)."""
    from sqlalchemy import select

    from heptathlon.db.models import Run

    with session_scope(db) as s:
        groups = {g for g in s.scalars(select(Run.group_id).where(Run.id.in_(run_ids))) if g}
    out: dict[str, list[MetricValue]] = {}
    for g in sorted(groups):
        out.update(pool_trials(g, db=db))
    return out


def recompute_latency(run_id: str, *, db: str | None = None) -> list[MetricValue]:
    """A run's latency statistics (percentiles, mean, CIs, early-stopping estimates) computed
    again from its stored raw samples, without re-running anything."""
    from heptathlon.bench.stats import summarize_latency_ns

    with session_scope(db) as s:
        lat = Q.load_samples(s, run_id, SampleKind.LATENCY_NS)
    if lat is None or lat.size == 0:
        raise RunError(f"run {run_id}: no stored latency samples to recompute from")
    return summarize_latency_ns(lat)
