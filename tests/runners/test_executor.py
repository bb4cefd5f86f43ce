"""LocalExecutor on real subprocess workers: a typed result on success; on failure the reason,
the exit code and the worker's stderr tail."""

from __future__ import annotations

import threading
import time

import numpy as np
import psutil

from heptathlon.bench.types import RunArrays, WorkerResult
from heptathlon.runners.executors.base import Executor
from heptathlon.runners.executors.local import LocalExecutor
from tests.runners.jobs import QUICK, command_submission, make_job


def test_success_returns_a_typed_result_whose_arrays_unpack(examples, tmp_path):
    job = make_job(examples["arrests-mlp-onnx"], tmp_path / "run", run_id="exec-ok")
    executor = LocalExecutor()
    assert isinstance(executor, Executor) and executor.name == "local"
    out = executor.execute(job, timeout_s=120)
    assert out.ok and out.error is None and out.exit_code == 0, out.stderr_tail
    assert isinstance(out.result, WorkerResult) and out.result.run_id == "exec-ok"
    a = out.result.arrays
    assert isinstance(a, RunArrays)
    assert a.issue_ns.dtype == np.int64 and len(a.issue_ns) == len(a.done_ns) == len(a.batch) == out.result.n_queries
    assert out.result.n_queries >= QUICK["min_queries"] and np.all(a.done_ns >= a.issue_ns)
    assert len(a.preds) == len(np.load(job.inputs))  # the quality pass covers every test input
    assert out.result.controls["cpu.cores"]["effective"] == [0]
    assert out.result.machine["software"]["onnxruntime"] is not None
    assert out.tree_rss.method.startswith("sampled:psutil-tree-pss")
    assert out.tree_rss.peak_bytes > 10_000_000 and out.tree_rss.n >= 1
    assert out.spawn_time < out.result.ready_time


def _kill_worker_when_logged(job, marker: bytes) -> threading.Thread:
    """SIGKILL the real worker process of ``job`` once ``marker`` shows in its (live) log."""
    def run() -> None:
        log = job.out_dir / "worker.log"
        for _ in range(1200):
            if log.exists() and marker in log.read_bytes():
                for p in psutil.process_iter(["cmdline"]):
                    cmd = p.info["cmdline"] or []
                    if "heptathlon.runners.worker" in cmd and str(job.out_dir / "job.json") in cmd:
                        p.kill()
                        return
            time.sleep(0.1)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_worker_killed_mid_run_gives_the_signal_and_the_stderr_tail(tmp_path):
    d = command_submission(tmp_path, "slow-model", """
        print("model waiting", file=sys.stderr, flush=True)
        time.sleep(60)
    """)
    job = make_job(d, tmp_path / "run")
    _kill_worker_when_logged(job, b"model waiting")
    out = LocalExecutor().execute(job, timeout_s=120)
    assert not out.ok and out.result is None
    assert out.exit_code == -9  # the worker is no longer sandboxed: its own exit status
    assert out.error == "worker was killed by signal SIGKILL before reporting results (see stderr tail)"
    assert "model waiting" in out.stderr_tail


def test_a_model_cannot_kill_its_measuring_worker(tmp_path):
    # The command runs in its own PID namespace: its parent is the sandbox's init, not the worker.
    d = command_submission(tmp_path, "kills-parent", """
        print("about to kill my parent", file=sys.stderr, flush=True)
        try:
            os.kill(os.getppid(), signal.SIGKILL)
        except OSError:
            pass
        sys.exit(5)
    """)
    out = LocalExecutor().execute(make_job(d, tmp_path / "run"), timeout_s=120)
    assert not out.ok and out.exit_code == 3  # the worker lived to write its error.json
    assert "command exited mid-run with code 5 while answering request 1" in out.error
    assert "about to kill my parent" in out.stderr_tail


def test_error_reported_by_the_worker_is_the_reason(tmp_path):
    d = command_submission(tmp_path, "model-exits", """
        print("boom from the model", file=sys.stderr, flush=True)
        sys.exit(4)
    """)
    out = LocalExecutor().execute(make_job(d, tmp_path / "run"), timeout_s=120)
    assert not out.ok and out.exit_code == 3  # the worker's own exit code after writing error.json
    assert "command exited" in out.error and "code 4" in out.error
    assert "boom from the model" in out.stderr_tail and "Traceback" in out.stderr_tail


def test_timeout_kills_the_worker_and_says_so(tmp_path):
    d = command_submission(tmp_path, "hangs", """
        print("hanging now", file=sys.stderr, flush=True)
        time.sleep(3600)
    """)
    out = LocalExecutor().execute(make_job(d, tmp_path / "run"), timeout_s=3)
    assert not out.ok and out.exit_code == -9
    assert out.error.startswith("run timed out after 3 s") and "--timeout" in out.error
    assert "hanging now" in out.stderr_tail
