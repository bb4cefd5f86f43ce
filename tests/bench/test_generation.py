"""The generate scenario's protocol rules and arithmetic (bench/generation.py), on hand-made stamps."""

import numpy as np
import pytest

from heptathlon.bench.errors import ModelError
from heptathlon.bench.generation import RequestTrace, StreamState, sample_arrays, summarize_generation

MS = 1_000_000


def _state(k=4):
    s = StreamState("sub", max_new_tokens=k)
    s.issue(1, 0, 5)
    return s


def test_a_streamed_request_is_traced_token_by_token():
    s = _state()
    s.on_line({"id": 1, "token": "a"}, 50 * MS)
    s.on_line({"id": 1, "tokens": ["b", "c"]}, 60 * MS)
    done = s.on_line({"id": 1, "outputs": ["abc"], "output_tokens": 3}, 61 * MS)
    assert done is not None and done.token_ns == [50 * MS, 60 * MS, 60 * MS]
    assert done.ttft_ns == 50 * MS and done.e2e_ns == 61 * MS and done.tpot_ns == 5 * MS
    assert [t.id for t in s.finished()] == [1]


@pytest.mark.parametrize("lines, needle", [
    ([{"id": 2, "token": "a"}], "never sent"),
    ([{"id": 1, "outputs": ["x"], "output_tokens": 0}], "without streaming a token"),
    ([{"id": 1, "token": "a"}, {"id": 1, "outputs": ["a"], "output_tokens": 1}, {"id": 1, "token": "b"}],
     "after its final answer"),
    ([{"id": 1, "token": "a"}, {"id": 1, "outputs": ["a"], "output_tokens": 2}], "says 2 output tokens but 1"),
    ([{"id": 1, "token": "a"}, {"id": 1, "outputs": ["a"], "output_tokens": -3}], "'output_tokens' must be"),
    ([{"id": 1, "tokens": ["a"] * 5}], "more than max_new_tokens=4"),
    ([{"id": 1, "token": 7}], "'token' must be a string"),
    ([{"id": 1, "tokens": []}], "non-empty list"),
    ([{"id": 1, "token": "a", "outputs": ["a"]}], "both tokens and the final"),
    ([{"id": 1}], "neither"),
    ([{"id": 1, "token": "a"}, {"id": 1, "outputs": "a", "output_tokens": 1}], "list of one generated string"),
    ([{"id": 1, "token": "a"}, {"id": 1, "outputs": ["a"], "prompt_tokens": -1}], "'prompt_tokens' must be"),
    (["not an object"], "not a protocol message"),
])
def test_protocol_violations_fail_naming_the_request(lines, needle):
    s = _state()
    with pytest.raises(ModelError) as e:
        for i, line in enumerate(lines):
            s.on_line(line, (i + 1) * MS)
    assert needle in str(e.value) and "'sub'" in str(e.value)


def test_a_late_line_read_by_the_next_pass_is_named_after_its_final_answer():
    # The warm-up pass ended on request 1's final answer; its stray token arrived in the next
    # pass's first read. That pass never issued id 1, but the run's closed ids know it.
    first = _state()
    first.on_line({"id": 1, "token": "a"}, MS)
    first.on_line({"id": 1, "outputs": ["a"], "output_tokens": 1}, MS)
    first.closed.update(tr.id for tr in first.finished())
    nxt = StreamState("sub", max_new_tokens=4, closed=first.closed)
    nxt.issue(2, 0, 3)
    with pytest.raises(ModelError, match="request 1: streamed after its final answer"):
        nxt.on_line({"id": 1, "token": "b"}, MS)
    with pytest.raises(ModelError, match="request 9: answered an id that was never sent"):
        nxt.on_line({"id": 9, "token": "b"}, MS)


def test_a_request_left_open_fails_naming_it():
    s = _state()
    s.on_line({"id": 1, "token": "a"}, MS)
    with pytest.raises(ModelError, match="request 1: never sent its final answer"):
        s.finished()


def test_a_declared_prompt_token_count_is_taken():
    s = _state()
    s.on_line({"id": 1, "token": "a"}, MS)
    tr = s.on_line({"id": 1, "outputs": ["a"], "output_tokens": 1, "prompt_tokens": 9}, 2 * MS)
    assert tr.prompt_tokens == 9 and tr.prompt_tokens_declared


def _calibrated(n=20, k=8, ttft=50, itl=10, jitter=0.0, seed=0):
    """n requests in single stream with a known TTFT and ITL (ms)."""
    rng = np.random.default_rng(seed)
    traces, t = [], 0
    for i in range(n):
        stamps = [t + int((ttft + rng.normal(0, jitter)) * MS)]
        for _ in range(k - 1):
            stamps.append(stamps[-1] + int((itl + rng.normal(0, jitter)) * MS))
        traces.append(RequestTrace(i, t, 16, stamps, stamps[-1], k))
        t = stamps[-1]
    return traces


