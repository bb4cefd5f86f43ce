"""Peak memory readings, and the GPU's: NVML per-process usage.

Host memory has two meters of its own: the exact cgroup counter
(:mod:`heptathlon.runners.meters.cgroup_memory`) and the sampled process-tree RSS
(:mod:`heptathlon.runners.meters.tree_rss`); all three report a :class:`MemoryReading`.

- :func:`nvml_process_gpu_memory`: GPU memory NVML attributes to the given PIDs now.
- :class:`GpuMemorySampler`: the peak of that over a window, polled on a thread.

An unknown value is a :class:`MemoryReading` with ``peak_bytes=None`` and the reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from heptathlon.bench.errors import RunError
from heptathlon.bench.metrics import MetricValue
from heptathlon.runners.meters.base import MeterUnavailable, PeriodicSampler
from heptathlon.runners.meters.nvml import NvmlDevice, explain_nvml_error

BYTES_PER_MB = 10**6  # "MB" is SI here, as in bench/profile.py
DEFAULT_GPU_MEMORY_INTERVAL_S = 0.1
CHILD_PID_REFRESH_S = 1.0  # walking /proc for children on every sample would cost more than the sample


@dataclass(frozen=True)
class MemoryReading:
    """A peak (or current) memory figure in bytes, how it was obtained, and caveats."""

    peak_bytes: int | None
    method: str
    n: int | None = None
    note: str | None = None
    source: str | None = None

    @property
    def available(self) -> bool:
        return self.peak_bytes is not None

    def to_metric(self, name: str) -> MetricValue:
        """As a registry metric in MB, e.g. ``peak_rss_mb`` or ``gpu_peak_mb``."""
        if self.peak_bytes is None:
            return MetricValue.unavailable(name, self.note or "no reading", attempted=self.method)
        params = {"source": self.source} if self.source else {}
        return MetricValue(name, self.peak_bytes / BYTES_PER_MB, self.method, n=self.n, note=self.note, params=params)


# -- GPU -------------------------------------------------------------------------------

class _NoPerProcessMemory(Exception):
    pass


def _gpu_bytes_for(device: NvmlDevice, pids: set[int]) -> tuple[int, int]:
    """(bytes used by ``pids``, how many of them hold GPU memory)."""
    procs = device.nvml.nvmlDeviceGetComputeRunningProcesses(device.handle)
    mine = [p for p in procs if p.pid in pids]
    if any(p.usedGpuMemory is None for p in mine):
        raise _NoPerProcessMemory("NVML does not report per-process memory on this GPU (MIG, or a WDDM driver)")
    return sum(int(p.usedGpuMemory) for p in mine), len(mine)


def _no_match_reason(pids: Iterable[int]) -> str:
    return (f"none of PIDs {sorted(pids)} holds memory on the GPU; in a container with its own PID namespace NVML "
            "reports host PIDs, which do not match")


def nvml_process_gpu_memory(pids: Iterable[int], gpu_index: int = 0, *, nvml: Any = None) -> MemoryReading:
    """GPU memory NVML attributes to ``pids`` right now (``sampled:nvml-process``)."""
    method = "sampled:nvml-process"
    pid_set = {int(p) for p in pids}
    try:
        device = NvmlDevice(gpu_index, nvml)
    except MeterUnavailable as exc:
        return MemoryReading(None, method, note=str(exc))
    try:
        used, matched = _gpu_bytes_for(device, pid_set)
    except _NoPerProcessMemory as exc:
        return MemoryReading(None, method, note=str(exc))
    except device.nvml.NVMLError as exc:
        return MemoryReading(None, method, note=f"listing GPU processes failed: {explain_nvml_error(device.nvml, exc)}")
    finally:
        device.close()
    if matched == 0:
        return MemoryReading(None, method, note=_no_match_reason(pid_set))
    return MemoryReading(used, method, n=1, note="one NVML snapshot")


class GpuMemorySampler:
    """Peak GPU memory of a set of processes over a window, polled every ``interval_s``.

    With ``include_children`` the PID set also covers the processes' descendants, refreshed
    at most once a second. ``start()``/``stop()`` bracket the window; ``stop()`` returns a
    :class:`MemoryReading`. Raises :class:`MeterUnavailable` at construction when NVML or
    the GPU is missing.
    """

    method = "sampled:nvml-process"

    def __init__(self, pids: Iterable[int], gpu_index: int = 0, interval_s: float = DEFAULT_GPU_MEMORY_INTERVAL_S,
                 include_children: bool = True, nvml: Any = None) -> None:
        self.root_pids = {int(p) for p in pids}
        self.gpu_index = gpu_index
        self.interval_s = interval_s
        self.include_children = include_children
        self._device = NvmlDevice(gpu_index, nvml)
        self._pids = set(self.root_pids)
        self._pids_at = float("-inf")
        self._matched = False
        self._sampler: PeriodicSampler | None = None

    def _current_pids(self) -> set[int]:
        if self.include_children and time.perf_counter() - self._pids_at >= CHILD_PID_REFRESH_S:
            import psutil

            pids = set(self.root_pids)
            for pid in self.root_pids:
                try:
                    pids.update(c.pid for c in psutil.Process(pid).children(recursive=True))
                except psutil.Error:
                    pass  # a process that is gone has no children to add
            self._pids, self._pids_at = pids, time.perf_counter()
        return self._pids

    def _read(self) -> float:
        used, matched = _gpu_bytes_for(self._device, self._current_pids())
        self._matched = self._matched or matched > 0
        return float(used)

    def start(self) -> None:
        self._matched = False
        self._sampler = PeriodicSampler(self._read, self.interval_s, name=f"nvml-memory-{self.gpu_index}")
        try:
            self._sampler.start()
        except Exception as exc:  # kept like a thread error, reported by stop()
            self._sampler.error = exc

    def stop(self) -> MemoryReading:
        sampler, self._sampler = self._sampler, None
        if sampler is None:
            raise RunError("GpuMemorySampler.stop() called without start()")
        samples = sampler.stop() if sampler.error is None else sampler.samples
        if sampler.error is not None:
            error = sampler.error
            reason = str(error) if isinstance(error, _NoPerProcessMemory) else (
                f"GPU memory polling failed: {explain_nvml_error(self._device.nvml, error)}")
            return MemoryReading(None, self.method, n=len(samples), note=reason)
        if not self._matched:
            return MemoryReading(None, self.method, n=len(samples), note=_no_match_reason(self._pids))
        peak = int(max(v for _, v in samples))
        return MemoryReading(peak, self.method, n=len(samples),
                             note=f"polled every {self.interval_s:g} s; a peak shorter than that can be missed")

    @property
    def thread_cpu_s(self) -> float | None:
        return None if self._sampler is None else self._sampler.thread_cpu_s

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler._halt()
            self._sampler = None
        self._device.close()

    def __enter__(self) -> "GpuMemorySampler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
