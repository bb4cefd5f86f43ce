"""Nightly regression runs end to end: real worker runs of the bundled submissions, on SQLite and
(in CI) PostgreSQL. Regressions are injected as synthetic past nights, not slow models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from sqlalchemy import func, select

from heptathlon.bench.app import nightly as N
from heptathlon.bench.errors import HeptathlonError
from heptathlon.bench.fingerprint import collect_fingerprint, fingerprint_hash, software_context
from heptathlon.bench.metrics import MetricValue, SampleKind
from heptathlon.bench.app.report import EXIT_REGRESSION
from heptathlon.db import lifecycle as L
from heptathlon.db import nightly_queries as NQ
from heptathlon.db import queries as Q
from heptathlon.db.models import Alert, Lock, Run
from heptathlon.db.session import ensure_schema, session_scope

QUICK = {"min_queries": 20, "min_duration_s": 0.0, "max_duration_s": 5.0, "warmup_queries": 2}


def cli(*args, db=None):
    """The real command line in a fresh process."""
    return subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", *args, *(["--db", db] if db else [])],
                          capture_output=True, text=True)


@pytest.fixture
def heptathlon(capsys, monkeypatch):
    """``heptathlon.bench.cli.main`` in this process (its exit-code mapping included): (code, stdout, stderr)."""
    from heptathlon.bench.cli import main

    def call(*args, db=None):
        monkeypatch.setattr(sys, "argv", ["heptathlon", *args, *(["--db", db] if db else [])])
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            main()
        captured = capsys.readouterr()
        return e.value.code, captured.out, " ".join(captured.err.split())

    return call


def write_suite(tmp_path: Path, submissions: list[Path], **over) -> Path:
    """A one-profile, one-scenario suite with test durations and no energy meters (no idle baseline)."""
    spec = {"name": "nightly-test", "submissions": [str(p) for p in submissions], "profiles": ["cpu-1core"],
            "scenarios": ["single_stream"], "params": {**QUICK, "trials": 1}, "energy": {"enabled": False},
            "baseline_window": 3, "min_baseline": 2, **over}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_count(db: str) -> int:
    with session_scope(db) as s:
        return s.scalar(select(func.count()).select_from(Run))


def night_runs(db: str, suite: str, night: str) -> list[Run]:
    with session_scope(db) as s:
        return NQ.runs_of_night(s, N.night_group_id(suite, date.fromisoformat(night), N.this_host()))


def by_label(outcome) -> dict:
    return {r.series.label: r for r in outcome.report.results}


def insert_synthetic_nights(db: str, suite_path: Path, nights: list[str], latency_ns: float = 100.0) -> list[str]:
    """Past nightly runs of the suite's first entry, on this machine, with raw latency samples
    around ``latency_ns`` - far faster than any real run, so tonight's real run regresses."""
    suite = N.load_nightly_suite(suite_path)
    entry = suite.entries()[0]
    fp, host, rng = collect_fingerprint(), N.this_host(), np.random.default_rng(7)
    ensure_schema(db)
    ids = []
    with session_scope(db) as s:
        sub = Q.get_or_create_submission(s, name=entry.submission_dir.name, version="synthetic", task="arrests",
                                         kind="onnx", sha256="0" * 64, manifest={}, store_path="/nonexistent")
        machine = Q.get_or_create_machine(s, fingerprint_hash(fp), fp)
        for night in nights:
            d = date.fromisoformat(night)
            lat = rng.lognormal(np.log(latency_ns), 0.25, 500).astype(np.int64)
            ms = lat / 1e6
            rid = str(uuid.uuid4())
            at = datetime.combine(d, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=2, minutes=30)
            Q.create_run(s, id=rid, submission_id=sub.id, machine_id=machine.id, submission_ref="synthetic",
                         profile_name=entry.profile, task_name="arrests", scenario=entry.scenario.name,
                         # what a run queued for this entry stores: its series key is computed from these
                         params={**entry.scenario.to_params(), "energy": dict(entry.energy or {})},
                         status="succeeded", created_at=at, started_at=at,
                         finished_at=at, group_id=N.night_group_id(suite.name, d, host), software=software_context(),
                         extra={"nightly": N.nightly_marker(suite.name, entry, d, host, fp)})
            Q.add_samples(s, rid, "latency_ns", lat)
            Q.add_measurements(s, rid, [MetricValue(name, float(v), "timer:perf_counter_ns", n=lat.size) for name, v in (
                ("latency_p50_ms", np.percentile(ms, 50)), ("latency_p90_ms", np.percentile(ms, 90)),
                ("latency_p99_ms", np.percentile(ms, 99)), ("latency_mean_ms", ms.mean()))])
            ids.append(rid)
    return ids


