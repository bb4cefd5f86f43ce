"""Databases for the dashboard tests.

- ``filled_db``: a real SQLite database filled by real runs of the bundled examples (two ONNX
  models and the stdio-command one, on cpu-1core and cpu-2core, single_stream) plus one run of a
  submission whose server crashes at start-up. Built once per session.
- ``augmented_db``: a copy of it with the rows that other events will write once they exist
  (batch sweeps and knees, energy with one estimate, Δ/flip-rate group rows, hardware disparity,
  a nightly history with a regression alert). The values are made up; the row shapes are the
  ones the dashboard reads (see db/dashboard_queries.py), so every chart has data to draw.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from heptathlon.bench.scenarios import make_scenario
from heptathlon.bench.app.service import execute_run, queue_runs
from heptathlon.db.models import Alert, GroupMetric, Measurement, Run
from heptathlon.db.session import session_scope

# Energy meters need an idle baseline and a window of a second or more per run; the pages' energy
# views are exercised by augmented_db instead, and here energy is stored as "unavailable".
NO_METERS = {"enabled": False}

BROKEN_SERVE = '''"""A server that dies while loading: the failing run of the dashboard tests."""
import sys

print("loading weights.npz", file=sys.stderr)
raise RuntimeError("weights.npz: layer 2 has shape (32, 3), expected (32, 2)")
'''


@pytest.fixture(scope="session")
def quick():
    """The suite's short scenario settings (tests/conftest.py's ``quick``), at session scope so that
    one filled database serves every dashboard test."""
    return {"min_queries": 20, "min_duration_s": 0.0, "max_duration_s": 5.0, "warmup_queries": 2}


def _broken_submission(examples, root: Path) -> Path:
    folder = root / "broken-model"
    shutil.copytree(examples["arrests-mlp-command"], folder, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = (folder / "submission.yaml").read_text().replace("name: arrests-mlp-command", "name: broken-model")
    (folder / "submission.yaml").write_text(manifest)
    (folder / "serve.py").write_text(BROKEN_SERVE)
    return folder


@pytest.fixture(scope="session")
def filled_db(examples, quick, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("dashboard-db")
    url = f"sqlite:///{root / 'filled.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEPTATHLON_HOME", str(root / "home"))
        scenario = [make_scenario("single_stream", **quick)]
        ids = []
        for name in ("arrests-mlp-onnx", "arrests-mlp-command", "digits-cnn-onnx"):
            ids += queue_runs(examples[name], ["cpu-1core", "cpu-2core"], scenario, db=url, energy=NO_METERS)
        ids += queue_runs(_broken_submission(examples, root), ["cpu-1core"], scenario, db=url, energy=NO_METERS)
        outcomes = [execute_run(i, db=url) for i in ids]
    assert [o.status for o in outcomes] == ["succeeded"] * 6 + ["failed"], [o.error for o in outcomes]
    return {"url": url, "path": root / "filled.db", "outcomes": outcomes,
            "failed_id": outcomes[-1].run_id}


def copy_sqlite(src: Path, dst: Path) -> str:
    """Copy a WAL-mode SQLite database consistently (the backup API, not a file copy)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()
    return f"sqlite:///{dst}"


def _run_of(s, submission: str, profile: str) -> Run:
    return next(r for r in s.query(Run).filter(Run.status == "succeeded", Run.profile_name == profile)
                if r.submission is not None and r.submission.name == submission)


