"""CPU package and DRAM energy from Linux powercap RAPL counters (``counter:rapl``).

Each zone ``<root>/intel-rapl:<pkg>[:<sub>]`` holds ``name``, ``energy_uj`` (a wrapping
counter in microjoules) and ``max_energy_range_uj`` (where it wraps). AMD CPUs expose
the same ``intel-rapl`` tree. Which zones are read, and why:

- ``package-N``: the whole socket, domain ``cpu_package``;
- ``dram`` subzones: memory, domain ``dram``; not part of the package count;
- ``core``/``uncore`` subzones are skipped: they are contained in the package;
- ``psys`` is skipped: it spans the platform and overlaps package and DRAM;
- ``intel-rapl-mmio:*`` is skipped: it duplicates the MSR package counter.

Since Linux 5.10 ``energy_uj`` is readable by root only (CVE-2020-8694, PLATYPUS).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from heptathlon.runners.meters.base import EnergyReading, Meter, MeterUnavailable

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
# RAPL counters update about every 1 ms (Intel SDM, vol. 3B, 15.10); ten updates per window.
RAPL_MIN_WINDOW_S = 0.01
# No single RAPL zone draws this much; a backwards step that would need more is not a wrap.
DEFAULT_MAX_PLAUSIBLE_POWER_W = 1000.0

_ZONE_DIR = re.compile(r"^intel-rapl:\d+(:\d+)?$")


@dataclass(frozen=True)
class RaplZone:
    path: Path
    name: str
    domain: str
    max_energy_range_uj: int

    @property
    def zone_id(self) -> str:
        return self.path.name

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


def discover_rapl_zones(powercap_root: Path | str = DEFAULT_POWERCAP_ROOT) -> list[RaplZone]:
    """The readable zones worth counting, or :class:`MeterUnavailable` saying why there are none."""
    root = Path(powercap_root)
    if not root.is_dir():
        raise MeterUnavailable(f"no RAPL counters: {root} does not exist (no powercap driver, or a VM/container "
                               "that hides it)")
    zones: list[RaplZone] = []
    for zone_dir in sorted(p for p in root.iterdir() if _ZONE_DIR.match(p.name)):
        try:
            name = (zone_dir / "name").read_text().strip()
        except OSError:
            continue
        domain = _domain_for(name, top_level=zone_dir.name.count(":") == 1)
        if domain is None:
            continue
        try:
            max_range = int((zone_dir / "max_energy_range_uj").read_text().strip())
            zone = RaplZone(zone_dir, name, domain, max_range)
            zone.read_uj()
        except PermissionError:
            raise MeterUnavailable(
                f"permission denied reading {zone_dir / 'energy_uj'}: RAPL energy is root-only since Linux 5.10 "
                "(CVE-2020-8694); run the worker as root or grant read access to energy_uj") from None
        except (OSError, ValueError) as exc:
            raise MeterUnavailable(f"RAPL zone {zone_dir} is unreadable: {exc}") from None
        zones.append(zone)
    if not any(z.domain == "cpu_package" for z in zones):
        raise MeterUnavailable(f"no RAPL package zones under {root}")
    return zones


def _domain_for(name: str, top_level: bool) -> str | None:
    if top_level and name.startswith("package"):
        return "cpu_package"
    if name == "dram":
        return "dram"
    return None


def counter_delta_uj(start_uj: int, end_uj: int, max_energy_range_uj: int, duration_s: float,
                     max_plausible_power_w: float = DEFAULT_MAX_PLAUSIBLE_POWER_W) -> tuple[int | None, str | None]:
    """Energy between two readings of a wrapping counter: ``(delta_uj, None)`` or ``(None, reason)``.

    A counter that reads lower at the end wrapped at ``max_energy_range_uj`` once, as long
    as the energy that implies fits in the window at a plausible power. Otherwise the
    counter went backwards (reset, or a broken driver) and the reading is rejected.
    """
    for label, value in (("start", start_uj), ("end", end_uj)):
        if not 0 <= value <= max_energy_range_uj:
            return None, f"counter {label} value {value} uJ is outside 0..{max_energy_range_uj} uJ"
    if end_uj >= start_uj:
        return end_uj - start_uj, None
    wrapped = max_energy_range_uj - start_uj + end_uj
    implied_w = wrapped / 1e6 / duration_s if duration_s > 0 else float("inf")
    if implied_w > max_plausible_power_w:
        return None, (f"counter went backwards ({start_uj} -> {end_uj} uJ); a wrap at {max_energy_range_uj} uJ "
                      f"would mean {implied_w:.3g} W over {duration_s:.3f} s, above the plausible "
                      f"{max_plausible_power_w:g} W, so the counter was reset or is not monotonic")
    return wrapped, None


class RaplMeter(Meter):
    """``counter:rapl``: package and DRAM counters, differenced with wraparound handling."""

    method = "counter:rapl"

    def __init__(self, powercap_root: Path | str = DEFAULT_POWERCAP_ROOT, min_window_s: float = RAPL_MIN_WINDOW_S,
                 max_plausible_power_w: float = DEFAULT_MAX_PLAUSIBLE_POWER_W) -> None:
        super().__init__()
        self.powercap_root = Path(powercap_root)
        self.min_window_s = min_window_s
        self.max_plausible_power_w = max_plausible_power_w
        self.zones = discover_rapl_zones(self.powercap_root)
        self.domains = tuple(dict.fromkeys(z.domain for z in self.zones))
        self._start_uj: list[int] = []
        self._start_t = 0.0

    def _start(self) -> None:
        self._start_uj = [z.read_uj() for z in self.zones]
        self._start_t = time.perf_counter()

    def _stop(self) -> list[EnergyReading]:
        end_uj = [z.read_uj() for z in self.zones]
        duration = time.perf_counter() - self._start_t
        per_domain: dict[str, list[tuple[RaplZone, int | None, str | None]]] = {d: [] for d in self.domains}
        for zone, start, end in zip(self.zones, self._start_uj, end_uj):
            delta, reason = counter_delta_uj(start, end, zone.max_energy_range_uj, duration, self.max_plausible_power_w)
            per_domain[zone.domain].append((zone, delta, reason))
        readings = []
        for domain, parts in per_domain.items():
            extra = {"zones": {z.zone_id: z.name for z, _, _ in parts}}
            rejected = [f"{z.zone_id} ({z.name}): {reason}" for z, _, reason in parts if reason is not None]
            if rejected:
                # A sum that leaves out a socket would look like a valid, smaller number.
                readings.append(EnergyReading.unavailable(domain, self.method, "; ".join(rejected), duration, **extra))
                continue
            total_uj = sum(delta for _, delta, _ in parts)
            if total_uj == 0:
                readings.append(EnergyReading.unavailable(
                    domain, self.method, f"RAPL counters did not advance in {duration:.4f} s: the window is shorter "
                    "than their update period, or the counters are stuck", duration, **extra))
                continue
            energy_j = total_uj / 1e6
            note = None
            shortest_wrap_s = min(z.max_energy_range_uj for z, _, _ in parts) / 1e6 / self.max_plausible_power_w
            if duration > shortest_wrap_s:
                note = (f"window {duration:.0f} s is long enough for a counter to wrap more than once; "
                        "one wrap at most was assumed")
            readings.append(EnergyReading(domain, energy_j, duration, self.method, note=note, extra=extra))
        return readings
