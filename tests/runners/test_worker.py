"""The worker contract: WorkerJob and WorkerResult round-trip through JSON (the arrays too),
a malformed result file is a one-line error naming the run, and the fingerprint the sandboxed,
CPU-pinned worker takes hashes the same as the parent's on this machine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from heptathlon.bench.errors import RunError
from heptathlon.bench.fingerprint import collect_fingerprint, fingerprint_hash
from heptathlon.bench.types import RunArrays, WorkerFailure, WorkerJob, WorkerResult, WorkerResultError
from heptathlon.runners.executors.local import LocalExecutor
from tests.runners.jobs import make_job


def arrays(with_scores: bool = True) -> RunArrays:
    rng = np.random.default_rng(3)
    issue = np.cumsum(rng.integers(1_000, 5_000, 50)).astype(np.int64)
    return RunArrays(issue_ns=issue, done_ns=issue + 700, batch=np.ones(50, dtype=np.int32),
                     preds=rng.integers(0, 2, 64), scores=rng.random(64).astype(np.float32) if with_scores else None)


def result(run_id: str = "r-1", **over) -> WorkerResult:
    fields = dict(run_id=run_id, ready_time=1.7e9, n_queries=50, stopped_by="min_queries",
                  describe={"runtime": "onnxruntime", "params": np.int64(1234)},  # a numpy scalar, as adapters give
                  controls={"cpu.cores": {"effective": [0]}}, loop={"drift_ns": np.float64(1.5)},
                  machine={"cpu_model": "x", "software": {"numpy": np.__version__}})
    return WorkerResult.build(arrays(), **{**fields, **over})


def test_worker_job_round_trips_through_json(examples, tmp_path):
    job = make_job(examples["arrests-mlp-onnx"], tmp_path / "run", run_id="job-1")
    again = WorkerJob.model_validate_json(job.model_dump_json())
    assert again.model_dump() == job.model_dump()  # the wire carries the spec, not the profile's source path
    assert again.profile.name == "cpu-1core" and again.manifest.model.kind == "onnx"
    assert again.meters.enabled is False and again.inputs.exists() and again.folder == tmp_path / "run" / "work"
    assert again.result_path == tmp_path / "run" / "result.json"


def test_worker_result_round_trips_through_json_with_its_arrays():
    r = result()
    wire = r.model_dump_json()
    assert isinstance(json.loads(wire)["arrays_npz"], str)  # base64 text, safe in any JSON transport
    back = WorkerResult.model_validate_json(wire)
    assert back.describe == {"runtime": "onnxruntime", "params": 1234} and back.loop == {"drift_ns": 1.5}
    assert back.arrays_npz == r.arrays_npz
    for name in ("issue_ns", "done_ns", "batch", "preds", "scores"):
        a, b = getattr(r.arrays, name), getattr(back.arrays, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert WorkerResult.build(arrays(with_scores=False), **{k: v for k, v in r.model_dump().items()
                                                             if k != "arrays_npz"}).arrays.scores is None


def test_result_file_read_and_validated_at_the_boundary(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(result("r-1").model_dump_json())
    assert WorkerResult.read(path, "r-1").n_queries == 50


@pytest.mark.parametrize("damage,needle", [
    (lambda t: t[: len(t) // 2], "result.json is malformed"),  # truncated mid-write
    (lambda t: "", "result.json is malformed"),
    (lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "ready_time"}), "ready_time: Field required"),
    (lambda t: json.dumps({**json.loads(t), "n_queries": "many"}), "n_queries"),
    (lambda t: json.dumps({**json.loads(t), "arrays_npz": "bm90IGFuIG5weg=="}), "arrays_npz: not a readable npz"),
    (lambda t: json.dumps({**json.loads(t), "run_id": "someone-else"}), "belongs to run someone-else"),
])
def test_malformed_result_file_is_one_clear_line_naming_the_run(tmp_path, damage, needle):
    path = tmp_path / "result.json"
    path.write_text(damage(result("r-1").model_dump_json()))
    with pytest.raises(WorkerResultError) as e:
        WorkerResult.read(path, "r-1")
    msg = str(e.value)
    assert isinstance(e.value, RunError) and msg.startswith("run r-1: ") and needle in msg
    assert "\n" not in msg


def test_truncated_npz_blob_and_missing_arrays_are_refused():
    blob = arrays().pack()
    with pytest.raises(ValueError, match="npz"):
        RunArrays.unpack(blob[: len(blob) // 2])
    import io

    buf = io.BytesIO()
    np.savez(buf, issue_ns=np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"\['done_ns', 'batch', 'preds'\] missing"):
        RunArrays.unpack(buf.getvalue())


def test_missing_or_malformed_error_file(tmp_path):
    with pytest.raises(WorkerResultError, match="run r-2: cannot read worker file error.json"):
        WorkerFailure.read(tmp_path / "error.json", "r-2")
    (tmp_path / "error.json").write_text('{"error": "boom"}')
    with pytest.raises(WorkerResultError, match="run r-2: worker file error.json is malformed: type: Field required"):
        WorkerFailure.read(tmp_path / "error.json", "r-2")


def test_fingerprint_taken_by_the_pinned_sandboxed_worker_hashes_like_the_parents(examples, tmp_path):
    # cpu-1core pins the worker to core 0; the worker runs harness code only, outside the sandbox,
    # with a scrubbed environment. Anything in the fingerprint that depends on affinity or on the
    # environment would split every series.
    out = LocalExecutor().execute(make_job(examples["arrests-mlp-onnx"], tmp_path / "run", run_id="fp"), timeout_s=120)
    assert out.ok, out.error
    assert out.result.controls["cpu.cores"]["effective"] == [0]
    assert out.sandbox["role"] == "measuring worker" and "scrubbed-env" in out.sandbox["isolation"]
    assert out.result.controls["isolation"] == "no-code-in-worker"  # ONNX carries no code
    parent = collect_fingerprint()
    worker = out.result.machine
    stable = lambda fp: {k: v for k, v in fp.items() if k != "state"}  # noqa: E731
    assert json.loads(json.dumps(stable(worker))) == json.loads(json.dumps(stable(parent), default=str))
    assert fingerprint_hash(worker) == fingerprint_hash(parent)
