"""batch_sweep end to end: real subprocess workers on the example models, rows in a real database.

Small sweeps (max batch 8, a few repeats) without energy meters, so the whole file stays near
a minute on a 2-core machine. Nothing here asserts a duration.
"""

import json
import subprocess
import sys
import warnings

import pytest
from sqlalchemy import func, select

from heptathlon.bench.scenarios import make_scenario
from heptathlon.bench.app.service import execute_run, queue_runs
from heptathlon.db import dashboard_queries as DQ
from heptathlon.db import queries as Q
from heptathlon.db.models import Measurement, Run
from heptathlon.db.session import session_scope

NO_METERS = {"enabled": False}
SIZES = [1, 2, 4, 8]
QUICK = {"min_queries": 20, "min_duration_s": 0.0, "max_duration_s": 10.0, "warmup_queries": 2}


def sweep_run(folder, db, **options):
    cfg = make_scenario("batch_sweep", **{"max_batch": 8, "repeats": 4, **QUICK, **options})
    [rid] = queue_runs(folder, ["cpu-1core"], [cfg], db=db, energy=NO_METERS, timeout_s=300)
    return execute_run(rid, db=db)


def stored(db, run_id):
    """(run, headline measurements by metric, sweep detail rows)."""
    with session_scope(db) as s:
        run = s.get(Run, run_id)
        s.expunge(run)
        rows = list(s.scalars(select(Measurement).where(Measurement.run_id == run_id)))
        for m in rows:
            s.expunge(m)
        head = Q.run_measurements(s, run_id)
    return run, head, [m for m in rows if Q.is_detail(m)]


def detail(rows, metric, runtime):
    return {m.params["batch_size"]: m for m in rows
            if m.metric == metric and m.params.get("runtime") == runtime and "batch_size" in m.params}


def assert_tax_or_reason(m, method_prefix):
    """framework_tax is a fraction in (0, 1) from the expected method, or unavailable with the reason."""
    if m.value is None:
        assert m.method == "unavailable" and m.note, m.params
    else:
        assert 0.0 < m.value < 1.0 and m.method.startswith(method_prefix), (m.value, m.method)
        assert m.ci_low <= m.value <= m.ci_high


def assert_sweep_rows(rows, runtime, sizes, tax_method):
    for metric in ("latency_p50_ms", "throughput_sps", "framework_tax"):
        by_b = detail(rows, metric, runtime)
        assert sorted(by_b) == sizes, (metric, runtime, sorted(by_b))
        for b, m in by_b.items():
            assert m.params["sweep"] is True and m.params["runtime"] == runtime
            if metric == "framework_tax":
                assert_tax_or_reason(m, tax_method)
            else:
                assert m.value > 0 and m.ci_low <= m.value <= m.ci_high and m.n >= 4
    tp = detail(rows, "throughput_sps", runtime)
    for b, m in tp.items():  # samples over the time spent in the timed calls at that size
        assert m.params["samples"] == b * m.n
        assert m.value == pytest.approx(m.params["samples"] / m.params["window_s"])