# ---- nights, baselines and resuming -------------------------------------------------------------------------
def test_each_night_compares_with_the_nights_before_and_a_rerun_reuses_its_runs(examples, db_url, tmp_path):
    # A size threshold no real change reaches: the comparison itself is under test, not tonight's noise.
    suite = write_suite(tmp_path, [examples["arrests-mlp-onnx"], examples["digits-cnn-onnx"]], default_threshold=100.0)
    reports = tmp_path / "reports"
    first = N.run_nightly(suite, night="2026-01-01", db=db_url, report_dir=reports)
    assert [e.action for e in first.entries] == ["ran", "ran"] and first.exit_code == 0
    assert {r.status for r in first.report.results} == {"no_baseline"}
    ids1 = {label: r.candidate_run_id for label, r in by_label(first).items()}

    second = N.run_nightly(suite, night="2026-01-02", db=db_url, report_dir=reports)
    assert {label: r.baseline_run_ids for label, r in by_label(second).items()} == {
        label: (rid,) for label, rid in ids1.items()}
    md = second.paths.markdown.read_text()
    assert "| arrests-mlp-onnx/cpu-1core/single_stream | no_baseline | 1 | 2026-01-01 | " \
           "baseline has 1 good nightly runs; 2 needed |" in md

    third = N.run_nightly(suite, night="2026-01-03", db=db_url, report_dir=reports)
    assert {r.status for r in third.report.results} == {"ok"}
    ids2 = {label: r.candidate_run_id for label, r in by_label(second).items()}
    assert {label: r.baseline_run_ids for label, r in by_label(third).items()} == {
        label: (ids1[label], ids2[label]) for label in ids1}
    md = third.paths.markdown.read_text()
    assert md.startswith("# Nightly `nightly-test`: 2026-01-03")
    assert "**PASS**" in md and "| digits-cnn-onnx/cpu-1core/single_stream | ok | 2 | 2026-01-01, 2026-01-02 |" in md
    assert third.paths.markdown.name == "nightly-nightly-test-2026-01-03.md"
    junit = ET.parse(third.paths.junit).getroot()
    assert junit.get("failures") == "0"
    assert sorted(ts.get("name") for ts in junit.iter("testsuite")) == sorted(ids1)
    assert all(any(tc.get("name") == "latency_p50_ms" for tc in ts) for ts in junit.iter("testsuite"))

    # The same night again: nothing runs, nothing is duplicated, the reports are written again.
    n_runs = run_count(db_url)
    assert n_runs == 6
    third.paths.markdown.unlink()
    p = cli("nightly", "--suite", str(suite), "--date", "2026-01-03", "--report-dir", str(reports), db=db_url)
    assert p.returncode == 0, p.stderr
    assert "PASS nightly nightly-test 2026-01-03: 2 series" in p.stdout and "0 entries run, 2 reused" in p.stdout
    assert run_count(db_url) == n_runs
    assert third.paths.markdown.exists() and third.paths.junit.exists()
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(Lock)) == 0  # released at the end


