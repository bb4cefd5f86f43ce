"""The executor seam: a typed :class:`~heptathlon.bench.types.WorkerJob` in, a :class:`WorkerOutcome` out.

An executor runs the job in a fresh worker somewhere (this machine: ``LocalExecutor``; a
fleet machine later) and reports either the worker's typed result or why there is none,
plus what it measured from outside the worker: the memory peaks, the spawn time, the
sandbox. The application layer turns an outcome into metrics and one transaction; it never
reads a worker's files itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from heptathlon.bench.contention import ContentionTrace
from heptathlon.bench.types import WorkerJob, WorkerResult
from heptathlon.runners.meters.memory import MemoryReading


@dataclass
class WorkerOutcome:
    """One execution: ``result`` when the worker reported one, else ``error`` (one line)."""

    result: WorkerResult | None
    error: str | None
    stderr_tail: str
    exit_code: int | None
    spawn_time: float  # epoch seconds when the worker process was started (load_s counts from here)
    wall_s: float
    tree_rss: MemoryReading  # sampled peak RSS over the worker's process tree
    cgroup_peak: MemoryReading | None = None  # the run cgroup's exact counter, where the run had one
    sandbox: dict[str, Any] = field(default_factory=dict)  # the worker's own isolation (the model's is in result.controls)
    log_bytes: int | None = None  # the worker log's full size (the stored log keeps head and tail)
    contention: ContentionTrace | None = None  # the run's cores, sampled by the parent (bench/contention.py)
    # The measuring parent's own CPU while the worker ran (its samplers, log drain, lease renewal):
    # {"cpu_s", "wall_s", "share_of_core", "method"}; None where the executor did not count it.
    parent_cpu: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None and self.error is None


class Executor(ABC):
    """Runs one :class:`WorkerJob` to completion (or to its timeout) and reports the outcome.

    A failure of the run itself (a crash, a timeout, a memory-limit kill, an error the
    worker reported, a malformed result) is an outcome with ``error`` set, not an exception;
    an executor raises only when it cannot start the run at all (e.g. ProfileError for a
    profile this machine cannot honour).
    """

    name: ClassVar[str]

    @abstractmethod
    def execute(self, job: WorkerJob, timeout_s: float, *, hide: Sequence[str] = ()) -> WorkerOutcome:
        """``hide``: directories the worker must not see (such as the results database's)."""
