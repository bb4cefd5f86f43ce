"""Fairness through real runs: per-group rows at run time, disparity against a reference."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from heptathlon.bench.errors import HeptathlonError
from heptathlon.bench.app.fairness import compute_disparity
from heptathlon.bench.scenarios import make_scenario
from heptathlon.bench.app.service import execute_run, queue_runs
from heptathlon.db.models import GroupMetric, Measurement, Run
from heptathlon.db.session import session_scope

NO_METERS = {"enabled": False}


@pytest.fixture
def q(quick):
    return [make_scenario("single_stream", **quick)]


def run(folder, profile, db, q):
    [rid] = queue_runs(folder, [profile], q, db=db, energy=NO_METERS)
    o = execute_run(rid, db=db)
    assert o.status == "succeeded", o.error
    return rid


def test_disparity_against_reference_is_stored_and_printed(examples, sqlite_url, q):
    ref = run(examples["arrests-mlp-torch"], "cpu-1core", sqlite_url, q)
    cand = run(examples["arrests-mlp-torch"], "cpu-1core-int8", sqlite_url, q)
    with session_scope(sqlite_url) as s:
        attrs = {g.attribute for g in s.scalars(select(GroupMetric).where(GroupMetric.run_id == ref))}
        assert attrs == {"colour", "sex", "colour×sex"}
        gap = [m for m in s.scalars(select(Measurement).where(Measurement.run_id == ref,
                                                               Measurement.metric == "fairness_gap"))]
        assert {m.params["attribute"] for m in gap} == {"colour", "sex", "colour×sex"}
    dry = compute_disparity("arrests-mlp-torch", db=sqlite_url, store=False)  # computes, writes nothing
    assert [p for p, _, _ in dry.reports["colour"]] == ["cpu-1core-int8"]
    with session_scope(sqlite_url) as s:
        assert not list(s.scalars(select(Measurement).where(Measurement.metric == "hw_disparity")))
        assert not list(s.scalars(select(GroupMetric).where(GroupMetric.metric == "flip_rate")))
    ft = compute_disparity("arrests-mlp-torch", db=sqlite_url)
    assert ft.reference == "cpu-1core" and ft.reference_run == ref
    assert [p for p, _, _ in ft.reports["colour"]] == ["cpu-1core-int8"]
    with session_scope(sqlite_url) as s:
        flips = list(s.scalars(select(GroupMetric).where(GroupMetric.run_id == cand, GroupMetric.metric == "flip_rate")))
        assert {f.group for f in flips if f.attribute == "colour"} == {"Black", "White"}
        assert all(f.ci_low <= f.value <= f.ci_high for f in flips)
        hd = list(s.scalars(select(Measurement).where(Measurement.run_id == cand, Measurement.metric == "hw_disparity")))
        assert len(hd) == 3 and all(m.ci_low <= m.value <= m.ci_high for m in hd)
    compute_disparity("arrests-mlp-torch", db=sqlite_url)  # idempotent: replaces, never duplicates
    with session_scope(sqlite_url) as s:
        assert len(list(s.scalars(select(Measurement).where(Measurement.run_id == cand,
                                                             Measurement.metric == "hw_disparity")))) == 3
    p = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "fairness", "arrests-mlp-torch", "--db", sqlite_url],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "hw_disparity" in p.stdout and "cpu-1core-int8 vs reference cpu-1core" in p.stdout


def test_missing_reference_run_says_which_run_to_make(examples, sqlite_url, q):
    run(examples["arrests-mlp-torch"], "cpu-1core-bf16", sqlite_url, q)
    with pytest.raises(HeptathlonError, match=r"no succeeded run on the reference profile 'cpu-1core'.*--profile cpu-1core"):
        compute_disparity("arrests-mlp-torch", db=sqlite_url)


def test_task_without_groups_says_so(examples, sqlite_url, q):
    rid = run(examples["digits-cnn-onnx"], "cpu-1core", sqlite_url, q)
    with session_scope(sqlite_url) as s:
        m = s.scalar(select(Measurement).where(Measurement.run_id == rid, Measurement.metric == "fairness_gap"))
        assert m.value is None and "has no group labels" in m.note
    p = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "fairness", "digits-cnn-onnx", "--db", sqlite_url],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "no group labels" in p.stderr


SERVE = '''
import json, os, sys
print("LABELS_VISIBLE " + str(os.path.exists("eval.csv")), file=sys.stderr, flush=True)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    print(json.dumps({"id": req["id"], "outputs": [int(x[0] > 0) for x in req["inputs"]]}), flush=True)
'''


def test_custom_csv_task_with_missing_group_values(tmp_path, sqlite_url, q):
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                       "region": rng.choice(["north", "south", None], size=n, p=[0.5, 0.4, 0.1])})
    df["y"] = (df["a"] + 0.3 * rng.normal(size=n) > 0).astype(int)
    d = tmp_path / "csv-task"
    d.mkdir()
    df.to_csv(d / "eval.csv", index=False)
    (d / "task.yaml").write_text("name: toy\ndata: eval.csv\ninputs: [a, b]\nlabel: y\ngroups: [region]\n")
    (d / "serve.py").write_text(SERVE)
    (d / "submission.yaml").write_text("name: toy-rule\ntask: task.yaml\nmodel: {kind: command, command: [python, serve.py]}\n")
    rid = run(d, "cpu-1core", sqlite_url, q)
    with session_scope(sqlite_url) as s:
        r = s.get(Run, rid)
        assert r.task_name == "toy"
        assert "LABELS_VISIBLE False" in r.stderr_tail  # the labels file never reaches the model
        groups = {g.group: g for g in s.scalars(select(GroupMetric).where(GroupMetric.run_id == rid,
                                                                           GroupMetric.metric == "accuracy"))}
        assert set(groups) == {"north", "south", "unknown"}
        assert groups["unknown"].n == int(df["region"].isna().sum()) and groups["unknown"].small
        acc = s.scalar(select(Measurement).where(Measurement.run_id == rid, Measurement.metric == "accuracy"))
        assert acc.value == pytest.approx(((df["a"] > 0).astype(int) == df["y"]).mean())