def test_a_crash_mid_suite_keeps_finished_runs_and_the_next_start_resumes(examples, db_url, tmp_path, monkeypatch):
    suite = write_suite(tmp_path, [examples["arrests-mlp-onnx"], examples["hearts-mlp-onnx"]])
    real_execute = N._execute

    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # the harness that "dies": a real, finished process
    gone.wait()
    dead_owner = L.Owner(L.this_host(), gone.pid, psutil.Process().create_time() - 1000.0)

    def crash_in_second_entry(run_id, db):
        with session_scope(db) as s:
            run = Q.get_run(s, run_id)
            if run.submission.name == "hearts-mlp-onnx":
                assert L.claim_run(s, run_id, dead_owner, 60.0)  # the process dies while this run is running
                crashed = True
            else:
                crashed = False
        if crashed:
            raise KeyboardInterrupt
        real_execute(run_id, db)

    monkeypatch.setattr(N, "_execute", crash_in_second_entry)
    with pytest.raises(KeyboardInterrupt):
        N.run_nightly(suite, night="2026-03-01", db=db_url, report_dir=tmp_path / "reports")
    runs = {r.submission_ref.rsplit("/", 1)[-1]: (r.id, r.status) for r in night_runs(db_url, "nightly-test", "2026-03-01")}
    assert {k: st for k, (_, st) in runs.items()} == {"arrests-mlp-onnx": "succeeded", "hearts-mlp-onnx": "running"}
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(Lock)) == 0

    monkeypatch.setattr(N, "_execute", real_execute)
    again = N.run_nightly(suite, night="2026-03-01", db=db_url, report_dir=tmp_path / "reports")
    assert [(e.action, e.status) for e in again.entries] == [("reused", "succeeded"), ("resumed", "succeeded")]
    with session_scope(db_url) as s:  # reaped as "harness died" when the night opened the DB, then requeued
        (attempt,) = Q.get_run(s, runs["hearts-mlp-onnx"][0]).extra["attempts"]
    assert attempt["interruption"] == "harness_died" and f"owner pid {gone.pid} on host" in attempt["error"]
    assert [e.run_ids for e in again.entries] == [(runs["arrests-mlp-onnx"][0],), (runs["hearts-mlp-onnx"][0],)]
    assert run_count(db_url) == 2


def test_trials_are_one_night_with_pooled_values_and_every_trials_samples(examples, sqlite_url, tmp_path):
    suite = write_suite(tmp_path, [examples["arrests-mlp-onnx"]], params={**QUICK, "trials": 2}, timeout_s=90)
    o = N.run_nightly(suite, night="2026-04-01", db=sqlite_url, report_dir=tmp_path / "reports")
    (entry,) = o.entries
    assert len(entry.run_ids) == 2 and entry.status == "succeeded"
    data = N.load_night(N.load_nightly_suite(suite), date(2026, 4, 1), db=sqlite_url, host=N.this_host())
    (cand,) = data.candidates
    assert cand.series.params["trials"] == 2
    meters = {"enabled": False, "idle_s": 1.0, "country_iso": "USA"}
    assert cand.series.params["energy"] == meters  # meter settings given by the suite are part of the series
    with session_scope(sqlite_url) as s:
        run = Q.get_run(s, cand.run_id)
        assert run.params["energy"] == meters and run.params["timeout_s"] == 90
        assert Q.run_measurements(s, run.id)["energy_j"].method == "unavailable"
    with session_scope(sqlite_url) as s:
        n_samples = sum(Q.load_samples(s, rid, "latency_ns").size for rid in entry.run_ids)
        pooled = {m.metric: m.value for m in NQ.measurements_of(s, cand.run_id) if (m.params or {}).get("pooled")}
    assert len(cand.samples[SampleKind.LATENCY_NS]) == n_samples
    assert pooled["latency_p50_ms"] == cand.metrics["latency_p50_ms"]
    assert np.isclose(np.percentile(cand.samples[SampleKind.LATENCY_NS], 50) / 1e6, cand.metrics["latency_p50_ms"],
                      rtol=0.05)


