"""Meters: RAPL parsing, the fallback chain, NVML arithmetic against a scripted pynvml,
codecarbon failures, energy metrics and memory readers.

No GPU and no RAPL are needed: NVML is replaced by FakeNvml (real pynvml error classes
and constants, scripted answers) and RAPL by a powercap tree in tmp_path. codecarbon is
the real library.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pynvml
import pytest

import heptathlon.runners.meters.nvml as nvml_module
from heptathlon.bench.errors import HeptathlonError, MeterError, ProfileError, RunError
from heptathlon.runners.meters import (
    CodecarbonMeter,
    EnergyReading,
    GpuMemorySampler,
    IdleBaseline,
    Meter,
    MeterUnavailable,
    NvmlEnergyCounterMeter,
    NvmlPowerSamplingMeter,
    PeriodicSampler,
    RaplMeter,
    cgroup_dir_of,
    cgroup_peak_bytes,
    combine_methods,
    counter_delta_uj,
    energy_metrics,
    grid_intensity_g_per_kwh,
    measure_idle_power,
    nvml_process_gpu_memory,
    required_window_s,
    select_meters,
)
from heptathlon.runners.meters.rapl import RaplZone

MAX_UJ = 262_143_328_850  # a real package max_energy_range_uj


# -- fakes -----------------------------------------------------------------------------

class FakeNvml:
    """Stands in for the pynvml module: its constants and error classes, scripted answers."""

    def __init__(self, energy_mj=(1_000_000,), power_mw=(100_000,), instant_mw=None, init_error=None,
                 energy_error=None, power_error=None, procs=(), events=None, on_power=None):
        self._energy = itertools.chain(energy_mj, itertools.repeat(energy_mj[-1]))
        self._power = itertools.chain(power_mw, itertools.repeat(power_mw[-1]))
        self.instant_mw = instant_mw
        self.init_error = init_error
        self.energy_error = energy_error
        self.power_error = power_error
        self.procs = list(procs)
        self.events = [] if events is None else events
        self.on_power = on_power
        self.inits = 0
        self.shutdowns = 0

    def __getattr__(self, name):
        if name.startswith(("NVML_", "NVMLError")):
            return getattr(pynvml, name)
        raise AttributeError(name)

    def nvmlInit(self):
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, index):
        if index != 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return "gpu0"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self.energy_error is not None:
            raise pynvml.NVMLError(self.energy_error)
        value = next(self._energy)
        self.events.append(("energy", value))
        return value

    def nvmlDeviceGetPowerUsage(self, handle):
        if self.power_error is not None:
            raise pynvml.NVMLError(self.power_error)
        value = next(self._power)
        if self.on_power is not None:
            self.on_power()
        return value

    def nvmlDeviceGetFieldValues(self, handle, field_ids):
        assert field_ids == [pynvml.NVML_FI_DEV_POWER_INSTANT]
        if self.instant_mw is None:
            return [SimpleNamespace(nvmlReturn=pynvml.NVML_ERROR_NOT_SUPPORTED, valueType=0, value=None)]
        return [SimpleNamespace(nvmlReturn=pynvml.NVML_SUCCESS, valueType=pynvml.NVML_VALUE_TYPE_UNSIGNED_INT,
                                value=SimpleNamespace(uiVal=self.instant_mw))]

    def nvmlDeviceGetTemperature(self, handle, sensor):
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return 40 + len(self.events)

    def nvmlDeviceGetClockInfo(self, handle, clock):
        assert clock == pynvml.NVML_CLOCK_SM
        return 1410

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.procs]


def use_nvml(monkeypatch, fake):
    monkeypatch.setattr(nvml_module, "_load_pynvml", lambda: fake)
    return fake


def make_zone(root: Path, zone: str, name: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    d = root / zone
    d.mkdir(parents=True)
    (d / "name").write_text(f"{name}\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def set_counter(zone_dir: Path, energy_uj: int) -> None:
    (zone_dir / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def powercap(tmp_path):
    """Two sockets with core/dram subzones, plus the zones that must not be counted."""
    root = tmp_path / "powercap"
    zones = {
        "pkg0": make_zone(root, "intel-rapl:0", "package-0", 1_000_000),
        "core0": make_zone(root, "intel-rapl:0:0", "core", 500_000),
        "dram0": make_zone(root, "intel-rapl:0:1", "dram", 200_000),
        "pkg1": make_zone(root, "intel-rapl:1", "package-1", 3_000_000),
        "psys": make_zone(root, "intel-rapl:2", "psys", 9_000_000),
        "mmio": make_zone(root, "intel-rapl-mmio:0", "package-0", 7_000_000),
    }
    (root / "intel-rapl").mkdir()  # the control-type directory has no counters
    return root, zones


class FakeMeter(Meter):
    """A meter whose readings are given, for the arithmetic around meters."""

    method = "counter:fake"

    def __init__(self, readings, min_window_s=0.0):
        super().__init__()
        self._readings = readings
        self.domains = tuple(r.domain for r in readings)
        self.min_window_s = min_window_s

    def _start(self):
        pass

    def _stop(self):
        return list(self._readings)


def metrics_by_name(values):
    return {v.name: v for v in values}


# -- RAPL ------------------------------------------------------------------------------

def test_rapl_sums_packages_and_reads_dram_but_skips_core_psys_and_mmio(powercap):
    root, zones = powercap
    meter = RaplMeter(root)
    assert meter.domains == ("cpu_package", "dram")
    assert sorted(z.zone_id for z in meter.zones) == ["intel-rapl:0", "intel-rapl:0:1", "intel-rapl:1"]

    meter.start()
    set_counter(zones["pkg0"], 1_000_000 + 2_500_000)
    set_counter(zones["pkg1"], 3_000_000 + 1_500_000)
    set_counter(zones["dram0"], 200_000 + 750_000)
    set_counter(zones["core0"], 900_000_000)
    set_counter(zones["psys"], 900_000_000)
    set_counter(zones["mmio"], 900_000_000)
    readings = {r.domain: r for r in meter.stop()}

    assert readings["cpu_package"].energy_j == pytest.approx(4.0)
    assert readings["cpu_package"].method == "counter:rapl"
    assert readings["cpu_package"].extra["zones"] == {"intel-rapl:0": "package-0", "intel-rapl:1": "package-1"}
    assert readings["dram"].energy_j == pytest.approx(0.75)


def test_rapl_counter_wraps_at_max_energy_range():
    assert counter_delta_uj(MAX_UJ - 100, 50, MAX_UJ, duration_s=1.0) == (150, None)
    assert counter_delta_uj(10, 60, MAX_UJ, duration_s=1.0) == (50, None)


def test_rapl_meter_handles_a_wrap_inside_the_window(powercap):
    root, zones = powercap
    set_counter(zones["pkg0"], MAX_UJ - 4)
    meter = RaplMeter(root)
    meter.start()
    set_counter(zones["pkg0"], 6)  # wrapped: 10 uJ in the window
    set_counter(zones["pkg1"], 3_000_000 + 20)
    set_counter(zones["dram0"], 200_000 + 5)
    readings = {r.domain: r for r in meter.stop()}
    assert readings["cpu_package"].energy_j == pytest.approx(30e-6)


def test_rapl_counter_going_backwards_is_rejected_with_a_reason():
    delta, reason = counter_delta_uj(1_000_000, 999_000, MAX_UJ, duration_s=1.0)
    assert delta is None
    assert "went backwards" in reason and "plausible" in reason


def test_rapl_counter_outside_its_range_is_rejected():
    delta, reason = counter_delta_uj(MAX_UJ + 1, 5, MAX_UJ, duration_s=1.0)
    assert delta is None and "outside" in reason


def test_rapl_meter_reports_a_backwards_package_as_unavailable_not_as_a_smaller_sum(powercap):
    root, zones = powercap
    meter = RaplMeter(root)
    meter.start()
    set_counter(zones["pkg0"], 999_000)  # went backwards by 1 J
    set_counter(zones["pkg1"], 3_000_000 + 1_500_000)
    set_counter(zones["dram0"], 200_000 + 750_000)
    readings = {r.domain: r for r in meter.stop()}
    assert readings["cpu_package"].energy_j is None
    assert "intel-rapl:0 (package-0)" in readings["cpu_package"].note
    assert "went backwards" in readings["cpu_package"].note
    assert readings["dram"].energy_j == pytest.approx(0.75)


def test_rapl_counter_that_did_not_move_is_unavailable_not_zero(powercap):
    root, _ = powercap
    meter = RaplMeter(root)
    meter.start()
    readings = meter.stop()
    assert all(r.energy_j is None for r in readings)
    assert all("did not advance" in r.note for r in readings)


def test_rapl_missing_root_and_permission_denied_say_why(powercap, monkeypatch, tmp_path):
    with pytest.raises(MeterUnavailable, match="does not exist"):
        RaplMeter(tmp_path / "nowhere")

    root, _ = powercap

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self.path / "energy_uj"))

    monkeypatch.setattr(RaplZone, "read_uj", denied)
    with pytest.raises(MeterUnavailable, match="permission denied.*root-only since Linux 5.10"):
        RaplMeter(root)


# -- fallback chain ----------------------------------------------------------------------

def test_cpu_chain_without_rapl_falls_back_to_the_codecarbon_estimate(tmp_path):
    selection = select_meters("cpu", powercap_root=tmp_path / "no-powercap")
    assert selection.methods == ["estimate:codecarbon"]
    assert [(s.method, s.domain) for s in selection.skipped] == [("counter:rapl", "cpu_package")]
    assert "does not exist" in selection.skipped[0].reason
    assert selection.meters[0].why == selection.skipped[0].reason
    assert selection.unmetered == {}


def test_cpu_chain_with_permission_denied_rapl_records_it(powercap, monkeypatch):
    root, _ = powercap
    monkeypatch.setattr(RaplZone, "read_uj", lambda self: (_ for _ in ()).throw(PermissionError(13, "denied")))
    selection = select_meters("cpu", powercap_root=root)
    assert selection.methods == ["estimate:codecarbon"]
    assert "permission denied" in selection.skipped[0].reason


def test_estimates_can_be_refused(tmp_path):
    selection = select_meters("cpu", powercap_root=tmp_path / "none", allow_estimate=False)
    assert selection.meters == []
    assert [s.method for s in selection.skipped] == ["counter:rapl", "estimate:codecarbon"]
    assert "allow_estimate=False" in selection.unmetered["cpu_package"]


def test_gpu_chain_when_nvidia_ml_py_is_missing(monkeypatch, tmp_path):
    def missing():
        raise ImportError("No module named 'pynvml'")

    monkeypatch.setattr(nvml_module, "_load_pynvml", missing)
    selection = select_meters("cuda:0", powercap_root=tmp_path / "none")
    assert selection.methods == ["estimate:codecarbon"]
    gpu_skips = [s for s in selection.skipped if s.domain == "gpu"]
    assert [s.method for s in gpu_skips] == ["counter:nvml", "sampled:nvml-power"]
    assert all("cannot be imported" in s.reason for s in gpu_skips)
    assert "cannot be imported" in selection.unmetered["gpu"]


def test_gpu_chain_when_the_driver_library_is_missing(monkeypatch, tmp_path):
    use_nvml(monkeypatch, FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    selection = select_meters("cuda", powercap_root=tmp_path / "none")
    assert "libnvidia-ml.so.1" in selection.unmetered["gpu"]


def test_gpu_without_energy_counter_falls_back_to_power_sampling(monkeypatch, powercap):
    fake = use_nvml(monkeypatch, FakeNvml(energy_error=pynvml.NVML_ERROR_NOT_SUPPORTED))
    root, _ = powercap
    selection = select_meters("cuda:0", powercap_root=root)
    assert selection.methods == ["sampled:nvml-power", "counter:rapl"]
    assert [(s.method, s.domain) for s in selection.skipped] == [("counter:nvml", "gpu")]
    assert "no readable energy counter" in selection.skipped[0].reason
    assert "Not Supported" in selection.skipped[0].reason
    selection.close()
    assert fake.inits == fake.shutdowns == 2  # the failed probe closed its own NVML session


def test_gpu_with_counter_and_rapl_uses_both_counters(monkeypatch, powercap):
    use_nvml(monkeypatch, FakeNvml())
    root, _ = powercap
    selection = select_meters("cuda:0", powercap_root=root)
    assert selection.methods == ["counter:nvml", "counter:rapl"]
    assert selection.skipped == [] and selection.unmetered == {}
    assert selection.min_window_s == 1.0


def test_gpu_without_counter_or_power_is_unmetered(monkeypatch, tmp_path):
    use_nvml(monkeypatch, FakeNvml(energy_error=pynvml.NVML_ERROR_NOT_SUPPORTED,
                                   power_error=pynvml.NVML_ERROR_NOT_SUPPORTED))
    selection = select_meters("cuda:0", powercap_root=tmp_path / "none")
    assert "reports no power" in selection.unmetered["gpu"]
    assert selection.methods == ["estimate:codecarbon"]


def test_missing_gpu_index_is_a_reason_not_a_crash(monkeypatch, tmp_path):
    use_nvml(monkeypatch, FakeNvml())
    selection = select_meters("cuda:3", powercap_root=tmp_path / "none")
    assert "no GPU at NVML index 3" in selection.unmetered["gpu"]


def test_unknown_device_is_a_profile_error():
    with pytest.raises(ProfileError, match="'device'"):
        select_meters("tpu")


# -- NVML energy counter -------------------------------------------------------------------

def test_nvml_counter_converts_mj_to_j_and_syncs_at_both_edges():
    events = []
    fake = FakeNvml(energy_mj=(5, 1_000_000, 1_250_500), events=events)
    meter = NvmlEnergyCounterMeter(0, sync=lambda: events.append(("sync", None)), nvml=fake)
    events.clear()  # drop the constructor's probe read

    meter.start()
    events.append(("work", None))
    [reading] = meter.stop()

    assert [e for e, _ in events] == ["sync", "energy", "work", "sync", "energy"]
    assert reading.domain == "gpu" and reading.method == "counter:nvml"
    assert reading.energy_j == pytest.approx(250.5)
    assert reading.duration_s >= 0
    assert {"temperature_c_start", "temperature_c_end", "sm_clock_mhz_start", "sm_clock_mhz_end"} <= set(reading.extra)
    assert reading.extra["sm_clock_mhz_end"] == 1410.0
    assert reading.extra["temperature_c_end"] > reading.extra["temperature_c_start"]


def test_nvml_counter_that_did_not_advance_is_unavailable_not_zero():
    meter = NvmlEnergyCounterMeter(0, nvml=FakeNvml(energy_mj=(7, 7, 7)))
    meter.start()
    [reading] = meter.stop()
    assert reading.energy_j is None
    assert "did not advance" in reading.note


def test_nvml_counter_going_backwards_is_unavailable():
    meter = NvmlEnergyCounterMeter(0, nvml=FakeNvml(energy_mj=(0, 900, 100)))
    meter.start()
    [reading] = meter.stop()
    assert reading.energy_j is None and "went backwards" in reading.note


def test_a_failing_sync_callback_costs_the_reading_not_the_run():
    def broken_sync():
        raise RuntimeError("CUDA error: device-side assert")

    meter = NvmlEnergyCounterMeter(0, sync=broken_sync, nvml=FakeNvml(energy_mj=(0, 1, 2)))
    meter.start()
    [reading] = meter.stop()
    assert reading.energy_j is None
    assert "device-side assert" in reading.note


def test_meter_verbs_out_of_order_raise():
    meter = NvmlEnergyCounterMeter(0, nvml=FakeNvml())
    with pytest.raises(RunError):
        meter.stop()
    meter.start()
    with pytest.raises(RunError):
        meter.start()


def test_nvml_meter_close_shuts_its_session_once():
    fake = FakeNvml()
    meter = NvmlEnergyCounterMeter(0, nvml=fake)
    meter.close()
    meter.close()
    assert (fake.inits, fake.shutdowns) == (1, 1)


# -- NVML power sampling -------------------------------------------------------------------

def test_power_sampling_integrates_the_edge_samples_with_the_trapezoid_rule():
    # A one-hour interval: the thread never samples, so only the two edge samples exist.
    fake = FakeNvml(power_mw=(50_000, 100_000, 300_000))
    meter = NvmlPowerSamplingMeter(0, interval_s=3600, nvml=fake)
    assert meter.power_source == "nvmlDeviceGetPowerUsage"
    meter.start()
    [reading] = meter.stop()
    assert reading.method == "sampled:nvml-power"
    assert reading.extra["samples"] == 2
    assert reading.energy_j == pytest.approx((100 + 300) / 2 * reading.duration_s)
    assert "1 s average" in reading.note


def test_power_sampling_prefers_instant_power_like_zeus():
    meter = NvmlPowerSamplingMeter(0, interval_s=3600, nvml=FakeNvml(instant_mw=150_000))
    assert meter.power_source == "NVML_FI_DEV_POWER_INSTANT"
    meter.start()
    [reading] = meter.stop()
    assert reading.energy_j == pytest.approx(150 * reading.duration_s)
    assert reading.extra["power_source"] == "NVML_FI_DEV_POWER_INSTANT"


def test_power_sampling_thread_polls_between_the_edges():
    enough = threading.Event()
    calls = itertools.count(1)
    fake = FakeNvml(power_mw=(100_000,), on_power=lambda: next(calls) >= 6 and enough.set())
    meter = NvmlPowerSamplingMeter(0, interval_s=0.001, nvml=fake)  # probe read is call 1
    meter.start()
    assert enough.wait(timeout=30), "the sampler thread never polled"
    [reading] = meter.stop()
    assert reading.extra["samples"] >= 5
    assert reading.energy_j == pytest.approx(100 * reading.duration_s)


def test_periodic_sampler_keeps_a_thread_error():
    calls = itertools.count()

    def read():
        if next(calls) >= 2:
            raise ValueError("sensor gone")
        return 1.0

    sampler = PeriodicSampler(read, interval_s=0.001)
    sampler.start()
    sampler._thread.join(timeout=30)
    samples = sampler.stop()
    assert isinstance(sampler.error, ValueError)
    assert [v for _, v in samples] == [1.0, 1.0]
    assert sampler.thread_cpu_s is not None


# -- codecarbon ------------------------------------------------------------------------------

def test_codecarbon_estimate_on_this_machine_is_labelled_explained_and_quiet(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    meter = CodecarbonMeter(country_iso="USA", why="no RAPL counters: test")
    meter.start()
    threading.Event().wait(0.2)  # the measured window, not synchronisation
    readings = {r.domain: r for r in meter.stop()}
    assert set(readings) == {"cpu_package", "ram"}
    for r in readings.values():
        assert r.method == "estimate:codecarbon" and r.is_estimate
        assert r.energy_j is not None and r.energy_j > 0
        assert r.note.startswith("estimate, not a measurement (no RAPL counters: test): codecarbon ")
    assert "TDP" in readings["cpu_package"].note or "RAPL" in readings["cpu_package"].note
    assert "RAM size" in readings["ram"].note
    assert list(tmp_path.iterdir()) == []  # no emissions.csv
    assert "codecarbon" not in capfd.readouterr().err


def test_codecarbon_swallowed_exception_becomes_unavailable_with_its_message(monkeypatch, tmp_path):
    import codecarbon

    monkeypatch.chdir(tmp_path)

    def explode(self):
        raise RuntimeError("grid data exploded")

    # codecarbon's stop() catches everything (@suppress) and only logs it.
    monkeypatch.setattr(codecarbon.OfflineEmissionsTracker, "_prepare_emissions_data", explode)
    meter = CodecarbonMeter()
    meter.start()
    readings = meter.stop()
    assert [r.domain for r in readings] == ["cpu_package", "ram"]
    assert all(r.energy_j is None for r in readings)
    assert all("grid data exploded" in r.note for r in readings)


def test_codecarbon_raising_outright_becomes_unavailable(monkeypatch):
    import codecarbon

    class Broken:
        def __init__(self, **kwargs):
            raise OSError("cpuinfo unreadable")

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", Broken)
    meter = CodecarbonMeter()
    meter.start()
    readings = meter.stop()
    assert all(r.energy_j is None and "cpuinfo unreadable" in r.note for r in readings)
    values = energy_metrics(readings, None, window_s=1.0, n_samples=10)
    assert all(v.value is None and v.method == "unavailable" for v in values)
    assert all("cpuinfo unreadable" in v.note for v in values)


def test_codecarbon_zero_kwh_is_unavailable_not_zero(monkeypatch):
    import codecarbon

    class ZeroTracker:
        made = []

        def __init__(self, **kwargs):
            self.kwargs = kwargs
            self.made.append(self)

        def start(self):
            pass

        def stop(self):
            self.final_emissions_data = SimpleNamespace(
                duration=0.01, cpu_energy=0.0, ram_energy=1e-7, cpu_count=2, cpu_model="x",
                ram_power=20.0, ram_total_size=8.0)

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", ZeroTracker)
    meter = CodecarbonMeter(country_iso="FRA")
    meter.start()
    readings = {r.domain: r for r in meter.stop()}
    assert readings["cpu_package"].energy_j is None and "0.0 kWh" in readings["cpu_package"].note
    assert readings["ram"].energy_j == pytest.approx(1e-7 * 3.6e6)
    kwargs = ZeroTracker.made[0].kwargs
    assert kwargs["country_iso_code"] == "FRA" and kwargs["output_methods"] == []


def test_grid_intensity_comes_from_codecarbon_and_unknown_countries_are_refused():
    usa = grid_intensity_g_per_kwh("usa")
    fra = grid_intensity_g_per_kwh("FRA")
    assert usa.country_iso == "USA" and 0 < fra.g_per_kwh < usa.g_per_kwh
    assert "codecarbon" in usa.source
    with pytest.raises(MeterUnavailable, match="no grid carbon intensity"):
        grid_intensity_g_per_kwh("XXX")


# -- energy metrics --------------------------------------------------------------------------

def gpu(j, s=2.0, method="counter:nvml"):
    return EnergyReading("gpu", j, s, method)


def cpu(j, s=2.0, method="counter:rapl"):
    return EnergyReading("cpu_package", j, s, method)


IDLE = IdleBaseline(power_w={"gpu": 20.0, "cpu_package": 10.0},
                    method={"gpu": "counter:nvml", "cpu_package": "counter:rapl"}, duration_s=5.0)


def test_energy_metrics_gross_net_per_sample_and_co2():
    values = metrics_by_name(energy_metrics([gpu(100.0), cpu(30.0)], IDLE, window_s=2.0, n_samples=35,
                                            country_iso="USA"))
    assert values["energy_gross_j"].value == pytest.approx(130.0)
    assert values["energy_j"].value == pytest.approx(130.0 - (20.0 + 10.0) * 2.0)
    assert values["energy_per_sample_j"].value == pytest.approx(70.0 / 35)
    intensity = grid_intensity_g_per_kwh("USA").g_per_kwh
    assert values["co2_g"].value == pytest.approx(70.0 / 3.6e6 * intensity)
    assert values["energy_j"].method == values["energy_gross_j"].method == "counter:nvml+counter:rapl"
    assert values["energy_j"].n == values["energy_gross_j"].n == 1
    assert values["energy_per_sample_j"].n == 35
    assert values["energy_j"].params["idle_power_w"] == {"gpu": 20.0, "cpu_package": 10.0}
    assert values["co2_g"].params["country_iso"] == "USA"
    assert not any(v.is_estimate for v in values.values())


def test_a_total_with_any_estimate_is_an_estimate():
    assert combine_methods(["counter:nvml", "estimate:codecarbon"]) == "estimate:codecarbon+counter:nvml"
    idle = IdleBaseline({"gpu": 20.0, "cpu_package": 5.0},
                        {"gpu": "counter:nvml", "cpu_package": "estimate:codecarbon"}, 5.0)
    values = energy_metrics([gpu(100.0), cpu(30.0, method="estimate:codecarbon")], idle, 2.0, 10)
    assert all(v.is_estimate for v in values)


def test_negative_net_energy_is_kept_with_a_note():
    values = metrics_by_name(energy_metrics([gpu(30.0)], IDLE, window_s=2.0, n_samples=10))
    assert values["energy_j"].value == pytest.approx(-10.0)
    assert "negative" in values["energy_j"].note
    assert values["energy_per_sample_j"].value == pytest.approx(-1.0)


def test_a_missing_domain_is_named_and_left_out_of_the_total():
    bad = EnergyReading.unavailable("cpu_package", "counter:rapl", "counter went backwards")
    values = metrics_by_name(energy_metrics([gpu(100.0), bad], IDLE, window_s=2.0, n_samples=10))
    assert values["energy_gross_j"].value == pytest.approx(100.0)
    assert values["energy_gross_j"].params["domains"] == ["gpu"]
    assert values["energy_gross_j"].params["domains_missing"] == {"cpu_package": "counter went backwards"}
    assert "cpu_package unavailable: counter went backwards" in values["energy_gross_j"].note
    assert values["energy_j"].value == pytest.approx(60.0)


def test_repeated_windows_are_summed_and_one_lost_window_loses_the_domain():
    values = metrics_by_name(energy_metrics([gpu(50.0, 1.0), gpu(60.0, 1.0)], IDLE, window_s=2.0, n_samples=10))
    assert values["energy_gross_j"].value == pytest.approx(110.0)
    assert values["energy_gross_j"].n == 2
    lost = EnergyReading.unavailable("gpu", "counter:nvml", "did not advance")
    values = energy_metrics([gpu(50.0, 1.0), lost], IDLE, window_s=2.0, n_samples=10)
    assert all(v.value is None and "did not advance" in v.note for v in values)


def test_without_idle_baseline_only_gross_is_reported():
    values = metrics_by_name(energy_metrics([gpu(100.0)], None, window_s=2.0, n_samples=10))
    assert values["energy_gross_j"].value == pytest.approx(100.0)
    for name in ("energy_j", "energy_per_sample_j", "co2_g"):
        assert values[name].value is None and "idle baseline" in values[name].note


def test_no_readings_at_all_is_unavailable_never_zero():
    values = energy_metrics([], IDLE, window_s=2.0, n_samples=10)
    assert [v.name for v in values] == ["energy_gross_j", "energy_j", "energy_per_sample_j", "co2_g"]
    assert all(v.value is None and v.note == "no energy meter was available" for v in values)


def test_unknown_country_loses_only_co2():
    values = metrics_by_name(energy_metrics([gpu(100.0)], IDLE, window_s=2.0, n_samples=10, country_iso="XXX"))
    assert values["energy_j"].value == pytest.approx(60.0)
    assert values["co2_g"].value is None and "XXX" in values["co2_g"].note


def test_zero_samples_loses_only_the_per_sample_value():
    values = metrics_by_name(energy_metrics([gpu(100.0)], IDLE, window_s=2.0, n_samples=0))
    assert values["energy_per_sample_j"].value is None
    assert values["energy_j"].value == pytest.approx(60.0)


def test_idle_baseline_from_fake_meters_and_window_requirement():
    assert required_window_s([FakeMeter([], 1.0), FakeMeter([], 0.25)]) == 1.0
    assert required_window_s([]) == 0.0
    meters = [FakeMeter([gpu(40.0, 2.0)]),
              FakeMeter([EnergyReading.unavailable("ram", "estimate:codecarbon", "codecarbon failed")])]
    idle = measure_idle_power(meters, seconds=0.0)
    assert idle.power_w == {"gpu": 20.0}
    assert idle.method == {"gpu": "counter:nvml"}
    assert idle.unavailable == {"ram": "codecarbon failed"}


def test_energy_reading_refuses_negative_energy_and_silent_unavailability():
    with pytest.raises(HeptathlonError):
        EnergyReading("gpu", -1.0, 1.0, "counter:nvml")
    with pytest.raises(HeptathlonError):
        EnergyReading("gpu", None, 1.0, "counter:nvml")
    with pytest.raises(HeptathlonError):
        EnergyReading("gpu", 1.0, 1.0, "guess:nvml")


def test_short_windows_are_flagged():
    meter = FakeMeter([gpu(1.0, 0.2)], min_window_s=1.0)
    meter.start()
    [reading] = meter.stop()
    assert reading.energy_j == 1.0
    assert "shorter than this meter's minimum" in reading.note


# -- memory ----------------------------------------------------------------------------------

def test_cgroup_v2_peak(tmp_path):
    (tmp_path / "memory.peak").write_text("123456789\n")
    (tmp_path / "memory.max_usage_in_bytes").write_text("1\n")
    reading = cgroup_peak_bytes(tmp_path)
    assert (reading.peak_bytes, reading.method) == (123456789, "counter:cgroup-v2")
    metric = reading.to_metric("peak_rss_mb")
    assert metric.value == pytest.approx(123.456789) and metric.method == "counter:cgroup-v2"


def test_cgroup_v1_peak(tmp_path):
    (tmp_path / "memory.max_usage_in_bytes").write_text("4096\n")
    reading = cgroup_peak_bytes(tmp_path)
    assert (reading.peak_bytes, reading.method) == (4096, "counter:cgroup-v1")


def test_cgroup_without_counters_or_with_garbage_is_unavailable(tmp_path):
    reading = cgroup_peak_bytes(tmp_path)
    assert reading.peak_bytes is None and "memory.peak" in reading.note
    assert reading.to_metric("peak_rss_mb").method == "unavailable"
    (tmp_path / "memory.peak").write_text("max\n")
    assert "not a byte count" in cgroup_peak_bytes(tmp_path).note


def test_cgroup_dir_of_reads_proc(tmp_path):
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "42").mkdir(parents=True)
    (proc / "42" / "cgroup").write_text("0::/heptathlon/run-1\n")
    (cg / "heptathlon" / "run-1").mkdir(parents=True)
    assert cgroup_dir_of(42, proc, cg) == cg / "heptathlon" / "run-1"

    (proc / "42" / "cgroup").write_text("5:cpu,cpuacct:/x\n4:memory:/host/path\n0::/\n")
    (cg / "memory").mkdir()
    assert cgroup_dir_of(42, proc, cg) == cg / "memory"  # host path not visible: the mount root


def test_nvml_process_memory_counts_only_the_given_pids():
    fake = FakeNvml(procs=[(10, 1_000_000_000), (11, 500_000_000), (99, 4_000_000_000)])
    reading = nvml_process_gpu_memory([10, 11], 0, nvml=fake)
    assert (reading.peak_bytes, reading.method) == (1_500_000_000, "sampled:nvml-process")
    assert reading.to_metric("gpu_peak_mb").value == pytest.approx(1500.0)
    assert fake.inits == fake.shutdowns == 1


def test_nvml_process_memory_unavailable_cases():
    fake = FakeNvml(procs=[(99, 4_000_000_000)])
    reading = nvml_process_gpu_memory([10], 0, nvml=fake)
    assert reading.peak_bytes is None and "PID namespace" in reading.note
    reading = nvml_process_gpu_memory([10], 0, nvml=FakeNvml(procs=[(10, None)]))
    assert reading.peak_bytes is None and "per-process memory" in reading.note
    reading = nvml_process_gpu_memory([10], 0, nvml=FakeNvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    assert reading.peak_bytes is None and "driver is not loaded" in reading.note


class ScriptedProcs(FakeNvml):
    def __init__(self, used_values, after=None):
        super().__init__()
        self._used = itertools.chain(used_values, itertools.repeat(used_values[-1]))
        self.calls = 0
        self.after = after

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        self.calls += 1
        if self.after is not None:
            self.after(self.calls)
        return [SimpleNamespace(pid=10, usedGpuMemory=next(self._used))]


def test_gpu_memory_sampler_keeps_the_peak_of_edge_samples():
    with GpuMemorySampler([10], 0, interval_s=3600, include_children=False,
                          nvml=ScriptedProcs([300, 100])) as sampler:
        sampler.start()
        reading = sampler.stop()
    assert (reading.peak_bytes, reading.n) == (300, 2)


def test_gpu_memory_sampler_thread_sees_a_peak_between_the_edges():
    seen = threading.Event()
    fake = ScriptedProcs([100, 900, 200], after=lambda n: n >= 4 and seen.set())
    with GpuMemorySampler([10], 0, interval_s=0.001, include_children=False, nvml=fake) as sampler:
        sampler.start()
        assert seen.wait(timeout=30), "the sampler thread never polled"
        reading = sampler.stop()
    assert reading.peak_bytes == 900 and reading.n >= 4


def test_gpu_memory_sampler_counts_child_processes():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        fake = FakeNvml(procs=[(child.pid, 700)])
        with GpuMemorySampler([os.getpid()], 0, interval_s=3600, include_children=True, nvml=fake) as sampler:
            sampler.start()
            reading = sampler.stop()
    finally:
        child.stdin.close()
        child.wait()
    assert reading.peak_bytes == 700


def test_net_energy_within_the_idle_noise_is_below_resolution_never_negative():
    noisy = IdleBaseline.from_repeats([[cpu(20.0, 2.0, "estimate:codecarbon")], [cpu(26.0, 2.0, "estimate:codecarbon")],
                                       [cpu(14.0, 2.0, "estimate:codecarbon")]])
    assert noisy.repeats == 3 and noisy.power_w["cpu_package"] == pytest.approx(10.0)
    assert noisy.power_sd_w["cpu_package"] == pytest.approx(3.0)
    # window 2 s: resolution 2 * 3 W * 2 s * sqrt(4/3) = 13.9 J
    values = metrics_by_name(energy_metrics([cpu(15.0, method="estimate:codecarbon")], noisy, 2.0, 10))
    assert values["energy_gross_j"].value == pytest.approx(15.0)
    for name in ("energy_j", "energy_per_sample_j", "co2_g"):
        v = values[name]
        assert v.value is None and "below resolution" in v.note and v.params["below_resolution"]
    assert values["energy_j"].params["raw_net_j"] == pytest.approx(-5.0)
    assert values["energy_j"].params["resolution_j"] == pytest.approx(2 * 3.0 * 2.0 * (4 / 3) ** 0.5)
    loud = metrics_by_name(energy_metrics([cpu(60.0, method="estimate:codecarbon")], noisy, 2.0, 10))
    assert loud["energy_j"].value == pytest.approx(40.0) and loud["energy_j"].params["resolution_j"] > 0


def test_idle_power_is_measured_in_repeated_windows(monkeypatch):
    import heptathlon.runners.meters.energy as E

    class Fake:
        min_window_s = 0.0
        n = 0

        def start(self):
            pass

        def stop(self):
            Fake.n += 1
            return [cpu(10.0 * Fake.n, 1.0, "estimate:fake")]

    monkeypatch.setattr(E.time, "sleep", lambda s: None)
    idle = E.measure_idle_power([Fake()], seconds=3.0)
    assert idle.repeats == 3 and idle.power_w["cpu_package"] == pytest.approx(20.0 / (3.0 / 3) * 1.0)
    assert idle.power_sd_w["cpu_package"] == pytest.approx(10.0)
    assert IdleBaseline(**idle.to_json()) == idle


def test_periodic_sampler_max_duty_stretches_the_wait_after_a_costly_read():
    # A read costing 20 ms held to 10% duty waits >= 180 ms before the next one (Event.wait
    # never returns early on a timeout), where the 1 ms interval alone would read ~20 times
    # as often; without max_duty the same read is repeated at the interval.
    def read():
        threading.Event().wait(0.02)  # the read's cost, not synchronisation
        return 1.0

    bounded = PeriodicSampler(read, interval_s=0.001, max_duty=0.1)
    bounded.start()
    while len(bounded.samples) < 4:
        threading.Event().wait(0.05)
    samples = bounded.stop()
    gaps = [b[0] - a[0] for a, b in zip(samples[:3], samples[1:4])]  # thread samples only
    assert all(g >= 0.18 for g in gaps), gaps
    assert bounded.stretched >= 3 and bounded.read_s >= 0.02 * len(samples)

    with pytest.raises(MeterError, match="max_duty must be in"):
        PeriodicSampler(read, interval_s=0.001, max_duty=0)


def test_tree_sampler_note_says_when_it_sampled_slower_than_asked(monkeypatch):
    import heptathlon.runners.meters.tree_rss as tr

    def slow_pss(proc, fallbacks=None, tree=None):
        threading.Event().wait(0.01)  # the read's cost, not synchronisation
        return 1 << 20

    rss = itertools.count(1)
    monkeypatch.setattr(tr, "tree_pss_bytes", slow_pss)
    monkeypatch.setattr(tr, "tree_rss_bytes", lambda proc, tree=None: next(rss))  # always rising: PSS read every time
    sampler = tr.TreeRssSampler(os.getpid(), interval_s=0.001, max_duty=0.05, max_interval_s=1.0).start()
    while len(sampler._sampler.samples) < 3:
        threading.Event().wait(0.05)
    reading = sampler.stop()
    assert reading.peak_bytes == 1 << 20
    assert "not 0.001 s" in reading.note and "held to 5% of a core" in reading.note
    assert sampler.pss_reads == len(sampler._sampler.samples)


def test_tree_sampler_reads_pss_only_when_the_trees_rss_rises(monkeypatch):
    import heptathlon.runners.meters.tree_rss as tr

    rss_values = iter([100, 100, 90, 150, 150, 150, 200] + [200] * 10_000)
    pss_values = iter([10, 20, 30, 40])
    monkeypatch.setattr(tr, "tree_rss_bytes", lambda proc, tree=None: next(rss_values))
    monkeypatch.setattr(tr, "tree_pss_bytes", lambda proc, fallbacks=None, tree=None: next(pss_values))
    sampler = tr.TreeRssSampler(os.getpid(), interval_s=0.001)
    sampler._sampler.start = lambda: None  # drive the reads by hand: no thread, no timing
    values = [sampler._read() for _ in range(7)]
    assert values == [10, 10, 10, 20, 20, 20, 30]  # PSS read at the first sample, then at RSS 150 and 200
    assert sampler.pss_reads == 3


def test_periodic_sampler_caps_a_stretched_wait():
    s = PeriodicSampler(lambda: 1.0, interval_s=0.01, max_duty=0.01, max_interval_s=0.2)
    assert s._next_wait(0.05) == 0.2  # 0.05 / 0.01 - 0.05 = 4.95 s, capped
    assert s._next_wait(0.0001) == 0.01  # cheap reads keep the interval
    assert PeriodicSampler(lambda: 1.0, interval_s=0.01, max_duty=0.01)._next_wait(0.05) == pytest.approx(4.95)


def test_the_tree_is_the_run_cgroups_members_where_given(tmp_path):
    # A process that is no descendant (here: a sibling the test started, as a daemon that
    # double-forked away would be) is in the tree when the cgroup lists it; without a lister the
    # tree is the descendants, and an empty listing (the worker has not joined yet) falls back to them.
    import subprocess
    import sys as _sys

    import psutil

    import heptathlon.runners.meters.tree_rss as tr

    other = subprocess.Popen([_sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        me = psutil.Process(os.getpid())
        cache: dict = {}
        tree = tr._tree(me, lambda: [os.getpid(), other.pid, 2**22 + 12345], cache)  # the last pid: none
        assert [p.pid for p in tree] == [os.getpid(), other.pid] and set(cache) == {other.pid}
        assert tr._tree(me, lambda: [os.getpid()], cache) == [me] and cache == {}  # pruned to the members
        plain = {p.pid for p in tr._tree(me)}
        assert other.pid in plain  # the test's own child: a descendant
        assert {p.pid for p in tr._tree(me, lambda: [])} == plain
        rss = tr.tree_rss_bytes(me, tr._tree(me, lambda: [os.getpid(), other.pid]))
        assert rss == pytest.approx(me.memory_info().rss + psutil.Process(other.pid).memory_info().rss, rel=0.05)
    finally:
        other.kill()
        other.wait()
