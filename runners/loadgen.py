"""The measured loops: load generation on the harness side of the seam (after MLPerf LoadGen).

- ``run_closed_loop``: single_stream, fixed_batch, poisson_batch and offline. The next query is
  issued as soon as the previous one completes; the harness's own gap between the two is
  recorded (``issue_drift``) so a late issue is visible rather than folded into latency.
- ``run_server``: MLPerf Server in one thread. Arrivals are pre-scheduled (Poisson), so one
  thread can play both sides: it sleeps until the next arrival when the model is idle, and
  otherwise serves the queue in arrival order, start_i = max(arrival_i, finish_{i-1}). There
  is no cap on outstanding queries. Latency counts from the *scheduled* arrival.
- ``search_max_qps``: the largest QPS whose p99 stays within an SLO, by short probe runs.

Only timestamps are taken inside the loops; everything else happens before or after. A loop
given an ``AnswerSampler`` (runners/answers.py) also keeps the raw answers of a few queries,
after their done timestamp, at the cost of one integer comparison per query; they are
postprocessed and checked against the quality pass after the loop. This
module imports numpy only: scipy would add ~60 MB to the worker whose memory is measured.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from heptathlon.bench.scenarios import (ScenarioConfig, StopRule, batch_pool_schedule, build_schedule, poisson_arrivals_ns,
                             server_query_count)

Z95 = 1.959963984540054
# The loop's check is a cheap normal approximation; the stored interval (heptathlon.bench.stats) is
# computed afterwards by another method and comes out a little wider. The loop therefore stops only
# once its own estimate is within this share of the target, so that the stored interval meets the
# target too; the parent checks that it does and says so when it does not (``ci_target_missed``).
LOOP_TARGET_MARGIN = 0.85
SLO_PERCENTILE = 99.0
SEARCH_MAX_PROBES = 10
SEARCH_REL_TOL = 0.05  # stop bisecting once the bracket's ratio is within 5%
SEARCH_MIN_PROBE_QUERIES = 64
LEAD_IN_NS = 2_000_000  # the first arrival is scheduled this far after the clock starts


@dataclass
class LoopResult:
    """Raw per-query timestamps of one measured loop, and what the loop knows about itself."""

    issue_ns: np.ndarray  # issue time (closed loop) or scheduled arrival (server), perf_counter_ns
    done_ns: np.ndarray  # completion time
    samples: np.ndarray  # instances per query
    stopped_by: str  # minimums | max_duration | ci_target | all_queries
    summary: dict[str, Any] = field(default_factory=dict)  # JSON-able: drift, adaptive width, server stats

    @property
    def n(self) -> int:
        return int(self.issue_ns.size)


# ---- cheap statistics for the loop (numpy only) ------------------------------------------------------
def median_ci_half_width_rel(latency_ns: np.ndarray) -> float:
    """Relative half-width of the distribution-free 95% CI of the median: the order statistics
    around n/2 +- z sqrt(n)/2 (normal approximation to the binomial). O(n) with a partition, so the
    adaptive check stays cheap; the reported CI is computed afterwards by heptathlon.bench.stats."""
    x = np.asarray(latency_ns, dtype=np.float64)
    n = x.size
    if n < 2:
        return math.inf
    half = Z95 * math.sqrt(n * 0.25)
    lo = max(int(math.floor(n * 0.5 - half)) - 1, 0)
    hi = min(int(math.ceil(n * 0.5 + half)), n - 1)
    mid = (n - 1) // 2
    part = np.partition(x, sorted({lo, mid, hi}))
    centre = part[mid]
    if centre <= 0:
        return math.inf
    return float((part[hi] - part[lo]) / 2 / centre)


def _us_stats(ns: np.ndarray) -> dict[str, float | int | None]:
    if ns.size == 0:
        return {"n": 0, "p50_us": None, "p99_us": None, "max_us": None}
    us = ns / 1e3
    p50, p99 = np.percentile(us, [50, 99])
    return {"n": int(us.size), "p50_us": float(p50), "p99_us": float(p99), "max_us": float(us.max())}


def _next_power_of_two(n: int) -> int:
    return 1 << max(n, 1).bit_length()


# ---- closed loop -------------------------------------------------------------------------------------
def run_closed_loop(predict: Callable[[Any], Any], prepared: Sequence[Any], sizes: Sequence[int],
                    stop: StopRule, *, clock: Callable[[], int] = time.perf_counter_ns,
                    sampler: Any = None) -> LoopResult:
    """Closed loop over prepared queries until the stop rule holds.

    The rare branch (stop checks, the adaptive CI at power-of-two counts) runs between queries,
    never inside a timed call; its cost shows in the issue drift of the query after it.
    ``clock`` is there for tests (a simulated clock); the harness uses perf_counter_ns.
    ``sampler`` (an AnswerSampler) keeps the raw answers of the queries it picks.
    """
    pc = clock
    keep_at = sampler.next if sampler is not None else sys.maxsize
    keep = sampler.keep if sampler is not None else None
    k = len(prepared)
    issue: list[int] = []
    done: list[int] = []
    push_issue, push_done = issue.append, done.append
    adaptive, target = stop.adaptive, stop.ci_target
    width = None
    checks = 0
    n = 0
    t_start = pc()
    gate_t = t_start + int(stop.min_duration_s * 1e9)
    max_end = t_start + int(stop.max_duration_s * 1e9)
    gate_n = stop.min_queries
    while True:
        p = prepared[n % k]
        t0 = pc()
        r = predict(p)
        t1 = pc()
        push_issue(t0)
        push_done(t1)
        if n >= keep_at:  # a sampled query: its answer is kept, after its done timestamp
            keep_at = keep(n, p, r)
        n += 1
        if (n >= gate_n and t1 >= gate_t) or t1 >= max_end:
            if t1 >= max_end:
                stopped_by = "max_duration"
                break
            if not adaptive:
                stopped_by = "minimums"
                break
            checks += 1
            width = median_ci_half_width_rel(np.subtract(done, issue))
            if width <= target * LOOP_TARGET_MARGIN:
                stopped_by = "ci_target"
                break
            gate_n, gate_t = _next_power_of_two(n), 0
    issue_a = np.asarray(issue, dtype=np.int64)
    done_a = np.asarray(done, dtype=np.int64)
    samples = np.asarray(sizes, dtype=np.int32)[np.arange(n) % k]
    if adaptive and stopped_by != "ci_target":
        width = median_ci_half_width_rel(done_a - issue_a)
    summary: dict[str, Any] = {
        "loop": "closed",
        # The harness's own gap between a completion and the next issue: a single-stream query
        # must be neither early nor late, and this is how late the harness made it.
        "issue_drift": _us_stats(issue_a[1:] - done_a[:-1]),
    }
    if adaptive:
        summary["adaptive"] = {"ci_target_rel": target, "ci_half_width_rel": width, "checks": checks,
                               "loop_margin": LOOP_TARGET_MARGIN,
                               "method": "order statistics around the median (normal approximation)"}
    return LoopResult(issue_a, done_a, samples, stopped_by, summary)


# ---- sleeping precisely ------------------------------------------------------------------------------
def set_timer_slack(ns: int = 1) -> bool:
    """Linux: shrink this thread's timer slack (default 50 us) so sleeps end nearer their deadline."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(29, int(ns), 0, 0, 0) == 0  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        return False


