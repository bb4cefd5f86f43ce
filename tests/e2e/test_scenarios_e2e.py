"""Every scenario end to end: real workers on the example and calibrated submissions, from the
service and from the CLI, into a real SQLite database; trials, adaptive stopping, the SLO search,
ties in `results`, and statistics recomputed from stored samples."""

import json
import shutil
import subprocess
import sys
import uuid

import numpy as np
import pytest
from sqlalchemy import select

from heptathlon.bench.scenarios import build_schedule, make_scenario
from heptathlon.bench.app.service import execute_run, queue_runs, recompute_latency
from heptathlon.db import queries as Q
from heptathlon.db.models import Measurement, Run
from heptathlon.db.session import session_scope

QUICK = ["--min-queries", "20", "--min-duration", "0", "--max-duration", "5", "--warmup", "2", "--no-meters"]
NO_METERS = {"enabled": False}


def cli(*args, db):
    return subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", *args, "--db", db], capture_output=True, text=True)


def run_json(*args, db):
    p = cli("run", *args, "--json", db=db)
    assert p.stdout, p.stderr
    return p, json.loads(p.stdout)


def busywait(tmp_path, examples_dir, kind: str, cost_us: float):
    """A copy of a calibrated submission with its own cost."""
    name = "calibrated-busywait" + ("-command" if kind == "command" else "")
    d = tmp_path / f"{name}-{int(cost_us)}"
    shutil.copytree(examples_dir / name, d, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "build.py", "--cost-us", str(cost_us)], cwd=d, check=True, capture_output=True)
    return d


