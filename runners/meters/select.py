"""Pick the best meters this machine offers, and record why each better one was skipped.

GPU: ``counter:nvml`` -> ``sampled:nvml-power``.
CPU: ``counter:rapl`` -> ``estimate:codecarbon`` (only with ``allow_estimate``).

A ``cuda`` device gets both chains: the host CPU's energy is part of serving the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heptathlon.bench.errors import ProfileError
from heptathlon.runners.meters.base import EnergyReading, Meter, MeterUnavailable, required_window_s
from heptathlon.runners.meters.codecarbon_meter import DEFAULT_COUNTRY_ISO, CodecarbonMeter
from heptathlon.runners.meters.nvml import NvmlEnergyCounterMeter, NvmlPowerSamplingMeter, SyncCallback
from heptathlon.runners.meters.rapl import DEFAULT_POWERCAP_ROOT, RaplMeter

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class SkippedMethod:
    method: str
    domain: str
    reason: str


@dataclass
class MeterSelection:
    """The chosen meters, in fallback order, and the methods passed over with the reason.

    ``start()`` starts the meters in reverse order and ``stop()`` stops them in order, so
    the precise counters (listed first) sit tightest around the timed window and the
    slow-starting estimate (listed last) wraps them.
    """

    meters: list[Meter]
    skipped: list[SkippedMethod] = field(default_factory=list)
    unmetered: dict[str, str] = field(default_factory=dict)

    @property
    def min_window_s(self) -> float:
        return required_window_s(self.meters)

    @property
    def methods(self) -> list[str]:
        return [m.method for m in self.meters]

    def start(self) -> None:
        for m in reversed(self.meters):
            m.start()

    def stop(self) -> list[EnergyReading]:
        readings: list[EnergyReading] = []
        for m in self.meters:
            readings.extend(m.stop())
        return readings

    def close(self) -> None:
        for m in self.meters:
            m.close()

    def __enter__(self) -> "MeterSelection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """What the run should record: chosen meters, skipped methods and unmetered domains."""
        return {
            "meters": [m.describe() for m in self.meters],
            "skipped": [{"method": s.method, "domain": s.domain, "reason": s.reason} for s in self.skipped],
            "unmetered": dict(self.unmetered),
            "min_window_s": self.min_window_s,
        }


def parse_device(device: str, gpu_index: int | None = None) -> tuple[str, int | None]:
    match = _DEVICE.match(device.strip().lower())
    if match is None:
        raise ProfileError(f"field 'device': expected 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        return "cpu", None
    if gpu_index is None:
        gpu_index = int(index) if index is not None else 0
    return "cuda", gpu_index


def select_meters(device: str, gpu_index: int | None = None,
                  powercap_root: Path | str = DEFAULT_POWERCAP_ROOT, allow_estimate: bool = True, *,
                  sync: SyncCallback | None = None, country_iso: str = DEFAULT_COUNTRY_ISO,
                  power_interval_s: float = 0.1) -> MeterSelection:
    """Build the meters for ``device`` (``cpu``, ``cuda``, ``cuda:N``) along the fallback chain.

    ``gpu_index`` is the NVML index (PCI order) and overrides the one in ``cuda:N``.
    ``sync`` (e.g. ``torch.cuda.synchronize``) is called by the GPU meters at both window
    edges. Nothing here raises for a missing meter: the selection may be empty, and
    ``skipped``/``unmetered`` say why.
    """
    kind, index = parse_device(device, gpu_index)
    selection = MeterSelection(meters=[])
    if kind == "cuda":
        _select_gpu(selection, index, sync, power_interval_s)
    _select_cpu(selection, Path(powercap_root), allow_estimate, country_iso)
    return selection


def _select_gpu(selection: MeterSelection, index: int, sync: SyncCallback | None, interval_s: float) -> None:
    try:
        selection.meters.append(NvmlEnergyCounterMeter(index, sync=sync))
        return
    except MeterUnavailable as exc:
        selection.skipped.append(SkippedMethod(NvmlEnergyCounterMeter.method, "gpu", str(exc)))
    try:
        selection.meters.append(NvmlPowerSamplingMeter(index, sync=sync, interval_s=interval_s))
        return
    except MeterUnavailable as exc:
        selection.skipped.append(SkippedMethod(NvmlPowerSamplingMeter.method, "gpu", str(exc)))
    # codecarbon reads GPUs through NVML too, so it has nothing to fall back on here.
    selection.unmetered["gpu"] = "; ".join(dict.fromkeys(s.reason for s in selection.skipped if s.domain == "gpu"))


def _select_cpu(selection: MeterSelection, powercap_root: Path, allow_estimate: bool, country_iso: str) -> None:
    try:
        selection.meters.append(RaplMeter(powercap_root))
        return
    except MeterUnavailable as exc:
        rapl_reason = str(exc)
        selection.skipped.append(SkippedMethod(RaplMeter.method, "cpu_package", rapl_reason))
    if not allow_estimate:
        reason = "estimates are not allowed for this run (allow_estimate=False)"
        selection.skipped.append(SkippedMethod(CodecarbonMeter.method, "cpu_package", reason))
        selection.unmetered["cpu_package"] = f"{rapl_reason}; {reason}"
        return
    selection.meters.append(CodecarbonMeter(country_iso=country_iso, why=rapl_reason))