def measure_sleep_overshoot(n: int = 40, sleep_ns: int = 200_000) -> np.ndarray:
    """How late ``time.sleep`` wakes up on this machine now (ns), one value per trial sleep."""
    pc = time.perf_counter_ns
    over = np.empty(n, dtype=np.int64)
    for i in range(n):
        due = pc() + sleep_ns
        time.sleep(sleep_ns / 1e9)
        over[i] = pc() - due
    return over


def spin_margin_ns(overshoot_ns: np.ndarray) -> int:
    """Sleep until this long before an arrival, then spin. Twice the p90 of the measured
    overshoot, within [50 us, 2 ms]: a query is rarely late for the scheduler's sake, and the CPU
    burnt spinning is bounded by the margin per idle gap. Lateness that remains is recorded."""
    return int(min(max(2 * float(np.percentile(overshoot_ns, 90)), 50_000), 2_000_000))


# ---- open loop (server) ------------------------------------------------------------------------------
def run_server(predict: Callable[[Any], Any], pool: dict[int, Sequence[Any]], arrivals_ns: np.ndarray, *,
               n_queries: int, stop: StopRule, max_batch: int = 1, max_wait_ns: int = 0,
               spin_ns: int = 200_000, clock: Callable[[], int] = time.perf_counter_ns,
               sleep: Callable[[float], None] = time.sleep, sampler: Any = None) -> LoopResult:
    """Serve pre-scheduled arrivals through an unbounded queue, in arrival order, in this thread.

    A batch opens at its oldest query's arrival and closes when ``max_batch`` queries have
    arrived or the oldest has waited ``max_wait_ns``, whichever is first; if the model is still
    busy then, it takes every query that has arrived, up to ``max_batch``. ``pool[b]`` holds
    prepared batches of b instances, used in turn. At the cap the loop stops even with a backlog:
    queries that arrived and were not served are counted as unfinished, not as a crash.
    ``clock`` and ``sleep`` are there for tests (a simulated queue); the harness uses the real ones.
    ``sampler`` keeps the raw answers of the batches it picks (numbered by their first query).
    """
    pc = clock
    keep_at = sampler.next if sampler is not None else sys.maxsize
    keep = sampler.keep if sampler is not None else None
    nexts = {b: itertools.cycle(v).__next__ for b, v in pool.items()}
    next1 = nexts[1]
    adaptive = stop.adaptive
    n_stop = len(arrivals_ns) if adaptive else min(n_queries, len(arrivals_ns))
    next_check = n_queries if adaptive else n_stop + 1
    t0 = pc() + LEAD_IN_NS
    arrivals = np.asarray(arrivals_ns[:n_stop], dtype=np.int64) + t0
    arr = arrivals.tolist()
    max_end = t0 + int(stop.max_duration_s * 1e9)
    b_first: list[int] = []
    b_close: list[int] = []
    b_start: list[int] = []
    b_end: list[int] = []
    width = None
    checks = 0
    stopped_by = "all_queries"
    j = 0
    while j < n_stop:
        close = arr[j]
        if max_batch > 1:
            close += max_wait_ns
            last = j + max_batch - 1
            if last < n_stop and arr[last] < close:
                close = arr[last]
        now = pc()
        if close > now:
            if close >= max_end:
                stopped_by = "max_duration"
                break
            if close - now > spin_ns:
                sleep((close - now - spin_ns) / 1e9)
            now = pc()
            while now < close:
                now = pc()
        m = j + 1
        if max_batch > 1:
            lim = min(j + max_batch, n_stop)
            while m < lim and arr[m] <= now:
                m += 1
            p = nexts[m - j]()
        else:
            p = next1()
        ts = pc()
        r = predict(p)
        te = pc()
        b_first.append(j)
        b_close.append(close)
        b_start.append(ts)
        b_end.append(te)
        if j >= keep_at:
            keep_at = keep(j, p, r)
        j = m
        if te >= max_end and j < n_stop:
            stopped_by = "max_duration"
            break
        if j >= next_check:
            checks += 1
            done_so_far = np.repeat(b_end, np.diff(np.append(b_first, j)))
            width = median_ci_half_width_rel(done_so_far - arrivals[:j])
            if width <= stop.ci_target * LOOP_TARGET_MARGIN:
                stopped_by = "ci_target"
                break
            next_check = _next_power_of_two(j)
    served = j
    sizes = np.diff(np.append(np.asarray(b_first, dtype=np.int64), served))
    ends = np.asarray(b_end, dtype=np.int64)
    starts = np.asarray(b_start, dtype=np.int64)
    closes = np.asarray(b_close, dtype=np.int64)
    done = np.repeat(ends, sizes)
    scheduled = arrivals[:served]
    t_stop = int(ends[-1]) if ends.size else t0
    unfinished = int(np.searchsorted(arrivals, t_stop, side="right")) - served if stopped_by == "max_duration" else 0
    # The harness intends a batch to start at its close time, or when the model frees up;
    # anything later than that is drift the harness caused (a late wake-up, a preemption).
    intended = np.maximum(closes, np.concatenate((closes[:1], ends[:-1])))
    window_s = (arrivals[served - 1] - arrivals[0]) / 1e9 if served > 1 else 0.0
    summary: dict[str, Any] = {
        "loop": "server",
        "queries_served": served,
        "queries_unfinished": max(unfinished, 0),
        "queries_planned": n_stop,
        "scheduled_qps": (served - 1) / window_s if window_s > 0 else None,
        "batches": int(sizes.size),
        "batch_mean": float(sizes.mean()) if sizes.size else None,
        "batch_max": int(sizes.max()) if sizes.size else None,
        "queue_wait": _us_stats(np.repeat(starts, sizes) - scheduled),
        "issue_drift": _us_stats(starts - intended),
        "spin_margin_us": spin_ns / 1e3,
    }
    if adaptive:
        if stopped_by != "ci_target" and served:
            width = median_ci_half_width_rel(done - scheduled)
        summary["adaptive"] = {"ci_target_rel": stop.ci_target, "ci_half_width_rel": width, "checks": checks,
                               "loop_margin": LOOP_TARGET_MARGIN,
                               "method": "order statistics around the median (normal approximation)"}
    return LoopResult(scheduled, done, np.ones(served, dtype=np.int32), stopped_by, summary)


