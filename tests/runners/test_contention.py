"""Contention: other processes on a run's cores are measured, marked and kept out of rankings.

The tests make their own CPU hog and set the threshold below what that hog alone guarantees
(a busy loop pinned to the run's core takes about half of it from the run), so they hold on
a busy test machine too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from heptathlon.bench.contention import ContentionTrace, contention_metric, contention_threshold, share_of_others
from heptathlon.bench.errors import OptionsError, ProfileError
from heptathlon.bench.profile import Profile
from heptathlon.runners.controls.cores import resolve_cores
from heptathlon.runners.meters.contention import ContentionSampler, core_busy_s, least_loaded_cores

QUICK = {"min_queries": 20, "min_duration_s": 1.5, "max_duration_s": 10.0, "warmup_queries": 2}


def test_share_subtracts_the_runs_own_cpu_time_over_the_window():
    # two cores, 1 s apart: 1.5 core-s busy, of which the run used 0.5 -> others 1.0 of 2.0 = 0.5
    tr = ContentionTrace((0, 1), [0, 10**9, 2 * 10**9], [0.0, 1.5, 1.6], [0.0, 0.5, 0.6], "test")
    share, d = share_of_others(tr, 0, 10**9)
    assert share == pytest.approx(0.5)
    assert d["own_share"] == pytest.approx(0.25)
    share2, _ = share_of_others(tr, 10**9, 2 * 10**9)  # the second second: others used nothing
    assert share2 == pytest.approx(0.0)
    m = contention_metric(tr, 0, 10**9, threshold=0.4)
    assert m.value == pytest.approx(0.5) and m.params["contended"] and "contended" in m.note
    assert not contention_metric(tr, 0, 10**9, threshold=0.6).params["contended"]
    assert contention_metric(None, 0, 1).value is None


def test_threshold_comes_from_the_environment_and_bad_values_are_one_line(monkeypatch):
    monkeypatch.setenv("HEPTATHLON_CONTENTION_MAX", "0.25")
    assert contention_threshold() == 0.25
    monkeypatch.setenv("HEPTATHLON_CONTENTION_MAX", "lots")
    with pytest.raises(OptionsError, match="HEPTATHLON_CONTENTION_MAX"):
        contention_threshold()


@pytest.fixture
def hog():
    """A busy loop pinned to core 0 (the core cpu-1core pins)."""
    p = subprocess.Popen([sys.executable, "-c", "import os; os.sched_setaffinity(0, [0])\nwhile True: pass"])
    yield p
    p.kill()
    p.wait()


def test_sampler_sees_a_hog_as_other_processes(hog):
    import time

    me = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    s = ContentionSampler(me.pid, [0], interval_s=0.05).start()
    time.sleep(1.0)
    tr = s.stop()
    me.kill()
    me.wait()
    share, _ = share_of_others(tr)
    assert share > 0.9  # the sleeping "run" used nothing; the hog kept core 0 busy
    assert "loadavg_1m" in tr.context


def test_any_n_cores_picks_the_least_busy_and_records_them(hog):
    allowed = sorted(os.sched_getaffinity(0))
    picked, shares = least_loaded_cores(1, allowed)
    assert shares[0] > 0.9 if 0 in shares else True
    assert picked == [min(shares, key=lambda c: (shares[c], c))]
    prof = Profile(name="any1", cpu={"count": 1})
    pinned, rec = resolve_cores(prof)
    assert len(pinned.cpu.cores) == 1 and pinned.cpu.cores[0] in allowed and pinned.cpu.count is None
    assert rec["picked"] == pinned.cpu.cores and rec["requested"] == "any 1"
    assert resolve_cores(Profile(name="fixed", cpu={"cores": [0]})) == (Profile(name="fixed", cpu={"cores": [0]}),
                                                                         None)
    with pytest.raises(ProfileError, match="cpu.count"):
        resolve_cores(Profile(name="many", cpu={"count": len(allowed) + 1}))
    with pytest.raises(ValueError, match="either cores"):
        Profile(name="both", cpu={"cores": [0], "count": 1})


def test_core_busy_reads_proc_stat():
    b = core_busy_s([0])
    assert set(b) == {0} and b[0] > 0


def _spin_submission(parent, name="spin"):
    d = parent / name
    d.mkdir()
    (d / "serve.py").write_text(textwrap.dedent("""
        import json, sys, time
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            req = json.loads(line)
            end = time.perf_counter() + 0.002
            while time.perf_counter() < end:
                pass
            print(json.dumps({"id": req["id"], "outputs": [0] * len(req["inputs"])}), flush=True)
    """))
    (d / "submission.yaml").write_text(f"name: {name}\ntask: arrests\n"
                                       "model: {kind: command, command: [python, serve.py]}\n")
    return d


def test_a_hog_on_the_runs_core_marks_it_contended_and_out_of_the_ranking(hog, tmp_path, sqlite_url, monkeypatch):
    from heptathlon.bench.app.service import execute_run, leaderboard_groups, queue_runs
    from heptathlon.bench.scenarios import make_scenario

    # The hog alone takes about half of core 0 from the run (CFS shares it between two busy
    # loops); 0.3 sits below that whatever else the machine runs.
    monkeypatch.setenv("HEPTATHLON_CONTENTION_MAX", "0.3")
    [rid] = queue_runs(_spin_submission(tmp_path), ["cpu-1core"], [make_scenario("single_stream", **QUICK)],
                       db=sqlite_url, energy={"enabled": False})
    o = execute_run(rid, db=sqlite_url)
    assert o.status == "succeeded", o.error
    c = o.metrics["contention_share"]
    assert c.value > 0.3 and c.params["contended"] and c.params["cores"] == [0]
    assert c.params["threshold"] == 0.3 and "loadavg_1m" in c.params
    [g] = leaderboard_groups(sqlite_url)
    [row] = g["rows"]
    assert row["contended"] and row["rank"] == "—"
    [g2] = leaderboard_groups(sqlite_url, include_contended=True)
    assert g2["rows"][0]["rank"] == "1"

    from typer.testing import CliRunner

    from heptathlon.bench.cli.main import app

    res = CliRunner().invoke(app, ["results", "--db", sqlite_url])
    assert res.exit_code == 0, res.output
    assert "contended" in res.stdout
