"""``estimate:codecarbon``: CPU and RAM energy estimated by codecarbon, where no counter exists.

codecarbon's ``OfflineEmissionsTracker`` picks its own CPU method. With readable RAPL it
reads RAPL (but then :class:`heptathlon.runners.meters.rapl.RaplMeter` is used instead of this meter).
Without RAPL it models CPU power from a TDP, scaled by machine-wide CPU load
(``cpu_load`` mode); a CPU model missing from its table gets 4 W per thread. RAM power
comes from a model of the DIMM count guessed from the RAM size. Both are estimates, and
each reading's note says what codecarbon did on this machine.

codecarbon swallows its own exceptions (``@suppress(Exception)`` on ``start``/``stop``)
and only logs them. This meter listens to its logger, so a failure becomes an
unavailable reading with codecarbon's own message, and stays off stderr.

The grid carbon intensity for ``co2_g`` also comes from codecarbon's offline data
(:func:`grid_intensity_g_per_kwh`).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from heptathlon.runners.meters.base import EnergyReading, Meter, MeterUnavailable

DEFAULT_COUNTRY_ISO = "USA"
KWH_TO_J = 3.6e6
# codecarbon samples CPU load once a second (its power-monitor thread), so a window
# shorter than that rests on a single load sample.
CODECARBON_MIN_WINDOW_S = 1.0
# codecarbon's stop() measures the tail of a window only if its last periodic measurement
# is >= 50 ms old (_measure_power_and_energy_if_stale), so with periodic measurements up to
# 50 ms per window go uncounted. With a period longer than any window, it measures exactly
# at start() and stop() and the whole window is counted.
CODECARBON_MEASURE_POWER_SECS = 3600.0

_LOGGER_NAME = "codecarbon"


class _LogCapture(logging.Handler):
    """Keeps codecarbon's warnings (with their exceptions) while its stderr handler is muted."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def failure_reason(self) -> str | None:
        for record in reversed(self.records):
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                return f"{type(exc).__name__}: {exc}"
        errors = [r.getMessage() for r in self.records if r.levelno >= logging.ERROR]
        return errors[-1] if errors else None


class _QuietCodecarbon:
    """Mute codecarbon's own stream handlers and capture its records, for one window."""

    def __init__(self) -> None:
        self.capture = _LogCapture()
        self._muted: list[tuple[logging.Handler, int]] = []
        self._logger = logging.getLogger(_LOGGER_NAME)

    def attach(self) -> None:
        if self.capture not in self._logger.handlers:
            self._logger.addHandler(self.capture)
        self.mute_streams()

    def mute_streams(self) -> None:
        # Each tracker constructor installs a fresh StreamHandler, so this runs after it too.
        for handler in self._logger.handlers:
            if isinstance(handler, logging.StreamHandler) and all(handler is not h for h, _ in self._muted):
                self._muted.append((handler, handler.level))
                handler.setLevel(logging.CRITICAL + 1)

    def detach(self) -> None:
        self._logger.removeHandler(self.capture)
        for handler, level in self._muted:
            handler.setLevel(level)
        self._muted = []