def augment(url: str) -> dict:
    """Add the rows of not-yet-built events to a filled database; returns ids the tests check."""
    out = {}
    with session_scope(url) as s:
        onnx1 = _run_of(s, "arrests-mlp-onnx", "cpu-1core")
        onnx2 = _run_of(s, "arrests-mlp-onnx", "cpu-2core")
        cmd1 = _run_of(s, "arrests-mlp-command", "cpu-1core")
        # Framework tax: a sweep per runtime; knees as a measurement (onnxruntime), in run.extra
        # (torch-eager), and none at all (torchscript: the page fits one).
        for rt, flat, knee, slope in (("onnxruntime", 0.05, 16, 0.004), ("torch-eager", 0.30, 32, 0.004),
                                      ("torchscript", 0.20, 32, 0.004)):
            for b in (1, 2, 4, 8, 16, 32, 64, 128, 256):
                lat = flat + slope * max(0, b - knee)
                tax = flat / lat * 0.8
                common = {"sweep": True, "batch_size": b, "runtime": rt}
                s.add(Measurement(run_id=onnx1.id, metric="latency_p50_ms", unit="ms", value=lat, ci_low=lat * 0.97,
                                  ci_high=lat * 1.03, n=200, method="timer:perf_counter_ns", params=common))
                s.add(Measurement(run_id=onnx1.id, metric="framework_tax", unit="fraction", value=tax,
                                  ci_low=tax - 0.03, ci_high=min(1.0, tax + 0.03), n=50,
                                  method="profiler:onnxruntime", params=common))
        s.add(Measurement(run_id=onnx1.id, metric="batch_knee", unit="samples", value=16.0, ci_low=8.0, ci_high=32.0,
                          n=9, method="derived:segmented-fit", params={"sweep": True, "runtime": "onnxruntime"}))
        onnx1.extra = {**onnx1.extra, "sweep": {"torch-eager": {"knee": 32, "ci_low": 16, "ci_high": 64}}}
        # Energy: measured on one entry, estimated on another (must be marked, never ranked).
        for run, fields in ((onnx1, dict(value=0.0021, ci_low=0.0019, ci_high=0.0023, n=20, method="counter:rapl",
                                          note=None)),
                            (cmd1, dict(value=0.0009, ci_low=None, ci_high=None, n=1, method="estimate:tdp",
                                        note="TDP x time; no energy counter"))):
            s.query(Measurement).filter(Measurement.run_id == run.id,
                                        Measurement.metric == "energy_per_sample_j").delete()
            s.add(Measurement(run_id=run.id, metric="energy_per_sample_j", unit="J", **fields))
        # Fairness against the reference profile cpu-1core.
        for attr, group, d, f in (("colour", "Black", -0.012, 0.031), ("colour", "White", 0.004, 0.012),
                                  ("sex", "Female", -0.02, 0.05), ("sex", "Male", 0.001, 0.015)):
            s.add(GroupMetric(run_id=onnx2.id, attribute=attr, group=group, metric="delta_accuracy", value=d,
                              ci_low=d - 0.01, ci_high=d + 0.01, n=300, small=False))
            s.add(GroupMetric(run_id=onnx2.id, attribute=attr, group=group, metric="flip_rate", value=f,
                              ci_low=max(0.0, f - 0.01), ci_high=f + 0.01, n=300, small=False))
        s.add(Measurement(run_id=onnx2.id, metric="hw_disparity", unit="fraction", value=0.016, ci_low=-0.004,
                          ci_high=0.035, n=1307, method="derived:paired-bootstrap"))
        # History: five earlier nights of the onnx cpu-1core series, and an alert on the newest run.
        base = onnx1.finished_at
        p50 = next(m for m in onnx1.measurements if m.metric == "latency_p50_ms" and not m.params)
        for night in range(1, 6):
            rid = str(uuid.uuid4())
            t = base - timedelta(days=night)
            s.add(Run(id=rid, submission_id=onnx1.submission_id, profile_id=onnx1.profile_id,
                      machine_id=onnx1.machine_id, submission_ref=onnx1.submission_ref,
                      profile_name=onnx1.profile_name, task_name=onnx1.task_name, scenario=onnx1.scenario,
                      params=onnx1.params, status="failed" if night == 3 else "succeeded", created_at=t,
                      started_at=t, finished_at=t, error="worker timed out" if night == 3 else None))
            s.flush()
            if night != 3:
                v = p50.value * 0.8
                s.add(Measurement(run_id=rid, metric="latency_p50_ms", unit="ms", value=v, ci_low=v * 0.95,
                                  ci_high=v * 1.05, n=20, method="timer:perf_counter_ns"))
        s.add(Alert(series_key="arrests-mlp-onnx/cpu-1core/single_stream", metric="latency_p50_ms",
                    kind="regression", baseline_run_ids=[], candidate_run_id=onnx1.id, test="mann-whitney-u",
                    p_value=0.0004, effect=0.25, z_score=4.2, status="open"))
        # A metric the registry does not know (a newer writer, an older reader): shown, never ranked.
        s.add(Measurement(run_id=onnx1.id, metric="made_up_metric", unit="widgets", value=3.0, n=1,
                          method="derived:test"))
        out.update(sweep_run=onnx1.id, delta_run=onnx2.id, estimate_run=cmd1.id)
    return out


