"""Real WorkerJobs for executor and worker tests: a submission folder prepared the way
``execute_run`` prepares it (a writable copy without labels, the inputs beside it)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from heptathlon.bench.app.service import prepare_job
from heptathlon.bench.manifest import load_manifest
from heptathlon.bench.profile import load_profile
from heptathlon.bench.scenarios import make_scenario
from heptathlon.bench.tasks import resolve_task
from heptathlon.bench.types import WorkerJob

QUICK = {"min_queries": 20, "min_duration_s": 0.0, "max_duration_s": 5.0, "warmup_queries": 2}


def make_job(folder: Path, run_dir: Path, run_id: str = "test-run", profile: str = "cpu-1core") -> WorkerJob:
    manifest = load_manifest(folder)
    data = resolve_task(manifest.task, folder).load()
    run_dir.mkdir(parents=True)
    job, _ = prepare_job(run_id, manifest, folder, load_profile(profile), make_scenario("single_stream", **QUICK),
                         {"energy": {"enabled": False}}, run_dir, data)
    return job


def command_submission(parent: Path, name: str, on_first_request: str) -> Path:
    """An arrests ``command`` submission whose model runs ``on_first_request`` (Python) at its first request."""
    d = parent / name
    d.mkdir()
    (d / "serve.py").write_text(textwrap.dedent("""
        import json, os, signal, sys, time
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            req = json.loads(line)
    """) + textwrap.indent(textwrap.dedent(on_first_request), "    ") + textwrap.dedent("""
            print(json.dumps({"id": req["id"], "outputs": [0] * len(req["inputs"])}), flush=True)
    """))
    (d / "submission.yaml").write_text(f"name: {name}\ntask: arrests\nmodel: {{kind: command, command: [python, serve.py]}}\n")
    return d