# ---- regressions and alerts ------------------------------------------------------------------------------
def test_a_regression_fails_the_night_until_acknowledged_and_an_expected_change_starts_a_new_baseline(
        examples, db_url, tmp_path, heptathlon):
    suite = write_suite(tmp_path, [examples["arrests-mlp-onnx"]])
    reports = tmp_path / "reports"
    synthetic = insert_synthetic_nights(db_url, suite, ["2026-02-01", "2026-02-02", "2026-02-03"])
    night4 = ["nightly", "--suite", str(suite), "--date", "2026-02-04", "--report-dir", str(reports)]

    code, out, err = heptathlon(*night4, db=db_url)
    assert code == EXIT_REGRESSION, err
    assert "FAIL nightly nightly-test 2026-02-04" in out and "REGRESSION" in out
    assert "heptathlon alerts ack ID" in err
    md = (reports / "nightly-nightly-test-2026-02-04.md").read_text()
    assert "## Regressions" in md and "| arrests-mlp-onnx/cpu-1core/single_stream | latency_p50_ms |" in md
    assert "| regressed | 3 | 2026-02-01, 2026-02-02, 2026-02-03 |" in md
    junit = ET.parse(reports / "nightly-nightly-test-2026-02-04.xml").getroot()
    failures = {tc.get("name"): tc.find("failure") for tc in junit.iter("testcase") if tc.find("failure") is not None}
    assert {"latency_p50_ms", "latency_mean_ms"} <= set(failures)
    assert all(f.get("type") == "regression" for f in failures.values())
    (r4,) = [r.id for r in night_runs(db_url, "nightly-test", "2026-02-04")]

    code, out, _ = heptathlon("alerts", "--json", db=db_url)
    alerts = json.loads(out)
    assert code == 0 and {a["kind"] for a in alerts} == {"regression"} and {a["status"] for a in alerts} == {"open"}
    assert {a["candidate_run_id"] for a in alerts} == {r4}
    p50 = next(a for a in alerts if a["metric"] == "latency_p50_ms")
    assert p50["baseline_run_ids"] == synthetic and p50["rel_change"] > 10 and p50["p_value"] < 0.01
    # same machine, same software; the synthetic nights' stand-in submission (sha 0...0, no manifest,
    # no profile row) differs from what ran tonight, and the context diff now says so
    assert p50["context_diff"] and all(c.startswith(("artifact.", "profile")) for c in p50["context_diff"]), \
        p50["context_diff"]
    assert any(c.startswith("artifact.sha256: " + "0" * 64) for c in p50["context_diff"])
    assert p50["date"] == "2026-02-04"
    r4_alerts = [a["id"] for a in alerts]

    # While the alerts are open, the slow night stays out of the next night's baseline.
    fifth = N.run_nightly(suite, night="2026-02-05", db=db_url, report_dir=reports)
    (res5,) = fifth.report.results
    assert res5.baseline_run_ids == tuple(synthetic) and res5.status == "regressed"
    assert fifth.exit_code == EXIT_REGRESSION

    code, _, err = heptathlon("alerts", "ack", *map(str, r4_alerts), db=db_url)
    assert code == 0 and f"alert {r4_alerts[0]} acknowledged" in err
    code, out, _ = heptathlon("alerts", "list", "--json", db=db_url)
    assert {a["candidate_run_id"] for a in json.loads(out)} == {res5.candidate_run_id}
    n_runs = run_count(db_url)
    code, out, err = heptathlon(*night4, db=db_url)
    # Night 4's own alerts are acknowledged, but night 5's are still open: the exit code counts every
    # open alert of the suite, not only the night's (issue 14), and says which.
    assert code == EXIT_REGRESSION, err
    assert "FAIL nightly nightly-test 2026-02-04" in out and run_count(db_url) == n_runs
    assert "still open from another night: alert" in out and "2026-02-05" in out
    md = (reports / "nightly-nightly-test-2026-02-04.md").read_text()
    assert "**FAIL**" in md and "latency_p50_ms (acknowledged)" in md and "Still open from other nights" in md

    code, _, err = heptathlon("alerts", "expected", *map(str, r4_alerts), db=db_url)
    assert code == 0 and "starts a new baseline" in err
    code, out, _ = heptathlon("alerts", "--all", "--json", db=db_url)
    everything = json.loads(out)
    assert {a["status"] for a in everything if a["id"] in r4_alerts} == {"expected"}
    assert [h["status"] for h in next(a for a in everything if a["id"] == r4_alerts[0])["history"]] == [
        "acknowledged", "expected"]
    code, _, err = heptathlon("alerts", "ack", "999999", db=db_url)
    assert code == 2 and "alert 999999: no such alert" in err

    # The accepted night starts a new segment and the synthetic nights drop out. Night 5, checked
    # again, has too short a baseline to flag anything: its stale open alerts are superseded, and
    # it joins the baseline of night 6.
    again5 = N.run_nightly(suite, night="2026-02-05", db=db_url, report_dir=reports)
    (res5,) = again5.report.results
    assert res5.baseline_run_ids == (r4,) and res5.status == "no_baseline" and again5.exit_code == 0
    assert [e.action for e in again5.entries] == ["reused"]
    with session_scope(db_url) as s:
        assert {a.status for a in NQ.alerts_of_runs(s, [res5.candidate_run_id])} == {"superseded"}
    sixth = N.run_nightly(suite, night="2026-02-06", db=db_url, report_dir=reports)
    (res6,) = sixth.report.results
    assert res6.baseline_run_ids == (r4, res5.candidate_run_id)