@pytest.fixture(scope="module")
def all_scenarios(examples, tmp_path_factory):
    """One service-level run of every scenario on the ONNX example, in one database."""
    tmp = tmp_path_factory.mktemp("scenarios")
    url = f"sqlite:///{tmp / 'results.db'}"
    quick = {"min_queries": 40, "min_duration_s": 0.0, "max_duration_s": 5.0, "warmup_queries": 2}
    cfgs = [make_scenario("single_stream", **quick), make_scenario("fixed_batch", batch_size=4, **quick),
            make_scenario("poisson_batch", poisson_lambda=3.0, **quick),
            make_scenario("offline", **{**quick, "min_queries": 2}),
            make_scenario("server", qps=400.0, max_batch=4, max_wait_ms=1.0, **quick)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEPTATHLON_HOME", str(tmp / "home"))
        ids = queue_runs(examples["arrests-mlp-onnx"], ["cpu-1core"], cfgs, db=url, energy=NO_METERS)
        outcomes = {o.scenario: o for o in (execute_run(i, db=url) for i in ids)}
    return url, outcomes


def test_every_scenario_lands_in_the_db_with_cis_and_n(all_scenarios):
    url, outcomes = all_scenarios
    assert {k: o.status for k, o in outcomes.items()} == {k: "succeeded" for k in
                                                         ("single_stream", "fixed_batch", "poisson_batch", "offline",
                                                          "server")}, [o.error for o in outcomes.values()]
    with session_scope(url) as s:
        for scen, o in outcomes.items():
            meas = Q.run_measurements(s, o.run_id)
            p50 = meas["latency_p50_ms"]
            assert p50.n >= 2 and p50.ci_low <= p50.value <= p50.ci_high, scen
            assert meas["throughput_sps"].value > 0 and meas["throughput_sps"].ci_low is not None
            assert "latency_p90_early_ms" in meas and "issue_drift_p50_us" in meas
            run = s.get(Run, o.run_id)
            loop = run.extra["loop"]  # drift per issue: between queries, or per batch under server
            assert loop["issue_drift"]["n"] == (loop["batches"] if scen == "server" else p50.n - 1)


def test_poisson_batch_sizes_follow_the_seeded_schedule(all_scenarios):
    url, outcomes = all_scenarios
    o = outcomes["poisson_batch"]
    n = o.metrics["latency_p50_ms"].n
    from heptathlon.bench.tasks import get_task

    sched = build_schedule(make_scenario("poisson_batch", poisson_lambda=3.0), len(get_task("arrests").load().x_test))
    sizes = np.array([len(q) for q in sched])
    assert o.metrics["throughput_sps"].params["samples"] == int(sizes[np.arange(n) % len(sizes)].sum())
    assert len(set(sizes[:n].tolist())) > 2  # sizes vary, as Poisson(3) draws do


def test_server_reports_scheduled_and_completed_rates(all_scenarios):
    url, outcomes = all_scenarios
    o = outcomes["server"]
    m = o.metrics
    assert m["scheduled_sps"].value > 0 and m["scheduled_sps"].method == "derived:schedule"
    assert m["throughput_sps"].params["target_qps"] == 400.0
    with session_scope(url) as s:
        loop = s.get(Run, o.run_id).extra["loop"]
    assert loop["loop"] == "server" and 1 <= loop["batch_max"] <= 4
    assert loop["queries_served"] == m["latency_p50_ms"].n


def test_statistics_recomputed_from_stored_samples_match_the_stored_ones(all_scenarios):
    url, outcomes = all_scenarios
    for scen in ("single_stream", "server"):
        rid = outcomes[scen].run_id
        again = {m.name: m for m in recompute_latency(rid, db=url)}
        with session_scope(url) as s:
            stored = Q.run_measurements(s, rid)
        for name in ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_p90_early_ms"):
            st = stored[name]
            assert (again[name].value, again[name].ci_low, again[name].ci_high, again[name].n) == \
                   (st.value, st.ci_low, st.ci_high, st.n), (scen, name)


def test_server_slo_search_from_the_cli(examples, tmp_path, sqlite_url):
    d = busywait(tmp_path, examples["calibrated-busywait"].parent, "command", 200)
    p, doc = run_json(str(d), "--scenario", "server", "--qps", "50", "--slo-ms", "50", *QUICK, "--timeout", "240",
                      db=sqlite_url)
    assert p.returncode == 0 and doc["status"] == "succeeded", doc["error"]
    best = doc["metrics"]["max_qps_within_slo"]
    probes = best["params"]["probes"]
    assert best["value"] == max(pr["qps"] for pr in probes if pr["met"])  # the largest QPS that passed
    assert all(pr["p99_ms"] <= 50 for pr in probes if pr["met"])
    assert best["method"] == "derived:slo-search" and best["n"] == len(probes)
    with session_scope(sqlite_url) as s:
        run = s.get(Run, doc["run_id"])
        assert run.extra["loop"]["slo"]["qps"] == best["value"]
        assert run.extra["loop"]["slo_search"]["max_qps"] == best["value"]


def test_slo_not_met_with_an_unbounded_queue_is_a_recorded_outcome(examples, tmp_path, sqlite_url):
    d = busywait(tmp_path, examples["calibrated-busywait"].parent, "torch", 1000)  # 1 ms a query
    p, doc = run_json(str(d), "--scenario", "server", "--qps", "5000", "--slo-ms", "0.2", "--min-queries", "20000",
                      "--min-duration", "0", "--max-duration", "0.5", "--warmup", "2", "--no-meters", db=sqlite_url)
    assert p.returncode == 0 and doc["status"] == "succeeded", doc["error"]
    slo = doc["metrics"]["max_qps_within_slo"]
    assert slo["value"] is None and slo["note"].startswith("SLO not met") and slo["params"]["met"] is False
    thr = doc["metrics"]["throughput_sps"]
    assert thr["params"]["unfinished_queries"] > 0 and "without bound" in thr["note"]
    assert thr["value"] < doc["metrics"]["scheduled_sps"]["value"]
    with session_scope(sqlite_url) as s:
        assert s.get(Run, doc["run_id"]).extra["stopped_by"] == "max_duration"


def test_adaptive_stopping_reports_the_width_reached(examples, tmp_path, sqlite_url):
    d = busywait(tmp_path, examples["calibrated-busywait"].parent, "torch", 500)
    p, doc = run_json(str(d), "--adaptive", "--ci-target", "0.01", "--min-queries", "16", "--min-duration", "0",
                      "--max-duration", "30", "--warmup", "5", "--no-meters", db=sqlite_url)
    assert p.returncode == 0, doc["error"]
    p50 = doc["metrics"]["latency_p50_ms"]
    assert p50["params"]["adaptive"] is True and p50["params"]["ci_target_rel"] == 0.01
    with session_scope(sqlite_url) as s:
        run = s.get(Run, doc["run_id"])
        adaptive = run.extra["loop"]["adaptive"]
        assert run.extra["stopped_by"] == "ci_target"
    assert adaptive["ci_half_width_rel"] <= 0.01 and adaptive["checks"] >= 1
    assert p50["params"]["ci_half_width_rel"] == pytest.approx(
        max(p50["value"] - p50["ci_low"], p50["ci_high"] - p50["value"]) / p50["value"])
    assert p50["n"] >= 16


def test_trials_store_per_trial_and_pooled_statistics(examples, sqlite_url, monkeypatch):
    p, doc = run_json(str(examples["arrests-mlp-onnx"]), "--trials", "2", *QUICK, db=sqlite_url)
    assert p.returncode == 0 and doc["status"] == "succeeded", doc["error"]
    assert doc["trials"]["k"] == 2 and doc["trials"]["pooled"] is True
    p50 = doc["metrics"]["latency_p50_ms"]
    assert p50["params"]["pooled"] is True and p50["params"]["trials"] == 2
    assert p50["params"]["between_trial_sd"] >= 0 and len(p50["params"]["trial_values"]) == 2
    with session_scope(sqlite_url) as s:
        runs = list(s.scalars(select(Run).where(Run.group_id == doc["trials"]["group_id"])))
        assert sorted(r.trial for r in runs) == [0, 1] and all(r.status == "succeeded" for r in runs)
        per_trial_n = 0
        for r in runs:
            own = [m for m in s.scalars(select(Measurement).where(Measurement.run_id == r.id,
                                                                  Measurement.metric == "latency_p50_ms"))
                   if not m.params.get("pooled")]
            assert len(own) == 1 and own[0].params["trial"] == r.trial
            per_trial_n += own[0].n
        assert p50["n"] == per_trial_n  # pooled from both trials' raw samples
    rows = json.loads(cli("results", "--json", db=sqlite_url).stdout)
    assert len(rows) == 1 and rows[0]["trials"] == 2
    assert rows[0]["metrics"]["latency_p50_ms"]["n"] == per_trial_n
    monkeypatch.setenv("COLUMNS", "1000")  # a wide console: Rich must not wrap the cell being checked
    assert "pooled, 2 trials" in cli("results", db=sqlite_url).stdout


def _stored_run(s, sub, machine, p50, lo, hi):
    rid = str(uuid.uuid4())
    Q.create_run(s, id=rid, submission_id=sub.id, submission_ref="x", profile_name="cpu-1core", task_name="arrests",
                 scenario="single_stream", params={}, status="succeeded", machine_id=machine.id, finished_at=Q.utcnow())
    from heptathlon.bench.metrics import MetricValue

    Q.add_measurements(s, rid, [MetricValue("latency_p50_ms", p50, "timer:perf_counter_ns", n=500, ci_low=lo, ci_high=hi)])
    return rid


def test_results_show_ties_where_cis_overlap(sqlite_url):
    from heptathlon.db.session import ensure_schema

    ensure_schema(sqlite_url)
    with session_scope(sqlite_url) as s:
        machine = Q.get_or_create_machine(s, "f" * 64, {})
        for name, (v, lo, hi) in {"fast-a": (1.00, 0.90, 1.10), "fast-b": (1.05, 1.00, 1.20),
                                  "slow-c": (3.00, 2.90, 3.10)}.items():
            sub = Q.get_or_create_submission(s, name=name, version="1", task="arrests", kind="onnx", sha256=name * 4,
                                             manifest={}, store_path="/nowhere")
            _stored_run(s, sub, machine, v, lo, hi)
    p = cli("results", "--json", db=sqlite_url)
    ranks = {r["submission"]: r["rank"] for r in json.loads(p.stdout)}
    assert ranks == {"fast-a": "1–2", "fast-b": "1–2", "slow-c": "3"}
    table = cli("results", db=sqlite_url).stdout
    assert table.count("1–2") == 2 and "slow-c" in table


@pytest.mark.parametrize("args,needle", [
    (["--scenario", "single_stream", "--slo-ms", "5"], "only to the server scenario"),
    (["--scenario", "server", "--qps", "0"], "--qps must be > 0"),
    (["--scenario", "poisson_batch", "--lambda", "0"], "--lambda (mean batch size) must be > 0"),
    (["--scenario", "server", "--min-duration", "9", "--max-duration", "3"], "above max_duration_s"),
])
def test_impossible_combinations_fail_before_any_run(examples, sqlite_url, args, needle):
    p, doc = run_json(str(examples["arrests-mlp-onnx"]), *args, db=sqlite_url)
    assert p.returncode == 2 and doc["status"] == "failed" and needle in doc["error"]
    with session_scope(sqlite_url) as s:
        runs = list(s.scalars(select(Run)))
        assert [r.status for r in runs] == ["failed"] and needle in runs[0].error
        assert s.scalar(select(Measurement.id)) is None
