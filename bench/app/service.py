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
from heptathlon.bench.errors import HeptathlonError, Interrupted, RunError, ScenarioError, SubmissionError
from heptathlon.bench.app.fairness import run_fairness
from heptathlon.bench.app.signals import deferred
from heptathlon.bench.fingerprint import fingerprint_hash
from heptathlon.bench.manifest import Manifest, artifact_files, hash_folder, load_manifest, walk_folder
from heptathlon.bench.metrics import MetricValue, SampleKind, is_detail
from heptathlon.bench.profile import Profile, load_profile
from heptathlon.bench.run_status import RunStatus
from heptathlon.bench.scenarios import ScenarioConfig
from heptathlon.bench.stats import stop_reason, summarize_accuracy, summarize_loop
from heptathlon.bench.tasks import resolve_task, task_data_files
from heptathlon.bench.types import MeterSettings, WorkerJob
from heptathlon.db import lifecycle as L
from heptathlon.db import queries as Q
from heptathlon.db.session import ensure_schema, home_dir, private_dir, session_scope
from heptathlon.runners.adapters.registry import validate_runtime_names, validate_runtime_sections
from heptathlon.runners.controls.cores import resolve_cores, wait_for_quiet
from heptathlon.runners.executors.base import Executor, WorkerOutcome
from heptathlon.runners.executors.local import LocalExecutor
from heptathlon.runners.metering import energy_values

DEFAULT_TIMEOUT_S = 120.0
RUN_PARAMS = ("timeout_s", "energy", "trusted")  # run.params keys that are not part of the scenario config
TRUSTED_NOTE = "trusted-in-process"  # run.controls["isolation"] of a --trusted run: not comparable, not for a fleet


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
    claimed: bool = True  # False: another executor had claimed it (or it was not queued); not executed
    note: str | None = None  # why an unclaimed run was not executed
    isolation: str | None = None  # run.controls["isolation"]: model-process, no-code-in-worker, trusted-in-process

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "error": self.error, "submission": self.submission,
                "profile": self.profile, "scenario": self.scenario,
                "metrics": {k: v.to_json() for k, v in self.metrics.items()},
                **({"sweep": self.sweep} if self.sweep is not None else {}),
                **({"isolation": self.isolation} if self.isolation == TRUSTED_NOTE else {})}


# ---- artifact store -----------------------------------------------------------------------------
STORE_DIR_MODE, STORE_FILE_MODE, STORE_ROOT_MODE = 0o555, 0o444, 0o711


