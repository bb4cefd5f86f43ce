"""Meters around the worker's timed window (energy; GPU memory on CUDA profiles).

The worker calls ``open_meters`` after warm-up (it also measures the idle baseline), starts
the selection just before the timed loop and stops it just after. Readings travel to the
parent as JSON; the parent turns them into metrics with ``heptathlon.runners.meters.energy_metrics``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from heptathlon.bench.profile import Profile
from heptathlon.bench.types import MeterSettings


@dataclasses.dataclass
class OpenMeters:
    selection: Any  # heptathlon.runners.meters.MeterSelection
    idle: Any  # heptathlon.runners.meters.IdleBaseline
    gpu_memory: Any = None  # heptathlon.runners.meters.GpuMemorySampler
    min_window_s: float = 0.0

    def start(self) -> None:
        if self.gpu_memory is not None:
            self.gpu_memory.start()
        self.selection.start()

    def stop(self) -> dict[str, Any]:
        readings = self.selection.stop()
        out: dict[str, Any] = {"readings": [dataclasses.asdict(r) for r in readings], "idle": self.idle.to_json(),
                               "selection": self.selection.describe()}
        if self.gpu_memory is not None:
            out["gpu_memory"] = dataclasses.asdict(self.gpu_memory.stop())
        self.selection.close()
        return out


def open_meters(settings: MeterSettings, profile: Profile, pids: list[int] | None = None,
                sync_gpu: bool = True) -> OpenMeters | None:
    """``pids``: the processes whose GPU memory counts (the worker and its model process); default this one.
    ``sync_gpu=False`` where the model runs in another process: a synchronize here would only
    create a CUDA context in the worker (each answer already ends after the model process synchronised)."""
    if not settings.enabled:
        return None
    from heptathlon.runners.meters import GpuMemorySampler, measure_idle_power, select_meters

    sync = None
    gpu_index = (profile.gpu.index if profile.gpu else 0) if profile.device == "cuda" else None
    if profile.device == "cuda" and sync_gpu:
        import torch

        sync = torch.cuda.synchronize
    sel = select_meters(profile.device, gpu_index, sync=sync, country_iso=settings.country_iso,
                        allow_estimate=settings.allow_estimate)
    idle = measure_idle_power(sel, seconds=max(settings.idle_s, sel.min_window_s))
    gpu_mem = GpuMemorySampler(list(pids or [os.getpid()]), gpu_index) if profile.device == "cuda" else None
    return OpenMeters(sel, idle, gpu_mem, sel.min_window_s)


def energy_values(payload: dict[str, Any] | None, window_s: float, n_samples: int, country_iso: str,
                  disabled_reason: str | None = None) -> list:
    """Parent side: MetricValues from the worker's meter payload (never 0 J for 'unknown')."""
    from heptathlon.runners.meters import EnergyReading, IdleBaseline, energy_metrics
    from heptathlon.bench.metrics import MetricValue

    names = ("energy_gross_j", "energy_j", "energy_per_sample_j", "co2_g")
    if payload is None:
        reason = disabled_reason or "meters were not run"
        return [MetricValue.unavailable(n, reason) for n in names]
    readings = [EnergyReading(**r) for r in payload["readings"]]
    idle = IdleBaseline(**payload["idle"])
    values = energy_metrics(readings, idle, window_s, n_samples, country_iso)
    gm = payload.get("gpu_memory")
    if gm is not None:
        from heptathlon.runners.meters import MemoryReading

        values.append(MemoryReading(**gm).to_metric("gpu_peak_mb"))
    return values
