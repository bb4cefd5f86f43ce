"""Machine fingerprint: what a result was measured on. Results compare only within one class.

Three views of one dict (Conbench's split of machine identity from run context):
- ``collect_fingerprint()``: everything we can read about the machine. Readings that change
  from second to second (current clocks, current frequency) sit under ``state``.
- ``fingerprint_hash(fp)``: identity of the machine as configured; ``state`` is left out, so
  the same machine hashes the same from run to run (the DB's ``machine`` row).
- ``fingerprint_class(fp)``: only what decides whether two results may be compared: the
  hardware, its performance-relevant settings and the major.minor versions of the runtimes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

_LIBS = ("torch", "onnxruntime", "numpy", "onnx", "scikit-learn")
# Libraries whose major.minor change can move latency; patch releases are assumed not to.
_CLASS_LIBS = ("torch", "onnxruntime", "numpy")
_ISA_PREFIXES = ("avx", "amx", "sse4", "fma", "neon", "sve", "asimd", "f16c", "vnni")
_VOLATILE_KEYS = ("state",)


def _cpuinfo_field(name: str) -> str | None:
    # /proc/cpuinfo rather than py-cpuinfo: that library re-executes Python to probe CPUID and
    # takes about a second, which is too slow to pay on every run.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    return _cpuinfo_field("model name") or _cpuinfo_field("Model") or platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    flags = _cpuinfo_field("flags") or _cpuinfo_field("Features") or ""
    return sorted(flags.split())


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _governor() -> str | None:
    """The scaling governor; 'mixed: a,b' when the cores disagree."""
    govs = {_read(p) for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor")}
    govs.discard(None)
    if not govs:
        return None
    return govs.pop() if len(govs) == 1 else "mixed: " + ",".join(sorted(govs))


def _cpu_frequency() -> dict[str, Any]:
    out: dict[str, Any] = {"scaling_driver": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_driver"),
                           "boost": _read("/sys/devices/system/cpu/cpufreq/boost"),
                           "min_mhz": None, "max_mhz": None}
    try:
        f = psutil.cpu_freq()
    except (OSError, RuntimeError, NotImplementedError):
        f = None
    if f is not None:
        out["min_mhz"] = round(f.min) or None
        out["max_mhz"] = round(f.max) or None
    return out


def _cpu_frequency_now_mhz() -> float | None:
    try:
        f = psutil.cpu_freq()
    except (OSError, RuntimeError, NotImplementedError):
        return None
    return round(f.current, 1) if f is not None else None


def _nvml_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_call(fn, *args) -> Any:
    """One NVML query; None where the GPU or driver does not support it."""
    import pynvml

    try:
        return fn(*args)
    except pynvml.NVMLError:
        return None


def _gpu_info(pynvml, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    q = _nvml_call
    mem = q(pynvml.nvmlDeviceGetMemoryInfo, h)
    limit_mw = q(pynvml.nvmlDeviceGetEnforcedPowerLimit, h) or q(pynvml.nvmlDeviceGetPowerManagementLimit, h)
    persistence = q(pynvml.nvmlDeviceGetPersistenceMode, h)
    clock = pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_MEM, pynvml.NVML_CLOCK_GRAPHICS
    info = {
        "index": i,
        "name": _nvml_text(q(pynvml.nvmlDeviceGetName, h)),
        "uuid": _nvml_text(q(pynvml.nvmlDeviceGetUUID, h)),
        "memory_total_mib": None if mem is None else int(mem.total // 2**20),
        "power_limit_w": None if limit_mw is None else round(limit_mw / 1000, 1),
        "persistence_mode": None if persistence is None else bool(persistence),
        "max_clocks_mhz": {"sm": q(pynvml.nvmlDeviceGetMaxClockInfo, h, clock[0]),
                           "mem": q(pynvml.nvmlDeviceGetMaxClockInfo, h, clock[1])},
        "applications_clocks_mhz": {"sm": q(pynvml.nvmlDeviceGetApplicationsClock, h, clock[2]),
                                    "mem": q(pynvml.nvmlDeviceGetApplicationsClock, h, clock[1])},
    }
    state = {"index": i,
             "clocks_mhz": {"sm": q(pynvml.nvmlDeviceGetClockInfo, h, clock[0]),
                            "mem": q(pynvml.nvmlDeviceGetClockInfo, h, clock[1])},
             "temperature_c": q(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)}
    return info, state


def collect_gpus() -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """(per-GPU facts, driver facts, per-GPU volatile state) through NVML; empty without a GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as e:  # noqa: BLE001  no driver, no library or no GPU all mean "no GPU here"
        return [], {"nvml": f"unavailable: {type(e).__name__}: {e}".strip()}, []
    try:
        cuda = _nvml_call(pynvml.nvmlSystemGetCudaDriverVersion_v2) or _nvml_call(pynvml.nvmlSystemGetCudaDriverVersion)
        driver = {"nvml": "ok", "driver_version": _nvml_text(_nvml_call(pynvml.nvmlSystemGetDriverVersion)),
                  "cuda_driver_version": None if cuda is None else f"{cuda // 1000}.{(cuda % 1000) // 10}"}
        gpus, states = [], []
        for i in range(pynvml.nvmlDeviceGetCount()):
            info, state = _gpu_info(pynvml, i)
            gpus.append(info)
            states.append(state)
        return gpus, driver, states
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def count_nvidia_gpus() -> tuple[int, str]:
    """How many GPUs NVML sees, and a short note saying why when there are none."""
    gpus, driver, _ = collect_gpus()
    return len(gpus), driver["nvml"] if not gpus else f"{len(gpus)} GPU(s), driver {driver.get('driver_version')}"


