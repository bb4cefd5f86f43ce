"""The meter seam: something that measures energy over a window the worker times.

A meter is started just before the timed window and stopped just after it. ``stop()``
returns one :class:`EnergyReading` per domain it covers. A reading that could not be
taken carries ``energy_j=None`` and the reason in ``note``: an unknown energy is never
reported as 0 J.

Four implementations sit behind the seam: ``counter:nvml`` and ``sampled:nvml-power``
(:mod:`heptathlon.runners.meters.nvml`), ``counter:rapl`` (:mod:`heptathlon.runners.meters.rapl`) and
``estimate:codecarbon`` (:mod:`heptathlon.runners.meters.codecarbon_meter`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from heptathlon.bench.errors import HeptathlonError, MeterError, RunError
from heptathlon.bench.metrics import METHOD_KINDS


class MeterUnavailable(HeptathlonError):
    """A measurement method cannot work on this machine; the message says why.

    Raised by meter constructors while probing, so :func:`heptathlon.runners.meters.select_meters`
    can record the reason and fall back to the next method.
    """


@dataclass(frozen=True)
class EnergyReading:
    """Energy one meter saw in one domain over one window.

    ``domain`` is what was measured: ``gpu``, ``cpu_package``, ``dram`` (a RAPL counter)
    or ``ram`` (an estimate of memory power). ``energy_j`` is ``None`` when the reading
    is unavailable, and ``note`` then says why. ``extra`` holds context such as GPU
    temperature and SM clock at both edges of the window.
    """

    domain: str
    energy_j: float | None
    duration_s: float
    method: str
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kind = self.method.split(":", 1)[0]
        if kind not in METHOD_KINDS:
            raise MeterError(f"energy reading for {self.domain!r}: method {self.method!r} "
                             f"must start with one of {METHOD_KINDS}")
        if self.energy_j is not None and not (math.isfinite(self.energy_j) and self.energy_j >= 0):
            raise MeterError(f"energy reading for {self.domain!r} ({self.method}): "
                             f"energy {self.energy_j!r} J is not a finite non-negative number")
        if self.energy_j is None and not self.note:
            raise MeterError(f"energy reading for {self.domain!r} ({self.method}) is unavailable "
                             "and must say why in 'note'")

    @property
    def available(self) -> bool:
        return self.energy_j is not None

    @property
    def is_estimate(self) -> bool:
        return self.method.startswith("estimate:")

    @classmethod
    def unavailable(cls, domain: str, method: str, reason: str, duration_s: float = 0.0,
                    **extra: Any) -> "EnergyReading":
        return cls(domain=domain, energy_j=None, duration_s=duration_s, method=method, note=reason,
                   extra=dict(extra))

    def with_note(self, note: str) -> "EnergyReading":
        return dataclasses.replace(self, note=f"{self.note}; {note}" if self.note else note)


class Meter(ABC):
    """Measures energy between ``start()`` and ``stop()``.

    Subclasses implement ``_start`` and ``_stop``. This base class makes sure a meter
    never fails a benchmark run: an exception inside a meter turns into unavailable
    readings that carry the reason. Calling the verbs out of order is a programming
    error and raises :class:`RunError`.

    ``min_window_s`` is the shortest window for which the meter's quantisation or
    sampling error stays around 10% or below; see :func:`required_window_s`.
    """

    method: ClassVar[str]
    domains: tuple[str, ...]
    min_window_s: float

    def __init__(self) -> None:
        self._running = False
        self._failure: str | None = None
        self._started_at: float | None = None

    # -- the verbs -------------------------------------------------------------------
    def start(self) -> None:
        if self._running:
            raise RunError(f"meter {self.method}: start() called twice without stop()")
        self._running = True
        self._failure = None
        self._started_at = time.perf_counter()
        try:
            self._start()
        except Exception as exc:  # a broken meter must cost the run its energy number, not the run
            self._failure = f"{self.method}: start failed: {type(exc).__name__}: {exc}"

    def stop(self) -> list[EnergyReading]:
        if not self._running:
            raise RunError(f"meter {self.method}: stop() called without start()")
        self._running = False
        elapsed = time.perf_counter() - (self._started_at or time.perf_counter())
        if self._failure is not None:
            self._abandon()
            return [EnergyReading.unavailable(d, self.method, self._failure, elapsed) for d in self.domains]
        try:
            readings = self._stop()
        except Exception as exc:  # see start()
            self._abandon()
            reason = f"{self.method}: stop failed: {type(exc).__name__}: {exc}"
            return [EnergyReading.unavailable(d, self.method, reason, elapsed) for d in self.domains]
        return [self._flag_short_window(r) for r in readings]

    def close(self) -> None:
        """Release what the meter holds (NVML sessions, threads). Safe to call twice."""
        if self._running:
            self._running = False
            self._abandon()

    def __enter__(self) -> "Meter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "domains": list(self.domains), "min_window_s": self.min_window_s}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r}, domains={self.domains!r})"

    # -- for subclasses --------------------------------------------------------------
    @abstractmethod
    def _start(self) -> None: ...

    @abstractmethod
    def _stop(self) -> list[EnergyReading]: ...

    def _abandon(self) -> None:
        """Stop any background activity after a failed start or on close()."""

    def _flag_short_window(self, reading: EnergyReading) -> EnergyReading:
        if reading.available and reading.duration_s < self.min_window_s:
            return reading.with_note(
                f"window {reading.duration_s:.3f} s is shorter than this meter's minimum "
                f"{self.min_window_s:.3f} s, so the value may be off by more than ~10%")
        return reading


def required_window_s(meters: Iterable[Meter]) -> float:
    """The shortest timed window every meter can measure well (0.0 for no meters).

    The worker should make its timed window at least this long: run more queries, or
    repeat the scenario inside one start/stop pair, or repeat start/stop windows and pass
    all readings (and the total window) to :func:`heptathlon.runners.meters.energy_metrics`.
    """
    return max((m.min_window_s for m in meters), default=0.0)


class PeriodicSampler:
    """Calls ``read()`` every ``interval_s`` on a daemon thread and keeps ``(t, value)`` pairs.

    The thread sleeps in ``Event.wait(interval_s)``, so it never spins, and ``stop()``
    wakes it at once. ``start()`` and ``stop()`` each take one sample on the caller's
    thread, so the samples always span the whole window. A ``read()`` that raises on the
    thread ends sampling; the error is kept in ``error``.

    ``max_duty`` bounds the share of wall time the thread spends inside ``read()``: after a
    read that took ``c`` seconds it waits at least ``c / max_duty - c``. A read whose cost
    grows with what it reads (PSS walks every page table of a multi-GB model process, and
    holds that process's mmap lock while it does) then slows down instead of costing a
    core; ``stretched`` counts the waits so lengthened and ``read_s`` sums the reads' time.
    ``max_interval_s`` caps a stretched wait, so a sampler never goes blind for longer.
    """

    def __init__(self, read: Callable[[], float], interval_s: float, name: str = "heptathlon-sampler",
                 max_duty: float | None = None, max_interval_s: float | None = None) -> None:
        if not interval_s > 0:
            raise MeterError(f"sampler {name!r}: interval_s must be > 0, got {interval_s!r}")
        if max_duty is not None and not 0 < max_duty <= 1:
            raise MeterError(f"sampler {name!r}: max_duty must be in (0, 1], got {max_duty!r}")
        self.read = read
        self.interval_s = interval_s
        self.max_duty = max_duty
        self.max_interval_s = max_interval_s
        self.stretched = 0
        self.read_s = 0.0
        self.name = name
        self.samples: list[tuple[float, float]] = []
        self.error: BaseException | None = None
        self.thread_cpu_s: float | None = None
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RunError(f"sampler {self.name!r}: start() called twice")
        self.samples = []
        self.error = None
        self.stretched, self.read_s = 0, 0.0
        self._stop_event.clear()
        self._sample()  # raises on the caller's thread: the caller decides what that means
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> list[tuple[float, float]]:
        """End sampling, take the closing sample, and return all samples."""
        self._halt()
        if self.error is None:
            try:
                self._sample()
            except Exception as exc:
                self.error = exc
        return self.samples

    def _halt(self) -> None:
        if self._thread is None:
            return
        self._stop_event.set()
        self._thread.join()
        self._thread = None

    def _sample(self) -> float:
        t0 = time.perf_counter()
        value = self.read()
        t1 = time.perf_counter()
        self.samples.append((t1, float(value)))
        self.read_s += t1 - t0
        return t1 - t0

    def _next_wait(self, cost_s: float) -> float:
        if self.max_duty is None:
            return self.interval_s
        bounded = cost_s / self.max_duty - cost_s
        if self.max_interval_s is not None:
            bounded = min(bounded, max(self.max_interval_s, self.interval_s))
        if bounded > self.interval_s:
            self.stretched += 1
            return bounded
        return self.interval_s

    def _run(self) -> None:
        try:
            wait = self._next_wait(self.read_s)  # the start() sample's cost
            while not self._stop_event.wait(wait):
                wait = self._next_wait(self._sample())
        except Exception as exc:  # kept for the caller; a sampler thread must not die loudly
            self.error = exc
        finally:
            self.thread_cpu_s = time.thread_time()