def test_summaries_recover_a_known_ttft_and_itl():
    traces = _calibrated()
    v = {m.name: m for m in summarize_generation(traces, 0, traces[-1].final_ns)}
    assert v["ttft_p50_ms"].value == pytest.approx(50) and v["ttft_p50_ms"].n == 20
    assert v["itl_p50_ms"].value == pytest.approx(10) and v["itl_p50_ms"].n == 20 * 7
    assert v["tpot_ms"].value == pytest.approx(10)
    assert v["e2e_p50_ms"].value == pytest.approx(120)
    assert v["requests_per_s"].value == pytest.approx(1000 / 120)
    assert v["output_tokens_per_s"].value == pytest.approx(8 * 1000 / 120)
    assert v["output_tokens_per_s_per_request"].value == pytest.approx(8 / 0.07)
    assert v["prefill_tokens_per_s"].value == pytest.approx(16 / 0.05)
    assert v["energy_per_token_j"].value is None


def test_cis_cover_the_value_and_widen_with_jitter():
    quiet = {m.name: m for m in summarize_generation(_calibrated(jitter=0.1), 0, _calibrated(jitter=0.1)[-1].final_ns)}
    noisy_traces = _calibrated(jitter=3.0)
    noisy = {m.name: m for m in summarize_generation(noisy_traces, 0, noisy_traces[-1].final_ns)}
    for name in ("ttft_p50_ms", "itl_p50_ms", "output_tokens_per_s", "requests_per_s", "tpot_ms"):
        m = noisy[name]
        assert m.ci_low <= m.value <= m.ci_high, name
        assert (m.ci_high - m.ci_low) > (quiet[name].ci_high - quiet[name].ci_low), name


def test_itl_pools_every_gap_while_tpot_is_per_request():
    # one request with uneven gaps: ITL p99 sees the long gap, TPOT (the mean) smooths it (vLLM vs guidellm)
    stamps = [10 * MS, 11 * MS, 12 * MS, 13 * MS, 50 * MS]
    tr = [RequestTrace(0, 0, 4, stamps, stamps[-1], 5)]
    v = {m.name: m for m in summarize_generation(tr, 0, stamps[-1])}
    assert v["itl_p99_ms"].value > 30 and v["tpot_ms"].value == pytest.approx(10)


def test_single_token_requests_have_no_itl():
    tr = [RequestTrace(i, i * 10 * MS, 4, [i * 10 * MS + 5 * MS], i * 10 * MS + 5 * MS, 1) for i in range(3)]
    v = {m.name: m for m in summarize_generation(tr, 0, tr[-1].final_ns)}
    assert v["itl_p50_ms"].value is None and v["tpot_ms"].value is None and v["ttft_p50_ms"].value == pytest.approx(5)


def test_sample_arrays_hold_every_request_and_gap():
    a = sample_arrays(_calibrated(n=3, k=4))
    assert a["ttft_ns"].tolist() == [50 * MS] * 3 and len(a["itl_ns"]) == 9
    assert a["output_tokens"].tolist() == [4, 4, 4] and a["prompt_tokens"].tolist() == [16] * 3


def test_interval_union_counts_overlaps_once():
    from heptathlon.bench.generation import union_s

    s, e = np.array([0.0, 1.0, 5.0, 2.0]), np.array([3.0, 2.0, 6.0, 4.0])
    assert union_s(s, e) == pytest.approx(5.0)  # [0, 4) and [5, 6)
    rows = np.stack([s, s + 10]), np.stack([e, e + 10])
    assert union_s(*rows).tolist() == pytest.approx([5.0, 5.0])


def test_shared_time_splits_overlaps_and_sums_to_the_union():
    from heptathlon.bench.generation import shared_time_s, union_s

    s, e = np.array([0.0, 1.0, 5.0, 2.0]), np.array([3.0, 2.0, 6.0, 4.0])
    share = shared_time_s(s, e)
    assert share.sum() == pytest.approx(union_s(s, e))
    # [0,1): a alone; [1,2): a, b; [2,3): a, d; [3,4): d alone; [5,6): c
    assert share.tolist() == pytest.approx([1 + 0.5 + 0.5, 0.5, 1.0, 0.5 + 1.0])


def test_prefill_rate_counts_a_cohort_once():
    # four requests arriving together, all first tokens at 10 ms: a cohort prefilled as one batch
    traces = [RequestTrace(i, 0, 32, [10 * MS, 11 * MS], 12 * MS, 2) for i in range(1, 5)]
    v = {m.name: m for m in summarize_generation(traces, 0, 12 * MS)}
    p = v["prefill_tokens_per_s"]
    assert p.value == pytest.approx(4 * 32 / 0.010) and p.ci_low <= p.value <= p.ci_high


@pytest.mark.parametrize("spread_ms", [50, 2000])  # overlapping requests, and one at a time (single stream)
def test_the_prefill_rate_ci_holds_its_value(spread_ms):
    # a bootstrap of tokens over the union of resampled intervals would collapse duplicates and sit
    # above the value; resampling each request's share of the time does not
    rng = np.random.default_rng(3)
    arrivals = np.sort(rng.uniform(0, spread_ms, 40)) * MS
    traces = [RequestTrace(i + 1, int(a), int(rng.integers(8, 64)), [int(a + rng.uniform(2, 20) * MS)] * 2,
                           int(a + 30 * MS), 2) for i, a in enumerate(arrivals)]
    p = {m.name: m for m in summarize_generation(traces, int(arrivals[0]), int(arrivals[-1] + 30 * MS))}[
        "prefill_tokens_per_s"]
    assert p.ci_low <= p.value <= p.ci_high