def store_submission(folder: Path, home: Path | None = None) -> tuple[Manifest, str, Path]:
    """Validate, hash and keep an immutable copy, so a result always points at exactly what ran.

    The folder is checked first (bench/manifest.py: no links, hard links, devices, FIFOs or
    sockets, size caps, no YAML aliases, ONNX external data inside): nothing is followed, hashed
    or copied before that. The copy is made without following anything, hashed again (a folder
    changed between hash and copy is refused), and made read-only: directories 0555, files 0444,
    under a 0711 store inside the harness's 0700 home. Each run checks the copy again
    (``verify_stored_artifact``)."""
    folder = Path(folder)
    manifest = load_manifest(folder)
    task = resolve_task(manifest.task, folder)  # unknown task: a clear error before anything is stored
    task.load()  # a task file whose data does not parse fails here, before anything is stored
    sha = hash_folder(folder)
    root = private_dir(Path(home or home_dir()), tighten=True)
    store_root = root / "artifacts"
    if not store_root.exists():
        store_root.mkdir(exist_ok=True)
        store_root.chmod(STORE_ROOT_MODE)
    dest = store_root / sha
    if not dest.exists():
        tmp = Path(tempfile.mkdtemp(dir=store_root))
        try:
            copy = tmp / "copy"
            copy.mkdir()
            for p, _ in walk_folder(folder):  # regular files only, opened without following links
                rel = p.relative_to(folder)
                (copy / rel).parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                with os.fdopen(fd, "rb") as src, open(copy / rel, "xb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            found = hash_folder(copy)
            if found != sha:
                raise SubmissionError(f"{folder}: changed while it was being stored (sha256 {sha[:12]}… before the "
                                      f"copy, {found[:12]}… after); submit it again when it is not being written")
            _make_read_only(copy)
            try:
                os.replace(copy, dest)
            except OSError:  # another process stored the same content first: its copy is ours
                if not dest.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest, sha, dest


def _make_read_only(tree: Path) -> None:
    for p in sorted(tree.rglob("*"), key=lambda q: len(q.parts), reverse=True):
        p.chmod(STORE_DIR_MODE if p.is_dir() else STORE_FILE_MODE)
    tree.chmod(STORE_DIR_MODE)


def verify_stored_artifact(run_id: str, store: Path, expected_sha: str) -> None:
    """The stored copy still hashes to what was submitted (once per run, before anything is spawned)."""
    if not store.exists():
        raise RunError(f"run {run_id}: stored artifact {store} is missing; submit the folder again")
    try:
        found = hash_folder(store)
    except SubmissionError as e:
        raise RunError(f"run {run_id}: stored artifact changed ({e})") from None
    if found != expected_sha:
        raise RunError(f"run {run_id}: stored artifact changed (expected sha256 {expected_sha}, found {found}); "
                       "submit the folder again")


# ---- queueing -----------------------------------------------------------------------------------
def queue_runs(folder: Path, profiles: list[str], scenarios: list[ScenarioConfig], *, db: str | None = None,
               trials: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S, group_id: str | None = None,
               extra: dict[str, Any] | None = None, energy: dict[str, Any] | None = None,
               trusted: bool = False) -> list[str]:
    """Register the submission and queue one run per profile x scenario x trial.

    ``trusted``: the runs load a torch/torchscript model in the measuring worker itself (no
    model process); for an author on their own machine only. Such runs are labelled, and
    kept out of every other series (params["trusted"]).

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
        task = resolve_task(manifest.task, folder)
        wrong = [sc.name for sc in scenarios if task.generative and sc.name != "generate"]
        if wrong:
            raise ScenarioError(f"{folder}: task {task.name!r} is a prompt set for generation, not a labelled task; "
                                f"run it with --scenario generate (not {', '.join(wrong)})")
        if any(sc.name == "generate" for sc in scenarios):
            check_generate_request(folder, manifest, task)
    except HeptathlonError as e:
        e.run_ids = record_rejected(ref, profiles, [sc.name for sc in scenarios], e, db, group_id=group_id,
                                    params=[sc.to_params() for sc in scenarios])
        raise
    ids = []
    with session_scope(db) as s:
        sub = Q.get_or_create_submission(s, name=manifest.name, version=manifest.version, task=manifest.task,
                                         kind=manifest.model.kind, sha256=sha, manifest=manifest.model_dump(mode="json"),
                                         store_path=str(store))
        Q.get_or_create_task(s, task.name, {"description": task.description, "metric": task.metric,
                                            "group_attributes": list(task.group_attributes)})
        for prof in resolved:
            prow = Q.get_or_create_profile(s, prof)
            for sc in scenarios:
                for trial in range(trials):
                    rid = str(uuid.uuid4())
                    Q.create_run(s, id=rid, submission_id=sub.id, profile_id=prow.id, submission_ref=ref,
                                 profile_name=prof.name, task_name=task.name, scenario=sc.name,
                                 params={**sc.to_params(), "timeout_s": timeout_s, "energy": dict(energy or {}),
                                         **({"trusted": True} if trusted else {})},
                                 status=RunStatus.QUEUED, trial=trial,
                                 group_id=group_id, extra=dict(extra or {}))
                    ids.append(rid)
    return ids


def check_generate_request(folder: Path, manifest: Manifest, task: Any) -> None:
    """The generate scenario needs a model that generates and a prompt per instance (docs/generate.md)."""
    if manifest.model.kind not in ("transformers", "command"):
        raise ScenarioError(f"{folder}: scenario 'generate' runs kind transformers (a causal LM folder) or kind "
                            f"command (the streaming stdio protocol), not kind {manifest.model.kind!r}")
    if task.generative:
        return
    data = task.load()
    if data.input_type != "text" or np.asarray(data.x_test).ndim != 1:
        raise ScenarioError(f"{folder}: scenario 'generate' needs a text task with one prompt column "
                            f"(input_type: text); task {task.name!r} has input_type {data.input_type!r}; "
                            "use the bundled prompt set (task: prompts-en-da) or a task file with one text column")


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
DEFAULT_RANK_BY = "latency_p50_ms"
GENERATE_RANK_BY = "ttft_p50_ms"  # the default for generate groups (they have no latency_p50_ms)


def leaderboard_groups(db: str | None = None, *, task=None, profile=None, scenario=None,
                       rank_by: str = DEFAULT_RANK_BY, include_contended: bool = False) -> list[dict[str, Any]]:
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
    for r in rows:  # a generate run's load is part of what it is compared on (db.queries.load_label)
        groups.setdefault((r["task"], r["profile"], r["scenario"], r["machine_id"], r.get("load")), []).append(r)
    out = []
    for (task_, prof, scen, mach, load), rs in groups.items():
        by = GENERATE_RANK_BY if scen == "generate" and rank_by == DEFAULT_RANK_BY else rank_by
        lower = METRICS[by].lower_is_better is not False
        for r in rs:
            c = r["metrics"].get("contention_share")
            r["contended"] = c is not None and is_contended(c.params)
        rankable = [(r["run_id"], m.value, m.ci_low, m.ci_high) for r in rs
                    if (m := r["metrics"].get(by)) is not None and m.value is not None
                    and not m.method.startswith("estimate:") and r.get("isolation") != TRUSTED_NOTE
                    and (include_contended or not r["contended"])]
        ranks = {x.key: x for x in rank_with_ties(rankable, lower_is_better=lower)}
        for r in rs:
            rk = ranks.get(r["run_id"])
            r["rank"] = rk.label if rk else "—"
            r["_sort"] = (rk.best, rk.worst) if rk else (10**9, 10**9)
            r["_m"] = r["metrics"]
            r["metrics"] = {k: {"value": m.value, "unit": m.unit, "ci_low": m.ci_low, "ci_high": m.ci_high,
                                "n": m.n, "method": m.method} for k, m in r["metrics"].items()}
        rs.sort(key=lambda r: r["_sort"])
        out.append({"task": task_, "profile": prof, "scenario": scen, "machine_id": mach, "load": load, "rank_by": by,
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
    context = {**context, "input_spec": getattr(data, "input_spec", lambda: None)() or
               {"type": "features", "fields": []}}  # text/tokens/features and the field names; no labels
    job = WorkerJob(run_id=run_id, folder=workdir, manifest=manifest, profile=profile, scenario=cfg.to_params(),
                    inputs=inputs, out_dir=run_dir, context=context, n_classes=data.n_classes,
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


def artifact_values(outcome: WorkerOutcome, manifest: Manifest, store: Path) -> list[MetricValue]:
    """Memory, load time, parameter count and artifact size: every scenario's."""
    result = outcome.result
    values = memory_values(outcome)
    values.append(MetricValue("load_s", result.ready_time - outcome.spawn_time, "timer:wall-clock", n=1,
                              note="process spawn to model ready"))
    d = result.describe
    if d.get("params") is not None:
        values.append(MetricValue("params", float(d["params"]), d["params_method"], n=1))
    else:
        values.append(MetricValue.unavailable("params", d.get("params_note", "not derivable from this artifact")))
    size = sum(p.stat().st_size for p in artifact_files(store, manifest))
    values.append(MetricValue("artifact_mb", size / 1e6, "artifact:file-size", n=1))
    return values


def compute_metrics(outcome: WorkerOutcome, y_true: np.ndarray, manifest: Manifest, store: Path,
                    meters: MeterSettings | None = None) -> list[MetricValue]:
    """Statistics from raw samples, computed in the parent (the worker only timestamps)."""
    result = outcome.result
    a = result.arrays
    # latency (+ early stopping), throughput, and per scenario: adaptive width, server rates and SLO, issue drift
    values = summarize_loop(a.issue_ns, a.done_ns, a.batch, result.loop)
    values.append(summarize_accuracy(y_true, a.preds))
    values += artifact_values(outcome, manifest, store)
    d = result.describe
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


def submission_environment(run_id: str, info: dict[str, Any], db: str | None) -> dict[str, str]:
    """The submission's own venv (bench/app/environments.py), recorded on the run as
    ``extra.environment`` (its build log and time); a failed build fails the run with pip's lines."""
    from heptathlon.bench.app.environments import ensure_environment

    m = info["manifest"]
    try:
        env = ensure_environment(info["store"], m.environment.requirements, m.name)
    except HeptathlonError as e:
        raise RunError(str(e)) from None
    with session_scope(db) as s:
        run = Q.get_run(s, run_id)
        run.extra = {**(run.extra or {}), "environment": env.record()}
    return {"python": str(env.python), "path": str(env.path)}


def generate_fidelity(record: dict, data: Any, cfg: ScenarioConfig, info: dict[str, Any],
                      db: str | None) -> tuple[list[MetricValue], list]:
    """Greedy-output fidelity to the latest succeeded generate run of the same artifact on the fp32
    reference profile with the same max_new_tokens, ignore_eos and seed (docs/generate.md)."""
    from heptathlon.bench.app import generate_results as G
    from heptathlon.bench.app.fairness import DEFAULT_REFERENCE

    names = ("generation_exact_match", "generation_first_divergence")
    if info["profile"] == DEFAULT_REFERENCE:
        return [MetricValue.unavailable(n, f"this run is on the reference profile {DEFAULT_REFERENCE}; fidelity is "
                                           "measured on the other profiles against it") for n in names], []
    with session_scope(db) as s:
        ref = Q.latest_generate_reference(s, info["sha256"], DEFAULT_REFERENCE, max_new_tokens=cfg.max_new_tokens,
                                          ignore_eos=bool(cfg.ignore_eos), seed=cfg.seed)
        found = None if ref is None else (ref.id, ((ref.extra or {}).get("generate") or {}).get("outputs") or [])
    if found is None:
        why = (f"no succeeded generate run of this artifact on {DEFAULT_REFERENCE} with max_new_tokens "
               f"{cfg.max_new_tokens}, ignore_eos {bool(cfg.ignore_eos)} and seed {cfg.seed}; make one with "
               f"heptathlon run <folder> --profile {DEFAULT_REFERENCE} --scenario generate (same options)")
        return [MetricValue.unavailable(n, why) for n in names], []
    return G.fidelity_values(record["outputs"], found[1], data.groups, reference_run=found[0],
                             reference_profile=DEFAULT_REFERENCE, seed=cfg.seed)


def generate_metrics(outcome: WorkerOutcome, data: Any, cfg: ScenarioConfig, manifest: Manifest, store: Path,
                     meters: MeterSettings | None = None) -> tuple[list[MetricValue], dict, dict]:
    """The generate scenario's values, run.extra["generate"] and raw samples (bench/app/generate_results.py)."""
    from heptathlon.bench.app import generate_results as G

    result = outcome.result
    g = G.read_generate(result.generate, result.run_id)
    values = G.pass_values(g.headline, seed=cfg.seed)
    values += G.quality_values(g, getattr(data, "references", None))
    tokens = sum(len(t.token_ns) for t in g.headline.traces)
    s, e = g.headline.window_ns
    meters = meters or MeterSettings()
    energy = energy_values(result.energy, (e - s) / 1e9, tokens, meters.country_iso,
                           None if meters.enabled else "meters disabled for this run (--no-meters)")
    values.append(G.energy_per_token(energy, tokens))
    values += [v for v in energy if v.name != "energy_per_sample_j"]
    slo = G.slo_value(g.slo)
    if slo is not None:
        values.append(slo)
    values += artifact_values(outcome, manifest, store)
    values.append(contention_metric(outcome.contention, s, e))
    values = apply_noise_model(values, result.machine)
    rows, sweep_record = G.sweep_rows(g.sweep, seed=cfg.seed)
    record = G.generate_record(g, cfg)
    record["sweep"] = sweep_record
    return values + rows, record, G.generate_samples(g)


def text_metrics(data: Any, cfg: ScenarioConfig, arrays: Any, values: list[MetricValue]) -> list[MetricValue]:
    """tokens_per_s and words_per_s beside throughput_sps, and tokenize_ms (heptathlon.bench.text)."""
    from heptathlon.bench.text import text_values

    thr = next((v for v in values if v.name == "throughput_sps"), None)
    return text_values(x_test=data.x_test, input_type=getattr(data, "input_type", "features"), tokens=arrays.tokens,
                       tokenize_ns=arrays.tokenize_ns, cfg=cfg, batch=arrays.batch, throughput=thr)


def sandbox_policy(kind: str, allow_unsandboxed: bool) -> dict[str, Any]:
    """Whether a run of ``kind`` may start here (runners/sandbox.py code_sandbox_refusal), as the
    record stored in run.extra["sandbox_policy"]; raises RunError when it may not."""
    from heptathlon.runners.sandbox import CODE_KINDS, code_sandbox_refusal

    refusal = code_sandbox_refusal(kind)
    if refusal is not None and not allow_unsandboxed:
        raise RunError(refusal)
    return {"kind": kind, "allow_unsandboxed": bool(allow_unsandboxed), "needs_bwrap": kind in CODE_KINDS,
            "unsandboxed": refusal is not None}


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
                keep_dir: bool = False, lease_s: float | None = None, allow_unsandboxed: bool = False,
                trusted: bool | None = None, fetch_store: Callable[[str], Path] | None = None) -> RunOutcome:
    """Claim one queued run, execute it and store its results (or its failure) in one transaction.

    The claim is a compare-and-set (heptathlon.db.lifecycle.claim_run): a run that another
    executor claimed first is left alone and comes back with ``claimed=False``. While it runs,
    this process renews the run's lease (``lease_s``, default $HEPTATHLON_LEASE_S or 60 s) from a
    thread, and it writes the outcome only while it still owns the run. SIGINT/SIGTERM (as
    Interrupted, see heptathlon.bench.app.signals) record the run failed "interrupted by SIGINT",
    then propagate. Before anything is spawned: the stored copy's sha256 is checked, and a
    code-carrying kind without bubblewrap is refused unless ``allow_unsandboxed`` (or the run was
    queued with it). ``trusted``: None follows the run's params (``run --trusted``); True runs it
    trusted (``execute --trusted``); False refuses a run queued trusted (the nightly, a fleet).
    ``fetch_store(sha256)``: where a fleet worker gets the verified artifact
    (heptathlon.bench.app.fleet) instead of the submitter's local store path; its failure is the run's.
    """
    executor = executor or LocalExecutor()
    lease_s = L.lease_seconds(lease_s)
    owner = L.Owner.current()
    with session_scope(db) as s:
        claimed = L.claim_run(s, run_id, owner, lease_s)  # the write comes first: it takes SQLite's lock
        run = Q.get_run(s, run_id)
        if run is None:
            raise RunError(f"run {run_id}: no such run")
        if not claimed:
            return _unclaimed(run)
        sub = run.submission
        info = dict(submission=sub.name, profile=run.profile_name, scenario=run.scenario,
                    store=Path(sub.store_path), sha256=sub.artifact_sha256,
                    manifest=Manifest.model_validate(sub.manifest), params=dict(run.params),
                    allow_unsandboxed=allow_unsandboxed or bool((run.extra or {}).get("allow_unsandboxed")),
                    trusted=trusted)
    out = RunOutcome(run_id, RunStatus.FAILED, None, info["submission"], info["profile"], info["scenario"], {})
    label = f"run {run_id[:8]} ({info['submission']} on {info['profile']}/{info['scenario']})"
    run_dir: Path | None = None
    try:
        with L.LeaseKeeper(db, run_id, owner, lease_s):
            run_dir = Path(tempfile.mkdtemp(prefix=f"heptathlon-run-{run_id[:8]}-"))
            if fetch_store is not None:  # a fleet worker: the artifact comes from the shared store
                info["store"] = fetch_store(info["sha256"])
            _execute_claimed(run_id, owner, info, run_dir, executor, db, out)
    except KeyboardInterrupt as e:  # Interrupted (SIGINT, SIGTERM) or a plain Ctrl-C
        if out.status == RunStatus.SUCCEEDED:
            raise  # it arrived as the results were committed: this run is done, the command stops
        signame = getattr(e, "signame", "SIGINT")
        out.error = f"{label}: interrupted by {signame}"
        out.stderr_tail = out.stderr_tail or _log_tail(run_dir)
        with deferred():
            _record_failure(db, run_id, owner, out, interruption=signame)
        if isinstance(e, Interrupted):
            e.run_errors.append(out.error)
        raise
    except _LostRun as e:
        out.status, out.error = e.status, f"{label}: {e}"
    except Exception as e:  # noqa: BLE001  every failure is recorded, then reported
        msg = str(e) if isinstance(e, HeptathlonError) else f"{type(e).__name__}: {e}"
        out.error = f"{label}: {msg}"
        with deferred():
            _record_failure(db, run_id, owner, out)
            kept = {k: info[k] for k in ("log_bytes", "parent_cpu") if info.get(k) is not None}
            if kept:
                with session_scope(db) as s:
                    run = Q.get_run(s, run_id)
                    run.extra = {**(run.extra or {}), **kept}
    finally:
        if run_dir is not None and not keep_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    return out


