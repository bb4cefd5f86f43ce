"""deploy/: the systemd units and crontab, and the in-process scheduler (bench/schedule.py)."""

from __future__ import annotations

import configparser
import logging
import re
import shlex
import shutil
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from croniter import croniter

from heptathlon.bench.errors import HeptathlonError
from heptathlon.bench.app.schedule import NIGHTLY_CRON, next_fire_times, run_on_schedule, validate_cron

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERVICE = DEPLOY / "heptathlon-nightly.service"
TIMER = DEPLOY / "heptathlon-nightly.timer"
CRONTAB = DEPLOY / "crontab.txt"
INSTALL_ROOT = "/opt/heptathlon"


def _unit(path: Path) -> configparser.ConfigParser:
    # systemd allows repeated keys (several After=), so not strict; keys are case-sensitive.
    cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


def _cron_lines() -> list[str]:
    lines = [ln.strip() for ln in CRONTAB.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#") and not re.match(r"^[A-Z_]+=", ln)]


def test_service_unit_runs_the_nightly_command_once():
    svc = _unit(SERVICE)
    assert set(svc.sections()) == {"Unit", "Service"}
    s = svc["Service"]
    assert s["Type"] == "oneshot"
    argv = shlex.split(s["ExecStart"])
    assert argv[0] == f"{INSTALL_ROOT}/.venv/bin/heptathlon" and argv[1:3] == ["nightly", "--suite"]
    assert s["WorkingDirectory"] == INSTALL_ROOT
    assert "3" in s["SuccessExitStatus"].split()  # "regressions found" is not a unit failure
    assert svc["Unit"]["Description"]


def test_timer_unit_fires_nightly_at_the_cron_time_and_starts_the_service():
    t = _unit(TIMER)
    assert t["Timer"]["Unit"] == SERVICE.name
    assert t["Timer"]["Persistent"] == "true"
    assert t["Install"]["WantedBy"] == "timers.target"
    hh, mm, ss = re.fullmatch(r"\*-\*-\* (\d\d):(\d\d):(\d\d)", t["Timer"]["OnCalendar"]).groups()
    fire = croniter(NIGHTLY_CRON, datetime(2025, 1, 1)).get_next(datetime)
    assert (fire.hour, fire.minute, 0) == (int(hh), int(mm), int(ss))


def test_crontab_line_is_valid_and_on_the_same_schedule():
    (line,) = _cron_lines()
    fields = line.split(None, 5)
    assert " ".join(fields[:5]) == NIGHTLY_CRON
    assert croniter.is_valid(" ".join(fields[:5]))
    command = fields[5]
    assert "heptathlon nightly --suite" in command
    assert "flock -n" in command  # never two nights at once
    assert re.search(r"(?<!\\)%", command) is None  # cron turns a bare % into a newline


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart exists, so point the install root at a stub executable.
    root = tmp_path / "opt-heptathlon"
    exe = root / ".venv" / "bin" / "heptathlon"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    for unit in (SERVICE, TIMER):
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALL_ROOT, str(root)))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", TIMER.name, SERVICE.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""  # no "ignoring" warnings either


# --------------------------------------------------------------------------- in-process schedule


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


class FakeEvent:
    """Event.wait() that advances a fake clock instead of sleeping; set after ``stop_after`` waits."""

    def __init__(self, clock: FakeClock, stop_after: int) -> None:
        self.clock, self.stop_after, self.waits = clock, stop_after, []
        self._set = False

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if len(self.waits) >= self.stop_after:
            self._set = True
            return True
        self.clock.now += timedelta(seconds=timeout)
        return False

    def is_set(self):
        return self._set


START = datetime(2025, 3, 1, 0, 0, tzinfo=timezone.utc)


def test_run_on_schedule_runs_the_job_at_each_fire_time_until_stopped():
    clock = FakeClock(START)
    event = FakeEvent(clock, stop_after=3)
    ran_at = []
    runs = run_on_schedule(NIGHTLY_CRON, lambda: ran_at.append(clock.now), event, now=clock)
    assert runs == 2
    assert ran_at == [datetime(2025, 3, 1, 2, 30, tzinfo=timezone.utc), datetime(2025, 3, 2, 2, 30, tzinfo=timezone.utc)]
    assert event.waits[:2] == [2.5 * 3600, 24 * 3600]


def test_a_failing_job_is_logged_and_the_schedule_goes_on(caplog):
    clock = FakeClock(START)
    calls = []

    def job():
        calls.append(clock.now)
        raise RuntimeError("database is locked")

    with caplog.at_level(logging.ERROR, logger="heptathlon.bench.app.schedule"):
        runs = run_on_schedule("0 * * * *", job, FakeEvent(clock, stop_after=4), now=clock)
    assert runs == 3 and len(calls) == 3
    assert "database is locked" in caplog.text


def test_a_stopped_event_runs_nothing_and_a_bad_expression_fails_first():
    event = threading.Event()
    event.set()
    assert run_on_schedule(NIGHTLY_CRON, lambda: pytest.fail("must not run"), event) == 0
    with pytest.raises(HeptathlonError, match="'61 2 \\* \\* \\*' is not a valid cron expression"):
        run_on_schedule("61 2 * * *", lambda: None, threading.Event())
    with pytest.raises(HeptathlonError):
        validate_cron("every night")


def test_setting_a_real_event_ends_a_long_wait():
    event = threading.Event()
    result = []
    worker = threading.Thread(target=lambda: result.append(run_on_schedule("0 0 1 1 *", lambda: None, event)))
    worker.start()
    event.set()
    worker.join(timeout=60)  # a guard against a hang, not a timing assertion
    assert not worker.is_alive()
    assert result == [0]


def test_next_fire_times():
    assert next_fire_times(NIGHTLY_CRON, datetime(2025, 3, 1, 3, 0, tzinfo=timezone.utc), 2) == [
        datetime(2025, 3, 2, 2, 30, tzinfo=timezone.utc), datetime(2025, 3, 3, 2, 30, tzinfo=timezone.utc)]