class _Hopeless(Exception):
    """A probe showed that no lower QPS can pass either."""


def search_max_qps(probe: Callable[[float], bool | None], start_qps: float, *, rel_tol: float = SEARCH_REL_TOL,
                   max_probes: int = SEARCH_MAX_PROBES, min_qps: float = 0.1) -> float | None:
    """The largest QPS for which ``probe`` passes, by doubling or halving from ``start_qps`` to
    a bracket, then bisecting it in log space (QPS is a ratio scale). None if nothing passed.

    ``probe`` returns True (pass), False (fail) or None (fail, and no lower QPS can pass: even
    an unqueued query missed the SLO), which ends the search. Assumes a monotone probe; noise
    can break that, so the result is the largest QPS that actually passed, never an interpolation.
    """
    used = 0

    def ask(q: float) -> bool:
        nonlocal used
        used += 1
        ok = probe(q)
        if ok is None:
            raise _Hopeless
        return ok

    lo = hi = None
    q = start_qps
    try:
        if ask(q):
            lo = q
            while used < max_probes:
                q *= 2
                if ask(q):
                    lo = q
                else:
                    hi = q
                    break
        else:
            hi = q
            while used < max_probes and q / 2 >= min_qps:
                q /= 2
                if ask(q):
                    lo = q
                    break
                hi = q
        if lo is None or hi is None:
            return lo
        while used < max_probes and hi / lo > 1 + rel_tol:
            mid = math.sqrt(lo * hi)
            if ask(mid):
                lo = mid
            else:
                hi = mid
    except _Hopeless:
        pass
    return lo


