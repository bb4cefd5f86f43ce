"""Profiles through real runs: memory limits, the sandbox, precision, fingerprints and controls."""

import textwrap

import numpy as np
import pytest

from heptathlon.bench.scenarios import make_scenario
from heptathlon.bench.app.service import execute_run, queue_runs
from heptathlon.db import queries as Q
from heptathlon.db.models import Run
from heptathlon.db.session import session_scope

NO_METERS = {"enabled": False}


@pytest.fixture
def q(quick):
    return [make_scenario("single_stream", **quick)]


def test_memory_limit_ends_as_failed_run_with_reason(tmp_path, sqlite_url, q):
    d = tmp_path / "hog"
    d.mkdir()
    (d / "model.py").write_text(textwrap.dedent("""
        import torch
        class Hog(torch.nn.Module):
            def __init__(self):
                super().__init__(); self.l = torch.nn.Linear(7, 2); self.keep = []
            def forward(self, x):
                self.keep.append(torch.ones(64 * 2**20 // 4))   # 64 MiB per call, never freed
                return self.l(x)
        def build():
            return Hog()
    """))
    import torch

    torch.save({f"l.{k}": v for k, v in torch.nn.Linear(7, 2).state_dict().items()}, d / "w.pt")
    (d / "submission.yaml").write_text("name: hog\ntask: arrests\nmodel: {kind: torch, module: model.py, weights: w.pt}\n")
    [rid] = queue_runs(d, ["cpu-1core-512m"], q, db=sqlite_url, energy=NO_METERS)
    o = execute_run(rid, db=sqlite_url)
    assert o.status == "failed"
    assert "memory limit of 512 MiB exceeded" in o.error
    with session_scope(sqlite_url) as s:
        assert s.get(Run, rid).error.endswith("memory limit of 512 MiB exceeded")


SNOOP = '''
import json, os, socket, sys
seen = {"db": os.environ.get("HEPTATHLON_DB"), "pg": os.environ.get("PGHOST")}
try:
    socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    seen["net"] = "connected"
except OSError as e:
    seen["net"] = "blocked"
print("SNOOP " + json.dumps(seen), file=sys.stderr, flush=True)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    print(json.dumps({"id": req["id"], "outputs": [1] * len(req["inputs"])}), flush=True)
'''


def test_sandbox_hides_database_url_and_network(tmp_path, sqlite_url, q, monkeypatch):
    monkeypatch.setenv("HEPTATHLON_DB", sqlite_url)  # the harness's own secret
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    d = tmp_path / "snoop"
    d.mkdir()
    (d / "serve.py").write_text(SNOOP)
    (d / "submission.yaml").write_text("name: snoop\ntask: arrests\nmodel: {kind: command, command: [python, serve.py]}\n")
    [rid] = queue_runs(d, ["cpu-1core"], q, db=sqlite_url, energy=NO_METERS)
    o = execute_run(rid, db=sqlite_url)
    assert o.status == "succeeded", o.error
    with session_scope(sqlite_url) as s:
        run = s.get(Run, rid)
        line = [l for l in run.stderr_tail.splitlines() if l.startswith("SNOOP ")][0]
        assert line == 'SNOOP {"db": null, "pg": null, "net": "blocked"}'
        assert run.controls["sandbox"]["active"] is True


def test_precisions_change_numerics_not_weights(examples, sqlite_url, q):
    scores = {}
    for prof in ("cpu-1core", "cpu-1core-bf16", "cpu-1core-int8"):
        [rid] = queue_runs(examples["arrests-mlp-torch"], [prof], q, db=sqlite_url, energy=NO_METERS)
        o = execute_run(rid, db=sqlite_url)
        assert o.status == "succeeded", o.error
        assert o.metrics["params"].value == 1378  # the submitter's weights, whatever the numerics
        with session_scope(sqlite_url) as s:
            scores[prof] = Q.load_samples(s, rid, "scores").reshape(-1, 2)
            run = s.get(Run, rid)
            assert run.controls["precision"]["took_effect"] is True
            assert run.controls["precision"]["requested"] == prof.split("-")[-1].replace("1core", "fp32")
    ref = scores["cpu-1core"]
    for prof in ("cpu-1core-bf16", "cpu-1core-int8"):
        diff = np.abs(scores[prof] - ref).max()
        assert 0 < diff < 0.5, (prof, diff)  # real, different, still close numerics
    assert np.abs(scores["cpu-1core-bf16"] - scores["cpu-1core-int8"]).max() > 0


def test_every_run_records_fingerprint_and_controls(examples, sqlite_url, q):
    [rid] = queue_runs(examples["digits-cnn-onnx"], ["cpu-2core"], q, db=sqlite_url, energy=NO_METERS)
    assert execute_run(rid, db=sqlite_url).status == "succeeded"
    with session_scope(sqlite_url) as s:
        run = s.get(Run, rid)
        specs = run.machine.specs
        assert specs["cpu_model"] and specs["kernel"] and specs["software"]["onnxruntime"]
        assert run.controls["cpu.cores"]["effective"] == [0, 1]
        assert run.controls["cgroup"]["dirs"].get("memory")  # the run had its own memory cgroup
        assert run.controls["onnxruntime"]["intra_op_num_threads"] == 2


@pytest.mark.skipif(__import__("heptathlon.bench.fingerprint", fromlist=["x"]).count_nvidia_gpus()[0] > 0,
                    reason="this machine has a GPU: the CPU-only failure path does not apply")
def test_cuda_profile_without_gpu_fails_before_spawning(examples, sqlite_url, q):
    [rid] = queue_runs(examples["arrests-mlp-torch"], ["cuda-fp16"], q, db=sqlite_url, energy=NO_METERS)
    o = execute_run(rid, db=sqlite_url)
    assert o.status == "failed" and "field 'device'" in o.error and "cuda-fp16" in o.error
