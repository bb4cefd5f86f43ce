"""Hostile answers end to end (issue 13, items 3, 4 and 10): a command submission that answers
before its request, writes bad labels or scores, cannot batch, or answers the timed pass
differently from the quality pass. Each ends as a failed run with its one-line reason and the
stderr tail, and nothing else in the database changes; on SQLite and PostgreSQL (db_url)."""

from __future__ import annotations

from functools import partial

import pytest
from sqlalchemy import func, select

from heptathlon.bench.app import service
from heptathlon.bench.app.service import execute_run
from heptathlon.bench.scenarios import make_scenario
from heptathlon.db.models import Machine, Measurement, Profile, Run, Samples, Submission
from heptathlon.db.session import session_scope

queue_runs = partial(service.queue_runs, energy={"enabled": False})

SERVE = """
import json, os, sys, time
MODE = {mode!r}
out = sys.stdout.fileno()
def send(b):
    while b:
        b = b[os.write(out, b):]
def honest(row):  # a deterministic model: the same input always gets the same label
    return int(abs(row[0]) * 1000) % 2
print("stderr: loaded", file=sys.stderr, flush=True)
if MODE == "pre_answer":  # 20 ms a request, but the answers are written ahead, with the ready line
    send(b'{{"ready": true}}\\n' + b''.join(b'{{"id":%d,"outputs":[0]}}\\n' % i for i in range(1, 100)))
else:
    send(b'{{"ready": true}}\\n')
for line in sys.stdin:
    req = json.loads(line)
    rid, xs = req["id"], req["inputs"]
    labels = [honest(r) for r in xs]
    ans = {{"id": rid, "outputs": labels}}
    if MODE == "pre_answer":
        time.sleep(0.02)
        continue
    if MODE == "cannot_batch" and len(xs) > 1:
        ans["outputs"] = labels[:1]
    if MODE == "timed_differs" and len(xs) == 1:  # honest in the quality pass's batches, constant after
        ans["outputs"] = [1 - labels[0]]
    if rid == 3 and MODE in BAD:
        ans["outputs"][2] = BAD[MODE]
    if MODE == "nan_scores":
        ans["scores"] = [[0.5, 0.5]] * len(xs)
        if rid == 3:
            ans["scores"][1] = [float("nan"), 0.5]
    if MODE == "wrong_shape_scores":
        ans["scores"] = [[0.5, 0.25, 0.25]] * len(xs)
    send(json.dumps(ans).encode() + b"\\n")
"""
BAD = {"neg": -7, "big": 99, "float": 3.9, "bool": True, "str": "a", "nested": [[1]], "huge": 10**30}


def submission(tmp_path, mode: str):
    name = "cmd-" + mode.replace("_", "-")
    d = tmp_path / name
    d.mkdir()
    (d / "serve.py").write_text(f"BAD = {BAD!r}\n" + SERVE.format(mode=mode))
    (d / "submission.yaml").write_text(f"name: {name}\ntask: arrests\nmodel: {{kind: command, command: [python, serve.py]}}\n")
    return d, name


def counts(url):
    with session_scope(url) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                for m in (Submission, Profile, Machine, Measurement, Samples, Run)}


def failed_run(url, tmp_path, quick, mode: str) -> tuple[Run, str]:
    d, name = submission(tmp_path, mode)
    [rid] = queue_runs(d, ["cpu-1core"], [make_scenario("single_stream", **quick)], db=url)
    before = counts(url)
    o = execute_run(rid, db=url)
    assert o.status == "failed"
    assert counts(url) == before  # nothing else written: no measurements, samples or machine row
    assert before["measurement"] == before["samples"] == before["machine"] == 0
    with session_scope(url) as s:
        run = s.get(Run, rid)
        s.expunge(run)
    assert run.status == "failed" and "\n" not in run.error and run.error == o.error
    assert "stderr: loaded" in run.stderr_tail  # the submission's own stderr, kept with the reason
    return run, name


@pytest.mark.parametrize("mode,needle", [
    ("neg", "field 'outputs': position 2: label -7 is outside [0, 2)"),
    ("float", "field 'outputs': position 2: label 3.9 is not an integer"),
    ("bool", "field 'outputs': position 2: label True is a boolean"),
    ("nested", "field 'outputs': position 2: label [[1]] is a nested list"),
    ("nan_scores", "field 'scores': row 1, class 0: nan is not finite"),
    ("wrong_shape_scores", "field 'scores': shape (64, 3); expected (64, 2)"),
])
def test_a_bad_answer_fails_the_run_naming_submission_request_and_field(tmp_path, db_url, quick, mode, needle):
    run, name = failed_run(db_url, tmp_path, quick, mode)
    where = "request 1 (quality-pass batch 1, instances 0-63)" if mode == "wrong_shape_scores" else \
        "request 3 (quality-pass batch 3, instances 128-191)"
    assert f"submission '{name}': answer to {where}: {needle}" in run.error, run.error


def test_a_slow_model_that_answers_ahead_fails_and_stores_no_latency(tmp_path, db_url, quick):
    run, name = failed_run(db_url, tmp_path, quick, "pre_answer")
    assert run.error.endswith(f"submission '{name}': answer to request 1 arrived before the request was sent")


def test_a_model_that_cannot_batch_fails_with_its_reason_not_a_fallback(tmp_path, db_url, quick):
    run, name = failed_run(db_url, tmp_path, quick, "cannot_batch")
    assert run.error.endswith(f"submission '{name}': answer to request 1 has 1 outputs for 64 inputs"), run.error


def test_timed_answers_that_differ_from_the_quality_pass_fail_the_run(tmp_path, db_url, quick):
    run, name = failed_run(db_url, tmp_path, quick, "timed_differs")
    assert f"submission '{name}': timed-pass outputs differ from the quality pass (" in run.error, run.error
    k, n = run.error.split("(")[-1].split(" sampled")[0].split(" of ")
    assert int(k) == int(n) >= 20  # every sampled instance (quick: 20 queries of one) was answered differently


def test_an_honest_model_passes_and_the_run_records_what_was_checked(tmp_path, db_url, quick):
    d, _ = submission(tmp_path, "honest")
    [rid] = queue_runs(d, ["cpu-1core"], [make_scenario("single_stream", **quick)], db=db_url)
    o = execute_run(rid, db=db_url)
    assert o.status == "succeeded", o.error
    with session_scope(db_url) as s:
        extra = s.get(Run, rid).extra
    c = extra["answers"]["consistency"]
    assert c["queries"] == c["instances"] >= 20 and c["mismatched"] == 0
    assert extra["answers"]["quality_pass"]["batch"] == 64
