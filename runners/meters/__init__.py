"""Meters: energy and memory measured around the worker's timed window (memory also by the parent).

Usage in the worker (see each function's docstring)::

    selection = select_meters(profile.device, gpu_index, sync=torch.cuda.synchronize)
    idle = measure_idle_power(selection.meters, seconds=max(5.0, selection.min_window_s))
    selection.start(); ...timed window...; readings = selection.stop()
    metrics = energy_metrics(readings, idle, window_s, n_samples, country_iso)
    selection.close()
"""

from heptathlon.runners.meters.base import EnergyReading, Meter, MeterUnavailable, PeriodicSampler, required_window_s
from heptathlon.runners.meters.codecarbon_meter import CodecarbonMeter, GridIntensity, grid_intensity_g_per_kwh
from heptathlon.runners.meters.energy import IdleBaseline, combine_methods, energy_metrics, measure_idle_power
from heptathlon.runners.meters.cgroup_memory import cgroup_dir_of, cgroup_peak_bytes
from heptathlon.runners.meters.memory import GpuMemorySampler, MemoryReading, nvml_process_gpu_memory
from heptathlon.runners.meters.nvml import NvmlEnergyCounterMeter, NvmlPowerSamplingMeter
from heptathlon.runners.meters.rapl import RaplMeter, counter_delta_uj, discover_rapl_zones
from heptathlon.runners.meters.select import MeterSelection, SkippedMethod, parse_device, select_meters
from heptathlon.runners.meters.tree_rss import TreeRssSampler, tree_rss_bytes

__all__ = [
    "CodecarbonMeter",
    "EnergyReading",
    "GpuMemorySampler",
    "GridIntensity",
    "IdleBaseline",
    "MemoryReading",
    "Meter",
    "MeterSelection",
    "MeterUnavailable",
    "NvmlEnergyCounterMeter",
    "NvmlPowerSamplingMeter",
    "PeriodicSampler",
    "RaplMeter",
    "SkippedMethod",
    "TreeRssSampler",
    "cgroup_dir_of",
    "cgroup_peak_bytes",
    "combine_methods",
    "counter_delta_uj",
    "discover_rapl_zones",
    "energy_metrics",
    "grid_intensity_g_per_kwh",
    "measure_idle_power",
    "nvml_process_gpu_memory",
    "parse_device",
    "required_window_s",
    "select_meters",
    "tree_rss_bytes",
]
