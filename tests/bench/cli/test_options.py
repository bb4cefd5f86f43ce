"""The options model shared by ``run`` and ``submit``: the same flags build the same model, the
model reaches the database unchanged, and a bad value is one line and exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from sqlalchemy import select

from heptathlon.bench.app.options import EnergyOptions, RunOptions, ScenarioOptions
from heptathlon.bench.cli.main import app
from heptathlon.bench.errors import OptionsError

SHARED = ["-p", "cpu-1core", "-s", "batch_sweep", "--max-batch", "8", "--repeats", "3",
          "--runtimes", "eager, onnxruntime", "--adaptive", "--ci-target", "0.05"]


def _parsed(command: str, args: list[str]) -> dict:
    """The parameters click parses for one sub-command, without invoking it."""
    group = typer.main.get_command(app)
    return group.commands[command].make_context(command, args).params


def _options(command: str, args: list[str]) -> RunOptions:
    params = _parsed(command, args)
    profiles = params["profile"] if isinstance(params["profile"], (list, tuple)) else [params["profile"]]
    scenarios = params["scenario"] if isinstance(params["scenario"], (list, tuple)) else [params["scenario"]]
    return RunOptions.from_cli(params, profiles=list(profiles), scenarios=list(scenarios), trials=params["trials"])


def test_run_and_submit_build_the_same_model_for_the_same_flags(examples):
    folder = str(examples["arrests-mlp-onnx"])
    via_run = _options("run", [folder, *SHARED])
    via_submit = _options("submit", [folder, *SHARED])
    assert via_run == via_submit
    assert via_run.scenario.runtimes == ("eager", "onnxruntime")
    assert via_run.scenario.adaptive and via_run.scenario.ci_target == 0.05
    assert [c.to_params() for c in via_run.scenario_configs()] == [c.to_params() for c in via_submit.scenario_configs()]


def test_run_only_flags_reach_the_model_and_the_queue_keywords(examples):
    params = _parsed("run", [str(examples["arrests-mlp-onnx"]), "--min-duration", "0.5", "--warmup", "3",
                             "--seed", "7", "-b", "4", "-s", "fixed_batch"])
    opts = RunOptions.from_cli(params, profiles=["cpu-1core"], scenarios=["fixed_batch"], timeout_s=30.0,
                               energy=EnergyOptions(enabled=False, idle_s=0.5, country_iso="FRA"))
    (cfg,) = opts.scenario_configs()
    assert (cfg.batch_size, cfg.seed, cfg.warmup_queries, cfg.stop.min_duration_s) == (4, 7, 3, 0.5)
    assert opts.queue_kwargs() == {"trials": 1, "timeout_s": 30.0,
                                   "energy": {"enabled": False, "idle_s": 0.5, "country_iso": "FRA"}}
    # submit sets neither: the queue's defaults apply, and no energy settings are stored
    assert RunOptions(profiles=["cpu-1core"], scenarios=["offline"]).queue_kwargs() == {"trials": 1}


def test_submitted_runs_store_the_configs_the_model_builds(examples, sqlite_url):
    from heptathlon.db.models import Run
    from heptathlon.db.session import session_scope

    folder = str(examples["arrests-mlp-onnx"])
    flags = ["-p", "cpu-1core", "-s", "server", "--qps", "40", "--max-batch", "4", "--max-wait-ms", "2"]
    proc = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "submit", folder, *flags, "--db", sqlite_url],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with session_scope(sqlite_url) as s:
        (stored,) = [r.params for r in s.scalars(select(Run))]
    (cfg,) = _options("submit", [folder, *flags]).scenario_configs()
    assert stored == {**cfg.to_params(), "timeout_s": 120.0, "energy": {}}


def test_a_value_the_model_rejects_is_one_line_naming_the_option():
    with pytest.raises(OptionsError, match=r"^option seed: .*\(got 'seven'\)$") as exc:
        RunOptions.from_cli({"seed": "seven"}, profiles=["cpu-1core"], scenarios=["single_stream"])
    assert "\n" not in str(exc.value) and exc.value.exit_code == 2
    assert ScenarioOptions.model_validate({"runtimes": "eager,,torchscript "}).runtimes == ("eager", "torchscript")


@pytest.mark.parametrize("args, message", [
    (["--qps", "fast"], "Invalid value for '--qps'"),
    (["-s", "server", "--qps", "-5"], "error: scenario 'server': --qps must be > 0, got -5.0"),
    (["--lambda", "4"], "error: --lambda applies only to the poisson_batch scenario, not 'single_stream'"),
])
def test_a_bad_flag_value_gives_the_one_line_error_and_exit_code_2(examples, sqlite_url, args, message):
    for command in ("run", "submit"):
        proc = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", command,
                               str(examples["arrests-mlp-onnx"]), *args, "--db", sqlite_url],
                              capture_output=True, text=True)
        assert proc.returncode == 2, (command, proc.stderr)
        assert message in proc.stderr, (command, proc.stderr)
        assert "Traceback" not in proc.stderr
        if message.startswith("error:"):  # ours: exactly one line
            assert proc.stderr.strip().count("\n") == 0, proc.stderr


def test_an_unknown_rank_metric_is_one_line_with_exit_code_2(sqlite_url):
    proc = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "results", "--rank-by", "speed",
                           "--db", sqlite_url], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --rank-by: unknown metric 'speed'; known: ")
    assert proc.stderr.strip().count("\n") == 0