def software_context() -> dict[str, Any]:
    versions = {"python": platform.python_version()}
    for lib in _LIBS:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return versions


def collect_fingerprint() -> dict[str, Any]:
    flags = cpu_flags()
    gpus, driver, gpu_state = collect_gpus()
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags_sha256": hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16],
        "cpu_flags_isa": [f for f in flags if f.startswith(_ISA_PREFIXES)],
        "hypervisor": "hypervisor" in flags,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_bytes": psutil.virtual_memory().total,
        "kernel": platform.release(),
        "arch": platform.machine(),
        "governor": _governor(),
        "cpu_frequency": _cpu_frequency(),
        "gpu_driver": driver,
        "gpus": gpus,
        "software": software_context(),
        "state": {"cpu_mhz": _cpu_frequency_now_mhz(), "gpus": gpu_state},
    }


def fingerprint_hash(fp: dict[str, Any]) -> str:
    """Identity of the machine as configured: every field except the volatile ``state``."""
    stable = {k: v for k, v in fp.items() if k not in _VOLATILE_KEYS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()


def _major_minor(version: str | None) -> str | None:
    if not version:
        return None
    parts = version.split("+")[0].split(".")
    return ".".join(parts[:2])


def class_fields(fp: dict[str, Any]) -> dict[str, Any]:
    """The fields that define comparability.

    Left out on purpose: the kernel release, patch versions, GPU UUIDs and live clocks. Two
    boxes of one model with one configuration are one class, and a security patch to the
    kernel does not start a new series. RAM counts in whole GiB because firmware reserves
    a different few MiB on identical boxes.
    """
    sw = fp.get("software", {})
    return {
        "arch": fp.get("arch"),
        "cpu_model": fp.get("cpu_model"),
        "cpu_flags_sha256": fp.get("cpu_flags_sha256"),
        "logical_cores": fp.get("logical_cores"),
        "physical_cores": fp.get("physical_cores"),
        "ram_gib": round((fp.get("ram_bytes") or 0) / 2**30),
        "governor": fp.get("governor"),
        "boost": (fp.get("cpu_frequency") or {}).get("boost"),
        "gpu_driver": (fp.get("gpu_driver") or {}).get("driver_version"),
        "cuda_driver": (fp.get("gpu_driver") or {}).get("cuda_driver_version"),
        "gpus": [{k: g.get(k) for k in ("name", "memory_total_mib", "power_limit_w", "persistence_mode",
                                        "max_clocks_mhz", "applications_clocks_mhz")}
                 for g in fp.get("gpus", [])],
        "python": _major_minor(sw.get("python")),
        **{lib: _major_minor(sw.get(lib)) for lib in _CLASS_LIBS},
    }


def fingerprint_class(fp: dict[str, Any]) -> str:
    """Hash of ``class_fields(fp)``: results compare only within one fingerprint class."""
    return hashlib.sha256(json.dumps(class_fields(fp), sort_keys=True, default=str).encode()).hexdigest()