def test_onnx_sweep_from_the_cli(examples, sqlite_url):
    p = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "run", str(examples["arrests-mlp-onnx"]), "--scenario",
                        "batch_sweep", "--max-batch", "8", "--repeats", "4", "--min-queries", "20", "--min-duration",
                        "0", "--max-duration", "10", "--warmup", "2", "--no-meters", "--json", "--db", sqlite_url],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["status"] == "succeeded" and doc["scenario"] == "batch_sweep"
    # the timed pass (single instance, closed loop) is the run's headline latency, not a sweep point
    assert doc["metrics"]["latency_p50_ms"]["n"] >= 20 and "params" not in doc["metrics"]["latency_p50_ms"]
    knee = doc["metrics"]["batch_knee"]
    assert knee["method"] == "derived:segmented-fit" and knee["n"] == len(SIZES)
    assert 1 <= knee["ci_low"] <= knee["value"] <= knee["ci_high"] <= 8
    assert doc["metrics"]["fixed_overhead_ms"]["method"] == "estimate:intercept"
    assert doc["sweep"]["runtimes"]["onnxruntime"]["batch_sizes"] == SIZES
    assert doc["sweep"]["stop_reason"] is None and doc["sweep"]["stopped_at"] is None

    run, head, rows = stored(sqlite_url, doc["run_id"])
    assert_sweep_rows(rows, "onnxruntime", SIZES, "profiler:onnxruntime")
    ft = head["framework_tax"]  # the headline: the submitted runtime at b = 1, kept out of the sweep rows
    assert "batch_size" not in ft.params and ft.params["at_batch_size"] == 1 and ft.params["runtime"] == "onnxruntime"
    assert_tax_or_reason(ft, "profiler:onnxruntime")
    assert ft.value == detail(rows, "framework_tax", "onnxruntime")[1].value
    assert head["batch_knee"].value == pytest.approx(knee["value"])
    fit = run.extra["sweep"]["runtimes"]["onnxruntime"]["knee"]
    assert fit["value"] == pytest.approx(knee["value"]) and fit["n_resamples"] > 0
    assert {"flat_observed", "compute_bound_observed", "crossover_batch", "slope_ms_per_sample"} <= set(fit)
    assert run.extra["sweep"]["threads"]["ort_intra_op_num_threads"] == 1  # the profile's threads

    with session_scope(sqlite_url) as s:  # the shape the dashboard reads
        points, knees = DQ.sweep_points(s, submission="arrests-mlp-onnx")
    assert set(points["batch_size"]) == set(SIZES) and set(points["runtime"]) == {"onnxruntime"}
    assert {"latency_p50_ms", "framework_tax", "throughput_sps"} <= set(points["metric"])
    assert any(k["runtime"] == "onnxruntime" and k["source"] == "measurement" for k in knees)


def test_torch_sweep_compares_runtimes(examples, sqlite_url):
    o = sweep_run(examples["arrests-mlp-torch"], sqlite_url, runtimes=("eager", "torchscript", "onnxruntime"))
    assert o.status == "succeeded", o.error
    run, head, rows = stored(sqlite_url, o.run_id)
    sw = run.extra["sweep"]
    assert sw["primary_runtime"] == "eager" and sw["kind"] == "torch"
    for rt, method in (("eager", "profiler:torch"), ("torchscript", "profiler:torch"),
                       ("onnxruntime", "profiler:onnxruntime")):
        assert sw["runtimes"][rt]["available"], sw["runtimes"][rt]
        assert_sweep_rows(rows, rt, SIZES, method)
    # the cross-runtime table: each runtime's latency over the best one's, per batch size
    rel = sw["relative_to_best"]
    assert set(rel) == {"eager", "torchscript", "onnxruntime"}
    for b in map(str, SIZES):
        ratios = [rel[rt][b] for rt in rel]
        assert min(ratios) == 1.0 and all(r >= 1.0 for r in ratios)
        best = min(rel, key=lambda rt: rel[rt][b])
        assert sw["runtimes"][best]["median_latency_ms"][b] == min(
            sw["runtimes"][rt]["median_latency_ms"][b] for rt in rel)
    assert sw["not_available"] == {}
    lower = sw["runtimes"]["eager"]["framework_tax_lower_bound"]  # the other side of the profiler's bracket
    assert set(lower) <= set(map(str, SIZES)) and all(0.0 <= x <= 1.0 for x in lower.values())
    assert sw["runtimes"]["torchscript"]["how"] == "torch.jit.trace + torch.jit.freeze"
    # derived runtimes run under the profile's threads, in the model process (where torch and ORT are)
    assert sw["threads"] == {"profile_threads": 1, "torch_threads": 1, "ort_intra_op_num_threads": 1,
                             "ort_inter_op_num_threads": 1, "measured_in": "model-process"}
    assert_tax_or_reason(head["framework_tax"], "profiler:torch")
    if head["framework_tax"].value is not None:  # the profiler ran inside the model process, and says so
        assert head["framework_tax"].params["measured_in"] == "model-process"
    assert head["framework_tax"].params["runtime"] == "eager"
    assert head["batch_knee"].params["runtime"] == "eager" and head["batch_knee"].ci_low is not None
    other_knees = [m for m in rows if m.metric == "batch_knee"]  # derived runtimes' knees: detail rows
    assert {m.params["runtime"] for m in other_knees} == {"torchscript", "onnxruntime"}


def test_torchscript_derives_onnx_only(examples, sqlite_url):
    o = sweep_run(examples["arrests-mlp-torchscript"], sqlite_url, max_batch=4, repeats=3,
                  runtimes=("onnxruntime", "torch.compile"))
    assert o.status == "succeeded", o.error
    run, head, rows = stored(sqlite_url, o.run_id)
    sw = run.extra["sweep"]
    assert sw["primary_runtime"] == "torchscript"
    assert sw["runtimes"]["onnxruntime"]["available"] and set(sw["relative_to_best"]) == {"torchscript", "onnxruntime"}
    assert "not derived from a torchscript model" in sw["not_available"]["torch.compile"]
    assert not detail(rows, "latency_p50_ms", "torch.compile")


