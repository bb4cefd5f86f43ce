"""In-process nightly scheduling, for machines without systemd or cron.

Where systemd exists, prefer ``deploy/heptathlon-nightly.timer``; where cron exists,
``deploy/crontab.txt``. This loop is the fallback: it sleeps on ``stop_event`` until the next
time the cron expression fires, runs the job, and repeats. Cron parsing is croniter's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from croniter import croniter

from heptathlon.bench.errors import ScheduleError

log = logging.getLogger(__name__)

NIGHTLY_CRON = "30 2 * * *"  # 02:30 local time; keep in step with deploy/heptathlon-nightly.timer


class StopEvent(Protocol):
    """What the loop needs from ``threading.Event``: wait with a timeout, and a flag."""

    def wait(self, timeout: float | None = None) -> bool: ...

    def is_set(self) -> bool: ...


def _local_now() -> datetime:
    return datetime.now().astimezone()


def validate_cron(cron_expr: str) -> None:
    """Raise ScheduleError naming the expression when croniter cannot parse it."""
    if not isinstance(cron_expr, str) or not croniter.is_valid(cron_expr):
        raise ScheduleError(f"schedule {cron_expr!r} is not a valid cron expression "
                            "(five fields: minute hour day-of-month month day-of-week, e.g. '30 2 * * *')")


def next_fire_times(cron_expr: str, start: datetime, count: int = 1) -> list[datetime]:
    """The next ``count`` times after ``start`` at which ``cron_expr`` fires."""
    validate_cron(cron_expr)
    it = croniter(cron_expr, start)
    return [it.get_next(datetime) for _ in range(count)]


def run_on_schedule(cron_expr: str, job: Callable[[], object], stop_event: StopEvent | threading.Event, *,
                    now: Callable[[], datetime] = _local_now) -> int:
    """Run ``job`` each time ``cron_expr`` fires until ``stop_event`` is set; return how many runs started.

    The wait is ``stop_event.wait(timeout)``, so setting the event ends the loop at once. A job
    that raises is logged and the loop goes on: one bad night must not end the schedule. Firings
    missed while a job was still running are skipped, not queued (the next night's suite covers
    the same series).
    """
    validate_cron(cron_expr)
    runs = 0
    while not stop_event.is_set():
        fire_at = croniter(cron_expr, now()).get_next(datetime)
        # Re-check the wall clock after each wait: Event.wait runs on the monotonic clock, which
        # drifts from wall time across suspend, NTP steps and DST changes.
        while (remaining := (fire_at - now()).total_seconds()) > 0:
            if stop_event.wait(remaining):
                return runs
        if stop_event.is_set():
            break
        runs += 1
        log.info("nightly schedule %r: starting run %d (due %s)", cron_expr, runs, fire_at.isoformat())
        try:
            job()
        except Exception:
            log.exception("nightly schedule %r: run %d failed", cron_expr, runs)
    return runs