class CodecarbonMeter(Meter):
    """Estimated ``cpu_package`` and ``ram`` energy from codecarbon, labelled as estimates."""

    method = "estimate:codecarbon"

    def __init__(self, country_iso: str = DEFAULT_COUNTRY_ISO, why: str = "no RAPL counters",
                 measure_power_secs: float = CODECARBON_MEASURE_POWER_SECS,
                 min_window_s: float = CODECARBON_MIN_WINDOW_S) -> None:
        super().__init__()
        self.country_iso = country_iso
        self.why = why
        self.measure_power_secs = measure_power_secs
        self.min_window_s = min_window_s
        self.domains = ("cpu_package", "ram")
        self._tracker: Any = None
        self._quiet: _QuietCodecarbon | None = None
        self._own_start = 0.0
        self._cc_start: float | None = None

    def _start(self) -> None:
        from codecarbon import OfflineEmissionsTracker

        self._quiet = _QuietCodecarbon()
        self._quiet.attach()
        # A tracker cannot be restarted after stop(), so each window gets a new one; the
        # hardware probe (about 2 s the first time) is cached by codecarbon per process.
        self._tracker = OfflineEmissionsTracker(
            country_iso_code=self.country_iso,
            output_methods=[],  # = save_to_file=False without codecarbon 3's DeprecationWarning
            log_level="warning",  # warnings carry swallowed exceptions; _QuietCodecarbon keeps them off stderr
            measure_power_secs=self.measure_power_secs,
            tracking_mode="machine",
            allow_multiple_runs=True,
            pue=1.0,
        )
        self._quiet.mute_streams()
        self._tracker.start()
        self._own_start = time.perf_counter()
        # Where codecarbon's integration starts; start() swallows errors, so it may be None.
        self._cc_start = getattr(self._tracker, "_start_time", None)

    def _stop(self) -> list[EnergyReading]:
        tracker, quiet = self._tracker, self._quiet
        self._tracker = None
        own_duration = time.perf_counter() - self._own_start
        try:
            tracker.stop()
        finally:
            quiet.detach()
            self._quiet = None
        data = getattr(tracker, "final_emissions_data", None)
        if data is None:
            reason = quiet.capture.failure_reason() or "codecarbon returned no data and logged no reason"
            return [EnergyReading.unavailable(d, self.method, f"codecarbon failed: {reason}") for d in self.domains]
        # data.duration runs to the end of stop(), which loads codecarbon's data files the
        # first time (~0.2 s); the energy only covers start() to the last measurement.
        last = getattr(tracker, "_last_measured_time", None)
        if isinstance(self._cc_start, float) and isinstance(last, float) and last > self._cc_start:
            duration = last - self._cc_start
        else:
            duration = own_duration
        cpu_note, ram_note = self._describe(tracker, data)
        readings = []
        for domain, kwh, note in (("cpu_package", data.cpu_energy, cpu_note), ("ram", data.ram_energy, ram_note)):
            energy_j = float(kwh) * KWH_TO_J
            if not energy_j > 0:
                readings.append(EnergyReading.unavailable(
                    domain, self.method, f"codecarbon reported {kwh!r} kWh over {duration:.3f} s, which is no "
                    "estimate at all (window shorter than its 50 ms measurement floor?)", duration))
            else:
                readings.append(EnergyReading(domain, energy_j, duration, self.method, note=note))
        return readings

    def _abandon(self) -> None:
        if self._tracker is not None:
            try:
                self._tracker.stop()
            except Exception:
                pass  # the window is already lost; close() must not raise
            self._tracker = None
        if self._quiet is not None:
            self._quiet.detach()
            self._quiet = None

    def _describe(self, tracker: Any, data: Any) -> tuple[str, str]:
        """What codecarbon actually did here, from the hardware objects it set up."""
        import codecarbon
        from codecarbon.core.cpu import DEFAULT_POWER_PER_CORE

        prefix = f"estimate, not a measurement ({self.why}): codecarbon {codecarbon.__version__}"
        hardware = getattr(tracker, "_hardware", []) or []
        cpu = next((h for h in hardware if type(h).__name__ == "CPU"), None)
        mode = getattr(cpu, "_mode", None)
        tdp = getattr(cpu, "_tdp", None)
        if mode == "intel_rapl":
            cpu_note = f"{prefix} read RAPL itself ({cpu!r})"
        elif mode in ("cpu_load", "constant") and tdp:
            how = ("scaled by machine-wide CPU load (psutil: other processes' load counts too)"
                   if mode == "cpu_load" else "held constant")
            cpu_note = f"{prefix} modelled CPU power from a TDP of {tdp:g} W {how}"
            if data.cpu_count and tdp == DEFAULT_POWER_PER_CORE * data.cpu_count:
                cpu_note += (f"; that TDP is its default of {DEFAULT_POWER_PER_CORE} W per thread x {data.cpu_count} "
                             f"threads, used when it does not know the CPU model ({data.cpu_model!r})")
        else:
            cpu_note = f"{prefix} estimated CPU power with {cpu!r}"
        ram_note = (f"{prefix} modelled RAM power as {data.ram_power:.1f} W from the RAM size "
                    f"({data.ram_total_size:.1f} GB, via a guessed DIMM count), whatever the load")
        return cpu_note, ram_note


@dataclass(frozen=True)
class GridIntensity:
    g_per_kwh: float
    country_iso: str
    source: str


@functools.lru_cache(maxsize=32)
def grid_intensity_g_per_kwh(country_iso: str) -> GridIntensity:
    """The country's grid carbon intensity from codecarbon's offline energy-mix data.

    Uses codecarbon's own conversion (``Emissions.get_country_emissions``) on 1 kWh.
    Unlike codecarbon, an unknown country is an error rather than a silent world average.
    """
    from codecarbon import __version__ as cc_version
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    iso = country_iso.strip().upper()
    mix = DataSource().get_global_energy_mix_data()
    if iso not in mix:
        raise MeterUnavailable(f"codecarbon has no grid carbon intensity for country {country_iso!r} "
                               "(expected a 3-letter ISO code such as 'USA', 'FRA', 'DEU')")
    entry = mix[iso]
    kg = Emissions(DataSource()).get_country_emissions(
        Energy.from_energy(kWh=1.0), GeoMetadata(country_iso_code=iso, country_name=entry.get("country_name")))
    year = entry.get("year")
    source = f"codecarbon {cc_version} global energy mix, {entry.get('country_name', iso)}"
    if year:
        source += f" ({year})"
    return GridIntensity(g_per_kwh=float(kg) * 1000.0, country_iso=iso, source=source)
