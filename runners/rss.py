"""Peak resident memory of a process tree, sampled by a thread that sleeps between samples.

optimum-benchmark counts only the PID; a model that forks helpers (a ``command`` submission
always does) would be under-reported, so the whole tree is summed.
"""

from __future__ import annotations

import threading

import psutil

DEFAULT_INTERVAL_S = 0.05


def tree_rss_bytes(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class TreeRssSampler:
    method = "sampled:psutil-tree"

    def __init__(self, pid: int, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.n = 0
        self._proc = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        while True:
            try:
                rss = tree_rss_bytes(self._proc)
            except psutil.NoSuchProcess:
                return
            if rss > self.peak_bytes:
                self.peak_bytes = rss
            self.n += 1
            if self._stop.wait(self.interval_s):  # sleeps; never spins
                return

    def start(self) -> "TreeRssSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