def test_a_broken_submission_is_a_failed_run_and_a_broke_alert_and_the_rest_still_runs(examples, db_url, tmp_path):
    broken = tmp_path / "broken-onnx"
    shutil.copytree(examples["arrests-mlp-onnx"], broken, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = yaml.safe_load((broken / "submission.yaml").read_text())
    (broken / "submission.yaml").write_text(yaml.safe_dump({**manifest, "name": "broken-onnx"}))
    (broken / "model.onnx").write_bytes(b"this is not an ONNX model")  # valid manifest, fails at load
    suite = write_suite(tmp_path, [broken, examples["arrests-mlp-onnx"]])

    o = N.run_nightly(suite, night="2026-05-01", db=db_url, report_dir=tmp_path / "reports")
    assert [(e.entry.submission_dir.name, e.status) for e in o.entries] == [
        ("broken-onnx", "failed"), ("arrests-mlp-onnx", "succeeded")]
    assert o.exit_code == EXIT_REGRESSION
    assert [(a.kind, a.series_label) for a in o.report.alerts] == [("broke", "broken-onnx/cpu-1core/single_stream")]
    assert "## Broke" in o.paths.markdown.read_text()
    (broke_id,) = o.alert_ids.values()
    with session_scope(db_url) as s:
        run = Q.get_run(s, o.entries[0].run_ids[0])
        assert run.status == "failed" and "broken-onnx" in run.error and run.machine_id is not None
        alert = s.get(Alert, broke_id)
        assert (alert.kind, alert.metric, alert.status, alert.candidate_run_id) == ("broke", "run", "open", run.id)
        assert alert.detail["message"] == run.error

    again = N.run_nightly(suite, night="2026-05-01", db=db_url, report_dir=tmp_path / "reports")
    assert [e.action for e in again.entries] == ["reused", "reused"] and run_count(db_url) == 2
    assert list(again.alert_ids.values()) == [broke_id]
    with pytest.raises(HeptathlonError, match="a failed run cannot start a new baseline"):
        N.set_alert_status(db_url, [broke_id], "expected")

    retried = N.run_nightly(suite, night="2026-05-01", db=db_url, report_dir=tmp_path / "reports", retry_failed=True)
    assert [e.action for e in retried.entries] == ["retried", "reused"] and run_count(db_url) == 3
    (new_id,) = retried.alert_ids.values()
    with session_scope(db_url) as s:
        assert s.get(Alert, broke_id).status == "superseded" and s.get(Alert, new_id).status == "open"


# ---- the lock -----------------------------------------------------------------------------------------------
def test_a_second_nightly_while_the_lock_is_held_fails_fast_naming_the_holder(examples, db_url, tmp_path):
    suite = write_suite(tmp_path, [examples["arrests-mlp-onnx"]])
    ensure_schema(db_url)
    name, holder = N.lock_name("nightly-test", N.this_host()), N.lock_holder()  # held by this live process
    with session_scope(db_url) as s:
        NQ.insert_lock(s, name, holder)
    p = cli("nightly", "--suite", str(suite), "--date", "2026-06-01", "--report-dir", str(tmp_path / "r"), db=db_url)
    assert p.returncode == N.EXIT_LOCKED, p.stderr
    text = " ".join(p.stderr.split())
    assert f"is held by process {os.getpid()} on {N.this_host()}" in text and "in progress" in text
    assert run_count(db_url) == 0 and not (tmp_path / "r").exists()
    with session_scope(db_url) as s:
        assert NQ.get_lock(s, name).holder == holder  # still the first process's


def test_lock_is_exclusive_and_a_stale_lock_is_taken_over(db_url):
    ensure_schema(db_url)
    host = N.this_host()
    me = N.lock_holder()
    N.acquire_lock(db_url, "nightly:a@h", me, host=host)
    with pytest.raises(N.NightlyLockedError, match=f"process {os.getpid()}"):
        N.acquire_lock(db_url, "nightly:a@h", me + "-other", host=host)
    assert N.release_lock(db_url, "nightly:a@h", me) and not N.release_lock(db_url, "nightly:a@h", me)

    # The holder's process has exited: taken over at once.
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    dead = N.lock_holder(pid=proc.pid)
    proc.communicate(b"")
    N.acquire_lock(db_url, "nightly:b@h", dead, host=host)
    note = N.acquire_lock(db_url, "nightly:b@h", me, host=host)
    assert note is not None and f"process {proc.pid}" in note
    with session_scope(db_url) as s:
        assert NQ.get_lock(s, "nightly:b@h").holder == me

    # Another host's holder is trusted until the lock is older than the maximum age.
    N.acquire_lock(db_url, "nightly:c@h", "elsewhere:123:456", host=host)
    with pytest.raises(N.NightlyLockedError, match="elsewhere"):
        N.acquire_lock(db_url, "nightly:c@h", me, host=host)
    later = lambda: datetime.now(timezone.utc) + N.LOCK_MAX_AGE + timedelta(minutes=1)  # noqa: E731
    assert "more than" in N.acquire_lock(db_url, "nightly:c@h", me, host=host, now=later)


# ---- input and scheduling -------------------------------------------------------------------------------------
def test_an_invalid_suite_lists_every_problem_and_touches_nothing(examples, sqlite_url, tmp_path):
    suite = write_suite(tmp_path, [examples["arrests-mlp-onnx"], tmp_path / "no-such-submission"],
                        profiles=["cpu-1core", "tpu-9000"])
    p = cli("nightly", "--suite", str(suite), db=sqlite_url)
    assert p.returncode == 2
    text = " ".join(p.stderr.split())
    assert "2 problems in suite file" in text
    assert "field 'submissions.1'" in text and "not found" in text and "field 'profiles.1'" in text
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()  # validated before the database is opened


def test_bad_schedule_and_date_options_are_input_errors(examples, tmp_path, heptathlon):
    suite = write_suite(tmp_path, [examples["arrests-mlp-onnx"]])
    code, _, err = heptathlon("nightly", "--suite", str(suite), "--schedule", "61 2 * * *")
    assert code == 2 and "not a valid cron expression" in err
    code, _, err = heptathlon("nightly", "--suite", str(suite), "--schedule", "30 2 * * *", "--date", "2026-01-01")
    assert code == 2 and "exclude each other" in err
    code, _, err = heptathlon("nightly", "--suite", str(suite), "--date", "22/11/2026")
    assert code == 2 and "expected a date as YYYY-MM-DD" in err


class _Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


class _Event:
    """``Event.wait`` that moves the fake clock on instead of sleeping; set after ``stop_after`` waits."""

    def __init__(self, clock: _Clock, stop_after: int) -> None:
        self.clock, self.stop_after, self.waits, self._set = clock, stop_after, 0, False

    def wait(self, timeout=None):
        self.waits += 1
        if self.waits >= self.stop_after:
            self._set = True
            return True
        self.clock.t += timedelta(seconds=timeout)
        return False

    def is_set(self):
        return self._set


def test_schedule_starts_one_night_per_firing_dated_by_the_day_it_fires():
    clock = _Clock(datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc))
    nights = []
    runs = N.run_nightly_on_schedule("30 2 * * *", nights.append, _Event(clock, stop_after=3), now=clock)
    assert runs == 2 and nights == [date(2026, 11, 21), date(2026, 11, 22)]
