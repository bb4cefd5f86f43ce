"""The local executor: a fresh worker process on this machine, one run at a time.

The parent never imports model code, and the worker it starts runs harness code only
(submitted code runs in the worker's sandboxed model process; docs/security.md). It waits on
the worker with a blocking ``wait`` (no busy loop, unlike optimum-benchmark's launcher) while
a sampler thread tracks memory and another drains the worker's output into a bounded log,
and it kills the worker's whole process group when the run ends or times out.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any
from pathlib import Path

from heptathlon.bench.profile import Profile
from heptathlon.bench.types import WorkerFailure, WorkerJob, WorkerResult, WorkerResultError
from heptathlon.runners.controls import control_env, create_run_cgroup, memory_limit_kill_reason, validate_profile_for_machine
from heptathlon.runners.executors.base import Executor, WorkerOutcome
from heptathlon.runners.meters.contention import ContentionSampler
from heptathlon.runners.meters.tree_rss import TreeRssSampler
from heptathlon.runners.executors.logcap import BoundedLog, read_tail
from heptathlon.runners.sandbox import scrub_env

STDERR_TAIL_CHARS = 4000
JOB_FILE, LOG_FILE = "job.json", "worker.log"


def worker_extra_env(profile: Profile) -> dict[str, str]:
    """What the worker needs on top of the sandbox's scrubbed environment (no DB URL, no secrets)."""
    from heptathlon.runners.sandbox import SANDBOX_ENV

    # The harness's own sandbox choice travels on: the worker starts the model process with it.
    sandbox = {SANDBOX_ENV: os.environ[SANDBOX_ENV]} if os.environ.get(SANDBOX_ENV) else {}
    return {**control_env(profile), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **sandbox,
            "HEPTATHLON_HARNESS_PID": str(os.getpid())}  # the worker dies with this process (worker.die_with_harness)


def tail(path: Path, limit: int = STDERR_TAIL_CHARS) -> str:
    return read_tail(path, limit)


class LocalExecutor(Executor):
    """Runs one worker at a time on this machine; the job's ``out_dir`` is the run directory.

    The worker runs harness code only, so it is not sandboxed: its environment is scrubbed
    (no DB URL, no secrets) and its run directory (job, inputs, result files, log) is private
    to the harness (mode 0700, and outside any model process's sandbox). Submitted code runs
    in the model process the worker starts sandboxed (docs/security.md).
    """

    name = "local"

    def execute(self, job: WorkerJob, timeout_s: float, *, hide: Sequence[str] = ()) -> WorkerOutcome:
        profile = job.profile
        validate_profile_for_machine(profile)  # a CUDA profile on a CPU machine: nothing is spawned
        run_dir = job.out_dir
        run_dir.chmod(0o700)
        job = job.model_copy(update={"sandbox_hide": [*job.sandbox_hide, *map(str, hide)]})
        job_path = run_dir / JOB_FILE
        job_path.write_text(job.model_dump_json())
        log_path = run_dir / LOG_FILE
        cgroup = create_run_cgroup(job.run_id, profile)
        env, dropped = scrub_env(os.environ)
        env.update({**worker_extra_env(profile), **cgroup.env(), "HOME": str(run_dir)})
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        argv = [sys.executable, "-m", "heptathlon.runners.worker", str(job_path)]
        try:
            spawn_time = time.time()
            rfd, wfd = os.pipe()
            try:
                proc = subprocess.Popen(cgroup.wrap_argv(argv), cwd=run_dir, stdin=subprocess.DEVNULL,
                                        stdout=wfd, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            except BaseException:
                os.close(rfd)
                raise
            finally:
                os.close(wfd)
            cpu0 = _own_cpu_s()
            log = BoundedLog(log_path).drain(rfd)
            # The run cgroup lists the run's processes in one read (no scan of every /proc/PID/stat).
            members = cgroup.pids if cgroup.path is not None else None
            sampler = TreeRssSampler(proc.pid, members=members).start()
            contention = ContentionSampler(proc.pid, profile.cpu.cores, members=members).start()
            timed_out = False
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                code = proc.wait()
            finally:
                tree_rss = sampler.stop()
                trace = contention.stop()
                _kill_group(proc)  # a command submission's children must not outlive the run
                log_bytes = log.close()
                parent_cpu = _parent_cpu(cpu0, time.time() - spawn_time)
            out = WorkerOutcome(result=None, error=None, stderr_tail=read_tail(log_path, STDERR_TAIL_CHARS),
                                exit_code=code, spawn_time=spawn_time, wall_s=time.time() - spawn_time,
                                tree_rss=tree_rss, cgroup_peak=cgroup.peak_memory(), contention=trace,
                                sandbox={"active": False, "mechanism": None, "role": "measuring worker",
                                         "isolation": ["scrubbed-env", "harness-code-only", "private-run-dir"],
                                         "env_dropped": dropped},
                                log_bytes=log_bytes, parent_cpu=parent_cpu)
            mem_reason = memory_limit_kill_reason(profile, code, out.stderr_tail, cgroup)
        finally:
            cgroup.cleanup()
        try:
            if timed_out:
                out.error = f"run timed out after {timeout_s:g} s (the model never answered or is too slow); raise it with --timeout"
            elif mem_reason:
                out.error = mem_reason
            elif job.error_path.exists():
                out.error = WorkerFailure.read(job.error_path, job.run_id).error
            elif code != 0:
                sig = -code if code < 0 else None
                how = f"was killed by signal {signal.Signals(sig).name}" if sig else f"exited with code {code}"
                out.error = f"worker {how} before reporting results (see stderr tail)"
            else:
                out.result = WorkerResult.read(job.result_path, job.run_id)
        except WorkerResultError as e:
            out.error = str(e)
        return out


def _own_cpu_s() -> float:
    """User + system CPU of this process, every thread, children excluded (getrusage RUSAGE_SELF)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _parent_cpu(cpu0: float, wall_s: float) -> dict[str, Any]:
    """What the measuring parent itself spent while the worker ran: its memory and contention
    samplers, the log drain and, under ``execute_run``, the lease thread. Anything else the same
    process runs meanwhile (a test runner, another executor thread) counts too, so it is an upper
    bound on the harness's share."""
    cpu = max(0.0, _own_cpu_s() - cpu0)
    return {"cpu_s": cpu, "wall_s": wall_s, "share_of_core": cpu / wall_s if wall_s > 0 else None,
            "method": "counter:getrusage(RUSAGE_SELF)"}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
