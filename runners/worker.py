"""The worker process: ``python -m heptathlon.runners.worker JOB.json``.

Spawned fresh for every run (never forked), outside the submission's sandbox, with a scrubbed
environment: it runs harness code only. A kind that carries code runs it in a sandboxed model
process (``build_adapter``; docs/security.md); the worker times it over a channel it owns and
writes its result files in a run directory the model process cannot see. It reads a :class:`~heptathlon.bench.types.WorkerJob`;
in order it applies the profile's controls, loads the model (the cold start), runs a quality
pass, warms up, drives the scenario, takes the machine fingerprint, and writes one
:class:`~heptathlon.bench.types.WorkerResult` (raw samples in its npz blob) or a
:class:`~heptathlon.bench.types.WorkerFailure`. It never sees labels: the parent sends inputs only.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np

from heptathlon.bench.errors import HeptathlonError, ModelError, one_line
from heptathlon.bench.types import RunArrays, WorkerFailure, WorkerJob, WorkerResult
from heptathlon.runners.answers import AnswerError, AnswerSampler, Sampled, check_answer, compare_timed


def _answer_to(adapter, raw, submission: str, fallback: str) -> str:
    """The start of an answer's error line: the submission and the request (its protocol id where it has one)."""
    try:
        rid = adapter.answer_id(raw)
    except Exception:  # noqa: BLE001  a malformed raw answer: name it by position instead
        rid = None
    return f"submission {submission!r}: answer to " + (f"request {rid} ({fallback})" if rid is not None else fallback)


def _read(adapter, raw, n: int, where: str):
    """The adapter's postprocess of one raw answer; an answer it cannot read is one named line."""
    try:
        return adapter.postprocess(raw, n)
    except HeptathlonError:
        raise
    except Exception as e:  # noqa: BLE001  e.g. a runtime's output of an unexpected type
        raise AnswerError(f"{where}: cannot be read: {one_line(e)}") from None


def quality_pass(adapter, x: np.ndarray, batch: int, *, classes: int,
                 submission: str) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Every test instance once, in batches of ``batch``: (labels, scores or None, record).

    Each answer is validated at the boundary (runners.answers.check_answer). A first batch
    that fails is the run's reason: there is no silent fallback to batch size 1. A model
    whose artifact fixes the batch size (an ONNX input shape) runs at that size, and the
    record says so (run.extra["answers"]["quality_pass"]).
    """
    record: dict = {"batch": batch}
    fixed = getattr(adapter, "fixed_batch", None)
    if fixed is not None and fixed < batch:
        batch = fixed
        record = {"batch": fixed, "requested_batch": record["batch"],
                  "why": f"the model's input shape fixes the batch dimension to {fixed}"}
    preds, scores = [], []
    for k, i in enumerate(range(0, len(x), batch)):
        chunk = x[i:i + batch]
        try:
            raw = adapter.predict(adapter.prepare(chunk))
        except HeptathlonError:
            raise  # already names the submission and request
        except Exception as e:
            if k == 0 and len(chunk) > 1:
                raise ModelError(f"submission {submission!r}: the quality pass's first batch, of {len(chunk)} "
                                 f"instances, failed: {one_line(e)}; a model must take any batch size up to "
                                 f"{len(chunk)} (there is no fallback to batch size 1)") from None
            raise
        where = _answer_to(adapter, raw, submission, f"quality-pass batch {k + 1}, instances {i}-{i + len(chunk) - 1}")
        labels, sc = check_answer(*_read(adapter, raw, len(chunk), where), n=len(chunk), classes=classes, where=where)
        preds.append(labels)
        scores.append(sc)
    sc = None if any(s is None for s in scores) else np.concatenate(scores)
    record["requests"] = len(preds)
    return np.concatenate(preds), sc, record


def check_timed_pass(adapter, plan, sampler: AnswerSampler, preds: np.ndarray, scores: np.ndarray | None, *,
                     classes: int, submission: str, precision: str) -> dict:
    """The sampled timed-pass answers, postprocessed and validated only now (after the loop),
    compared with the quality pass's for the same instances (runners.answers.compare_timed)."""
    sampled = []
    for n, prepared, raw in sampler.samples():
        idx = plan.instances_of(prepared)
        if idx is None:
            continue
        where = _answer_to(adapter, raw, submission, f"timed-pass query {n}")
        labels, sc = check_answer(*_read(adapter, raw, len(idx), where), n=len(idx), classes=classes, where=where)
        sampled.append(Sampled(n, idx, labels, sc))
    return compare_timed(sampled, preds, scores, precision=precision, submission=submission)


