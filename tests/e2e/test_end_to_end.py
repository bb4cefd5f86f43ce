"""Real subprocess workers on the real example models, against real databases."""

import json
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from heptathlon.bench.scenarios import make_scenario
from heptathlon.bench.app.service import execute_run, queue_runs
from heptathlon.db.models import Measurement, Run, Samples, Submission
from heptathlon.db import queries as Q
from heptathlon.db.session import session_scope

# Energy meters add an idle baseline to every run; they are tested in test_energy_e2e.py.
QUICK = ["--min-queries", "20", "--min-duration", "0", "--max-duration", "5", "--warmup", "2", "--no-meters"]
EXPECTED = {"latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "throughput_sps", "accuracy",
            "peak_rss_mb", "load_s", "params", "artifact_mb"}


def cli(*args, db=None):
    env_db = ["--db", db] if db else []
    return subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", *args, *env_db], capture_output=True, text=True)


@pytest.mark.parametrize("name", ["arrests-mlp-onnx", "arrests-mlp-torchscript", "arrests-mlp-torch",
                                  "arrests-mlp-command", "digits-cnn-onnx"])
def test_run_json_for_every_example(examples, name, sqlite_url):
    p = cli("run", str(examples[name]), "--profile", "cpu-1core", "--scenario", "single_stream", "--json", *QUICK,
            db=sqlite_url)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)  # nothing but one JSON object on stdout
    assert doc["status"] == "succeeded" and doc["error"] is None
    assert (doc["submission"], doc["profile"], doc["scenario"]) == (name, "cpu-1core", "single_stream")
    assert EXPECTED <= set(doc["metrics"])
    p50 = doc["metrics"]["latency_p50_ms"]
    assert p50["unit"] == "ms" and p50["n"] >= 20 and p50["method"] == "timer:perf_counter_ns"
    assert p50["ci_low"] <= p50["value"] <= p50["ci_high"]
    acc = doc["metrics"]["accuracy"]["value"]
    assert acc > (0.9 if name.startswith("digits") else 0.75)
    if name == "arrests-mlp-command":
        assert doc["metrics"]["params"]["value"] is None and doc["metrics"]["params"]["method"] == "unavailable"
    else:
        assert doc["metrics"]["params"]["value"] > 1000
    with session_scope(sqlite_url) as s:
        run = s.get(Run, doc["run_id"])
        assert run.status == "succeeded" and run.machine_id is not None
        assert run.controls["cpu.cores"]["effective"] == [0] and run.controls["cpu.cores"]["took_effect"]
        assert s.scalar(select(func.count()).select_from(Measurement).where(Measurement.run_id == run.id)) >= 10
        assert Q.load_samples(s, run.id, "latency_ns").size == doc["metrics"]["latency_p50_ms"]["n"]


def test_results_persist_on_each_backend(examples, db_url, quick):
    ids = queue_runs(examples["arrests-mlp-onnx"], ["cpu-1core", "cpu-2core"],
                     [make_scenario("single_stream", **quick), make_scenario("fixed_batch", batch_size=4, **quick),
                      make_scenario("offline", **{**quick, "min_queries": 2})], db=db_url,
                     energy={"enabled": False})
    outcomes = [execute_run(i, db=db_url) for i in ids]
    assert [o.status for o in outcomes] == ["succeeded"] * 6
    fb = [o for o in outcomes if o.scenario == "fixed_batch"][0]
    assert fb.metrics["throughput_sps"].params["samples"] == 4 * fb.metrics["latency_p50_ms"].n
    with session_scope(db_url) as s:
        rows = Q.leaderboard(s, task="arrests")
        assert {(r["profile"], r["scenario"]) for r in rows} == {
            (p, sc) for p in ("cpu-1core", "cpu-2core") for sc in ("single_stream", "fixed_batch", "offline")}
        assert all("latency_p50_ms" in r["metrics"] for r in rows)
        assert s.scalar(select(func.count()).select_from(Submission)) == 1


def test_results_cli_table_and_json(examples, sqlite_url):
    assert cli("run", str(examples["digits-cnn-onnx"]), *QUICK, db=sqlite_url).returncode == 0
    p = cli("results", "--json", db=sqlite_url)
    rows = json.loads(p.stdout)
    assert [r["submission"] for r in rows] == ["digits-cnn-onnx"] and rows[0]["rank"] == "1"
    p = cli("results", db=sqlite_url)
    assert "digits-cnn-onnx" in p.stdout and "p50 ms" in p.stdout


def test_profiles_list():
    p = cli("profiles", "list", "--json")
    names = {x["name"] for x in json.loads(p.stdout)}
    assert {"cpu-1core", "cpu-2core"} <= names