# ---- plans: what the worker calls ---------------------------------------------------------------------
class ScenarioPlan:
    """A scenario ready to measure: the schedule built, inputs prepared and the model warm.

    The worker builds a plan (outside any meter window) and then calls ``run`` once: that call
    is the measured loop and nothing else.
    """

    def __init__(self, adapter, cfg: ScenarioConfig, x: np.ndarray) -> None:
        self.adapter = adapter
        self.cfg = cfg
        self.summary: dict[str, Any] = {}
        self._instances: dict[int, np.ndarray | None] = {}  # id(prepared query) -> its test-set indices
        if cfg.name == "server":
            self._plan_server(x)
        else:
            self._plan_closed(x)

    def _index(self, pairs) -> None:
        """Which instances each prepared query holds (by object identity), for the sampled answers."""
        seen = self._instances
        for p, idx in pairs:
            idx = np.asarray(idx, dtype=np.int64)
            if id(p) in seen and not np.array_equal(seen[id(p)], idx):
                seen[id(p)] = None  # one object for two batches (an adapter's cache): not checkable
            else:
                seen.setdefault(id(p), idx)

    def instances_of(self, prepared: Any) -> np.ndarray | None:
        """The test-set indices of a prepared query of this plan (None when unknown)."""
        return self._instances.get(id(prepared))

    # closed loop
    def _plan_closed(self, x: np.ndarray) -> None:
        schedule = build_schedule(self.cfg, len(x))
        self.prepared = [self.adapter.prepare(x[idx]) for idx in schedule]
        self._index(zip(self.prepared, schedule))
        self.sizes = [len(idx) for idx in schedule]
        predict = self.adapter.predict
        for i in range(self.cfg.warmup_queries):
            predict(self.prepared[i % len(self.prepared)])

    # server
    def _plan_server(self, x: np.ndarray) -> None:
        cfg = self.cfg
        prepare = self.adapter.prepare
        self.pool = {}
        for b in range(1, cfg.max_batch + 1):
            idxs = batch_pool_schedule(cfg, len(x), b)
            self.pool[b] = [prepare(x[idx]) for idx in idxs]
            self._index(zip(self.pool[b], idxs))
        predict = self.adapter.predict
        for i in range(cfg.warmup_queries):
            predict(self.pool[1][i % len(self.pool[1])])
        for b in range(2, cfg.max_batch + 1):  # a new input shape can be slow the first time
            predict(self.pool[b][0])
        slack = set_timer_slack(1)
        over = measure_sleep_overshoot()
        self.spin_ns = spin_margin_ns(over)
        self.summary["sleep"] = {"timer_slack": "1 ns (prctl)" if slack else "default",
                                 "overshoot": _us_stats(over), "spin_margin_us": self.spin_ns / 1e3}
        self.qps = cfg.target_qps
        if cfg.slo_ms is not None:
            self._search()

    def _server_loop(self, qps: float, stop: StopRule, sampler: Any = None) -> LoopResult:
        need, most = server_query_count(qps, stop)
        arrivals = poisson_arrivals_ns(qps, most, self.cfg.seed)
        return run_server(self.adapter.predict, self.pool, arrivals, n_queries=need, stop=stop,
                          max_batch=self.cfg.max_batch, max_wait_ns=int(self.cfg.max_wait_ms * 1e6),
                          spin_ns=self.spin_ns, sampler=sampler)

    def _search(self) -> None:
        """Short probe runs: a QPS passes when its p99 is within the SLO and nothing was left unserved."""
        cfg = self.cfg
        probe_s = min(2.0, max(0.2, cfg.stop.min_duration_s / 4))
        probe_cap = min(cfg.stop.max_duration_s, 4 * probe_s + 0.5)
        trace: list[dict[str, Any]] = []

        def probe(qps: float) -> bool | None:
            stop = StopRule(min_queries=SEARCH_MIN_PROBE_QUERIES, min_duration_s=min(probe_s, probe_cap),
                            max_duration_s=probe_cap)
            r = self._server_loop(qps, stop)
            lat_ms = (r.done_ns - r.issue_ns) / 1e6
            p99 = float(np.percentile(lat_ms, SLO_PERCENTILE)) if r.n else math.inf
            unfinished = r.summary["queries_unfinished"]
            ok = r.n > 0 and unfinished == 0 and p99 <= cfg.slo_ms
            trace.append({"qps": qps, "scheduled_qps": r.summary["scheduled_qps"],
                          "p99_ms": p99 if math.isfinite(p99) else None, "n": r.n, "unfinished": unfinished,
                          "met": ok})
            # Even the fastest query, queued or not, took longer than the SLO: no lower QPS can pass.
            if not ok and r.n and float(lat_ms.min()) > cfg.slo_ms:
                return None
            return ok

        best = search_max_qps(probe, cfg.target_qps)
        self.summary["slo_search"] = {"slo_ms": cfg.slo_ms, "percentile": SLO_PERCENTILE, "probe_s": probe_s,
                                      "max_qps": best, "probes": trace}
        # Measure at the best QPS found; if none passed, at the lowest probed, to record how far off it is.
        self.qps = best if best is not None else min(t["qps"] for t in trace)

    def run(self, stop: StopRule | None = None, sampler: Any = None) -> LoopResult:
        """The measured loop, under the scenario's stop rule or ``stop`` (e.g. a window widened for a
        meter); ``sampler`` keeps a few raw answers for the consistency check."""
        stop = stop or self.cfg.stop
        if self.cfg.name != "server":
            r = run_closed_loop(self.adapter.predict, self.prepared, self.sizes, stop, sampler=sampler)
            r.summary.update(self.summary)
            return r
        r = self._server_loop(self.qps, stop, sampler)
        r.summary.update(self.summary)
        r.summary["target_qps"] = self.qps
        if self.cfg.slo_ms is not None:
            lat_ms = (r.done_ns - r.issue_ns) / 1e6
            p99 = float(np.percentile(lat_ms, SLO_PERCENTILE)) if r.n else None
            r.summary["slo"] = {"slo_ms": self.cfg.slo_ms, "p99_ms": p99, "qps": self.qps,
                                "met": bool(p99 is not None and p99 <= self.cfg.slo_ms
                                            and r.summary["queries_unfinished"] == 0)}
        return r


def plan_scenario(adapter, cfg: ScenarioConfig, x: np.ndarray) -> ScenarioPlan:
    """Schedule, prepared inputs and warm-up (and, for a server with an SLO, the QPS search)."""
    return ScenarioPlan(adapter, cfg, x)
