"""NVIDIA GPU energy through NVML (nvidia-ml-py), measured the way Zeus measures it.

- ``counter:nvml`` differences ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the
  driver loaded; Volta and newer) across the window, with an optional sync callback
  (``torch.cuda.synchronize``) at both edges so queued kernels land inside the window.
- ``sampled:nvml-power`` integrates polled power (trapezoid rule) for GPUs without the
  counter. Like Zeus (>= 0.9.1) it prefers the instantaneous power field
  ``NVML_FI_DEV_POWER_INSTANT``; ``nvmlDeviceGetPowerUsage`` is the fallback, and on
  Ampere (except GA100) and newer that is a trailing 1 s average (NVML docs).

``gpu_index`` is an NVML index, which follows PCI bus order. CUDA numbers devices
fastest-first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` is set, so the worker should set it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from heptathlon.runners.meters.base import EnergyReading, Meter, MeterUnavailable, PeriodicSampler

SyncCallback = Callable[[], None]

# The energy counter advances in steps of 20-100 ms depending on the board (PETSc's
# PetscLogGpuEnergyMeter notes; Zeus added approx_instant_energy because windows shorter
# than a step read 0 J). One step over a 1 s window keeps the error near 10%.
NVML_COUNTER_MIN_WINDOW_S = 1.0
# Ampere+ nvmlDeviceGetPowerUsage averages over 1 s, so shorter windows see a smeared edge.
NVML_POWER_MIN_WINDOW_S = 1.0
DEFAULT_POWER_INTERVAL_S = 0.1


def _load_pynvml() -> Any:
    """Import pynvml (nvidia-ml-py). Tests replace this to simulate machines."""
    import pynvml

    return pynvml


def _is_nvml_error(nvml: Any, exc: BaseException, name: str) -> bool:
    cls = getattr(nvml, name, None)
    return isinstance(cls, type) and isinstance(exc, cls)


def explain_nvml_error(nvml: Any, exc: BaseException) -> str:
    """One line a user can act on, for the NVML errors that decide the fallback chain."""
    if _is_nvml_error(nvml, exc, "NVMLError_LibraryNotFound"):
        return "NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver on this machine"
    if _is_nvml_error(nvml, exc, "NVMLError_DriverNotLoaded"):
        return "the NVIDIA driver is not loaded"
    if _is_nvml_error(nvml, exc, "NVMLError_NoPermission"):
        return f"NVML refused the query (insufficient permissions): {exc}"
    if _is_nvml_error(nvml, exc, "NVMLError_NotSupported"):
        return f"not supported by this GPU or driver: {exc}"
    if _is_nvml_error(nvml, exc, "NVMLError_FunctionNotFound"):
        return f"the installed driver's NVML lacks this function: {exc}"
    if _is_nvml_error(nvml, exc, "NVMLError_GpuIsLost"):
        return f"the GPU fell off the bus: {exc}"
    return f"NVML error: {exc}"


class NvmlDevice:
    """An initialised NVML session with one device handle. ``close()`` ends the session.

    NVML reference-counts ``nvmlInit``/``nvmlShutdown``, so several of these can be open
    at once. Raises :class:`MeterUnavailable` with the reason when NVML or the GPU is missing.
    """

    def __init__(self, gpu_index: int = 0, nvml: Any = None) -> None:
        if nvml is None:
            try:
                nvml = _load_pynvml()
            except ImportError as exc:
                raise MeterUnavailable(f"nvidia-ml-py (pynvml) cannot be imported: {exc}") from None
        self.nvml = nvml
        self.gpu_index = gpu_index
        self._open = False
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise MeterUnavailable(explain_nvml_error(nvml, exc)) from None
        self._open = True
        try:
            self.handle = nvml.nvmlDeviceGetHandleByIndex(gpu_index)
        except nvml.NVMLError as exc:
            self.close()
            raise MeterUnavailable(f"no GPU at NVML index {gpu_index}: {explain_nvml_error(nvml, exc)}") from None

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self.nvml.nvmlShutdown()
            except self.nvml.NVMLError:
                pass  # shutting down a session that is already gone changes nothing

    def read_energy_mj(self) -> int:
        return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def read_average_power_w(self) -> float:
        return self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0

    def read_instant_power_w(self) -> float:
        nvml = self.nvml
        fv = nvml.nvmlDeviceGetFieldValues(self.handle, [nvml.NVML_FI_DEV_POWER_INSTANT])[0]
        if fv.nvmlReturn != nvml.NVML_SUCCESS:
            raise nvml.NVMLError(fv.nvmlReturn)
        # The union member that holds the value depends on the driver (Zeus reads siVal).
        member = {
            nvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
            nvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
            nvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
            nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
            nvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
            nvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
            nvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
        }.get(fv.valueType, "uiVal")
        return float(getattr(fv.value, member)) / 1000.0  # mW -> W

    def snapshot(self, suffix: str) -> dict[str, float]:
        """GPU temperature and SM clock, best effort: a missing sensor only drops the key."""
        nvml = self.nvml
        out: dict[str, float] = {}
        try:
            temperature = nvml.nvmlDeviceGetTemperature(self.handle, nvml.NVML_TEMPERATURE_GPU)
            out[f"temperature_c_{suffix}"] = float(temperature)
        except nvml.NVMLError:
            pass
        try:
            out[f"sm_clock_mhz_{suffix}"] = float(nvml.nvmlDeviceGetClockInfo(self.handle, nvml.NVML_CLOCK_SM))
        except nvml.NVMLError:
            pass
        return out


class NvmlEnergyCounterMeter(Meter):
    """``counter:nvml``: the GPU's own energy counter, differenced across the window."""

    method = "counter:nvml"

    def __init__(self, gpu_index: int = 0, sync: SyncCallback | None = None,
                 min_window_s: float = NVML_COUNTER_MIN_WINDOW_S, nvml: Any = None) -> None:
        super().__init__()
        self.gpu_index = gpu_index
        self.sync = sync
        self.min_window_s = min_window_s
        self.domains = ("gpu",)
        self._device = NvmlDevice(gpu_index, nvml)
        try:
            self._device.read_energy_mj()
        except self._device.nvml.NVMLError as exc:
            self._device.close()
            raise MeterUnavailable(
                f"GPU {gpu_index} has no readable energy counter (Volta or newer needed): "
                f"{explain_nvml_error(self._device.nvml, exc)}") from None
        self._start_mj: int | None = None
        self._start_t: float | None = None
        self._start_extra: dict[str, float] = {}

    def _start(self) -> None:
        if self.sync is not None:
            self.sync()
        self._start_extra = self._device.snapshot("start")
        self._start_t, self._start_mj = _timed(self._device.read_energy_mj)

    def _stop(self) -> list[EnergyReading]:
        if self.sync is not None:
            self.sync()
        end_t, end_mj = _timed(self._device.read_energy_mj)
        extra: dict[str, Any] = {"gpu_index": self.gpu_index, **self._start_extra, **self._device.snapshot("end")}
        duration = end_t - self._start_t
        delta_mj = end_mj - self._start_mj
        if delta_mj < 0:
            return [EnergyReading.unavailable(
                "gpu", self.method, f"NVML energy counter went backwards ({self._start_mj} -> {end_mj} mJ): "
                "the driver was reloaded during the window", duration, **extra)]
        if delta_mj == 0:
            return [EnergyReading.unavailable(
                "gpu", self.method, f"NVML energy counter did not advance in {duration:.3f} s: the window is "
                f"shorter than the counter's update period; use at least {self.min_window_s} s", duration, **extra)]
        return [EnergyReading("gpu", delta_mj / 1000.0, duration, self.method, extra=extra)]

    def close(self) -> None:
        super().close()
        self._device.close()


