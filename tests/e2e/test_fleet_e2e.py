"""The measuring fleet end to end, with the real services: Redis (the machine's, and a private
AOF-persistent one where the broker must be restarted), RabbitMQ, PostgreSQL, and real
``heptathlon worker`` subprocesses, each with its own HEPTATHLON_HOME (its own artifact cache,
as on its own machine)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from heptathlon.bench.app import fleet as F
from heptathlon.bench.app.demo import EXAMPLES_DIR
from heptathlon.bench.metrics import SampleKind
from heptathlon.bench.run_status import RunStatus
from heptathlon.bench.scenarios import make_scenario
from heptathlon.db.models import Measurement, Run, Samples
from heptathlon.db.session import session_scope
from tests.conftest import PG_URL, _fresh_postgres

BUSY = EXAMPLES_DIR / "calibrated-busywait-command"  # the cheapest real submission (stdio, 1 ms a request)
QUICK = {"min_queries": 20, "min_duration_s": 0.0, "max_duration_s": 5.0, "warmup_queries": 2}
NO_METERS = {"enabled": False}
WAIT_S = 240


# ---- services ------------------------------------------------------------------------------------------
@pytest.fixture
def pg():
    if not PG_URL:
        pytest.skip("the fleet's shared database is PostgreSQL: set HEPTATHLON_TEST_POSTGRES_URL (.ci/run does)")
    url, drop = _fresh_postgres()
    try:
        yield url
    finally:
        drop()


def _redis_cli(*args: str, port: int = 6379) -> str:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True, text=True,
                          check=True, timeout=10).stdout.strip()


@pytest.fixture
def redis_broker():
    """The machine's Redis, on a database index of its own for this test (flushed before and after)."""
    n = random.randint(1, 15)
    _redis_cli("-n", str(n), "FLUSHDB")
    yield f"redis://127.0.0.1:6379/{n}"
    _redis_cli("-n", str(n), "FLUSHDB")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own, persistent with AOF (fsync on every write), restartable."""

    def __init__(self, tmp: Path) -> None:
        self.dir, self.port, self.proc = tmp / "redis", _free_port(), None
        self.dir.mkdir()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                                      str(self.dir), "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                if _redis_cli("PING", port=self.port) == "PONG":
                    return
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.1)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; the broker-restart test needs it")
    r = PrivateRedis(tmp_path)
    r.start()
    yield r
    if r.proc.poll() is None:
        r.kill()


@pytest.fixture
def rabbit_broker():
    """A fresh RabbitMQ vhost for this test (guest/guest on 127.0.0.1:5672), deleted after."""
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is not available; the RabbitMQ test needs a vhost of its own")
    vhost = f"heptathlon-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True, timeout=60)
    yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


# ---- workers --------------------------------------------------------------------------------------------
class Worker:
    def __init__(self, tmp: Path, profiles: list[str], broker: str, db: str, env: dict[str, str] | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.name = f"w{uuid.uuid4().hex[:6]}"
        self.home = tmp / f"home-{self.name}"
        self.log = tmp / f"{self.name}.log"
        args = [sys.executable, "-m", "heptathlon.bench.cli", "worker", "--broker", broker, "--db", db,
                "--name", f"{self.name}@{socket.gethostname()}"]
        for p in profiles:
            args += ["--profile", p]
        args += extra_args or []
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("HEPTATHLON_DB")}
        full_env.update(HEPTATHLON_HOME=str(self.home), **(env or {}))
        with self.log.open("wb") as f:
            self.proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> "Worker":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.text():
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.text()[-3000:]}")
            time.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout} s:\n{self.text()[-3000:]}")

    def received(self) -> int:
        return self.text().count("] received")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def start(profiles, broker, db, extra_args=None, **env) -> Worker:
        w = Worker(tmp_path, profiles, broker, db, env, extra_args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def _submit(broker, db, store, profiles, trials=1, scenario=None):
    return F.submit_fleet(BUSY, profiles, [scenario or make_scenario("single_stream", **QUICK)], db=db, broker=broker,
                          artifacts=store, trials=trials, energy=NO_METERS)


def _runs(db, ids):
    with session_scope(db) as s:
        runs = {r.id: r for r in s.scalars(select(Run).where(Run.id.in_(ids)))}
        sets = dict(s.execute(select(Samples.run_id, func.count()).where(
            Samples.run_id.in_(ids), Samples.kind == SampleKind.LATENCY_NS).group_by(Samples.run_id)).all())
        meas = dict(s.execute(select(Measurement.run_id, func.count()).where(Measurement.run_id.in_(ids))
                              .group_by(Measurement.run_id)).all())
        for r in runs.values():
            s.expunge(r)
    return runs, sets, meas


def _assert_once(db, ids):
    """Every run succeeded, with exactly one set of raw samples and the same number of measurements."""
    runs, sets, meas = _runs(db, ids)
    assert set(runs) == set(ids)
    bad = {r.id[:8]: r.error for r in runs.values() if r.status != RunStatus.SUCCEEDED}
    assert not bad, bad
    assert all(sets.get(i) == 1 for i in ids), sets
    assert len(set(meas.values())) == 1, meas
    return runs


# ---- tests ----------------------------------------------------------------------------------------------
def test_two_workers_on_two_profiles_store_their_runs_in_postgres(pg, redis_broker, workers, tmp_path):
    store = f"file://{tmp_path / 'shared-store'}"
    a = workers(["cpu-1core"], redis_broker, pg).wait_ready()
    b = workers(["cpu-2core"], redis_broker, pg).wait_ready()
    ids = _submit(redis_broker, pg, store, ["cpu-1core", "cpu-2core"], trials=2)
    assert len(ids) == 4
    F.wait_for_runs(ids, db=pg, timeout_s=WAIT_S)
    runs = _assert_once(pg, ids)
    by_profile = {p: {r.owner_pid for r in runs.values() if r.profile_name == p} for p in ("cpu-1core", "cpu-2core")}
    assert by_profile == {"cpu-1core": {a.pid}, "cpu-2core": {b.pid}}  # each run on its profile's queue
    for r in runs.values():
        assert r.extra["executor"] == "celery" and r.extra["fleet"]["queue"] == f"hw.{r.profile_name}"
        assert r.machine_id is not None and r.software  # the worker's fingerprint and versions
    assert a.received() == 2 and b.received() == 2
    # each worker fetched the artifact into its own cache, from the shared store
    assert all(len(list((w.home / "cache" / "artifacts").iterdir())) == 1 for w in (a, b))

    p = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "status", "--json", "--broker", redis_broker,
                        "--db", pg, "--timeout", "3"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert {w["name"].split("@")[0]: w["profiles"] for w in st["workers"]} == {a.name: ["cpu-1core"],
                                                                              b.name: ["cpu-2core"]}
    assert st["queues"] == {"hw.cpu-1core": 0, "hw.cpu-2core": 0}
    assert st["runs"]["succeeded"] == 4 and st["runs"]["queued"] == 0


def test_a_worker_killed_mid_run_is_replaced_and_the_run_stored_once(pg, redis_broker, workers, tmp_path):
    store = f"file://{tmp_path / 'shared-store'}"
    short_vt = {"HEPTATHLON_VISIBILITY_TIMEOUT_S": "4"}  # the dead worker's message comes back after 4 s
    a = workers(["cpu-1core"], redis_broker, pg, **short_vt).wait_ready()
    long_run = make_scenario("single_stream", min_queries=20, min_duration_s=8.0, max_duration_s=30.0,
                             warmup_queries=2)
    (rid,) = _submit(redis_broker, pg, store, ["cpu-1core"], scenario=long_run)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        runs, _, _ = _runs(pg, [rid])
        if runs[rid].status == RunStatus.RUNNING and runs[rid].owner_pid == a.pid:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"worker A never started the run:\n{a.text()[-2000:]}")
    time.sleep(2.0)  # mid-run: the measured loop is going
    os.killpg(a.pid, signal.SIGKILL)
    a.proc.wait()
    b = workers(["cpu-1core"], redis_broker, pg, **short_vt).wait_ready()
    F.wait_for_runs([rid], db=pg, timeout_s=WAIT_S)
    runs = _assert_once(pg, [rid])
    run = runs[rid]
    assert run.owner_pid == b.pid
    assert [x["owner"].rsplit(":", 1)[1] for x in run.extra["attempts"]] == [str(a.pid)]
    assert "harness died" in run.extra["attempts"][0]["error"]
    assert b.received() == 1


def test_a_broker_restart_loses_no_queued_run(pg, private_redis, workers, tmp_path):
    store = f"file://{tmp_path / 'shared-store'}"
    ids = _submit(private_redis.url, pg, store, ["cpu-1core"], trials=3)  # queued while no worker runs
    private_redis.kill()  # SIGKILL: only what the AOF holds survives
    private_redis.start()
    w = workers(["cpu-1core"], private_redis.url, pg, HEPTATHLON_VISIBILITY_TIMEOUT_S="5").wait_ready()
    deadline = time.monotonic() + WAIT_S
    while not any(r.status == RunStatus.SUCCEEDED for r in _runs(pg, ids)[0].values()):
        assert time.monotonic() < deadline, w.text()[-2000:]
        time.sleep(0.3)
    private_redis.kill()  # and again while the worker is consuming
    time.sleep(1.0)
    private_redis.start()
    F.wait_for_runs(ids, db=pg, timeout_s=WAIT_S)
    _assert_once(pg, ids)


def test_two_submitters_at_once_lose_and_double_nothing(pg, redis_broker, workers, tmp_path):
    store = str(tmp_path / "shared-store")
    w = workers(["cpu-1core"], redis_broker, pg).wait_ready()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEPTATHLON_DB")}
    procs = [subprocess.Popen([sys.executable, "-m", "heptathlon.bench.cli", "submit", str(BUSY), "--fleet",
                               "--profile", "cpu-1core", "--trials", "2", "--broker", redis_broker, "--db", pg,
                               "--artifacts", store], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for _ in range(2)]
    for p in procs:
        _, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        assert "dispatched 2 run(s)" in stderr
    with session_scope(pg) as s:
        ids = list(s.scalars(select(Run.id)))
    assert len(ids) == 4
    F.wait_for_runs(ids, db=pg, timeout_s=WAIT_S)
    _assert_once(pg, ids)
    time.sleep(1.0)
    assert w.received() == 4


def test_a_worker_refuses_a_profile_its_machine_cannot_serve(pg, redis_broker, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEPTATHLON_DB")}
    p = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "worker", "--profile", "cpu-1core",
                        "--profile", "cuda-fp16", "--broker", redis_broker, "--db", pg], capture_output=True,
                       text=True, timeout=120, env=env)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "worker refuses profile 'cuda-fp16': this machine cannot serve it" in lines[0], p.stderr


def test_rabbitmq_as_the_broker(pg, rabbit_broker, workers, tmp_path):
    store = f"file://{tmp_path / 'shared-store'}"
    w = workers(["cpu-1core"], rabbit_broker, pg).wait_ready()
    ids = _submit(rabbit_broker, pg, store, ["cpu-1core"], trials=2)
    F.wait_for_runs(ids, db=pg, timeout_s=WAIT_S)
    runs = _assert_once(pg, ids)
    assert {r.owner_pid for r in runs.values()} == {w.pid}
    vhost = rabbit_broker.rsplit("/", 1)[1]
    listed = subprocess.run(["rabbitmqctl", "list_queues", "-q", "-p", vhost, "name", "durable"], check=True,
                            capture_output=True, text=True, timeout=60).stdout.split()
    assert listed[listed.index("hw.cpu-1core") + 1] == "true"  # a broker restart keeps the queue
    st = F.fleet_status(broker=rabbit_broker, db=pg, timeout_s=3)
    assert st["queues"] == {"hw.cpu-1core": 0}
    assert [x["profiles"] for x in st["workers"]] == [["cpu-1core"]]


def test_nightly_on_the_fleet_runs_across_the_profiles_queues_and_keeps_its_lock(pg, redis_broker, workers, tmp_path):
    import yaml

    from heptathlon.bench.app.nightly import EXIT_LOCKED

    a = workers(["cpu-1core"], redis_broker, pg).wait_ready()
    b = workers(["cpu-2core"], redis_broker, pg).wait_ready()
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "fleet-night", "submissions": [str(BUSY)], "profiles": ["cpu-1core", "cpu-2core"],
        "scenarios": ["single_stream"], "params": dict(QUICK), "energy": {"enabled": False},
        "baseline_window": 3, "min_baseline": 2}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEPTATHLON_DB")}
    args = [sys.executable, "-m", "heptathlon.bench.cli", "nightly", "--suite", str(suite), "--date", "2026-12-01",
            "--fleet", "--broker", redis_broker, "--db", pg, "--artifacts", str(tmp_path / "store"),
            "--report-dir", str(tmp_path / "reports")]
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + WAIT_S
    while True:  # the first night holds the lock once its runs are queued
        with session_scope(pg) as s:
            if s.scalar(select(func.count()).select_from(Run)):
                break
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.3)
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == EXIT_LOCKED, second.stderr
    assert "another nightly run of this suite is in progress" in second.stderr
    stdout, stderr = first.communicate(timeout=WAIT_S)
    assert first.returncode == 0, stderr
    assert "PASS nightly fleet-night 2026-12-01: 2 series" in stdout
    with session_scope(pg) as s:
        runs = list(s.scalars(select(Run)))
    assert {(r.profile_name, r.owner_pid, r.status, r.extra["executor"]) for r in runs} == {
        ("cpu-1core", a.pid, RunStatus.SUCCEEDED, "celery"), ("cpu-2core", b.pid, RunStatus.SUCCEEDED, "celery")}
    assert (tmp_path / "reports").is_dir()


def test_a_night_started_by_celery_beat_runs_on_a_control_worker(pg, redis_broker, workers, tmp_path):
    """What beat sends on schedule (heptathlon.bench.app.fleet.beat_schedule), sent now: the control
    worker runs the night on the fleet and writes its reports."""
    import yaml

    from heptathlon.runners.executors.celery import make_app

    m = workers(["cpu-1core"], redis_broker, pg).wait_ready()
    c = workers([], redis_broker, pg, extra_args=["--control"]).wait_ready()
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "beat-night", "submissions": [str(BUSY)], "profiles": ["cpu-1core"],
        "scenarios": ["single_stream"], "params": dict(QUICK), "energy": {"enabled": False},
        "baseline_window": 3, "min_baseline": 2}))
    sched = F.beat_schedule("30 2 * * *", F.NightlyMessage(suite=str(suite), report_dir=str(tmp_path / "rep"),
                                                           artifacts=str(tmp_path / "store")))
    entry = sched["heptathlon-nightly"]
    assert entry["options"] == {"queue": "heptathlon.control"}
    assert (entry["schedule"].minute, entry["schedule"].hour) == ({30}, {2})
    make_app(redis_broker).send_task(entry["task"], kwargs=entry["kwargs"], **entry["options"])
    deadline = time.monotonic() + WAIT_S
    while "nightly beat-night" not in c.text():
        assert time.monotonic() < deadline and c.proc.poll() is None, c.text()[-3000:]
        time.sleep(0.5)
    assert "exit code 0" in c.text(), c.text()[-3000:]
    assert list((tmp_path / "rep").glob("*.md"))
    with session_scope(pg) as s:
        runs = list(s.scalars(select(Run)))
    # the nightly's default 3 trials (interleaved), all run by the one measuring worker
    assert [(r.status, r.owner_pid) for r in runs] == [(RunStatus.SUCCEEDED, m.pid)] * 3
