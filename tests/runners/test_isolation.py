"""The measuring worker never runs submitted code: hostile torch submissions, real workers, real
model processes in the real sandbox. What they forge or write never reaches the result."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from heptathlon.runners.executors.local import LOG_FILE, LocalExecutor
from heptathlon.runners.sandbox import available_mechanisms
from tests.runners.jobs import command_submission, make_job

pytestmark = pytest.mark.skipif("bwrap" not in available_mechanisms(), reason="bubblewrap is not usable here")

FORGED = {"run_id": "test-run", "ready_time": 0.0, "n_queries": 1, "arrays_npz": "AAAA", "forged": True}


def _torch_submission(examples, tmp_path: Path, name: str, hostile: str) -> Path:
    d = tmp_path / name
    shutil.copytree(examples["arrests-mlp-torch"], d)
    (d / "model.py").write_text((d / "model.py").read_text() + "\n" + hostile)
    y = (d / "submission.yaml").read_text()
    (d / "submission.yaml").write_text(y.replace("name: arrests-mlp-torch", f"name: {name}"))
    return d


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _honest_accuracy(job, preds: np.ndarray) -> float:
    from heptathlon.bench.tasks import resolve_task

    data = resolve_task(job.manifest.task, job.folder).load()
    return float(np.mean(preds == data.y_test))


def test_an_atexit_forger_cannot_touch_the_stored_result(examples, tmp_path):
    run_dir = tmp_path / "run"
    hostile = f"""
import atexit, json, os, sys
RUN_DIR = {str(run_dir)!r}  # the worst case: the submission knows the harness's run directory
FORGED = {json.dumps(FORGED)!r}

def _forge():
    for name in ("result.json", "error.json", "result.part"):
        try:
            with open(os.path.join(RUN_DIR, name), "w") as f:
                f.write(FORGED)
            print("FORGE wrote", name, file=sys.stderr)
        except OSError as e:
            print("FORGE blocked", name, type(e).__name__, file=sys.stderr)

atexit.register(_forge)
"""
    d = _torch_submission(examples, tmp_path, "atexit-forger", hostile)
    job = make_job(d, run_dir)
    out = LocalExecutor().execute(job, timeout_s=180)
    assert out.ok, (out.error, out.stderr_tail)
    r = out.result
    assert "forged" not in job.result_path.read_text()
    assert r.controls["isolation"] == "model-process" and r.controls["sandbox"]["mechanism"] == "bwrap"
    assert r.n_queries >= 20 and r.describe["runtime"] == "torch-eager"
    lat = r.arrays.done_ns - r.arrays.issue_ns
    assert np.all(lat > 0) and len(r.arrays.preds) == len(np.load(job.inputs))
    assert _honest_accuracy(job, r.arrays.preds) > 0.6  # the real model's answers, timed by the worker
    log = (run_dir / LOG_FILE).read_text()
    assert "FORGE" in log  # the hook did run - in the model process, where the run directory does not exist


def test_a_submission_cannot_write_the_run_directory_or_the_harness_copy(examples, tmp_path):
    run_dir = tmp_path / "run"
    hostile = f"""
import os, sys
RUN_DIR = {str(run_dir)!r}
_build = build

def build():
    for target in ("inputs.npy", "job.json", "work/model.py", "work/weights.pt"):
        p = os.path.join(RUN_DIR, target)
        try:
            with open(p, "wb") as f:
                f.write(b"overwritten")
            print("WRITE succeeded", target, file=sys.stderr)
        except OSError as e:
            print("WRITE blocked", target, type(e).__name__, file=sys.stderr)
    try:
        open("scratch.txt", "w").write("mine")  # its own copy: read-only under the sandbox
        print("WRITE succeeded own-copy", file=sys.stderr)
    except OSError as e:
        print("WRITE blocked own-copy", type(e).__name__, file=sys.stderr)
    open(os.path.join(os.environ["HOME"], "scratch.txt"), "w").write("mine")  # private scratch: never read back
    return _build()
"""
    d = _torch_submission(examples, tmp_path, "run-dir-writer", hostile)
    job = make_job(d, run_dir)
    before = _digest(run_dir)
    out = LocalExecutor().execute(job, timeout_s=180)
    assert out.ok, (out.error, out.stderr_tail)
    after = _digest(run_dir)
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed <= {"job.json"}  # the executor itself rewrites the job (sandbox_hide); nothing else changed
    assert json.loads((run_dir / "job.json").read_text())["run_id"] == "test-run"
    assert not (run_dir / "work" / "scratch.txt").exists()
    log = (run_dir / LOG_FILE).read_text()
    assert "WRITE succeeded" not in log and "WRITE blocked inputs.npy" in log and "WRITE blocked own-copy" in log
    assert _honest_accuracy(job, out.result.arrays.preds) > 0.6


def test_a_stderr_flood_keeps_head_and_tail_and_counts_every_byte(tmp_path):
    d = command_submission(tmp_path, "flood", """
        sys.stderr.write("FIRST-LINE\\n")
        chunk = "x" * 65535 + "\\n"
        for _ in range(320):  # 20 MiB
            sys.stderr.write(chunk)
        sys.stderr.write("THE-REAL-TAIL\\n")
        sys.stderr.flush()
        sys.exit(7)
    """)
    job = make_job(d, tmp_path / "run")
    out = LocalExecutor().execute(job, timeout_s=180)
    assert not out.ok and "command exited mid-run with code 7" in out.error
    assert out.log_bytes > 20 * 2**20
    log = job.out_dir / LOG_FILE
    assert log.stat().st_size < 200 * 1024  # head + marker + tail, whatever the flood
    head = log.open("rb").read(4096)
    assert b"FIRST-LINE" in head
    assert b"bytes omitted: the log keeps its first and last 64 KiB" in log.read_bytes()
    assert "THE-REAL-TAIL" in out.stderr_tail
    assert "Traceback" in out.stderr_tail  # the worker's own traceback after the model's flood: the real tail


def test_the_model_process_is_pinned_in_the_run_cgroup_and_does_not_outlive_the_run(examples, tmp_path):
    hostile = """
import os, sys
_build = build

def build():
    cg = open("/proc/self/cgroup").read().replace(chr(10), ";")
    print("MODEL-PROC affinity=%s cgroup=%s" % (sorted(os.sched_getaffinity(0)), cg), file=sys.stderr, flush=True)
    return _build()
"""
    d = _torch_submission(examples, tmp_path, "where-am-i", hostile)
    job = make_job(d, tmp_path / "run", profile="cpu-1core-512m")
    out = LocalExecutor().execute(job, timeout_s=180)
    assert out.ok, (out.error, out.stderr_tail)
    line = next(ln for ln in (job.out_dir / LOG_FILE).read_text().splitlines() if ln.startswith("MODEL-PROC"))
    assert "affinity=[0]" in line  # the profile's pinned core, inherited from the worker
    cg = out.result.controls["cgroup"]
    leaves = {str(p).rstrip("/").split("/")[-1] for p in (cg.get("dirs") or {}).values()}
    if leaves:  # where this machine gives the run a cgroup: the model process is in it too, as the worker is
        assert all(cg["member"].values()), cg
        assert all(leaf in line for leaf in leaves), (line, cg)
    import psutil

    left = [p for p in psutil.process_iter(["cmdline"]) if "heptathlon.runners.model_host" in (p.info["cmdline"] or [])]
    assert not left
