"""The worker process: ``python -m heptathlon.runners.worker JOB.json``.

Spawned fresh for every run (never forked). In order it applies the profile's controls,
loads the model (the cold start), runs a quality pass, warms up, drives the scenario and
writes the raw samples for the parent. It never sees labels: the parent writes inputs only.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np

from heptathlon.bench.errors import ModelError, one_line


def quality_pass(adapter, x: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray | None]:
    if batch > 1 and len(x) > 1:
        try:
            adapter.predict(adapter.prepare(x[:batch]))
        except Exception as batched:  # e.g. an ONNX model exported with a fixed batch of 1
            try:
                adapter.predict(adapter.prepare(x[:1]))
            except Exception:
                raise batched from None  # not a batching problem: the original error is the reason
            batch = 1  # a model that takes one instance at a time still gets its quality pass
    preds, scores = [], []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        p, s = adapter.postprocess(adapter.predict(adapter.prepare(chunk)), len(chunk))
        if len(p) != len(chunk):
            raise ModelError(f"model returned {len(p)} predictions for a batch of {len(chunk)}; it must return one per input")
        preds.append(p)
        scores.append(s)
    sc = None if any(s is None for s in scores) else np.concatenate(scores)
    return np.concatenate(preds), sc


def run_job(job: dict) -> dict:
    from heptathlon.bench.manifest import Manifest
    from heptathlon.bench.profile import Profile
    from heptathlon.bench.scenarios import ScenarioConfig
    from heptathlon.runners.loadgen import plan_scenario  # the measured loops live there
    from heptathlon.runners.controls import apply_controls

    out = Path(job["out_dir"])
    profile = Profile.model_validate(job["profile"])
    controls = apply_controls(profile)  # before any runtime is imported or the model loads

    from heptathlon.runners.adapters import make_adapter

    manifest = Manifest.model_validate(job["manifest"])
    adapter = make_adapter(manifest, Path(job["folder"]), profile, job.get("context", {}))
    adapter.load()
    t_ready = time.time()

    x = np.load(job["inputs"])
    preds, scores = quality_pass(adapter, x, job.get("quality_batch", 64))
    np.save(out / "preds.npy", preds)
    if scores is not None:
        np.save(out / "scores.npy", scores)

    cfg = ScenarioConfig.from_params(job["scenario"])
    plan = plan_scenario(adapter, cfg, x)  # schedule, prepared inputs, warm-up (and a server's SLO search)

    from heptathlon.runners.metering import open_meters

    meters = open_meters(job, profile)  # measures the idle baseline too, before the window opens
    min_duration_s = max(cfg.stop.min_duration_s, meters.min_window_s if meters else 0.0)  # counter-aware window
    if meters:
        meters.start()
    loop = plan.run(replace(cfg.stop, min_duration_s=min_duration_s,
                            max_duration_s=max(cfg.stop.max_duration_s, min_duration_s)))
    energy = meters.stop() if meters else None
    np.save(out / "issue_ns.npy", loop.issue_ns)  # under server: the scheduled arrivals
    np.save(out / "done_ns.npy", loop.done_ns)
    np.save(out / "batch.npy", loop.samples)
    sweep = None
    if cfg.name == "batch_sweep":  # after the timed pass, outside the meter window: raw samples for the parent
        from heptathlon.runners.sweep import run_sweep_phase

        sweep = run_sweep_phase(adapter, cfg, x, profile)
    describe = adapter.describe()
    adapter.close()
    controls.update(adapter.records)
    return {"ready_time": t_ready, "n_queries": loop.n, "energy": energy, "describe": describe, "controls": controls,
            "stopped_by": loop.stopped_by, "loop": loop.summary, **({"sweep": sweep} if sweep is not None else {})}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    out = Path(job["out_dir"])
    try:
        result = run_job(job)
    except BaseException as e:  # noqa: BLE001  every failure becomes a recorded reason
        traceback.print_exc(file=sys.stderr)
        (out / "error.json").write_text(json.dumps({"error": one_line(e), "type": type(e).__name__}))
        return 3
    (out / "result.json").write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
