"""The measured loops on a simulated clock (exact, no sleeps, no wall-clock thresholds), the QPS
search on a scripted probe, and the stdio fast path on real pipes."""

import io
import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from heptathlon.bench.scenarios import StopRule
from heptathlon.runners.loadgen import (LEAD_IN_NS, LOOP_TARGET_MARGIN, median_ci_half_width_rel, run_closed_loop, run_server, search_max_qps,
                             spin_margin_ns)


class SimClock:
    """Time moves only when the model works or the loop sleeps; a loop that spins on it forever fails."""

    def __init__(self) -> None:
        self.t = 1_000_000_000
        self.idle_reads = 0

    def __call__(self) -> int:
        self.idle_reads += 1
        if self.idle_reads > 100_000:
            raise RuntimeError("the loop spins on a clock that cannot move")
        return self.t

    def advance(self, ns: int) -> None:
        self.t += int(ns)
        self.idle_reads = 0

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.advance(round(seconds * 1e9))

    def model(self, service_ns):
        """predict(p): takes service_ns(p) of simulated time."""
        def predict(p):
            self.advance(service_ns(p))
        return predict


# ---- closed loop ------------------------------------------------------------------------------------
def test_closed_loop_stops_at_minimums_and_times_each_query_exactly():
    clock = SimClock()
    costs = [1000, 2000, 3000]
    prepared = [0, 1, 2]
    r = run_closed_loop(clock.model(lambda p: costs[p]), prepared, [1, 4, 2],
                        StopRule(min_queries=10, min_duration_s=0, max_duration_s=10), clock=clock)
    assert r.stopped_by == "minimums" and r.n == 10
    assert (r.done_ns - r.issue_ns).tolist() == [costs[i % 3] for i in range(10)]
    assert r.samples.tolist() == [[1, 4, 2][i % 3] for i in range(10)]
    assert r.summary["issue_drift"]["p50_us"] == 0  # the next query is issued as the previous completes


def test_closed_loop_minimum_duration_and_cap():
    clock = SimClock()
    ms = 1_000_000
    r = run_closed_loop(clock.model(lambda p: ms), [0], [1], StopRule(min_queries=1, min_duration_s=0.0055,
                                                                          max_duration_s=1), clock=clock)
    assert r.stopped_by == "minimums" and r.n == 6  # the first completion at or after 5.5 ms
    clock = SimClock()
    r = run_closed_loop(clock.model(lambda p: ms), [0], [1], StopRule(min_queries=1000, min_duration_s=0,
                                                                          max_duration_s=0.0105), clock=clock)
    assert r.stopped_by == "max_duration" and r.n == 11  # never later than the cap


