"""Every bad input ends as a failed run record with a one-line reason and the stderr tail;
nothing else in the database changes, and other queued runs still run."""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import func, select

from heptathlon.bench.errors import HeptathlonError, ProfileError, ScenarioError, SubmissionError, TaskError
from heptathlon.bench.scenarios import make_scenario
from functools import partial

from heptathlon.bench.app import service
from heptathlon.bench.app.service import execute_queued, execute_run

queue_runs = partial(service.queue_runs, energy={"enabled": False})  # meters are tested elsewhere
from heptathlon.db.models import Machine, Measurement, Profile, Run, Samples, Submission
from heptathlon.db.session import session_scope

SERVE = """
import json, sys
MODE = {mode!r}
print("loading...", flush=True)          # a non-protocol line: ignored but counted
print(json.dumps({{"ready": True}}), flush=True)
for k, line in enumerate(sys.stdin):
    req = json.loads(line)
    n = len(req["inputs"])
    if MODE == "crash" and k == 5:
        print("boom from the model", file=sys.stderr, flush=True)
        sys.exit(4)
    if MODE == "hang" and k == 3:
        import time; time.sleep(3600)
    if MODE == "bad_json" and k == 5:
        print('{{"id": oops', flush=True); continue
    rid = req["id"] + (1 if MODE == "wrong_id" and k == 5 else 0)
    outs = [0] * (n + (1 if MODE == "wrong_len" and k == 5 else 0))
    print(json.dumps({{"id": rid, "outputs": outs}}), flush=True)
"""


def command_submission(tmp_path, mode: str):
    d = tmp_path / f"cmd-{mode.replace('_', '-')}"
    d.mkdir()
    (d / "serve.py").write_text(SERVE.format(mode=mode))
    (d / "submission.yaml").write_text(
        f"name: cmd-{mode.replace('_', '-')}\ntask: arrests\nmodel: {{kind: command, command: [python, serve.py]}}\n")
    return d


def counts(url):
    with session_scope(url) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                for m in (Submission, Profile, Machine, Measurement, Samples, Run)}


def only_run(url) -> Run:
    with session_scope(url) as s:
        runs = list(s.scalars(select(Run)))
        assert len(runs) == 1
        return runs[0]


def assert_failed_record(url, *needles):
    run = only_run(url)
    assert run.status == "failed"
    assert "\n" not in run.error, "the reason is one line"
    for n in needles:
        assert n in run.error, (n, run.error)
    assert run.stderr_tail
    return run


@pytest.fixture
def q(quick):
    return [make_scenario("single_stream", **quick)]


# ---- rejected before anything runs ------------------------------------------------------------
@pytest.mark.parametrize("setup,exc,needles", [
    (lambda d: None, SubmissionError, ["submission.yaml: missing"]),
    (lambda d: (d / "submission.yaml").write_text("name: [broken\n"), SubmissionError, ["not valid YAML"]),
    (lambda d: (d / "submission.yaml").write_text(
        "name: a\ntask: arrests\nsize: big\nmodel: {kind: onnx, path: m.onnx}\n"), SubmissionError,
     ["field 'size': unknown key"]),
    (lambda d: (d / "submission.yaml").write_text(
        "name: a\ntask: arrests\nmodel: {kind: onnx, path: m.onnx}\n"), SubmissionError,
     ["field 'model.path': file 'm.onnx' not found"]),
    (lambda d: (d / "submission.yaml").write_text(
        "name: a\ntask: arrests\nmodel: {kind: onnx, path: ../../etc/passwd}\n"), SubmissionError,
     ["leaves the submission folder"]),
    (lambda d: ((d / "m.onnx").write_bytes(b"x"), (d / "submission.yaml").write_text(
        "name: a\ntask: imagenet\nmodel: {kind: onnx, path: m.onnx}\n")), TaskError, ["unknown task 'imagenet'"]),
])
def test_invalid_submission_leaves_only_a_failed_run(tmp_path, db_url, q, setup, exc, needles):
    d = tmp_path / "sub"
    d.mkdir()
    setup(d)
    with pytest.raises(exc):
        queue_runs(d, ["cpu-1core"], q, db=db_url)
    run = assert_failed_record(db_url, *needles)
    assert run.submission_ref == str(d)
    c = counts(db_url)
    assert c == {"submission": 0, "profile": 0, "machine": 0, "measurement": 0, "samples": 0, "run": 1}


def test_unknown_profile(examples, db_url, q):
    with pytest.raises(ProfileError, match="unknown profile 'gpu-9000'.*profiles list"):
        queue_runs(examples["arrests-mlp-onnx"], ["gpu-9000"], q, db=db_url)
    run = assert_failed_record(db_url, "unknown profile 'gpu-9000'")
    assert run.profile_name == "gpu-9000"
    assert counts(db_url)["submission"] == 0


