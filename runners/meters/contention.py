"""Sampling what the run's cores did: ``/proc/stat`` busy time of the run's cores and the CPU
time of the run's own process tree, on a sleeping thread in the parent (the worker never
reports this about itself). The arithmetic is in :mod:`heptathlon.bench.contention`.

Also: :func:`wait_quiet` (wait until the cores are quiet, as ``pyperf`` asks for a tuned
machine) and :func:`least_loaded_cores` (a profile that asks for "any N cores").
"""

from __future__ import annotations

import glob
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

from heptathlon.bench.contention import ContentionTrace
from heptathlon.runners.meters.tree_rss import _tree

DEFAULT_INTERVAL_S = 0.1
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def core_busy_s(cores: Sequence[int]) -> dict[int, float]:
    """Busy seconds (all but idle and iowait) per core since boot, from /proc/stat."""
    want = {f"cpu{c}": c for c in cores}
    out: dict[int, float] = {}
    with open("/proc/stat") as f:
        for line in f:
            name, _, rest = line.partition(" ")
            if name in want:
                v = [int(x) for x in rest.split()]
                idle = v[3] + (v[4] if len(v) > 4 else 0)
                busy = sum(v[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is in user)
                out[want[name]] = busy / _TICK
    return out


def tree_cpu_s(proc: psutil.Process, tree: list[psutil.Process] | None = None) -> float:
    """User + system CPU seconds of ``proc`` and its descendants (or of ``tree``), reaped children included."""
    total = 0.0
    for p in tree if tree is not None else [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def machine_context(cores: Sequence[int]) -> dict[str, Any]:
    """Load average, and per run core the frequency and governor; the hottest sensor, where readable."""
    ctx: dict[str, Any] = {}
    try:
        ctx["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    freqs, govs = [], set()
    for c in cores:
        base = Path(f"/sys/devices/system/cpu/cpu{c}/cpufreq")
        try:
            freqs.append(int((base / "scaling_cur_freq").read_text()) / 1000)
            govs.add((base / "scaling_governor").read_text().strip())
        except (OSError, ValueError):
            pass
    if freqs:
        ctx["freq_mhz"] = round(sum(freqs) / len(freqs), 1)
    if govs:
        ctx["governor"] = ",".join(sorted(govs))
    temps = []
    for p in glob.glob("/sys/class/thermal/thermal_zone*/temp"):
        try:
            temps.append(int(Path(p).read_text()) / 1000)
        except (OSError, ValueError):
            pass
    if temps:
        ctx["temp_c"] = round(max(temps), 1)
    return ctx


def run_cores(cores: Sequence[int] | None) -> tuple[int, ...]:
    """The cores a run may use: its pinned ones, else all this process may use."""
    return tuple(sorted(cores)) if cores else tuple(sorted(os.sched_getaffinity(0)))


class ContentionSampler:
    """Samples (time, busy seconds of ``cores``, own tree CPU seconds of ``pid``) until ``stop()``."""

    own_method = "psutil-tree-cpu-times"

    def __init__(self, pid: int, cores: Sequence[int] | None, interval_s: float = DEFAULT_INTERVAL_S,
                 members: Callable[[], Iterable[int]] | None = None) -> None:
        self.cores = run_cores(cores)
        self._proc = psutil.Process(pid)
        self._members = members  # the run cgroup's pids, where the run has one (tree_rss._tree)
        self._cache: dict[int, psutil.Process] = {}
        self._interval = interval_s
        self._t: list[int] = []
        self._busy: list[float] = []
        self._own: list[float] = []
        self._last_own = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._context: dict[str, Any] = {}

    def _sample(self) -> None:
        busy = sum(core_busy_s(self.cores).values())
        try:
            own = tree_cpu_s(self._proc, _tree(self._proc, self._members, self._cache))  # NoSuchProcess once gone
        except psutil.Error:
            own = self._last_own
        self._last_own = max(own, self._last_own)  # a child that exited unreaped takes its time along
        self._t.append(time.perf_counter_ns())
        self._busy.append(busy)
        self._own.append(self._last_own)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._sample()
            except OSError:
                return

    def start(self) -> "ContentionSampler":
        self._context = machine_context(self.cores)
        self._sample()
        self._thread = threading.Thread(target=self._run, name="contention-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> ContentionTrace:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        end = machine_context(self.cores)
        ctx = {**self._context, **{f"{k}_end": v for k, v in end.items()}}
        return ContentionTrace(self.cores, list(self._t), list(self._busy), list(self._own), self.own_method, ctx)


def busy_shares(cores: Sequence[int], window_s: float = 0.5) -> dict[int, float]:
    """Each core's busy share over the next ``window_s`` (nothing of ours runs on them then)."""
    a, t0 = core_busy_s(cores), time.perf_counter()
    time.sleep(window_s)
    b, dt = core_busy_s(cores), time.perf_counter() - t0
    return {c: min(1.0, max(0.0, (b[c] - a[c]) / dt)) for c in a if c in b}


def least_loaded_cores(n: int, allowed: Sequence[int] | None = None, window_s: float = 0.5
                       ) -> tuple[list[int], dict[int, float]]:
    """The ``n`` least busy of the allowed cores over ``window_s``, and every allowed core's share."""
    allowed = run_cores(allowed)
    shares = busy_shares(allowed, window_s)
    picked = sorted(sorted(shares, key=lambda c: (shares[c], c))[:n])
    return picked, shares


def wait_quiet(cores: Sequence[int] | None, threshold: float, timeout_s: float, *, window_s: float = 0.5,
               on_progress: Callable[[float, float], None] | None = None) -> tuple[bool, float, float]:
    """Wait until the mean busy share of ``cores`` over a window is at most ``threshold``.

    Returns (quiet, last share, seconds waited). ``on_progress(share, waited_s)`` is called
    after every window that was not quiet.
    """
    cores = run_cores(cores)
    start = time.perf_counter()
    while True:
        shares = busy_shares(cores, window_s)
        share = sum(shares.values()) / max(1, len(shares))
        waited = time.perf_counter() - start
        if share <= threshold:
            return True, share, waited
        if waited >= timeout_s:
            return False, share, waited
        if on_progress:
            on_progress(share, waited)
