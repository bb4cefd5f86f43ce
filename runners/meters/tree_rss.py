"""The process-tree RSS meter: peak resident memory of a process and all its descendants.

optimum-benchmark counts only the PID; a model that forks helpers (a ``command`` submission
always does) would be under-reported, so the whole tree is summed. Sampling rides on
:class:`~heptathlon.runners.meters.base.PeriodicSampler` (a sleeping thread, never a spin).
The cgroup counter (:mod:`heptathlon.runners.meters.cgroup_memory`) is exact where it exists;
this sampled peak is the fallback and is recorded beside it.
"""

from __future__ import annotations

import psutil

from heptathlon.runners.meters.base import PeriodicSampler
from heptathlon.runners.meters.memory import MemoryReading

DEFAULT_INTERVAL_S = 0.05


def tree_rss_bytes(proc: psutil.Process) -> int:
    """RSS of ``proc`` and its descendants now; raises psutil.NoSuchProcess once ``proc`` is gone."""
    if not proc.is_running():  # also catches a reused PID: is_running compares the creation time
        raise psutil.NoSuchProcess(proc.pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass  # a child that exited between the listing and the read holds no memory
    return total


class TreeRssSampler:
    """Peak tree RSS of ``pid`` from ``start()`` until ``stop()`` or until the process exits."""

    method = "sampled:psutil-tree"

    def __init__(self, pid: int, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self._proc = psutil.Process(pid)
        self._sampler = PeriodicSampler(lambda: tree_rss_bytes(self._proc), interval_s, name="rss-sampler")

    def start(self) -> "TreeRssSampler":
        try:
            self._sampler.start()
        except psutil.NoSuchProcess:
            pass  # exited before the first sample: a zero peak from zero samples, as stop() reports
        return self

    def stop(self) -> MemoryReading:
        # A process that exited ends the sampling with NoSuchProcess in sampler.error: that is
        # the normal end of a run, and the samples taken until then are the reading.
        samples = self._sampler.stop()
        peak = int(max((v for _, v in samples), default=0))
        return MemoryReading(peak, self.method, n=len(samples), note="peak over the worker's process tree, load included")