class NvmlPowerSamplingMeter(Meter):
    """``sampled:nvml-power``: polled GPU power integrated over the window (trapezoid rule)."""

    method = "sampled:nvml-power"

    def __init__(self, gpu_index: int = 0, sync: SyncCallback | None = None,
                 interval_s: float = DEFAULT_POWER_INTERVAL_S, min_window_s: float | None = None,
                 nvml: Any = None) -> None:
        super().__init__()
        self.gpu_index = gpu_index
        self.sync = sync
        self.interval_s = interval_s
        self.min_window_s = max(NVML_POWER_MIN_WINDOW_S, 10 * interval_s) if min_window_s is None else min_window_s
        self.domains = ("gpu",)
        self._device = NvmlDevice(gpu_index, nvml)
        nvml_mod = self._device.nvml
        try:
            self._device.read_instant_power_w()
            self.power_source = "NVML_FI_DEV_POWER_INSTANT"
            self._read = self._device.read_instant_power_w
        except nvml_mod.NVMLError:
            try:
                self._device.read_average_power_w()
            except nvml_mod.NVMLError as exc:
                self._device.close()
                raise MeterUnavailable(
                    f"GPU {gpu_index} reports no power: {explain_nvml_error(nvml_mod, exc)}") from None
            self.power_source = "nvmlDeviceGetPowerUsage"
            self._read = self._device.read_average_power_w
        self._sampler: PeriodicSampler | None = None
        self._start_extra: dict[str, float] = {}

    def _start(self) -> None:
        if self.sync is not None:
            self.sync()
        self._start_extra = self._device.snapshot("start")
        self._sampler = PeriodicSampler(self._read, self.interval_s, name=f"nvml-power-{self.gpu_index}")
        self._sampler.start()

    def _stop(self) -> list[EnergyReading]:
        from scipy.integrate import trapezoid

        if self.sync is not None:
            self.sync()
        sampler = self._sampler
        self._sampler = None
        samples = sampler.stop()
        extra: dict[str, Any] = {"gpu_index": self.gpu_index, "power_source": self.power_source,
                                 "samples": len(samples), "interval_s": self.interval_s,
                                 **self._start_extra, **self._device.snapshot("end")}
        duration = samples[-1][0] - samples[0][0] if samples else 0.0
        if sampler.error is not None:
            return [EnergyReading.unavailable(
                "gpu", self.method, f"power polling failed: {explain_nvml_error(self._device.nvml, sampler.error)}",
                duration, **extra)]
        if len(samples) < 2 or duration <= 0:
            return [EnergyReading.unavailable("gpu", self.method, "fewer than two power samples in the window",
                                              duration, **extra)]
        times = [t for t, _ in samples]
        watts = [w for _, w in samples]
        if max(watts) <= 0:
            return [EnergyReading.unavailable("gpu", self.method, "the GPU reported 0 W throughout the window",
                                              duration, **extra)]
        energy = float(trapezoid(watts, times))
        note = None
        if self.power_source == "nvmlDeviceGetPowerUsage":
            note = "power from nvmlDeviceGetPowerUsage, a trailing 1 s average on Ampere and newer"
        return [EnergyReading("gpu", energy, duration, self.method, note=note, extra=extra)]

    def _abandon(self) -> None:
        if self._sampler is not None:
            self._sampler._halt()
            self._sampler = None

    def close(self) -> None:
        super().close()
        self._device.close()


def _timed(read: Callable[[], int]) -> tuple[float, int]:
    value = read()
    return time.perf_counter(), value