def _log_tail(run_dir: Path | None, limit: int = 4000) -> str | None:
    """The end of the worker's log in an interrupted run's directory (read with a seek)."""
    if run_dir is None:
        return None
    try:
        with open(run_dir / "worker.log", "rb") as fh:  # runners/executors/local.py LOG_FILE
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            return fh.read().decode("utf-8", "replace") or None
    except OSError:
        return None


class _LostRun(Exception):
    """The run was taken from this harness while it ran (reaped, then perhaps requeued)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def _lost(db: str | None, run_id: str) -> _LostRun:
    with session_scope(db) as s:
        run = Q.get_run(s, run_id)
        status, error = (run.status, run.error) if run is not None else ("missing", "deleted")
    return _LostRun(status, f"the run was taken from this harness while it ran (now {status}: {error}); "
                            "its results were not stored")


def _unclaimed(run: Any) -> RunOutcome:
    """The outcome of a run this process did not claim: someone else's, or not queued."""
    owner = L.owner_of(run)
    by = f" by {owner.describe()}" if owner and run.status == RunStatus.RUNNING else ""
    sub = run.submission.name if run.submission is not None else run.submission_ref
    o = RunOutcome(run.id, run.status, None, sub, run.profile_name, run.scenario, {})
    o.claimed = False
    o.note = f"run {run.id[:8]}: not executed, it is {run.status}{by}"
    return o


