"""Runs are never doubled, stuck or lost (issue 13, items 8 and 9), with the real CLI, real
workers and real signals, on SQLite and PostgreSQL."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from heptathlon.bench.app import service
from heptathlon.bench.scenarios import make_scenario
from heptathlon.db import lifecycle as L
from heptathlon.db.models import Machine, Measurement, Profile, Run, Samples, Submission, Task
from heptathlon.db.session import session_scope

QUICK = ["--min-queries", "20", "--min-duration", "0", "--max-duration", "5", "--warmup", "2", "--no-meters"]

SERVE = """
import json, sys, time
MODE = {mode!r}
if MODE == "crash":
    print("loading the model", file=sys.stderr, flush=True)
    def load():
        return 1 / 0
    load()
print(json.dumps({{"ready": True}}), flush=True)
for k, line in enumerate(sys.stdin):
    req = json.loads(line)
    if MODE == "hang" and k == 3:
        print("the model hangs on request 3", file=sys.stderr, flush=True)
        time.sleep(3600)
    if MODE == "slow":
        time.sleep(0.05)
    print(json.dumps({{"id": req["id"], "outputs": [0] * len(req["inputs"])}}), flush=True)
"""


def command_submission(tmp_path: Path, mode: str) -> Path:
    d = tmp_path / f"life-{mode}"
    d.mkdir()
    (d / "serve.py").write_text(SERVE.format(mode=mode))
    (d / "submission.yaml").write_text(
        f"name: life-{mode}\ntask: arrests\nmodel: {{kind: command, command: [python, serve.py]}}\n")
    return d


def cli_argv(*args: str, db: str) -> list[str]:
    return [sys.executable, "-m", "heptathlon.bench.cli", *args, "--db", db]


def cli(*args: str, db: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cli_argv(*args, db=db), capture_output=True, text=True, env=env, timeout=300)


def counts(url: str) -> dict[str, int]:
    with session_scope(url) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                for m in (Submission, Profile, Machine, Task, Measurement, Samples, Run)}


def runs_of(url: str) -> list[Run]:
    with session_scope(url) as s:
        return list(s.scalars(select(Run).order_by(Run.created_at)))


def wait_until_mid_run(url: str, harness: subprocess.Popen, marker: str = "serve.py") -> tuple[Run, list]:
    """The running run and the harness's descendants, once the submission's process is up."""
    for _ in range(1200):
        assert harness.poll() is None, harness.communicate()
        try:
            running = [r for r in runs_of(url) if r.status == "running"]
        except (OperationalError, ProgrammingError):  # the harness has not created the tables yet
            running = []
        try:
            kids = psutil.Process(harness.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        if running and any(marker in " ".join(k.cmdline()) for k in kids if _alive(k)):
            time.sleep(0.5)  # well inside the timed loop
            return running[0], psutil.Process(harness.pid).children(recursive=True)
        time.sleep(0.1)
    pytest.fail("the run never got going")


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def assert_no_orphans(procs: list) -> None:
    _, alive = psutil.wait_procs(procs, timeout=30)
    alive = [p for p in alive if _alive(p)]
    assert not alive, [p.cmdline() for p in alive]


def test_two_executors_on_one_queue_run_each_run_exactly_once(tmp_path, db_url, quick):
    folder = command_submission(tmp_path, "ok")
    ids = service.queue_runs(folder, ["cpu-1core"], [make_scenario("single_stream", **quick)], db=db_url, trials=4,
                             energy={"enabled": False})
    procs = [subprocess.Popen(cli_argv("execute", db=db_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    with session_scope(db_url) as s:
        runs = list(s.scalars(select(Run).where(Run.id.in_(ids))))
        assert [r.status for r in runs] == ["succeeded"] * 4
        assert {r.owner_pid for r in runs} <= {p.pid for p in procs}
        for rid in ids:  # one set of measurement rows per run: each ran once
            p50 = len([m for m in s.scalars(select(Measurement).where(
                Measurement.run_id == rid, Measurement.metric == "latency_p50_ms")) if not m.params.get("pooled")])
            lat = s.scalar(select(func.count()).select_from(Samples).where(Samples.run_id == rid,
                                                                           Samples.kind == "latency_ns"))
            assert (p50, lat) == (1, 1), rid
        pooled = [m for m in s.scalars(select(Measurement).where(Measurement.run_id.in_(ids),
                                                                 Measurement.metric == "latency_p50_ms"))
                  if m.params.get("pooled")]
        assert len(pooled) == 1  # both pooled the shared group; one pooled set replaced the other
    assert counts(db_url)["run"] == 4
    for p, (_, err) in zip(procs, outs, strict=True):  # a run one of them skipped is one the other one owns
        for r in runs:
            if f"run {r.id[:8]}: not executed" in err:
                assert r.owner_pid != p.pid


def test_sigkill_of_the_harness_is_reaped_by_the_next_command_and_leaves_no_worker(tmp_path, db_url):
    folder = command_submission(tmp_path, "hang")
    harness = subprocess.Popen(cli_argv("run", str(folder), *QUICK, "--timeout", "120", db=db_url),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run, procs = wait_until_mid_run(db_url, harness)
    before = counts(db_url)
    harness.send_signal(signal.SIGKILL)
    harness.communicate(timeout=60)
    assert_no_orphans(procs)
    assert [r.status for r in runs_of(db_url)] == ["running"]  # nothing has looked yet
    p = cli("runs", "--status", "failed", "--json", db=db_url)  # any command that opens the DB
    assert p.returncode == 0, p.stderr
    (row,) = json.loads(p.stdout)
    expected = (f"run {run.id[:8]} on cpu-1core/single_stream: harness died: owner pid {harness.pid} on host "
                f"{L.this_host()} is gone")
    assert row["run_id"] == run.id and row["error"] == expected and row["interruption"] == "harness_died"
    (r,) = runs_of(db_url)
    assert (r.status, r.error, r.stderr_tail, r.interruption) == ("failed", expected, expected, "harness_died")
    assert r.finished_at is not None and r.lease_expires_at is None
    assert counts(db_url) == before  # nothing else changed


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_fail_the_run_clean_up_and_exit_128_plus_the_signal(tmp_path, db_url, sig, code):
    folder = command_submission(tmp_path, "hang")
    harness = subprocess.Popen(cli_argv("run", str(folder), *QUICK, "--timeout", "120", db=db_url),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run, procs = wait_until_mid_run(db_url, harness)
    before = counts(db_url)
    harness.send_signal(sig)
    out, err = harness.communicate(timeout=120)
    name = signal.Signals(sig).name
    assert harness.returncode == code, err
    reason = f"run {run.id[:8]} (life-hang on cpu-1core/single_stream): interrupted by {name}"
    assert f"error: {reason}" in " ".join(err.split()), err
    assert_no_orphans(procs)
    assert glob.glob(os.path.join(tempfile.gettempdir(), f"heptathlon-run-{run.id[:8]}-*")) == []  # run dir removed
    (r,) = runs_of(db_url)
    assert (r.status, r.error, r.interruption) == ("failed", reason, name)
    assert "the model hangs on request 3" in r.stderr_tail  # the worker log's tail, kept before the dir went
    assert "\n" not in r.error and r.finished_at is not None and r.lease_expires_at is None
    assert counts(db_url) == before


def test_an_expired_lease_fails_the_run_and_the_late_harness_stores_nothing(tmp_path, db_url):
    folder = command_submission(tmp_path, "slow")
    env = {**os.environ, L.LEASE_ENV: "2"}
    harness = subprocess.Popen(cli_argv("run", str(folder), "--min-queries", "60", "--min-duration", "0",
                                        "--max-duration", "30", "--warmup", "2", "--no-meters", db=db_url),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    run, _ = wait_until_mid_run(db_url, harness)
    before = counts(db_url)
    harness.send_signal(signal.SIGSTOP)  # a hung harness: its lease thread stops renewing too
    try:
        for _ in range(600):
            p = cli("runs", "--status", "failed", "--json", db=db_url)
            assert p.returncode == 0, p.stderr
            if json.loads(p.stdout):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the lease never expired")
    finally:
        harness.send_signal(signal.SIGCONT)
    out, err = harness.communicate(timeout=300)
    assert harness.returncode == 1, err
    (r,) = runs_of(db_url)
    assert r.status == "failed" and r.interruption == "lease_expired"
    assert r.error.startswith(f"run {run.id[:8]} on cpu-1core/single_stream: lease expired at ")
    assert r.error.endswith(f"(owner pid {harness.pid} on host {L.this_host()} stopped renewing it)")
    flat = " ".join(err.split())
    assert "the run was taken from this harness while it ran (now failed: " in flat and \
        "its results were not stored" in flat, err
    assert counts(db_url) == before  # the late results were discarded, not stored beside the failure


def test_two_runs_on_a_fresh_sqlite_file_both_succeed(tmp_path, examples):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    procs = [subprocess.Popen(cli_argv("run", str(examples["arrests-mlp-onnx"]), *QUICK, "--json", db=url),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    assert [json.loads(o)["status"] for o, _ in outs] == ["succeeded", "succeeded"]
    c = counts(url)
    assert (c["run"], c["submission"], c["machine"], c["profile"], c["task"]) == (2, 1, 1, 1, 1)


def test_a_failed_run_prints_its_reason_and_the_last_lines_of_stderr(tmp_path, db_url):
    folder = command_submission(tmp_path, "crash")
    p = cli("run", str(folder), *QUICK, db=db_url)
    assert p.returncode == 1
    lines = p.stderr.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("error: run "))
    assert 'before printing {"ready": true}' in " ".join(lines[i:i + 3]) or "exited with code 1" in p.stderr, p.stderr
    tail = "\n".join(lines[i:])
    assert "line(s) of the submission's stderr:" in tail
    assert "ZeroDivisionError: division by zero" in tail and "return 1 / 0" in tail
    (r,) = runs_of(db_url)
    assert r.status == "failed" and "ZeroDivisionError" in r.stderr_tail


def test_runs_show_and_requeue_from_the_cli(tmp_path, db_url):
    folder = command_submission(tmp_path, "crash")
    assert cli("run", str(folder), *QUICK, db=db_url).returncode == 1
    (failed,) = runs_of(db_url)
    ok = cli("run", str(command_submission(tmp_path, "ok")), *QUICK, "--json", db=db_url)
    assert ok.returncode == 0, ok.stderr
    done = json.loads(ok.stdout)["run_id"]

    p = cli("runs", "--json", db=db_url)
    assert p.returncode == 0 and [r["status"] for r in json.loads(p.stdout)] == ["succeeded", "failed"]
    p = cli("runs", "--status", "failed", db=db_url)
    assert p.returncode == 0 and failed.id[:8] in p.stdout and done[:8] not in p.stdout
    p = cli("runs", "--status", "stuck", db=db_url)
    assert p.returncode == 2
    assert p.stderr.strip() == ("error: --status: 'stuck' is not a run status; expected one of queued, running, "
                                "succeeded, failed")

    p = cli("runs", "show", failed.id[:6], db=db_url)  # an id prefix
    assert p.returncode == 0, p.stderr
    assert f"run_id: {failed.id}" in p.stdout and "status: failed" in p.stdout
    assert f"error: {failed.error}" in " ".join(p.stdout.split()) or failed.error[:40] in p.stdout
    assert "owner: " in p.stdout and "lease_expires_at" in p.stdout and "params: " in p.stdout
    assert "controls: " in p.stdout and "ZeroDivisionError: division by zero" in p.stdout
    doc = json.loads(cli("runs", "show", failed.id, "--json", db=db_url).stdout)
    assert doc["owner"]["host"] == L.this_host() and doc["stderr_tail"] == failed.stderr_tail
    p = cli("runs", "show", "zzzz", db=db_url)
    assert (p.returncode, p.stderr.strip()) == (2, "error: run 'zzzz': no such run (see: heptathlon runs)")

    before = counts(db_url)
    p = cli("requeue", failed.id[:8], done[:8], "nope", db=db_url)
    assert p.returncode == 1
    assert p.stderr.splitlines() == [
        f"run {failed.id[:8]}: queued again (was failed); execute it with: heptathlon execute",
        f"error: run {done[:8]}: succeeded; not requeued (queue a new run with: heptathlon submit)",
        "error: run 'nope': no such run (see: heptathlon runs)"]
    p = cli("requeue", failed.id, db=db_url)
    assert (p.returncode, p.stderr.strip()) == (1, f"error: run {failed.id[:8]}: already queued")
    assert counts(db_url) == before
    with session_scope(db_url) as s:
        r = s.get(Run, failed.id)
        assert (r.status, r.error, r.owner_pid) == ("queued", None, None)
        assert r.extra["attempts"][0]["error"] == failed.error
        assert s.get(Run, done).status == "succeeded"


def test_an_ambiguous_prefix_and_a_live_running_run_are_refused(db_url, tmp_path):
    from heptathlon.db import queries as Q
    from heptathlon.db.session import upgrade

    upgrade(db_url)
    me = psutil.Process()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        hp = psutil.Process(holder.pid)
        with session_scope(db_url) as s:
            sub = Q.get_or_create_submission(s, name="a", version="1", task="arrests", kind="onnx", sha256="x" * 64,
                                             manifest={}, store_path="/x")
            for rid in ("abcd0001-" + uuid.uuid4().hex[:8], "abcd0002-" + uuid.uuid4().hex[:8]):
                Q.create_run(s, id=rid, submission_id=sub.id, submission_ref="r", profile_name="cpu-1core",
                             scenario="single_stream", params={}, status="running", owner_host=L.this_host(),
                             owner_pid=holder.pid, owner_started=hp.create_time(),
                             lease_expires_at=Q.utcnow() + __import__("datetime").timedelta(minutes=10))
        p = cli("runs", "show", "abcd", db=db_url)
        assert p.returncode == 2 and "error: run 'abcd': ambiguous, it begins abcd0001-" in p.stderr
        p = cli("requeue", "abcd0001", db=db_url)
        assert p.returncode == 1
        assert p.stderr.strip().startswith(f"error: run abcd0001: running, owner pid {holder.pid} on host "
                                           f"{L.this_host()} is alive (lease until ")
        assert p.stderr.strip().endswith("; not requeued")
        p = cli("runs", "--status", "running", "--json", db=db_url)
        assert len(json.loads(p.stdout)) == 2  # a live owner is not reaped
    finally:
        holder.kill()
        holder.wait()
    assert me.is_running()
    p = cli("requeue", "abcd0001", db=db_url)  # its owner is gone now: reaped, then queued again
    assert p.returncode == 0, p.stderr
    lines = p.stderr.strip().splitlines()  # the reaper says what it marked, then requeue what it did
    assert lines[-1] == "run abcd0001: queued again (was failed); execute it with: heptathlon execute"
    assert sorted(lines[:-1]) == [f"run abcd000{i} on cpu-1core/single_stream: harness died: owner pid {holder.pid} "
                                  f"on host {L.this_host()} is gone" for i in (1, 2)]
