"""Machine fingerprint: what is collected, what the hash and the class leave out, and the NVML
path (through a stand-in pynvml module, since CI machines have no GPU)."""

from __future__ import annotations

import copy
import sys
import types

import pytest

from heptathlon.bench import fingerprint as F


@pytest.fixture(scope="module")
def fp():
    return F.collect_fingerprint()


def test_fingerprint_describes_this_machine(fp):
    assert fp["cpu_model"] and fp["cpu_model"] != "unknown"
    assert fp["logical_cores"] >= 1 and fp["ram_bytes"] > 2**28
    assert fp["kernel"] and fp["arch"]
    assert isinstance(fp["cpu_flags_isa"], list) and len(fp["cpu_flags_sha256"]) == 16
    assert {"python", "torch", "onnxruntime", "numpy"} <= set(fp["software"])
    assert fp["software"]["torch"] is not None
    assert isinstance(fp["gpus"], list)
    assert "cpu_mhz" in fp["state"]


def test_no_gpu_gives_an_empty_list_and_says_why(fp):
    if fp["gpus"]:
        pytest.skip("this machine has a GPU")
    assert fp["gpu_driver"]["nvml"].startswith("unavailable")
    assert F.count_nvidia_gpus()[0] == 0


def test_hash_is_stable_and_ignores_live_readings(fp):
    again = F.collect_fingerprint()
    assert F.fingerprint_hash(again) == F.fingerprint_hash(fp)
    changed = copy.deepcopy(fp)
    changed["state"] = {"cpu_mhz": 1.0, "gpus": [{"clocks_mhz": {"sm": 1}}]}
    assert F.fingerprint_hash(changed) == F.fingerprint_hash(fp)
    changed["kernel"] = "0.0.0-other"
    assert F.fingerprint_hash(changed) != F.fingerprint_hash(fp)


def test_class_ignores_kernel_and_patch_versions_but_not_hardware_or_minor_versions(fp):
    base = F.fingerprint_class(fp)
    same = copy.deepcopy(fp)
    same["kernel"] = "0.0.0-patched"
    same["software"]["numpy"] = (fp["software"]["numpy"] or "1.0.0") + ".post1"
    same["ram_bytes"] = fp["ram_bytes"] - 2**20
    assert F.fingerprint_class(same) == base
    for field, value in (("cpu_model", "Other CPU"), ("logical_cores", 999), ("governor", "powersave")):
        other = copy.deepcopy(fp)
        other[field] = value
        assert F.fingerprint_class(other) != base, field
    other = copy.deepcopy(fp)
    other["software"]["torch"] = "0.1.0"
    assert F.fingerprint_class(other) != base


class _FakeNVMLError(Exception):
    pass


def _fake_pynvml() -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.NVMLError = _FakeNVMLError
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM, m.NVML_CLOCK_GRAPHICS, m.NVML_TEMPERATURE_GPU = 1, 2, 0, 0
    m.nvmlInit = m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetCount = lambda: 1
    m.nvmlSystemGetDriverVersion = lambda: "550.54.15"
    m.nvmlSystemGetCudaDriverVersion_v2 = lambda: 12040
    m.nvmlSystemGetCudaDriverVersion = lambda: 12040
    m.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    m.nvmlDeviceGetUUID = lambda h: "GPU-1234"
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80 * 2**30)
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    m.nvmlDeviceGetPowerManagementLimit = lambda h: 700_000
    m.nvmlDeviceGetPersistenceMode = lambda h: 1
    m.nvmlDeviceGetMaxClockInfo = lambda h, c: {1: 1980, 2: 2619}[c]

    def unsupported(*a):
        raise _FakeNVMLError("Not Supported")

    m.nvmlDeviceGetApplicationsClock = unsupported
    m.nvmlDeviceGetClockInfo = lambda h, c: {1: 1755, 2: 2619}[c]
    m.nvmlDeviceGetTemperature = lambda h, s: 41
    return m


def test_gpu_fields_come_from_nvml(monkeypatch, fp):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    gpus, driver, state = F.collect_gpus()
    assert driver == {"nvml": "ok", "driver_version": "550.54.15", "cuda_driver_version": "12.4"}
    g = gpus[0]
    assert g["name"] == "NVIDIA H100 80GB HBM3" and g["memory_total_mib"] == 80 * 1024
    assert g["power_limit_w"] == 700.0 and g["persistence_mode"] is True
    assert g["max_clocks_mhz"] == {"sm": 1980, "mem": 2619}
    assert g["applications_clocks_mhz"] == {"sm": None, "mem": None}  # unsupported -> None, not a crash
    assert state[0]["clocks_mhz"]["sm"] == 1755
    with_gpu = F.collect_fingerprint()
    assert with_gpu["gpus"] == gpus and with_gpu["state"]["gpus"] == state
    assert F.fingerprint_class(with_gpu) != F.fingerprint_class(fp)
    assert F.count_nvidia_gpus()[0] == 1