def _record_failure(db: str | None, run_id: str, owner: L.Owner, out: RunOutcome,
                    interruption: str | None = None) -> None:
    """The failed-run record, written only while this process still owns the run."""
    with session_scope(db) as s:
        ok = L.finish_owned(s, run_id, owner, RunStatus.FAILED, error=out.error,
                            stderr_tail=out.stderr_tail if out.stderr_tail else out.error, interruption=interruption)
    if not ok:
        lost = _lost(db, run_id)
        out.status, out.error = lost.status, f"{out.error} ({lost})"


def _execute_claimed(run_id: str, owner: L.Owner, info: dict[str, Any], run_dir: Path, executor: Executor,
                     db: str | None, out: RunOutcome) -> None:
    verify_stored_artifact(run_id, info["store"], info["sha256"])
    policy = sandbox_policy(info["manifest"].model.kind, info["allow_unsandboxed"])
    profile, info["cores_record"] = resolve_cores(validate_runtime_sections(load_profile(info["profile"])))
    task = resolve_task(info["manifest"].task, info["store"])
    data = task.load()
    cfg = ScenarioConfig.from_params({k: v for k, v in info["params"].items() if k not in RUN_PARAMS})
    trusted, queued_trusted = info.get("trusted"), bool(info["params"].get("trusted"))
    if trusted is False and queued_trusted:
        raise RunError("it was queued --trusted (the model in the measuring process); "
                       "trusted runs are for an author's own machine and are refused here")
    job, precision_record = prepare_job(run_id, info["manifest"], info["store"], profile, cfg, info["params"],
                                        run_dir, data)
    if (queued_trusted if trusted is None else trusted):
        job = job.model_copy(update={"trusted": True})
    if info["manifest"].environment is not None:  # built (or taken from the cache) before the run, not in load time
        job = job.model_copy(update={"context": {**job.context,
                                                 "environment": submission_environment(run_id, info, db)}})
    outcome = executor.execute(job, float(info["params"].get("timeout_s", DEFAULT_TIMEOUT_S)),
                               hide=[str(home_dir())])
    info["log_bytes"] = outcome.log_bytes
    info["parent_cpu"] = outcome.parent_cpu
    out.stderr_tail = outcome.stderr_tail
    if not outcome.ok:
        raise RunError(outcome.error)
    result, arrays = outcome.result, outcome.result.arrays
    if cfg.name == "generate":
        values, record, samples = generate_metrics(outcome, data, cfg, info["manifest"], info["store"], job.meters)
        fid, group_rows = generate_fidelity(record, data, cfg, info, db)
        values += fid
        with deferred():
            _store_success(run_id, owner, db, executor, outcome, values, None, group_rows, precision_record, policy,
                           info.get("cores_record"), generate=(record, samples))
            out.status = RunStatus.SUCCEEDED
            out.isolation = result.controls.get("isolation")
            out.metrics = {v.name: v for v in values if not is_detail(v.params)}
        return
    values = compute_metrics(outcome, data.y_test, info["manifest"], info["store"], job.meters)
    values += text_metrics(data, cfg, arrays, values)  # tokens/s, words/s, tokenize_ms on text tasks
    group_rows, fair_values = run_fairness(data, arrays.preds, arrays.scores)
    values += fair_values
    sweep = None
    if cfg.name == "batch_sweep":  # per-batch-size rows, knee and cross-runtime table (docs/framework-tax.md)
        from heptathlon.bench.sweep_stats import summarize_sweep

        sweep = summarize_sweep(result.sweep)
        values += sweep.values
    with deferred():  # a signal now waits for the commit; the run then counts as done
        _store_success(run_id, owner, db, executor, outcome, values, sweep, group_rows, precision_record, policy,
                       info.get("cores_record"))
        out.status = RunStatus.SUCCEEDED
        out.isolation = result.controls.get("isolation")
        # a metric's headline row, not a detail stored beside it (a detail only where it is all there is)
        out.metrics = {v.name: v for v in values if is_detail(v.params)} | \
            {v.name: v for v in values if not is_detail(v.params)}
        out.sweep = sweep.extra if sweep is not None else None


