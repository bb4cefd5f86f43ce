"""--trusted, the nightly's refusal of it, and the bounded log on the run record, end to end
through execute_run on real databases and real workers."""

from __future__ import annotations

import pytest

from heptathlon.bench.app.service import execute_run, leaderboard_groups, queue_runs
from heptathlon.bench.scenarios import make_scenario
from heptathlon.db import queries as Q
from heptathlon.db.session import session_scope
from tests.runners.jobs import command_submission

NO_METERS = {"enabled": False}


@pytest.fixture
def q(quick):
    return [make_scenario("single_stream", **quick)]


def test_trusted_runs_in_process_and_is_labelled_and_unranked(examples, db_url, q):
    folder = examples["arrests-mlp-torch"]
    [iso] = queue_runs(folder, ["cpu-1core"], q, db=db_url, energy=NO_METERS)
    [tru] = queue_runs(folder, ["cpu-1core"], q, db=db_url, energy=NO_METERS, trusted=True)
    o_iso, o_tru = execute_run(iso, db=db_url), execute_run(tru, db=db_url)
    assert o_iso.status == o_tru.status == "succeeded", (o_iso.error, o_tru.error)
    assert o_tru.to_json()["isolation"] == "trusted-in-process" and "isolation" not in o_iso.to_json()
    with session_scope(db_url) as s:
        r_iso, r_tru = Q.get_run(s, iso), Q.get_run(s, tru)
        assert r_iso.controls["isolation"] == "model-process" and r_iso.controls["sandbox"]["active"] is True
        assert r_iso.extra["describe"]["measured_in"] == "model-process"
        assert r_tru.controls["isolation"] == "trusted-in-process" and r_tru.extra["trusted"] is True
        assert "measured_in" not in r_tru.extra["describe"] and r_tru.params["trusted"] is True
        assert r_tru.extra["log_bytes"] >= 0
        pc = r_iso.extra["parent_cpu"]  # the measuring parent's own CPU while the worker ran
        assert pc["method"] == "counter:getrusage(RUSAGE_SELF)" and pc["cpu_s"] >= 0
        assert pc["share_of_core"] == pytest.approx(pc["cpu_s"] / pc["wall_s"])
    rows = {r["run_id"]: r for g in leaderboard_groups(db_url) for r in g["rows"]}
    assert rows[tru]["isolation"] == "trusted-in-process" and rows[tru]["rank"] == "—"
    assert rows[iso]["isolation"] == "model-process" and rows[iso]["rank"] != "—"


def test_the_nightly_path_refuses_a_trusted_run(examples, db_url, q):
    [rid] = queue_runs(examples["arrests-mlp-torch"], ["cpu-1core"], q, db=db_url, energy=NO_METERS, trusted=True)
    o = execute_run(rid, db=db_url, trusted=False)  # what bench/app/nightly.py calls
    assert o.status == "failed"
    assert o.error.endswith("it was queued --trusted (the model in the measuring process); trusted runs are for "
                            "an author's own machine and are refused here")
    with session_scope(db_url) as s:
        assert Q.get_run(s, rid).error == o.error


def test_nightly_cli_refuses_trusted(tmp_path):
    from typer.testing import CliRunner

    from heptathlon.bench.cli.main import app

    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\nentries: []\n")
    r = CliRunner().invoke(app, ["nightly", "--suite", str(suite), "--trusted"])
    assert r.exit_code != 0
    assert "nightly: --trusted is refused" in (r.output + str(r.exception))


def test_a_flood_leaves_the_real_tail_and_the_byte_count_on_the_failed_run(tmp_path, db_url, q):
    d = command_submission(tmp_path, "flood", """
        for _ in range(96):  # 6 MiB
            sys.stderr.write("y" * 65535 + "\\n")
        sys.stderr.write("THE-REAL-TAIL\\n")
        sys.stderr.flush()
        sys.exit(7)
    """)
    [rid] = queue_runs(d, ["cpu-1core"], q, db=db_url, energy=NO_METERS)
    o = execute_run(rid, db=db_url)
    assert o.status == "failed" and "command exited mid-run with code 7" in o.error
    with session_scope(db_url) as s:
        run = Q.get_run(s, rid)
        assert run.extra["log_bytes"] > 6 * 2**20
        assert run.extra["parent_cpu"]["cpu_s"] > 0  # a failed run keeps it too: draining 6 MiB costs the parent
        assert "THE-REAL-TAIL" in run.stderr_tail and "Traceback" in run.stderr_tail


def test_run_options_carry_trusted_to_the_queue_only_when_asked():
    from heptathlon.bench.app.options import RunOptions

    base = dict(profiles=["cpu-1core"], scenarios=["single_stream"])
    assert "trusted" not in RunOptions.from_cli({}, **base).queue_kwargs()  # existing series keep their params
    assert RunOptions.from_cli({"trusted": True}, trusted=True, **base).queue_kwargs()["trusted"] is True


def test_run_cli_help_offers_trusted_and_execute_accepts_it():
    from typer.testing import CliRunner

    from heptathlon.bench.cli.main import app

    for cmd in ("run", "execute"):
        r = CliRunner().invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and "--trusted" in r.output


def test_the_parent_cpu_counter_sees_the_parents_own_work():
    import time

    from heptathlon.runners.executors.local import _own_cpu_s, _parent_cpu

    cpu0, t0 = _own_cpu_s(), time.process_time()
    while time.process_time() - t0 < 0.3:  # burn 0.3 s of this process's CPU (a counter, not a clock bound)
        pass
    rec = _parent_cpu(cpu0, wall_s=1.0)
    assert rec["cpu_s"] >= 0.25 and rec["share_of_core"] == rec["cpu_s"]
    assert _parent_cpu(_own_cpu_s(), wall_s=0.0)["share_of_core"] is None
