"""LocalExecutor on real subprocess workers: a typed result on success; on failure the reason,
the exit code and the worker's stderr tail."""

from __future__ import annotations

import numpy as np

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


def test_worker_killed_mid_run_gives_the_signal_and_the_stderr_tail(tmp_path):
    d = command_submission(tmp_path, "kills-worker", """
        print("about to kill the worker", file=sys.stderr, flush=True)
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)
    """)
    out = LocalExecutor().execute(make_job(d, tmp_path / "run"), timeout_s=120)
    assert not out.ok and out.result is None
    # bwrap (and unshare) report a child killed by a signal as exit code 128 + signal
    how = {-9: "was killed by signal SIGKILL", 137: "exited with code 137"}
    assert out.exit_code in how
    assert out.error == f"worker {how[out.exit_code]} before reporting results (see stderr tail)"
    assert "about to kill the worker" in out.stderr_tail


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