def test_adaptive_stops_at_the_first_power_of_two_check_within_target():
    clock = SimClock()
    lat = [1000 + (i * 7919) % 101 for i in range(5000)]  # a spread of about 10% around the median
    k = iter(range(10**9))
    r = run_closed_loop(clock.model(lambda p: lat[next(k) % len(lat)]), [0], [1],
                        StopRule(min_queries=16, min_duration_s=0, max_duration_s=1e3, adaptive=True,
                                 ci_target=0.01), clock=clock)
    got = (r.done_ns - r.issue_ns)
    assert r.stopped_by == "ci_target"
    assert r.n & (r.n - 1) == 0 and r.n > 16  # checked at the minimum, then at powers of two
    assert r.summary["adaptive"]["ci_half_width_rel"] <= 0.01 * LOOP_TARGET_MARGIN  # stops with a margin
    assert median_ci_half_width_rel(got[: r.n // 2]) > 0.01 * LOOP_TARGET_MARGIN  # the previous check had not


def test_adaptive_that_cannot_reach_its_target_stops_at_the_cap_and_reports_the_width():
    clock = SimClock()
    rng = np.random.default_rng(0)
    lat = (rng.lognormal(0, 1.0, 4000) * 1e5).astype(int) + 1
    k = iter(range(10**9))
    r = run_closed_loop(clock.model(lambda p: lat[next(k) % len(lat)]), [0], [1],
                        StopRule(min_queries=8, min_duration_s=0, max_duration_s=0.05, adaptive=True,
                                 ci_target=0.001), clock=clock)
    assert r.stopped_by == "max_duration"
    width = r.summary["adaptive"]["ci_half_width_rel"]
    assert width > 0.001 and width == pytest.approx(median_ci_half_width_rel(r.done_ns - r.issue_ns))


# ---- server -----------------------------------------------------------------------------------------
def fifo_reference(arrivals, service):
    """Lindley's recursion for one server, FIFO: start = max(arrival, previous finish)."""
    finish, out = -10**18, []
    for a, s in zip(arrivals, service):
        finish = max(a, finish) + s
        out.append(finish)
    return np.array(out)


def test_server_latency_counts_from_scheduled_arrival_through_the_queue():
    clock = SimClock()
    arrivals = np.cumsum(np.random.default_rng(3).exponential(1e6, 300)).astype(np.int64)
    service = [int(x) for x in np.random.default_rng(4).uniform(2e5, 2e6, 300)]  # busy spells form queues
    k = iter(range(10**9))
    t_before = clock.t
    r = run_server(clock.model(lambda p: service[next(k)]), {1: [0]}, arrivals, n_queries=300,
                   stop=StopRule(min_queries=1, min_duration_s=0, max_duration_s=100), spin_ns=0,
                   clock=clock, sleep=clock.sleep)
    t0 = t_before + LEAD_IN_NS
    assert r.stopped_by == "all_queries" and r.n == 300
    assert r.issue_ns.tolist() == (arrivals + t0).tolist()  # issue_ns holds the schedule
    assert r.done_ns.tolist() == fifo_reference(arrivals + t0, service).tolist()
    assert r.summary["queries_unfinished"] == 0 and r.summary["batch_max"] == 1
    assert r.summary["issue_drift"]["max_us"] == 0  # never late: sleeps end on time on this clock
    wait = np.percentile(np.concatenate(([0], np.maximum(0, r.done_ns[:-1] - r.issue_ns[1:]))) / 1e3, 50)
    assert r.summary["queue_wait"]["p50_us"] == pytest.approx(wait)


def test_server_dynamic_batching_closes_on_size_or_wait():
    clock = SimClock()
    arrivals = np.array([0, 10, 20, 30, 40, 1000, 5000, 5001], dtype=np.int64) * 1000  # ns
    calls = []

    def predict(p):
        calls.append(p)
        clock.advance(100_000)

    pool = {b: [f"batch{b}"] for b in range(1, 4)}
    r = run_server(predict, pool, arrivals, n_queries=8, stop=StopRule(min_queries=1, min_duration_s=0,
                                                                        max_duration_s=100),
                   max_batch=3, max_wait_ns=500_000, spin_ns=0, clock=clock, sleep=clock.sleep)
    # 0,10,20 us fill a batch of 3 at 20 us; 30,40 us wait 500 us for a third and go as two;
    # 1000 us goes alone at 1500 us; 5000 and 5001 us wait until 5500 us and go together.
    assert calls == ["batch3", "batch2", "batch1", "batch2"]
    t0 = r.issue_ns[0] - arrivals[0]
    starts = np.array([20, 530, 1500, 5500]) * 1000 + t0
    assert r.done_ns.tolist() == np.repeat(starts + 100_000, [3, 2, 1, 2]).tolist()
    assert r.summary["batches"] == 4 and r.summary["batch_max"] == 3


def test_server_whose_queue_grows_without_bound_stops_at_the_cap_with_the_backlog_counted():
    clock = SimClock()
    arrivals = np.arange(1, 1001, dtype=np.int64) * 1_000_000  # one query per ms
    r = run_server(clock.model(lambda p: 2_000_000), {1: [0]}, arrivals, n_queries=1000,  # 2 ms each
                   stop=StopRule(min_queries=1, min_duration_s=0, max_duration_s=0.1), spin_ns=0,
                   clock=clock, sleep=clock.sleep)
    assert r.stopped_by == "max_duration"
    t0 = r.issue_ns[0] - arrivals[0]
    t_stop = int(r.done_ns[-1])
    assert t_stop >= t0 + 100_000_000 > int(r.done_ns[-2])
    arrived = int(np.searchsorted(arrivals + t0, t_stop, side="right"))
    assert r.summary["queries_unfinished"] == arrived - r.n > 0
    assert np.all(np.diff(r.done_ns - r.issue_ns) > 0)  # latency keeps growing: an unbounded queue


def test_adaptive_server_stops_once_the_median_is_precise():
    clock = SimClock()
    arrivals = np.arange(1, 20001, dtype=np.int64) * 10_000_000
    k = iter(range(10**9))
    lat = [1_000_000 + (i * 7919) % 20_000 for i in range(20000)]
    r = run_server(clock.model(lambda p: lat[next(k)]), {1: [0]}, arrivals, n_queries=32,
                   stop=StopRule(min_queries=32, min_duration_s=0, max_duration_s=1e6, adaptive=True, ci_target=0.002),
                   spin_ns=0, clock=clock, sleep=clock.sleep)
    assert r.stopped_by == "ci_target" and r.n < 20000
    assert r.summary["adaptive"]["ci_half_width_rel"] <= 0.002


# ---- QPS search ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("start", [1.0, 37.0, 100.0, 5000.0])
def test_search_finds_the_largest_passing_qps(start):
    asked = []

    def probe(q):
        asked.append(q)
        return q <= 123.0

    best = search_max_qps(probe, start, rel_tol=0.02, max_probes=30)
    assert best <= 123.0 and best >= 123.0 / 1.02 and best in asked
    assert len(asked) <= 30


def test_search_none_when_nothing_passes_and_stops_when_hopeless():
    assert search_max_qps(lambda q: False, 100.0, max_probes=5) is None
    asked = []
    assert search_max_qps(lambda q: asked.append(q), 100.0) is None  # None from the probe: hopeless
    assert asked == [100.0]


def test_spin_margin_is_bounded():
    assert spin_margin_ns(np.array([10_000] * 10)) == 50_000
    assert spin_margin_ns(np.array([300_000] * 10)) == 600_000
    assert spin_margin_ns(np.array([10**9] * 10)) == 2_000_000


# ---- stdio fast path -------------------------------------------------------------------------------------
def test_helper_answers_the_fast_envelope_and_any_other_json_layout():
    from heptathlon.runners.stdio import serve

    requests = (b'{"id":7,"inputs":[[1.5,2.0],[3.0,4.0]]}\n'
                b'\n'
                b'{ "inputs": [[0.5, 1.0]], "id": 8 }\n')
    out = io.BytesIO()
    serve(lambda m, x: (x.sum(axis=1).astype(int), x), stdin=io.BytesIO(requests), stdout=out)
    lines = out.getvalue().splitlines()
    assert json.loads(lines[0]) == {"ready": True}
    assert json.loads(lines[1]) == {"id": 7, "outputs": [3, 7], "scores": [[1.5, 2.0], [3.0, 4.0]]}
    assert json.loads(lines[2]) == {"id": 8, "outputs": [1], "scores": [[0.5, 1.0]]}


def test_line_reader_over_a_pipe_joins_split_lines_and_keeps_extra_ones():
    from heptathlon.runners.adapters.command import _LineReader

    r, w = os.pipe()
    try:
        reader = _LineReader(r, size=8)  # tiny reads: every line arrives in pieces
        os.write(w, b'{"id":1,"outputs":[0]}\n{"id":2,"outputs":[1]}\npartial')
        os.close(w)
        assert reader.readline() == b'{"id":1,"outputs":[0]}\n'
        assert reader.readline() == b'{"id":2,"outputs":[1]}\n'
        assert reader.readline() == b"partial"
        assert reader.readline() == b""
    finally:
        os.close(r)


SERVE = textwrap.dedent("""
    import numpy as np
    from heptathlon.runners.stdio import serve
    print("loading", flush=True)
    serve(lambda m, x: (np.arange(len(x)), x[:, :2]))
""")


def test_command_adapter_round_trips_large_batches_exactly(tmp_path):
    from heptathlon.bench.manifest import load_manifest
    from heptathlon.bench.profile import load_profile
    from heptathlon.runners.adapters import make_adapter

    (tmp_path / "serve.py").write_text(SERVE)
    (tmp_path / "submission.yaml").write_text("name: echo\ntask: arrests\nmodel: {kind: command, command: [python, serve.py]}\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    a = make_adapter(load_manifest(tmp_path), tmp_path, load_profile("cpu-1core"), {"command_env": env})
    a.load()
    try:
        x = np.random.default_rng(0).normal(size=(3000, 7)).astype(np.float32)  # ~100 KB: many pipe reads
        for batch in (x[:1], x[:64], x):
            raw_labels, raw_scores = a.postprocess(a.predict(a.prepare(batch)), len(batch))
            preds, scores = np.asarray(raw_labels), np.asarray(raw_scores, dtype=np.float32)
            assert preds.tolist() == list(range(len(batch)))
            assert np.array_equal(scores, batch[:, :2])  # float32 inputs survive the short encoding exactly
        assert a.describe()["ignored_stdout_lines"] == 1
    finally:
        a.close()
    assert a.proc.returncode == 0