def _store_success(run_id: str, owner: L.Owner, db: str | None, executor: Executor, outcome: WorkerOutcome,
                   values: list[MetricValue], sweep: Any, group_rows: list, precision_record: dict | None,
                   policy: dict[str, Any], cores_record: dict | None = None,
                   generate: tuple[dict, dict] | None = None) -> None:
    result, arrays = outcome.result, outcome.result.arrays
    with session_scope(db) as s:
        # The compare-and-set first: only the owner of a still-running run stores results.
        if not L.finish_owned(s, run_id, owner, RunStatus.SUCCEEDED):
            raise _lost(db, run_id)
        # the fingerprint the worker took: a remote worker's machine, not this one
        machine = Q.get_or_create_machine(s, fingerprint_hash(result.machine), result.machine)
        run = Q.get_run(s, run_id)
        run.machine_id = machine.id
        run.stderr_tail = outcome.stderr_tail[-2000:] or None
        # "sandbox": the model process's (code kinds), else the worker's; "worker_sandbox": the worker's.
        # A kind without code (onnx, transformers) runs in the unsandboxed measuring worker by design.
        sbx = result.controls.get("sandbox") or outcome.sandbox or {}
        unsandboxed = bool(policy["unsandboxed"] or (policy["needs_bwrap"] and not sbx.get("active")))
        run.controls = {**result.controls,
                        "sandbox": {**sbx, "unsandboxed": unsandboxed, "allow_unsandboxed": policy["allow_unsandboxed"]},
                        "worker_sandbox": outcome.sandbox,
                        **({"precision": precision_record} if precision_record else {}),
                        **({"cores_picked": cores_record} if cores_record else {})}
        run.software = result.machine["software"]  # software_context() on the worker's machine
        run.extra = {**(run.extra or {}), "describe": result.describe,
                     "n_queries": result.n_queries, "stopped_by": stop_reason(result.stopped_by, values),
                     "loop": result.loop, "executor": executor.name, "sandbox_policy": policy,
                     "log_bytes": outcome.log_bytes,
                     # the measuring parent's own CPU while the worker ran (runners/executors/local.py)
                     **({"parent_cpu": outcome.parent_cpu} if outcome.parent_cpu else {}),
                     **({"trusted": True} if result.controls.get("isolation") == TRUSTED_NOTE else {}),
                     **({"answers": result.answers} if result.answers is not None else {}),
                     **({"sweep": sweep.extra} if sweep is not None else {}),
                     **({"generate": generate[0]} if generate is not None else {})}
        Q.add_measurements(s, run_id, values)
        if generate is not None:  # the generate scenario's raw samples (per request; ITL: every gap)
            for kind, arr in generate[1].items():
                Q.add_samples(s, run_id, SampleKind(kind), arr)
            Q.add_samples(s, run_id, SampleKind.LATENCY_NS, arrays.done_ns - arrays.issue_ns)
            Q.add_group_metrics(s, run_id, group_rows)  # per-group fidelity against the fp32 reference
            return
        if sweep is not None:
            Q.add_measurements(s, run_id, sweep.details)  # params {"sweep": true, ...}: detail rows
        Q.add_samples(s, run_id, SampleKind.LATENCY_NS, arrays.done_ns - arrays.issue_ns)
        Q.add_samples(s, run_id, SampleKind.PREDICTIONS, arrays.preds)
        if arrays.scores is not None:
            Q.add_samples(s, run_id, SampleKind.SCORES, arrays.scores.astype(np.float32))
        Q.add_group_metrics(s, run_id, group_rows)


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
                   allow_unsandboxed: bool = False, trusted: bool | None = None,
                   wait_quiet_s: float | None = None, on_wait: Callable[[str], None] | None = None
                   ) -> list[RunOutcome]:
    """Execute runs one after another; a failing run never stops the others. A run another
    executor claimed first is skipped (its outcome has ``claimed=False``) and not returned.
    SIGINT/SIGTERM stop the loop: the runs not started yet stay queued. With ``wait_quiet_s``,
    each run first waits for its cores to be quiet (``wait_quiet_for_run``)."""
    outcomes = []
    for i, rid in enumerate(run_ids):
        if on_progress:
            on_progress(i, None, rid)
        if wait_quiet_s:
            wait_quiet_for_run(rid, wait_quiet_s, db=db, on_wait=on_wait)
        o = execute_run(rid, db=db, allow_unsandboxed=allow_unsandboxed, trusted=trusted)
        if o.claimed:
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
    again replaces the pooled set. A batch_sweep's cells are pooled too, as detail rows and
    ``run.extra["sweep_pooled"]`` (heptathlon.bench.sweep_stats.pool_sweep). Returns {run id
    holding a pooled set: its headline values}.
    """
    import json

    from sqlalchemy import select

    from heptathlon.bench.stats import pool_latency_trials, pool_trial_values
    from heptathlon.db.models import Measurement, Run

    pooled_sets: dict[str, list[MetricValue]] = {}
    with session_scope(db) as s:
        # Two executors that shared a group's trials both pool it when they finish: lock the group
        # first (SQLite's write lock, PostgreSQL's row locks) so that one pooled set replaces the other.
        L.lock_group(s, group_id)
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
            sweep_rows: dict[str, list[MetricValue]] = {}
            for r in trial_runs:
                rows = list(s.scalars(select(Measurement).where(Measurement.run_id == r.id)))
                for m in rows:
                    if (m.params or {}).get("pooled"):
                        s.delete(m)  # an earlier pooled set: replaced below
                    elif (m.params or {}).get("trial") != r.trial:
                        m.params = {**(m.params or {}), "trial": r.trial}
                own[r.id] = {m.metric: m for m in rows if not (m.params or {}).get("pooled")
                             and not (m.params or {}).get("sweep")}
                sweep_rows[r.id] = [_as_value(m) for m in rows if (m.params or {}).get("sweep")
                                    and not (m.params or {}).get("pooled")]
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
            extra = {k: v for k, v in (target.extra or {}).items() if k != "sweep_pooled"}
            if target.scenario == "batch_sweep" and any(sweep_rows.values()):  # every cell too (sweep_stats.pool_sweep)
                from heptathlon.bench.sweep_stats import pool_sweep

                cells, sweep_extra = pool_sweep([((r.extra or {}).get("sweep"), sweep_rows[r.id]) for r in trial_runs])
                cells = apply_noise_model(cells, target.machine.specs if target.machine else None, pooled=True)
                values_cells = [_with_params(v, group_id=group_id, trial_run_ids=ids) for v in cells]
                if sweep_extra is not None:
                    extra["sweep_pooled"] = {**sweep_extra, "pooled": {"trials": len(ids), "run_ids": ids}}
            else:
                values_cells = []
            s.flush()
            Q.add_measurements(s, target.id, values)
            Q.add_measurements(s, target.id, values_cells)  # detail rows: not in the returned headline set
            target.extra = {**extra, "pooled": {"trials": len(ids), "run_ids": ids}}
            pooled_sets[target.id] = values
    return pooled_sets


def _as_value(m: Any) -> MetricValue:
    """A stored Measurement row as the MetricValue it was written from."""
    return MetricValue(m.metric, m.value, m.method, n=m.n, ci_low=m.ci_low, ci_high=m.ci_high, note=m.note,
                       params=dict(m.params or {}))


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