@pytest.fixture(scope="session")
def augmented_db(filled_db, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("dashboard-augmented")
    url = copy_sqlite(filled_db["path"], root / "augmented.db")
    return {"url": url, "path": root / "augmented.db", **augment(url)}


@pytest.fixture
def empty_db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture
def failed_only_db(tmp_path) -> str:
    """A database whose only run was rejected before it ran (no submission, no machine)."""
    from heptathlon.bench.errors import SubmissionError
    from heptathlon.bench.app.service import record_rejected

    url = f"sqlite:///{tmp_path / 'failed-only.db'}"
    record_rejected(tmp_path / "no-such-folder", ["cpu-1core"], ["single_stream"],
                    SubmissionError("no-such-folder/submission.yaml: file not found"), url)
    return url


NIGHT = "2026-11-30"  # the simulated "last night" of nightly_db; its runs are created an hour ago


def add_nights(url: str) -> dict:
    """Simulated nightly runs on a filled database: five good nights (the minimum baseline) and a last night with a
    latency regression (an open alert), a passing series, a series with no baseline yet (skipped)
    and one that broke (its run failed, a "broke" alert). Rows are shaped as heptathlon.bench.app.nightly
    stores them (run.extra["nightly"], group_id, alert rows with baseline ids and context diff)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    out: dict = {}
    with session_scope(url) as s:
        def clone(src: Run, *, days_ago: int, date: str, status: str = "succeeded", error: str | None = None,
                  p50: float | None = None) -> str:
            rid = str(uuid.uuid4())
            t = now - timedelta(days=days_ago, hours=1)
            s.add(Run(id=rid, submission_id=src.submission_id, profile_id=src.profile_id, machine_id=src.machine_id,
                      submission_ref=src.submission_ref, profile_name=src.profile_name, task_name=src.task_name,
                      scenario=src.scenario, params=src.params, status=status, created_at=t, started_at=t,
                      finished_at=t, error=error, series_key=src.series_key, group_id=f"night-{date}",
                      extra={"nightly": {"suite": "nightly-demo", "date": date, "host": "testhost",
                                         "series": src.series_key, "submission": src.submission.name,
                                         "task": src.task_name, "params": {}}}))
            s.flush()
            if p50 is not None:
                s.add(Measurement(run_id=rid, metric="latency_p50_ms", unit="ms", value=p50, ci_low=p50 * 0.97,
                                  ci_high=p50 * 1.03, n=200, method="timer:perf_counter_ns"))
            return rid

        onnx = _run_of(s, "arrests-mlp-onnx", "cpu-1core")
        cmd = _run_of(s, "arrests-mlp-command", "cpu-1core")
        digits = _run_of(s, "digits-cnn-onnx", "cpu-1core")
        nights = ["2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28", "2026-11-29"]  # DEFAULT_MIN_WINDOW
        base = [clone(onnx, days_ago=5 - i, date=d, p50=(0.099, 0.1, 0.101, 0.102, 0.103)[i])
                for i, d in enumerate(nights)]
        for i, d in enumerate(nights):
            clone(cmd, days_ago=5 - i, date=d, p50=0.2)
        reg = clone(onnx, days_ago=0, date=NIGHT, p50=0.125)
        ok = clone(cmd, days_ago=0, date=NIGHT, p50=0.2)
        skipped = clone(digits, days_ago=0, date=NIGHT, p50=0.3)
        cmd2 = _run_of(s, "arrests-mlp-command", "cpu-2core")
        broke = clone(cmd2, days_ago=0, date=NIGHT, status="failed", error="worker crashed: out of memory")
        key = onnx.series_key
        alert = Alert(series_key=key, metric="latency_p50_ms", kind="regression", baseline_run_ids=base,
                      candidate_run_id=reg, test="mann-whitney-u+z-score", p_value=3e-7, effect=0.238, z_score=9.5,
                      status="open", context_diff=[{"path": "software.onnxruntime", "change":
                                                    "software.onnxruntime: 1.17.0 -> 1.18.0"}],
                      detail={"series": "arrests-mlp-onnx/cpu-1core/single_stream", "suite": "nightly-demo",
                              "date": NIGHT, "baseline_value": 0.101, "candidate_value": 0.125,
                              "n_baseline": 5, "message": "latency_p50_ms regressed"})
        broke_alert = Alert(series_key=s.get(Run, broke).series_key, metric="run", kind="broke", baseline_run_ids=[],
                            candidate_run_id=broke, status="open", context_diff=[],
                            detail={"series": "arrests-mlp-command/cpu-1core", "date": NIGHT,
                                    "message": "the run failed"})
        s.add_all([alert, broke_alert])
        s.flush()
        out.update(regression_run=reg, pass_run=ok, skipped_run=skipped, broke_run=broke, alert_id=alert.id,
                   broke_alert_id=broke_alert.id, baseline_runs=base)
    return out


@pytest.fixture
def nightly_db(filled_db, tmp_path) -> dict:
    """A copy of filled_db with simulated nights (add_nights); a fresh copy per test: tests write alerts."""
    url = copy_sqlite(filled_db["path"], tmp_path / "nightly.db")
    return {"url": url, "path": tmp_path / "nightly.db", **add_nights(url)}