def test_fixed_shape_onnx_ends_the_sweep_at_one(examples, sqlite_url, tmp_path):
    import torch

    ns: dict = {}  # the example's build(), without importing it (no bytecode written into the example)
    exec((examples["arrests-mlp-torch"] / "model.py").read_text(), ns)
    module = ns["build"]()
    module.load_state_dict(torch.load(examples["arrests-mlp-torch"] / "weights.pt", weights_only=True))
    d = tmp_path / "fixed"
    d.mkdir()
    with warnings.catch_warnings():  # the legacy exporter is deprecated; it is the one that fixes every axis
        warnings.simplefilter("ignore")
        # no dynamic axis: the graph's input is exactly (1, 7)
        torch.onnx.export(module.eval(), (torch.zeros(1, 7),), str(d / "model.onnx"), dynamo=False,
                          input_names=["x"])
    (d / "submission.yaml").write_text('name: arrests-mlp-fixed\nversion: "1"\ntask: arrests\n'
                                       'model:\n  kind: onnx\n  path: model.onnx\n')
    o = sweep_run(d, sqlite_url)
    assert o.status == "succeeded", o.error
    run, head, rows = stored(sqlite_url, o.run_id)
    sw = run.extra["sweep"]
    assert sw["stopped_at"] == 2 and "INVALID_ARGUMENT" in sw["stop_reason"] and "batch size 2" in sw["stop_reason"]
    assert sw["runtimes"]["onnxruntime"]["batch_sizes"] == [1]
    assert sorted(detail(rows, "latency_p50_ms", "onnxruntime")) == [1]
    knee = head["batch_knee"]
    assert knee.value is None and knee.method == "unavailable"
    assert "a knee needs at least 3 batch sizes" in knee.note and "INVALID_ARGUMENT" in knee.note
    assert_tax_or_reason(head["framework_tax"], "profiler:onnxruntime")
    assert head["accuracy"].value > 0.75  # the quality pass fell back to one instance per call


def test_command_gets_an_intercept_estimate(examples, sqlite_url):
    o = sweep_run(examples["arrests-mlp-command"], sqlite_url)
    assert o.status == "succeeded", o.error
    run, head, rows = stored(sqlite_url, o.run_id)
    ft = head["framework_tax"]
    assert ft.method == "estimate:intercept" and 0.0 <= ft.value <= 1.0 and ft.params["runtime"] == "command"
    taxes = detail(rows, "framework_tax", "command")
    assert sorted(taxes) == SIZES and {m.method for m in taxes.values()} == {"estimate:intercept"}
    assert all(m.params["fixed_overhead_ms"] == pytest.approx(head["fixed_overhead_ms"].value) for m in taxes.values())
    assert head["batch_knee"].value is not None
    assert run.extra["sweep"]["runtimes"]["command"]["framework_tax_method"] == ["estimate:intercept"]
    # an estimate is never ranked against measurements
    from heptathlon.bench.app.service import leaderboard_groups

    [group] = leaderboard_groups(sqlite_url, scenario="batch_sweep", rank_by="framework_tax")
    assert [r["rank"] for r in group["rows"]] == ["—"]


@pytest.mark.parametrize("args, message", [
    (["--scenario", "batch_sweep", "--runtimes", "eager,tvm"], "unknown ['tvm']"),
    (["--scenario", "batch_sweep", "--repeats", "1"], "--repeats must be >= 2"),
    (["--scenario", "single_stream", "--repeats", "5"], "--repeats applies only to the batch_sweep scenario"),
    (["--scenario", "batch_sweep", "--batch-size", "4"], "use --max-batch instead of --batch-size"),
])
def test_bad_sweep_options_are_rejected(examples, sqlite_url, args, message):
    p = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "run", str(examples["arrests-mlp-onnx"]), *args,
                        "--db", sqlite_url], capture_output=True, text=True)
    assert p.returncode == 2 and message in " ".join(p.stderr.split()), p.stderr


