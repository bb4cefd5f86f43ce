"""The process-tree RSS meter: peak resident memory of a process and all its descendants.

optimum-benchmark counts only the PID; a model that forks helpers (a ``command`` submission
always does) would be under-reported, so the whole tree is summed. Sampling rides on
:class:`~heptathlon.runners.meters.base.PeriodicSampler` (a sleeping thread, never a spin).
The cgroup counter (:mod:`heptathlon.runners.meters.cgroup_memory`) is exact where it exists;
this sampled peak is the fallback and is recorded beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import psutil

from heptathlon.runners.meters.base import PeriodicSampler
from heptathlon.runners.meters.memory import MemoryReading

DEFAULT_INTERVAL_S = 0.05
# A PSS read walks the page tables of every process in the tree (about 15 ms for a 4 GB
# BERT-base worker: a third of a core at 20 Hz, under that process's mmap lock). Two bounds:
# - PSS is read only when the tree's RSS (statm, O(1) per process) is above every RSS seen
#   before: while memory is flat, as in a benchmark's steady state, the last PSS stands;
# - a PSS read is held to 5% of one core, with waits of at most 0.2 s.
MAX_DUTY = 0.05
MAX_INTERVAL_S = 0.2


Members = Callable[[], Iterable[int]]


def _tree(proc: psutil.Process, members: Members | None = None,
          cache: dict[int, psutil.Process] | None = None) -> list[psutil.Process]:
    """``proc`` and the processes of its run: ``members()`` where given (the run cgroup's
    cgroup.procs, one file read, and a process that double-forked away from the tree is still
    in it), else its descendants (psutil scans every process's /proc/PID/stat for the parent map).
    ``cache`` keeps one psutil.Process per pid between samples, pruned to the current members."""
    if not proc.is_running():  # also catches a reused PID: is_running compares the creation time
        raise psutil.NoSuchProcess(proc.pid)
    listed = list(members()) if members is not None else []
    if not listed:  # no lister, or none readable yet (the worker joins its cgroup as it starts)
        return [proc, *proc.children(recursive=True)]
    cache = {} if cache is None else cache
    seen, out = {proc.pid}, [proc]
    for pid in listed:
        if pid in seen:
            continue
        seen.add(pid)
        p = cache.get(pid)
        if p is None:
            try:
                p = cache[pid] = psutil.Process(pid)
            except psutil.Error:
                continue  # exited between the listing and the read
        out.append(p)
    for pid in [q for q in cache if q not in seen]:
        del cache[pid]
    return out


def tree_rss_bytes(proc: psutil.Process, tree: list[psutil.Process] | None = None) -> int:
    """RSS of ``proc`` and its descendants now; raises psutil.NoSuchProcess once ``proc`` is gone.

    RSS counts a page shared by several processes of the tree (the interpreter, shared
    libraries, a forked model's copy-on-write pages) once per process: :func:`tree_pss_bytes`
    does not."""
    total = 0
    for p in tree if tree is not None else _tree(proc):
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass  # a child that exited between the listing and the read holds no memory
    return total


def tree_pss_bytes(proc: psutil.Process, fallbacks: list[int] | None = None,
                   tree: list[psutil.Process] | None = None) -> int:
    """PSS (proportional set size: each shared page divided among the processes that map it) of
    ``proc`` and its descendants, so the tree's shared pages are counted once in all. A process
    whose smaps cannot be read counts its RSS, and is appended to ``fallbacks``."""
    total = 0
    for p in tree if tree is not None else _tree(proc):
        try:
            total += p.memory_full_info().pss
        except psutil.AccessDenied:
            try:
                total += p.memory_info().rss
                if fallbacks is not None:
                    fallbacks.append(p.pid)
            except psutil.Error:
                pass
        except (psutil.NoSuchProcess, AttributeError):
            pass
    return total


class TreeRssSampler:
    """Peak tree PSS of ``pid`` from ``start()`` until ``stop()`` or until the process exits
    (the class keeps its name: it is the sampled tree-memory meter)."""

    method = "sampled:psutil-tree-pss"

    def __init__(self, pid: int, interval_s: float = DEFAULT_INTERVAL_S, max_duty: float = MAX_DUTY,
                 max_interval_s: float = MAX_INTERVAL_S, members: Members | None = None) -> None:
        self._proc = psutil.Process(pid)
        self._members = members  # the run cgroup's pids, where the run has one (see _tree)
        self._cache: dict[int, psutil.Process] = {}
        self._fallbacks: list[int] = []
        self._rss_max = -1
        self._pss: float | None = None
        self.pss_reads = 0
        self._sampler = PeriodicSampler(self._read, interval_s, name="rss-sampler", max_duty=max_duty,
                                        max_interval_s=max_interval_s)

    def _read(self) -> float:
        tree = _tree(self._proc, self._members, self._cache)  # raises NoSuchProcess once the process is gone
        rss = tree_rss_bytes(self._proc, tree)
        if self._pss is None or rss > self._rss_max:
            self._rss_max = rss
            self._pss = tree_pss_bytes(self._proc, self._fallbacks, tree)
            self.pss_reads += 1
        return self._pss

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
        method = self.method if not self._fallbacks else "sampled:psutil-tree-pss+rss"
        note = "peak PSS summed over the worker's process tree (shared pages counted once), load included"
        if self._fallbacks:
            note += f"; RSS for {len(set(self._fallbacks))} process(es) whose smaps were not readable"
        note += f"; PSS read {self.pss_reads} time(s) in {len(samples)} samples (only when the tree's RSS rose)"
        if self._sampler.stretched and len(samples) > 1:
            span = samples[-1][0] - samples[0][0]
            note += (f"; sampled every {span / (len(samples) - 1):.2g} s on average, not {self._sampler.interval_s:g} s "
                     f"(reads averaged {self._sampler.read_s / len(samples) * 1e3:.2g} ms; held to "
                     f"{self._sampler.max_duty:.0%} of a core), so a short-lived peak can be missed")
        return MemoryReading(peak, method, n=len(samples), note=note)
