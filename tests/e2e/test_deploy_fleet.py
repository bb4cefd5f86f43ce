"""deploy/: the fleet's systemd units (worker per machine, beat, control worker)."""

from __future__ import annotations

import configparser
import shlex
import subprocess
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
WORKER = DEPLOY / "heptathlon-worker@.service"
BEAT = DEPLOY / "heptathlon-beat.service"
CONTROL = DEPLOY / "heptathlon-control.service"
INSTALL_ROOT = "/opt/heptathlon"


def _unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


def test_the_worker_instance_name_becomes_its_profile_options(tmp_path):
    exec_start = _unit(WORKER)["Service"]["ExecStart"].replace("%i", "cpu-1core,cpu-2core")
    argv = shlex.split(exec_start)
    assert argv[:2] == ["/bin/sh", "-c"]
    script = argv[2].replace(f"{INSTALL_ROOT}/.venv/bin/heptathlon", "echo")
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["worker", "--profile", "cpu-1core", "--profile", "cpu-2core"]
    s = _unit(WORKER)["Service"]
    assert s["RestartPreventExitStatus"] == "2" and s["KillSignal"] == "SIGTERM"  # a refusal is not retried


def test_beat_sends_the_nightly_and_the_control_worker_runs_it():
    beat = shlex.split(_unit(BEAT)["Service"]["ExecStart"])
    assert beat[0] == f"{INSTALL_ROOT}/.venv/bin/heptathlon" and beat[1] == "beat"
    assert beat[beat.index("--schedule") + 1] == "30 2 * * *"  # the timer's and crontab's 02:30
    control = shlex.split(_unit(CONTROL)["Service"]["ExecStart"])
    assert control[1:] == ["worker", "--control"]


def test_fleet_units_pass_systemd_analyze_verify(tmp_path):
    root = tmp_path / "opt-heptathlon"
    exe = root / ".venv" / "bin" / "heptathlon"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    names = []
    for unit, name in ((WORKER, "heptathlon-worker@cpu-1core.service"), (BEAT, BEAT.name), (CONTROL, CONTROL.name)):
        (tmp_path / name).write_text(unit.read_text().replace(INSTALL_ROOT, str(root)))
        names.append(name)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
