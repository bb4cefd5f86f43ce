"""The cgroup memory meter: the kernel's own high-water mark of a run's cgroup.

``memory.peak`` in v2, ``memory.max_usage_in_bytes`` in v1. Exact, and it covers every
process in the cgroup, children included; it also counts page cache. This is the one place
the counter is read: the run cgroup (``runners.controls.cgroups.CgroupHandle``), the executor and a
worker reporting on itself all call :func:`cgroup_peak_bytes`.
"""

from __future__ import annotations

from pathlib import Path

from heptathlon.runners.meters.base import MeterUnavailable
from heptathlon.runners.meters.memory import MemoryReading


def cgroup_peak_bytes(cgroup_dir: Path | str) -> MemoryReading:
    """The cgroup's peak memory: ``memory.peak`` (v2, Linux >= 5.19) or ``memory.max_usage_in_bytes`` (v1)."""
    directory = Path(cgroup_dir)
    candidates = ((directory / "memory.peak", "counter:cgroup-v2"),
                  (directory / "memory.max_usage_in_bytes", "counter:cgroup-v1"))
    for path, method in candidates:
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        except OSError as exc:
            return MemoryReading(None, method, note=f"cannot read {path}: {exc}", source=str(path))
        try:
            value = int(text.strip())
        except ValueError:
            return MemoryReading(None, method, note=f"{path} holds {text.strip()!r}, not a byte count",
                                 source=str(path))
        return MemoryReading(value, method, n=1, source=str(path),
                             note="kernel high-water mark of the whole cgroup, page cache included")
    return MemoryReading(None, "counter:cgroup-v2",
                         note=f"{directory} has neither memory.peak (cgroup v2, Linux >= 5.19) nor "
                              "memory.max_usage_in_bytes (cgroup v1)")


def cgroup_dir_of(pid: int | str = "self", proc_root: Path | str = "/proc",
                  cgroup_root: Path | str = "/sys/fs/cgroup") -> Path:
    """The memory cgroup directory of a process, from ``/proc/<pid>/cgroup``.

    Prefers a v1 ``memory`` hierarchy (hybrid hosts keep memory there) over the v2 unified
    one. Inside a container the recorded path may be the host's; then the mount root,
    which the container sees as its own cgroup, is returned.
    """
    lines = (Path(proc_root) / str(pid) / "cgroup").read_text().splitlines()
    root = Path(cgroup_root)
    v1 = v2 = None
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            v1 = (root / "memory", path)
        elif hierarchy == "0" and controllers == "":
            v2 = (root, path)
    for mount, path in (hit for hit in (v1, v2) if hit is not None):
        candidate = mount / path.lstrip("/")
        if candidate.is_dir():
            return candidate
        if mount.is_dir():
            return mount
    raise MeterUnavailable(f"no memory cgroup for process {pid} under {root}")