def text_arrays(adapter, x: np.ndarray) -> dict[str, np.ndarray]:
    """An adapter that tokenises (``encoder``: transformers, onnx on text) reports tokens per task
    instance and its tokenisation time per prepared query; the parent makes the rates."""
    encoder = getattr(adapter, "encoder", None)
    if encoder is None or getattr(encoder, "input_type", "features") == "features":
        return {}
    return {"tokens": encoder.count_tokens(x), "tokenize_ns": np.asarray(encoder.tokenize_ns, dtype=np.int64)}


# Kinds whose artifact carries no code: they may run in this (measuring) process. Every other
# kind, including any kind added later, runs its code in a sandboxed model process.
NO_CODE_KINDS = ("onnx", "transformers")  # transformers: safetensors + JSON only (bench/manifest.py refuses code)
OWN_PROCESS_KINDS = ("command",)  # the submission is its own process, started sandboxed by its adapter


def build_adapter(job: WorkerJob):
    """(the adapter the loops drive, the run's isolation label); nothing is loaded yet.

    - ``onnx``, ``transformers`` (safetensors and JSON, never code): the real adapter, in this
      process ("no-code-in-worker");
    - ``command``: its adapter starts the submitted process through the sandbox ("model-process");
    - ``torch``, ``torchscript`` and any other kind: a ProxyAdapter over ``model_host``
      ("model-process"), unless the job is ``trusted``: then in this process ("trusted-in-process").
    """
    from heptathlon.runners.adapters import make_adapter

    kind = job.manifest.model.kind
    context = {**job.context, "sandbox_hide": list(job.sandbox_hide)}
    if kind in NO_CODE_KINDS:
        return make_adapter(job.manifest, job.folder, job.profile, context), "no-code-in-worker"
    if kind in OWN_PROCESS_KINDS:
        return make_adapter(job.manifest, job.folder, job.profile, context), "model-process"
    if job.trusted:
        return make_adapter(job.manifest, job.folder, job.profile, context), "trusted-in-process"
    from heptathlon.runners.adapters.proxy import ProxyAdapter

    return ProxyAdapter(job.manifest, job.folder, job.profile, context), "model-process"


def _tree_pids() -> list[int]:
    """This process and its descendants (the model process): whose GPU memory the meters count."""
    try:
        import psutil

        return [os.getpid(), *(c.pid for c in psutil.Process().children(recursive=True))]
    except Exception:  # noqa: BLE001 - psutil missing or a child gone: this process at least
        return [os.getpid()]


def run_job(job: WorkerJob) -> WorkerResult:
    from heptathlon.bench.scenarios import ScenarioConfig
    from heptathlon.runners.loadgen import plan_scenario  # the measured loops live there
    from heptathlon.runners.controls import apply_controls

    profile = job.profile
    controls = apply_controls(profile)  # before any runtime is imported or the model loads

    x = np.load(job.inputs)  # read before any submitted code runs, whatever a sandbox lets it reach
    adapter, controls["isolation"] = build_adapter(job)
    adapter.load()  # a code kind: the sandboxed model process starts and loads the model
    t_ready = time.time()

    name = job.manifest.name
    if job.scenario.get("name") == "generate":
        return run_generate_job(job, adapter, x, controls, t_ready)
    preds, scores, quality = quality_pass(adapter, x, job.quality_batch, classes=job.n_classes, submission=name)
    if getattr(adapter, "encoder", None) is not None:
        adapter.encoder.tokenize_ns.clear()  # tokenize_ms is over the scenario's own queries, not the quality pass

    cfg = ScenarioConfig.from_params(job.scenario)
    plan = plan_scenario(adapter, cfg, x)  # schedule, prepared inputs, warm-up (and a server's SLO search)

    from heptathlon.runners.metering import open_meters

    # measures the idle baseline too, before the window opens
    meters = open_meters(job.meters, profile, pids=_tree_pids(), sync_gpu=controls["isolation"] != "model-process")
    min_duration_s = max(cfg.stop.min_duration_s, meters.min_window_s if meters else 0.0)  # counter-aware window
    sampler = AnswerSampler()
    if meters:
        meters.start()
    loop = plan.run(replace(cfg.stop, min_duration_s=min_duration_s,
                            max_duration_s=max(cfg.stop.max_duration_s, min_duration_s)), sampler=sampler)
    energy = meters.stop() if meters else None
    consistency = check_timed_pass(adapter, plan, sampler, preds, scores, classes=job.n_classes, submission=name,
                                   precision=profile.precision)
    text = text_arrays(adapter, x)  # token counts and the scenario's tokenisation times (before any sweep)
    sweep = None
    if cfg.name == "batch_sweep":  # after the timed pass, outside the meter window: raw samples for the parent
        from heptathlon.runners.sweep import run_sweep_phase

        sweep = run_sweep_phase(adapter, cfg, x, profile)
    describe = adapter.describe()
    adapter.close()
    controls.update(adapter.records)
    from heptathlon.bench.fingerprint import collect_fingerprint

    machine = collect_fingerprint()  # here, on the machine that ran the model; after the window, so it costs no load time
    arrays = RunArrays(issue_ns=loop.issue_ns, done_ns=loop.done_ns, batch=loop.samples, preds=preds, scores=scores,
                       **text)
    return WorkerResult.build(arrays, run_id=job.run_id, ready_time=t_ready, n_queries=loop.n, energy=energy,
                              describe=describe, controls=controls, stopped_by=loop.stopped_by, loop=loop.summary,
                              sweep=sweep, machine=machine,
                              answers={"quality_pass": quality, "consistency": consistency})