def test_compile_budget_makes_torch_compile_unavailable():
    torch = pytest.importorskip("torch")
    from heptathlon.runners.adapters.derive import derive_runtimes

    module = torch.nn.Sequential(torch.nn.Linear(7, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    rts = derive_runtimes(module, torch.randn(4, 7), include=("eager", "torch.compile"), compile_budget_s=0.01)
    assert rts["eager"].available
    assert not rts["torch.compile"].available and "budget of 0.01 s" in rts["torch.compile"].reason  # by the signal or after it


def test_trials_pool_every_cell_of_a_batch_by_length_sweep(tmp_path, sqlite_url):
    """`run --trials 2` on a batch x sequence-length sweep: the tables, the dashboard's cells and
    `runs show` are the pooled ones (each cell the mean of its two trials, its CI over both)."""
    from heptathlon.bench.app.service import pool_trials
    from tests.text_models import text_submission

    sub = text_submission(tmp_path / "tiny-bert-trials", name="tiny-bert-trials")
    p = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "run", str(sub), "--scenario", "batch_sweep",
                        "--trials", "2", "--seq-lengths", "4,16", "--max-batch", "4", "--repeats", "3",
                        "--runtimes", "onnxruntime", "--min-queries", "5", "--min-duration", "0", "--max-duration",
                        "20", "--warmup", "1", "--no-meters", "--json", "--db", sqlite_url],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["trials"]["k"] == 2 and doc["trials"]["pooled"] is True
    assert doc["sweep"]["pooled"]["trials"] == 2 and set(doc["sweep"]["by_sequence_length"]) == {"4", "16"}
    target = doc["run_id"]
    trial_ids = doc["sweep"]["pooled"]["run_ids"]
    assert len(trial_ids) == 2 and trial_ids[-1] == target

    def own_rows(rid):
        with session_scope(sqlite_url) as s:
            return {(m.metric, m.params["runtime"], m.params["sequence_length"], m.params.get("batch_size")): m.value
                    for m in s.scalars(select(Measurement).where(Measurement.run_id == rid))
                    if "sequence_length" in (m.params or {}) and not m.params.get("pooled")}

    mine = [own_rows(rid) for rid in trial_ids]
    with session_scope(sqlite_url) as s:
        grid = DQ.ft_cells(s, target)
        points, _ = DQ.sweep_points(s, submission="tiny-bert-trials")
        n_pooled = s.scalar(select(func.count()).select_from(Measurement).where(
            Measurement.run_id == target, Measurement.params["pooled"].as_boolean()))
    assert grid["trials"] == 2 and grid["lengths"] == [4, 16]
    checked = 0
    for r in grid["cells"].to_dict("records"):
        key = (r["runtime"], r["sequence_length"], r["batch_size"])
        lat = [t.get(("latency_p50_ms", *key)) for t in mine]
        if all(v is not None for v in lat):
            assert r["latency_p50_ms"] == pytest.approx(sum(lat) / 2)
            assert r["lat_ci_low"] <= min(lat) and max(lat) <= r["lat_ci_high"]  # covers both trials
            checked += 1
        ft = [t.get(("framework_tax", *key)) for t in mine]
        if r["available"]:
            assert all(v is not None for v in ft) and r["ft"] == pytest.approx(sum(ft) / 2)
    assert checked >= 2 * 2 * 3 - 2  # eager and onnxruntime x two lengths x three sizes, save a stopped sweep
    # the plain per-batch view reads the pooled rows of the run's own length, not the last trial's
    own = {(r["runtime"], r["batch_size"]): r["value"] for r in points.to_dict("records")
           if r["metric"] == "latency_p50_ms" and r["run_id"] == target}
    assert own, "the pooled rows of the run's own length are on the per-batch view"
    for (rt, b), v in own.items():
        assert v == pytest.approx(doc["sweep"]["runtimes"][rt]["median_latency_ms"][str(b)])
    text = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "runs", "show", target[:8], "--db", sqlite_url],
                          capture_output=True, text=True).stdout
    assert "onnxruntime: FT(b, s)" in text and "pooled over 2 trials" in text
    # pooling again (another executor finishing the group) replaces the pooled set, never doubles it
    with session_scope(sqlite_url) as s:
        group = s.get(Run, target).group_id
    pool_trials(group, db=sqlite_url)
    with session_scope(sqlite_url) as s:
        assert s.scalar(select(func.count()).select_from(Measurement).where(
            Measurement.run_id == target, Measurement.params["pooled"].as_boolean())) == n_pooled
