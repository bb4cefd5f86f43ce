"""Run cgroups: v2 where the unified hierarchy has the controller, else v1; created inside the
caller's own cgroup, so limits set by whoever started the harness still apply on top."""


from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heptathlon.bench.profile import Profile
from heptathlon.runners.meters.cgroup_memory import cgroup_peak_bytes
from heptathlon.runners.meters.memory import MemoryReading
from heptathlon.runners.controls.common import CFS_PERIOD_US, CGROUP_ENV, CGROUP_PREFIX, _V1_CONTROLLERS, _not_applied, _read, _read_int, _read_keyed, _write


# -- cgroups ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Hierarchy:
    version: int
    mountpoint: Path
    mount_root: str  # the hierarchy path mounted at mountpoint ("/" outside containers)
    controllers: frozenset[str]


def _unescape_mountinfo(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _hierarchies() -> list[_Hierarchy]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        pre, sep, post = line.partition(" - ")
        f, p = pre.split(), post.split()
        if not sep or len(f) < 5 or len(p) < 3:
            continue
        fstype, superopts = p[0], p[2]
        root, mountpoint = _unescape_mountinfo(f[3]), Path(_unescape_mountinfo(f[4]))
        if fstype == "cgroup2":
            try:
                ctrls = frozenset((mountpoint / "cgroup.controllers").read_text().split())
            except OSError:
                ctrls = frozenset()
            out.append(_Hierarchy(2, mountpoint, root, ctrls))
        elif fstype == "cgroup":
            ctrls = frozenset(o for o in superopts.split(",") if o in _V1_CONTROLLERS)
            if ctrls:
                out.append(_Hierarchy(1, mountpoint, root, ctrls))
    return out


def _own_cgroups(pid: int | str = "self") -> tuple[dict[str, str], str | None]:
    """(v1 controller -> path, v2 path) of a process, as /proc/PID/cgroup names them."""
    v1: dict[str, str] = {}
    v2 = None
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return v1, v2
    for line in lines:
        hid, ctrls, path = line.split(":", 2)
        if hid == "0" and ctrls == "":
            v2 = path
        else:
            for c in ctrls.split(","):
                v1[c] = path
    return v1, v2


def _pick_hierarchy(controller: str) -> _Hierarchy | None:
    hs = _hierarchies()
    for version in (2, 1):  # v2 wins where the unified hierarchy really has the controller
        for h in hs:
            if h.version == version and controller in h.controllers:
                return h
    return None


def _dir_of(h: _Hierarchy, cg_path: str) -> Path | None:
    root = h.mount_root.rstrip("/")
    if root and not (cg_path == root or cg_path.startswith(root + "/")):
        return None  # this process lives outside the part of the hierarchy mounted here
    return h.mountpoint / cg_path[len(root):].lstrip("/")


def _join_path(cg_path: str, name: str) -> str:
    return cg_path.rstrip("/") + "/" + name


def cgroup_problem(controller: str) -> str | None:
    """Why a run cgroup with this controller cannot be made here; None when it can."""
    if os.geteuid() != 0:
        return "not running as root"
    h = _pick_hierarchy(controller)
    if h is None:
        return f"no cgroup hierarchy with the {controller} controller is mounted"
    v1, v2 = _own_cgroups()
    own = v2 if h.version == 2 else v1.get(controller)
    d = None if own is None else _dir_of(h, own)
    if d is None or not d.is_dir():
        return f"this process's {controller} cgroup is not visible under {h.mountpoint}"
    if not os.access(d, os.W_OK):
        return f"{d} is not writable"
    return None


@dataclass
class CgroupHandle:
    """A per-run cgroup (one directory per v1 hierarchy, or one v2 directory).

    Created by ``create_run_cgroup``; ``cleanup()`` removes it and is safe to call twice.
    """

    run_id: str
    name: str
    profile_name: str
    creator_pid: int
    dirs: dict[str, Path] = field(default_factory=dict)       # controller -> directory
    versions: dict[str, int] = field(default_factory=dict)    # controller -> 1 | 2
    members: dict[str, str] = field(default_factory=dict)     # controller -> path in /proc/PID/cgroup
    controls: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)    # controller -> why it is missing

    @property
    def path(self) -> Path | None:
        """The memory cgroup's directory (the one that measures and limits memory)."""
        return self.dirs.get("memory") or next(iter(self.dirs.values()), None)

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in dict.fromkeys(self.dirs.values())]

    def describe(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "name": self.name, "creator_pid": self.creator_pid,
                "dirs": {c: str(d) for c, d in self.dirs.items()}, "versions": dict(self.versions),
                "members": dict(self.members), "controls": self.controls, "problems": dict(self.problems)}

    def env(self) -> dict[str, str]:
        """Put this in the worker's environment: ``apply_controls`` checks membership and limits."""
        return {CGROUP_ENV: json.dumps(self.describe())}

    def wrap_argv(self, argv: list[str]) -> list[str]:
        """argv that joins the cgroup, then execs ``argv``: the worker starts inside it.

        A shell `echo $$ > cgroup.procs; exec` rather than preexec_fn, which is unsafe in a
        parent that runs sampler threads. Children (a sandbox, a command submission) inherit
        the cgroup, so the limit and the peak cover the whole process tree.
        """
        if not self.dirs:
            return list(argv)
        joins = " && ".join(f"echo $$ > {shlex.quote(str(p))}" for p in self.procs_files)
        script = (f"{{ {joins}; }} || {{ echo 'heptathlon: could not join the run cgroup {self.name}' >&2; "
                  f"exit 125; }}; exec \"$@\"")
        return ["/bin/sh", "-c", script, "heptathlon-cgroup-join", *argv]

    def add_pid(self, pid: int) -> None:
        """Move a running process in (its threads follow; its existing children do not)."""
        for p in self.procs_files:
            _write(p, pid)

    def join(self) -> None:
        """Move the calling process in: for a worker that manages its own cgroup."""
        self.add_pid(os.getpid())

    def pids(self) -> list[int]:
        out: set[int] = set()
        for p in self.procs_files:
            try:
                out.update(int(x) for x in p.read_text().split())
            except OSError:
                pass
        return sorted(out)

    def peak_memory(self) -> MemoryReading | None:
        """Exact peak charged to the cgroup (kernel counter, page cache included); None without a memory cgroup."""
        d = self.dirs.get("memory")
        return None if d is None else cgroup_peak_bytes(d)

    def peak_memory_bytes(self) -> int | None:
        reading = self.peak_memory()
        return None if reading is None else reading.peak_bytes

    def memory_limit_bytes(self) -> int | None:
        d = self.dirs.get("memory")
        if d is None:
            return None
        value = _read_int(d / ("memory.max" if self.versions["memory"] == 2 else "memory.limit_in_bytes"))
        return None if value is None or value >= 2**62 else value

    def oom_kill_count(self) -> int | None:
        """How many processes the kernel's OOM killer ended inside this cgroup."""
        d = self.dirs.get("memory")
        if d is None:
            return None
        if self.versions["memory"] == 2:
            return _read_keyed(d / "memory.events", "oom_kill")
        return _read_keyed(d / "memory.oom_control", "oom_kill")

    def memory_limit_hits(self) -> int | None:
        """How often usage ran into the limit (v1 memory.failcnt, v2 memory.events max)."""
        d = self.dirs.get("memory")
        if d is None:
            return None
        if self.versions["memory"] == 2:
            return _read_keyed(d / "memory.events", "max")
        return _read_int(d / "memory.failcnt")

    def cpu_stat(self) -> dict[str, int] | None:
        """cpu.stat: nr_periods (quota periods in which the cgroup ran), nr_throttled, ..."""
        d = self.dirs.get("cpu")
        if d is None:
            return None
        try:
            return {k: int(v) for k, _, v in (ln.partition(" ") for ln in (d / "cpu.stat").read_text().splitlines())}
        except (OSError, ValueError):
            return None

    def cleanup(self) -> None:
        """Kill anything left inside, then remove the directories. Idempotent."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for d in reversed(list(dict.fromkeys(self.dirs.values()))):
            _rmdir_cgroup(d)
        self.dirs.clear()

    def __enter__(self) -> CgroupHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _rmdir_cgroup(d: Path, attempts: int = 200) -> None:
    # rmdir fails with EBUSY until the kernel has finished tearing down killed tasks; that
    # takes milliseconds, so a short bounded retry (not a test synchronisation) is enough.
    for _ in range(attempts):
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
    d.rmdir()


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:48] or "run"


def _v2_base(h: _Hierarchy, own: str, controllers: list[str]) -> tuple[Path, str]:
    """Where a v2 run cgroup can go: inside our own cgroup, else beside it.

    v2's no-internal-processes rule forbids enabling controllers for the children of a
    cgroup that holds processes (ours does), except at the root; the parent cgroup already
    delegates the controllers we have, so a sibling always works.
    """
    d = _dir_of(h, own)
    if d is None:
        raise OSError(f"this process's cgroup {own} is not visible under {h.mountpoint}")
    try:
        enabled = set(_read(d / "cgroup.subtree_control").split())
        missing = [c for c in controllers if c not in enabled]
        if missing:
            _write(d / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
        return d, own
    except OSError:
        if d == h.mountpoint:
            raise
        parent_own = own.rstrip("/").rsplit("/", 1)[0] or "/"
        return d.parent, parent_own


def _make_dirs(handle: CgroupHandle, wanted: list[str]) -> None:
    v1_own, v2_own = _own_cgroups()
    by_hier: dict[_Hierarchy, list[str]] = {}
    for c in wanted:
        h = _pick_hierarchy(c)
        if h is None:
            handle.problems[c] = f"no cgroup hierarchy with the {c} controller is mounted"
        else:
            by_hier.setdefault(h, []).append(c)
    for h, ctrls in by_hier.items():
        try:
            if h.version == 2:
                if v2_own is None:
                    raise OSError("this process is not in the cgroup v2 hierarchy")
                base, base_path = _v2_base(h, v2_own, ctrls)
            else:
                own = v1_own.get(ctrls[0])
                base = None if own is None else _dir_of(h, own)
                if base is None:
                    raise OSError(f"this process's {ctrls[0]} cgroup is not visible under {h.mountpoint}")
                base_path = own
            d = base / handle.name
            d.mkdir()
        except OSError as e:
            for c in ctrls:
                handle.problems[c] = f"cannot create a cgroup under {h.mountpoint}: {e}"
            continue
        for c in ctrls:
            handle.dirs[c] = d
            handle.versions[c] = h.version
            handle.members[c] = _join_path(base_path, handle.name)


def _set_memory(handle: CgroupHandle, limit: int | None) -> dict[str, Any] | None:
    d = handle.dirs.get("memory")
    if d is None:
        if limit is None:
            return None
        return {"requested": limit, "configured": False, "mechanism": "RLIMIT_AS (applied by the worker)",
                "reason": handle.problems.get("memory", "no memory cgroup")}
    if limit is None:
        return None  # the cgroup is still there: it measures the exact peak
    if handle.versions["memory"] == 2:
        _write(d / "memory.max", limit)
        for name, value in (("memory.swap.max", 0), ("memory.oom.group", 1)):
            try:
                _write(d / name, value)  # no swapping past the limit; an OOM kill ends the whole tree
            except OSError:
                pass
        mechanism = "cgroup v2 memory.max"
    else:
        _write(d / "memory.limit_in_bytes", limit)
        try:
            _write(d / "memory.memsw.limit_in_bytes", limit)  # no swapping past the limit
        except OSError:
            pass  # swap accounting off: then there is nothing to swap through either
        mechanism = "cgroup v1 memory.limit_in_bytes"
    return {"requested": limit, "effective": handle.memory_limit_bytes(), "configured": True,
            "mechanism": mechanism, "path": str(d)}


def _quota_of(d: Path, version: int) -> float | None:
    if version == 2:
        quota, _, period = _read(d / "cpu.max").partition(" ")
        return None if quota == "max" else int(quota) / int(period)
    quota_us, period_us = _read_int(d / "cpu.cfs_quota_us"), _read_int(d / "cpu.cfs_period_us")
    return None if quota_us is None or quota_us < 0 or not period_us else quota_us / period_us


def _set_quota(handle: CgroupHandle, quota: float) -> dict[str, Any]:
    d = handle.dirs.get("cpu")
    if d is None:
        return {"requested": quota, "configured": False, "mechanism": None,
                "reason": handle.problems.get("cpu", "no cpu cgroup")}
    quota_us = max(1000, round(quota * CFS_PERIOD_US))  # the kernel's minimum quota is 1 ms
    if handle.versions["cpu"] == 2:
        _write(d / "cpu.max", f"{quota_us} {CFS_PERIOD_US}")
        mechanism = "cgroup v2 cpu.max"
    else:
        _write(d / "cpu.cfs_period_us", CFS_PERIOD_US)
        _write(d / "cpu.cfs_quota_us", quota_us)
        mechanism = "cgroup v1 cpu.cfs_quota_us"
    return {"requested": quota, "effective": _quota_of(d, handle.versions["cpu"]), "configured": True,
            "mechanism": mechanism, "path": str(d)}


def _set_cpuset(handle: CgroupHandle, cores: list[int]) -> dict[str, Any] | None:
    d = handle.dirs.get("cpuset")
    if d is None:
        return None
    try:
        _write(d / "cpuset.cpus", ",".join(map(str, cores)))
        if handle.versions["cpuset"] == 1:  # v1 refuses tasks until both are set
            parent = d.parent
            mems_file = parent / "cpuset.effective_mems"
            _write(d / "cpuset.mems", _read(mems_file if mems_file.exists() else parent / "cpuset.mems"))
    except OSError as e:
        handle.problems["cpuset"] = f"cpuset.cpus={cores} refused: {e}"
        _rmdir_cgroup(d)
        handle.dirs.pop("cpuset")
        handle.versions.pop("cpuset")
        handle.members.pop("cpuset")
        return None
    return {"requested": cores, "configured": True, "mechanism": f"cgroup v{handle.versions['cpuset']} cpuset.cpus",
            "path": str(d)}


def create_run_cgroup(run_id: str, profile: Profile) -> CgroupHandle:
    """Make a fresh cgroup for one run and set the profile's quota, memory limit and cpuset.

    The memory controller is always used when available, also without a limit, because its
    counter gives the exact peak. Raises ProfileError when a CPU quota is requested and the
    cpu controller is not usable (unless best_effort lists cpu.quota); a memory limit falls
    back to RLIMIT_AS in the worker instead. Either the parent or the worker may call this;
    the parent is the robust choice (see the module docstring).
    """
    # The run id names it for people; the random part keeps two handles for one run id apart;
    # the creator's pid comes last so cleanup_stale_run_cgroups can tell when it has exited.
    name = f"{CGROUP_PREFIX}{_safe_name(run_id)}-{secrets.token_hex(3)}-{os.getpid()}"
    handle = CgroupHandle(run_id=run_id, name=name, profile_name=profile.name, creator_pid=os.getpid())
    if os.geteuid() != 0:
        handle.problems = {c: "not running as root" for c in ("memory", "cpu", "cpuset")}
    wanted = ["memory"] + (["cpu"] if profile.cpu.quota is not None else []) + \
        (["cpuset"] if profile.cpu.cores is not None else [])
    try:
        if os.geteuid() == 0:
            _make_dirs(handle, wanted)
        try:
            mem = _set_memory(handle, profile.memory_limit_bytes)
        except OSError as e:
            mem = {"requested": profile.memory_limit_bytes, "configured": False,
                   "mechanism": "RLIMIT_AS (applied by the worker)", "reason": f"the cgroup refused the limit: {e}"}
        if mem is not None:
            handle.controls["memory_limit"] = mem
        if profile.cpu.quota is not None:
            try:
                q = _set_quota(handle, profile.cpu.quota)
            except OSError as e:
                q = {"requested": profile.cpu.quota, "configured": False, "mechanism": None,
                     "reason": f"the cgroup refused the quota: {e}"}
            if not q["configured"]:
                _not_applied(profile, "cpu.quota", f"a CPU quota needs the cgroup cpu controller ({q['reason']})",
                             profile.cpu.quota)
            handle.controls["cpu.quota"] = q
        if profile.cpu.cores is not None:
            cs = _set_cpuset(handle, profile.cpu.cores)
            if cs is not None:
                handle.controls["cpuset"] = cs
    except BaseException:
        handle.cleanup()
        raise
    return handle


def cleanup_stale_run_cgroups() -> list[Path]:
    """Remove empty run cgroups whose creator has exited (a worker cannot remove its own)."""
    import psutil

    removed = []
    v1, v2 = _own_cgroups()
    bases = set()
    for h in _hierarchies():
        own = v2 if h.version == 2 else next((v1[c] for c in h.controllers if c in v1), None)
        d = None if own is None else _dir_of(h, own)
        if d is not None:
            bases.update({d, d.parent})
    for base in bases:
        for d in base.glob(f"{CGROUP_PREFIX}*"):
            m = re.search(r"-(\d+)$", d.name)
            if not m or psutil.pid_exists(int(m.group(1))):
                continue
            try:
                if not (d / "cgroup.procs").read_text().split():
                    d.rmdir()
                    removed.append(d)
            except OSError:
                pass
    return removed