def run_generate_job(job: WorkerJob, adapter, x: np.ndarray, controls: dict, t_ready: float) -> WorkerResult:
    """The generate scenario (runners/generate.py): no classification quality pass; the passes'
    raw token stamps go to the parent, which makes every statistic (bench/generation.py)."""
    from heptathlon.bench.scenarios import ScenarioConfig
    from heptathlon.runners.generate import run_generate
    from heptathlon.runners.metering import open_meters

    cfg = ScenarioConfig.from_params(job.scenario)
    gen = run_generate(adapter, job, cfg, x, lambda: open_meters(
        job.meters, job.profile, pids=_tree_pids(), sync_gpu=controls["isolation"] != "model-process"))
    energy = gen.pop("energy")
    head = gen["headline"]["traces"]
    describe = adapter.describe()
    adapter.close()
    controls.update(adapter.records)
    from heptathlon.bench.fingerprint import collect_fingerprint

    machine = collect_fingerprint()
    arrays = RunArrays(issue_ns=np.array([t["arrival_ns"] for t in head], dtype=np.int64),
                       done_ns=np.array([t["final_ns"] for t in head], dtype=np.int64),
                       batch=np.ones(len(head), dtype=np.int64), preds=np.zeros(0, dtype=np.int64))
    return WorkerResult.build(arrays, run_id=job.run_id, ready_time=t_ready, n_queries=len(head), energy=energy,
                              describe=describe, controls=controls, stopped_by=gen["headline"]["stopped_by"],
                              loop={"generate": {k: gen["headline"][k] for k in ("mode", "concurrency", "rate")}},
                              machine=machine, generate=gen)


HARNESS_PID_ENV = "HEPTATHLON_HARNESS_PID"


def die_with_harness() -> None:
    """PR_SET_PDEATHSIG: this worker is SIGKILLed when the harness that started it dies.

    The worker runs outside the sandbox (whose --die-with-parent covered it before), so a
    SIGKILLed harness must not leave it measuring; its model process dies with it in turn
    (bwrap --die-with-parent, setpriv --pdeathsig). ``HEPTATHLON_HARNESS_PID`` closes the race
    of a harness that died before the call: then the worker exits at once.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    expected = os.environ.get(HARNESS_PID_ENV)
    if expected and expected.isdigit() and os.getppid() != int(expected):
        os._exit(137)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    die_with_harness()
    job = WorkerJob.model_validate_json(Path(argv[0]).read_bytes())
    from heptathlon.runners.model_channel import stop_all

    try:
        result = run_job(job)
    except BaseException as e:  # noqa: BLE001  every failure becomes a recorded reason
        stop_all()  # the model process stops before anything is written
        traceback.print_exc(file=sys.stderr)
        _write_atomic(job.error_path, WorkerFailure(error=one_line(e), type=type(e).__name__).model_dump_json())
        return 3
    finally:
        stop_all()  # every exit path: no model process outlives its worker
    _write_atomic(job.result_path, result.model_dump_json())
    return 0


def _write_atomic(path: Path, text: str) -> None:
    # The parent reads the file only after this process exits; a worker killed mid-write
    # must leave no file rather than half of one.
    tmp = path.with_suffix(".part")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
