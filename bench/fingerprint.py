"""Machine fingerprint: what a result was measured on. Results compare only within one class."""

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


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(line.split(":", 1)[1].split())
    except OSError:
        pass
    return []


def _governor() -> str | None:
    p = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    try:
        return p.read_text().strip()
    except OSError:
        return None


def software_context() -> dict[str, Any]:
    versions = {"python": platform.python_version()}
    for lib in _LIBS:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return versions


def collect_fingerprint() -> dict[str, Any]:
    flags = _cpu_flags()
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags_sha256": hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16],
        "cpu_flags_isa": [f for f in flags if f.startswith(("avx", "amx", "sse4", "fma", "neon", "sve"))],
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_bytes": psutil.virtual_memory().total,
        "kernel": platform.release(),
        "arch": platform.machine(),
        "governor": _governor(),
        "gpus": [],
        "software": software_context(),
    }


def fingerprint_hash(fp: dict[str, Any]) -> str:
    """Hash of the fields that define the fingerprint class (hardware + kernel + library versions)."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True, default=str).encode()).hexdigest()