def test_unknown_scenario_from_cli(examples, sqlite_url):
    p = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "run", str(examples["arrests-mlp-onnx"]), "--scenario",
                        "warp_speed", "--json", "--db", sqlite_url], capture_output=True, text=True)
    assert p.returncode == 2
    doc = json.loads(p.stdout)
    assert doc["status"] == "failed" and "unknown scenario 'warp_speed'" in doc["error"]
    run = assert_failed_record(sqlite_url, "unknown scenario 'warp_speed'")
    assert run.id == doc["run_id"] and run.scenario == "warp_speed"


def test_cli_error_is_one_line_without_traceback(tmp_path, sqlite_url):
    p = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "run", str(tmp_path / "nowhere"), "--db", sqlite_url],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    lines = [l for l in p.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "nowhere" in lines[0]


# ---- failures while running -------------------------------------------------------------------
def test_corrupt_model_file(examples, tmp_path, db_url, q):
    d = tmp_path / "corrupt"
    shutil.copytree(examples["arrests-mlp-onnx"], d)
    (d / "model.onnx").write_bytes(b"\x00not an onnx model at all")
    [rid] = queue_runs(d, ["cpu-1core"], q, db=db_url)
    o = execute_run(rid, db=db_url)
    assert o.status == "failed"
    run = assert_failed_record(db_url, rid[:8], "arrests-mlp-onnx on cpu-1core/single_stream")
    assert "onnxruntime" in run.stderr_tail.lower() or "protobuf" in run.stderr_tail.lower() or "INVALID" in run.stderr_tail
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(Measurement)) == 0


@pytest.mark.parametrize("mode,needle", [
    ("crash", "command exited mid-run with code 4"),
    ("wrong_id", "answer has id 7, expected 6"),
    ("wrong_len", "answer to request 6 has 65 outputs for 64 inputs"),
    ("bad_json", "is not valid JSON"),
])
def test_misbehaving_command_model(tmp_path, db_url, q, mode, needle):
    d = command_submission(tmp_path, mode)
    [rid] = queue_runs(d, ["cpu-1core"], q, db=db_url)
    o = execute_run(rid, db=db_url)
    assert o.status == "failed" and needle in o.error
    run = assert_failed_record(db_url, needle)
    if mode == "crash":
        assert "boom from the model" in run.stderr_tail


def test_model_that_never_answers_times_out(tmp_path, db_url, q):
    d = command_submission(tmp_path, "hang")
    [rid] = queue_runs(d, ["cpu-1core"], q, db=db_url, timeout_s=8)
    o = execute_run(rid, db=db_url)
    assert o.status == "failed"
    assert_failed_record(db_url, "timed out after 8 s", "--timeout")


def test_worker_that_dies_without_a_word(tmp_path, db_url, q):
    d = tmp_path / "dies"
    d.mkdir()
    (d / "model.py").write_text(textwrap.dedent("""
        import os, torch
        class M(torch.nn.Module):
            def __init__(self):
                super().__init__(); self.l = torch.nn.Linear(7, 2); self.k = 0
            def forward(self, x):
                self.k += 1
                if self.k > 40:
                    os._exit(9)
                return self.l(x)
        def build():
            return M()
    """))
    import torch
    torch.save(torch.nn.Linear(7, 2).state_dict(), d / "w.pt")
    sd = torch.load(d / "w.pt")
    torch.save({f"l.{k}": v for k, v in sd.items()}, d / "w.pt")
    (d / "submission.yaml").write_text("name: dies\ntask: arrests\nmodel: {kind: torch, module: model.py, weights: w.pt}\n")
    [rid] = queue_runs(d, ["cpu-1core"], q, db=db_url)
    assert execute_run(rid, db=db_url).status == "failed"
    # The model runs in its own process: the worker lives and names what happened
    assert_failed_record(db_url, "submission 'dies': model process exited with code 9 while answering request")


def test_other_queued_runs_still_run(examples, tmp_path, sqlite_url, q):
    bad = queue_runs(command_submission(tmp_path, "crash"), ["cpu-1core"], q, db=sqlite_url)
    good = queue_runs(examples["arrests-mlp-onnx"], ["cpu-1core"], q, db=sqlite_url)
    outcomes = execute_queued(bad + good, db=sqlite_url)
    assert [o.status for o in outcomes] == ["failed", "succeeded"]
    with session_scope(sqlite_url) as s:
        assert s.scalar(select(func.count()).select_from(Measurement).where(Measurement.run_id == bad[0])) == 0
        assert s.scalar(select(func.count()).select_from(Measurement).where(Measurement.run_id == good[0])) > 5


def test_impossible_scenario_rejected_before_running():
    with pytest.raises(ScenarioError, match="above max_duration_s"):
        make_scenario("single_stream", min_duration_s=30, max_duration_s=5)
