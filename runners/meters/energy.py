"""From energy readings to the reported metrics: idle baseline, net energy, per sample, CO2.

Pure arithmetic apart from :func:`measure_idle_power`, which runs the meters over an
idle window. Every value carries the method of the readings it came from; a total that
mixes an estimate with a measurement is labelled as an estimate. An unknown value is
``MetricValue.unavailable`` with the reason, never 0.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from heptathlon.bench.metrics import MetricValue, is_estimate
from heptathlon.runners.meters.base import EnergyReading, Meter, MeterUnavailable, required_window_s
from heptathlon.runners.meters.codecarbon_meter import DEFAULT_COUNTRY_ISO, KWH_TO_J, grid_intensity_g_per_kwh

ENERGY_METRICS = ("energy_gross_j", "energy_j", "energy_per_sample_j", "co2_g")


def combine_methods(methods: Iterable[str]) -> str:
    """One method string for a total: estimates first, so the total reads as an estimate.

    ``["counter:nvml", "estimate:codecarbon"]`` -> ``"estimate:codecarbon+counter:nvml"``.
    """
    parts = {part for m in methods for part in m.split("+")}
    unique = sorted(parts, key=lambda m: (not is_estimate(m), m))
    return "+".join(unique)


@dataclass(frozen=True)
class DomainTotal:
    """All readings of one domain summed (several windows may have been measured)."""

    domain: str
    energy_j: float | None
    duration_s: float
    method: str
    windows: int
    note: str | None


def sum_by_domain(readings: Iterable[EnergyReading]) -> dict[str, DomainTotal]:
    """Sum readings per domain. A domain with any unavailable reading is unavailable as a
    whole: a sum that silently leaves out one window would look like a valid smaller number."""
    grouped: dict[str, list[EnergyReading]] = {}
    for r in readings:
        grouped.setdefault(r.domain, []).append(r)
    out = {}
    for domain, rs in grouped.items():
        method = combine_methods(r.method for r in rs)
        duration = sum(r.duration_s for r in rs)
        missing = [r for r in rs if not r.available]
        notes = list(dict.fromkeys(r.note for r in rs if r.note))
        if missing:
            out[domain] = DomainTotal(domain, None, duration, method, len(rs),
                                      "; ".join(dict.fromkeys(r.note for r in missing if r.note)))
        else:
            out[domain] = DomainTotal(domain, sum(r.energy_j for r in rs), duration, method, len(rs),
                                      "; ".join(notes) or None)
    return out


@dataclass(frozen=True)
class IdleBaseline:
    """Mean idle power per domain, with how it was measured.

    ``power_w`` and ``method`` hold the domains that were measured; ``unavailable`` maps
    the others to the reason.
    """

    power_w: Mapping[str, float]
    method: Mapping[str, str]
    duration_s: float
    unavailable: Mapping[str, str] = field(default_factory=dict)
    # The estimator's noise: SD of the mean power over ``repeats`` idle sub-windows, per domain.
    power_sd_w: Mapping[str, float] = field(default_factory=dict)
    repeats: int = 1

    @classmethod
    def from_readings(cls, readings: Iterable[EnergyReading]) -> "IdleBaseline":
        totals = sum_by_domain(readings)
        power, method, missing = {}, {}, {}
        for domain, t in totals.items():
            if t.energy_j is None:
                missing[domain] = t.note or "no reading"
            elif t.duration_s <= 0:
                missing[domain] = "idle window had no duration"
            else:
                power[domain] = t.energy_j / t.duration_s
                method[domain] = t.method
        duration = max((t.duration_s for t in totals.values()), default=0.0)
        return cls(power_w=power, method=method, duration_s=duration, unavailable=missing)

    @classmethod
    def from_repeats(cls, windows: Sequence[Sequence[EnergyReading]]) -> "IdleBaseline":
        """One baseline from repeated idle windows: the mean power, and its spread between windows."""
        import numpy as np

        parts = [cls.from_readings(w) for w in windows]
        first = parts[0]
        domains = [d for d in first.power_w if all(d in p.power_w for p in parts)]
        power = {d: float(np.mean([p.power_w[d] for p in parts])) for d in domains}
        sd = {d: float(np.std([p.power_w[d] for p in parts], ddof=1)) for d in domains} if len(parts) > 1 else {}
        missing = {**{d: why for p in parts for d, why in p.unavailable.items()},
                   **{d: "not measured in every idle window" for d in first.power_w if d not in domains}}
        return cls(power_w=power, method={d: first.method[d] for d in domains},
                   duration_s=sum(p.duration_s for p in parts), unavailable=missing, power_sd_w=sd,
                   repeats=len(parts))

    def to_json(self) -> dict[str, Any]:
        return {"power_w": dict(self.power_w), "method": dict(self.method), "duration_s": self.duration_s,
                "unavailable": dict(self.unavailable), "power_sd_w": dict(self.power_sd_w), "repeats": self.repeats}


IDLE_REPEATS = 3  # idle sub-windows: their spread is the estimator's noise (energy below resolution)


def measure_idle_power(meters: Sequence[Meter] | Any, seconds: float, repeats: int = IDLE_REPEATS) -> IdleBaseline:
    """Run the meters over ``repeats`` idle windows of ``seconds / repeats`` each and return the
    mean power per domain and its spread between windows (the estimator's noise).

    Each window is stretched to :func:`required_window_s` if it is shorter. Call it in the
    worker after the model is loaded and warmed up, right before the timed window, with
    nothing running: the baseline is then the draw of the loaded-but-idle machine.
    """
    meters = list(getattr(meters, "meters", meters))  # a MeterSelection or a list of meters
    repeats = max(1, int(repeats))
    each = max(seconds / repeats, required_window_s(meters))
    windows = []
    for _ in range(repeats):
        for m in reversed(meters):
            m.start()
        time.sleep(each)  # this wait is the measurement itself, not synchronisation
        readings: list[EnergyReading] = []
        for m in meters:
            readings.extend(m.stop())
        windows.append(readings)
    return IdleBaseline.from_repeats(windows)


RESOLUTION_Z = 2.0  # a net value within 2 SD of the idle noise is below resolution


def net_resolution_j(idle: IdleBaseline, domains: Iterable[str], window_s: float) -> float | None:
    """The smallest net energy over ``window_s`` this baseline can tell from zero: RESOLUTION_Z x the SD
    of (window draw - baseline), with the window's idle draw as noisy as one idle sub-window's and the
    baseline the mean of ``repeats``: sd_P x window x sqrt(1 + 1/repeats), summed over domains in
    quadrature. None without repeated idle windows."""
    import math

    sds = [idle.power_sd_w[d] for d in domains if d in idle.power_sd_w]
    if idle.repeats < 2 or not sds:
        return None
    return RESOLUTION_Z * math.sqrt(sum(sd ** 2 for sd in sds)) * window_s * math.sqrt(1 + 1 / idle.repeats)


def energy_metrics(readings: Iterable[EnergyReading], idle: IdleBaseline | None, window_s: float,
                   n_samples: int, country_iso: str = DEFAULT_COUNTRY_ISO) -> list[MetricValue]:
    """``energy_gross_j``, ``energy_j`` (net of idle), ``energy_per_sample_j`` and ``co2_g``.

    - gross: the sum over domains of what the meters read;
    - net: gross minus, per domain, idle power x ``window_s`` (the timed window the
      readings cover; with repeated windows, their total). A negative net is kept, with
      a note: it means the work's draw was within the noise of the idle baseline;
    - per sample: net / ``n_samples``;
    - CO2: net energy x the grid intensity codecarbon holds for ``country_iso``.

    A domain whose reading is unavailable is left out of the totals, and the note and
    ``params["domains_missing"]`` say so. If no domain is available, or the idle baseline
    misses a measured domain, the affected metrics are unavailable with the reason.
    """
    totals = sum_by_domain(readings)
    available = {d: t for d, t in totals.items() if t.energy_j is not None}
    missing = {d: t.note or "no reading" for d, t in totals.items() if t.energy_j is None}
    if not available:
        reason = ("no energy meter was available" if not totals else
                  "no energy reading: " + "; ".join(f"{d}: {why}" for d, why in missing.items()))
        return [MetricValue.unavailable(name, reason) for name in ENERGY_METRICS]

    windows = max(t.windows for t in available.values())
    params: dict[str, Any] = {"domains": sorted(available), "window_s": window_s}
    notes: list[str] = []
    if missing:
        params["domains_missing"] = dict(missing)
        notes.append("covers " + ", ".join(sorted(available)) + " only; "
                     + "; ".join(f"{d} unavailable: {why}" for d, why in missing.items()))
    notes.extend(t.note for t in available.values() if t.note)
    gross_method = combine_methods(t.method for t in available.values())
    gross_j = sum(t.energy_j for t in available.values())
    note = "; ".join(dict.fromkeys(notes)) or None
    out = [MetricValue("energy_gross_j", gross_j, gross_method, n=windows, note=note,
                       params={**params, "per_domain_j": {d: t.energy_j for d, t in available.items()}})]

    no_idle = ("no idle baseline" if idle is None else
               "; ".join(f"idle baseline lacks {d}: {idle.unavailable.get(d, 'not measured')}"
                         for d in available if d not in idle.power_w))
    if no_idle:
        for name in ("energy_j", "energy_per_sample_j", "co2_g"):
            out.append(MetricValue.unavailable(name, f"net energy needs an idle baseline: {no_idle}", **params))
        return out

    idle_j = {d: idle.power_w[d] * window_s for d in available}
    net_j = gross_j - sum(idle_j.values())
    net_method = combine_methods([gross_method, *(idle.method[d] for d in available)])
    net_params = {**params, "idle_power_w": {d: idle.power_w[d] for d in available}, "idle_j": idle_j}
    resolution = net_resolution_j(idle, available, window_s)
    if resolution is not None:
        net_params |= {"resolution_j": resolution, "idle_power_sd_w": {d: idle.power_sd_w.get(d) for d in available},
                       "idle_repeats": idle.repeats}
    if resolution is not None and abs(net_j) <= resolution:  # never a negative, never a ranked number
        why = (f"below resolution: net {net_j:+.4g} J is within the idle baseline's noise (+-{resolution:.4g} J "
               f"over {window_s:.3g} s, {RESOLUTION_Z:g} SD of {idle.repeats} idle windows); gross {gross_j:.4g} J "
               "is stored")
        for name in ("energy_j", "energy_per_sample_j", "co2_g"):
            out.append(MetricValue.unavailable(name, why, **net_params, below_resolution=True, raw_net_j=net_j))
        return out
    net_notes = list(notes)
    if net_j < 0:
        net_notes.append(f"net energy is negative ({net_j:.4g} J): the work drew less than the idle baseline's "
                         "noise; not clamped to 0")
    net_note = "; ".join(dict.fromkeys(net_notes)) or None
    out.append(MetricValue("energy_j", net_j, net_method, n=windows, note=net_note, params=net_params))

    if n_samples > 0:
        out.append(MetricValue("energy_per_sample_j", net_j / n_samples, net_method, n=n_samples, note=net_note,
                               params={**net_params, "n_samples": n_samples}))
    else:
        out.append(MetricValue.unavailable("energy_per_sample_j", f"no samples were completed (n_samples={n_samples})",
                                           **net_params))

    try:
        grid = grid_intensity_g_per_kwh(country_iso)
    except MeterUnavailable as exc:
        out.append(MetricValue.unavailable("co2_g", str(exc), **net_params))
    else:
        # The intensity is a yearly national average whatever the energy method; the
        # method stays the energy's so estimates and measurements are still told apart.
        out.append(MetricValue("co2_g", net_j / KWH_TO_J * grid.g_per_kwh, net_method, n=windows, note=net_note,
                               params={**net_params, "grid_g_per_kwh": grid.g_per_kwh,
                                       "country_iso": grid.country_iso, "grid_source": grid.source}))
    return out
