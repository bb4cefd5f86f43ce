"""Executors: take a prepared run and execute it in a fresh worker process.

The parent never imports model code. It waits on the worker with a blocking ``wait`` (no
busy loop, unlike optimum-benchmark's launcher) while a sampler thread tracks memory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heptathlon.bench.profile import Profile
from heptathlon.runners.controls import control_env, create_run_cgroup, memory_limit_kill_reason, validate_profile_for_machine
from heptathlon.runners.rss import TreeRssSampler
from heptathlon.runners.sandbox import cleanup_sandbox, sandbox_command

STDERR_TAIL_CHARS = 4000


@dataclass
class WorkerOutcome:
    ok: bool
    error: str | None
    stderr_tail: str
    spawn_time: float
    wall_s: float
    exit_code: int | None
    result: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    peak_rss_bytes: int = 0
    rss_samples: int = 0
    rss_method: str = TreeRssSampler.method
    cgroup_peak_bytes: int | None = None
    cgroup_method: str | None = None
    sandbox: dict[str, Any] = field(default_factory=dict)


def worker_extra_env(profile: Profile) -> dict[str, str]:
    """What the worker needs on top of the sandbox's scrubbed environment (no DB URL, no secrets)."""
    return {**control_env(profile), "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1"}


def tail(path: Path, limit: int = STDERR_TAIL_CHARS) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


class LocalExecutor:
    """Runs one worker at a time on this machine."""

    name = "local"

    def execute(self, job: dict[str, Any], run_dir: Path, profile: Profile, timeout_s: float,
                hide: list[str] | None = None) -> WorkerOutcome:
        validate_profile_for_machine(profile)  # a CUDA profile on a CPU machine: nothing is spawned
        job_path = run_dir / "job.json"
        job_path.write_text(json.dumps(job))
        log_path = run_dir / "worker.log"
        cgroup = create_run_cgroup(job["run_id"], profile)
        argv, env, sbx = sandbox_command([sys.executable, "-m", "heptathlon.runners.worker", str(job_path)], run_dir / "work",
                                         extra_env={**worker_extra_env(profile), **cgroup.env()},
                                         writable=[run_dir], hide=hide or [], copy_workdir=False,
                                         require=profile.require_sandbox, profile_name=profile.name)
        try:
            spawn_time = time.time()
            with log_path.open("wb") as log:
                proc = subprocess.Popen(cgroup.wrap_argv(argv), cwd=sbx["workdir"], stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                sampler = TreeRssSampler(proc.pid).start()
                timed_out = False
                try:
                    code = proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    _kill_group(proc)
                    code = proc.wait()
                finally:
                    sampler.stop()
                    _kill_group(proc)  # a command submission's children must not outlive the run
            wall = time.time() - spawn_time
            stderr_tail = tail(log_path)
            out = WorkerOutcome(ok=False, error=None, stderr_tail=stderr_tail, spawn_time=spawn_time, wall_s=wall,
                                exit_code=code, peak_rss_bytes=sampler.peak_bytes, rss_samples=sampler.n,
                                sandbox={k: sbx.get(k) for k in ("active", "mechanism", "isolation", "env_dropped")})
            peak = cgroup.peak_memory_bytes()
            if peak is not None:
                out.cgroup_peak_bytes = peak
                out.cgroup_method = f"counter:cgroup-v{cgroup.versions.get('memory', 1)}"
            mem_reason = memory_limit_kill_reason(profile, code, stderr_tail, cgroup)
        finally:
            cgroup.cleanup()
            cleanup_sandbox(sbx)
        err_file = run_dir / "error.json"
        if timed_out:
            out.error = f"run timed out after {timeout_s:g} s (the model never answered or is too slow); raise it with --timeout"
        elif mem_reason:
            out.error = mem_reason
        elif err_file.exists():
            out.error = json.loads(err_file.read_text())["error"]
        elif code != 0:
            sig = -code if code < 0 else None
            how = f"was killed by signal {signal.Signals(sig).name}" if sig else f"exited with code {code}"
            out.error = f"worker {how} before reporting results (see stderr tail)"
        else:
            out.ok = True
            out.result = json.loads((run_dir / "result.json").read_text())
            for name in ("issue_ns", "done_ns", "batch", "preds", "scores"):
                p = run_dir / f"{name}.npy"
                if p.exists():
                    out.arrays[name] = np.load(p)
        return out


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
