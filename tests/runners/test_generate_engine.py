"""The generate scenario's model side, in process, on the bundled GPT-2-shaped causal LM (random
weights, a tokenizer trained here): the batched KV-cache decode loop, the three load modes, the
SLO search and the sweep. Statistics are the parent's (tests/bench/test_generation.py)."""

from __future__ import annotations

import numpy as np
import pytest

from heptathlon.bench.errors import ModelError
from heptathlon.bench.manifest import load_manifest
from heptathlon.bench.profile import load_profile
from heptathlon.bench.scenarios import make_scenario
from heptathlon.bench.tasks import resolve_task
from heptathlon.runners.adapters import make_adapter
from heptathlon.runners.adapters.causal_lm import CausalLMEngine
from heptathlon.runners.generate import Driver, EngineBackend, Load

K = 6  # new tokens per request


@pytest.fixture(scope="module")
def gpt2(examples):
    folder = examples["gpt2-tiny-transformers"]
    m = load_manifest(folder)
    data = resolve_task(m.task, folder).load()
    a = make_adapter(m, folder, load_profile("cpu-1core"), {"input_spec": data.input_spec()})
    a.load()
    yield a, [str(p) for p in data.x_test[:12]]
    a.close()


def engine(adapter, max_batch, **kw):
    return CausalLMEngine(adapter, max_new_tokens=K, ignore_eos=True, max_batch=max_batch,
                          truncation=kw.pop("truncation", False), submission="gpt2-tiny", **kw)


def decode_all(eng, prompts):
    ids = eng.tokenize(prompts)
    for rid, seq in enumerate(ids, start=1):
        eng.submit(rid, seq)
    events = []
    while not eng.idle():
        events += eng.step(None)
    return ids, events


def test_batched_left_padded_decoding_gives_single_stream_tokens(gpt2):
    adapter, prompts = gpt2
    one, batched = engine(adapter, 1), engine(adapter, 4)
    ids, _ = decode_all(one, prompts[:8])
    assert len({len(s) for s in ids}) > 1  # prompts of different lengths: padding is exercised
    decode_all(batched, prompts[:8])
    assert one.cohorts == [1] * 8 and batched.cohorts == [4, 4]
    assert batched.output_ids == one.output_ids  # greedy, fp32: padding must not change a token
    assert all(len(v) == K for v in one.output_ids.values())  # ignore_eos: exactly K each


def test_events_follow_the_streaming_protocol(gpt2):
    adapter, prompts = gpt2
    _, events = decode_all(engine(adapter, 4), prompts[:4])
    by_id: dict[int, list[dict]] = {}
    for msg, t in events:
        assert isinstance(t, int)
        by_id.setdefault(msg["id"], []).append(msg)
    for rid, msgs in by_id.items():
        assert [("token" in m or "tokens" in m) for m in msgs[:-1]] == [True] * (len(msgs) - 1)
        assert "outputs" in msgs[-1], msgs[-1]


def test_a_prompt_too_long_for_the_context_fails_naming_it_or_is_truncated(gpt2):
    adapter, prompts = gpt2
    long = " ".join(["word"] * 4000)
    with pytest.raises(ModelError, match=r"prompt 1 has \d+ tokens.*truncation: true"):
        engine(adapter, 2).tokenize([prompts[0], long])
    eng = engine(adapter, 2, truncation=True)
    ids = eng.tokenize([prompts[0], long])
    assert eng.truncated == 1 and len(ids[1]) == eng.context - K


def _driver(adapter, prompts, **opts):
    cfg = make_scenario("generate", min_queries=8, warmup_queries=1, max_new_tokens=K, ignore_eos=True,
                        max_duration_s=60, **opts)
    be = EngineBackend(engine(adapter, cfg.max_batch))
    be.prepare(prompts)
    return Driver(be, prompts, cfg, "gpt2-tiny"), be


@pytest.mark.parametrize("opts, mode", [({}, "single_stream"), ({"concurrency": 4}, "concurrency"),
                                        ({"rate": 200.0}, "rate")])
def test_each_load_mode_traces_every_request_token_by_token(gpt2, opts, mode):
    adapter, prompts = gpt2
    drv, be = _driver(adapter, prompts, **opts)
    drv.warmup()
    p = drv.run_pass(drv.headline_load())
    assert p["mode"] == mode and p["requests"] == 8 == len(p["traces"])
    for t in p["traces"]:
        stamps = t["token_ns"]
        assert len(stamps) == K == t["output_tokens"] == len(t["output_ids"])
        assert t["arrival_ns"] <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= t["final_ns"]
        assert t["prompt_tokens"] == len(be.ids[t["index"]])  # the model's tokenizer's count
    sizes = be.engine.cohorts[1:]  # after the warm-up's
    if mode == "single_stream":
        assert set(sizes) == {1}
    if mode == "concurrency":
        assert max(sizes) == 4 and sum(sizes) == 8  # four in flight: cohorts of four
    if mode == "rate":  # latency from the scheduled arrival: successive arrivals are Poisson, not closed loop
        arrivals = np.array([t["arrival_ns"] for t in p["traces"]])
        assert len(set(np.diff(np.sort(arrivals)).tolist())) > 1


def test_an_slo_no_rate_can_meet_is_a_result(gpt2):
    adapter, prompts = gpt2
    drv, _ = _driver(adapter, prompts, ttft_slo_ms=1e-6, tpot_slo_ms=1e-6)
    slo = drv.slo_search()
    assert slo["met"] is False and slo["max_rate"] is None
    assert slo["reason"].startswith("SLO not met at any rate")
    assert [p["mode"] for p in slo["probes"]] == ["throughput", "rate"]


def test_a_generous_slo_is_met_above_the_measured_throughput(gpt2):
    adapter, prompts = gpt2
    drv, _ = _driver(adapter, prompts, ttft_slo_ms=1e6, tpot_slo_ms=1e6)
    slo = drv.slo_search()
    assert slo["met"] is True and slo["max_rate"] > slo["throughput_rate"]
    assert all(p["met"] for p in slo["probes"][1:])


def test_a_sweep_runs_sync_throughput_then_rates_between(gpt2):
    adapter, prompts = gpt2
    drv, _ = _driver(adapter, prompts, sweep=True)
    points = drv.sweep(None)
    assert [p["mode"] for p in points] == ["single_stream", "throughput", "rate", "rate", "rate"]
    assert [p["point"] for p in points] == [0, 1, 2, 3, 4]
    rates = [p["rate"] for p in points[2:]]
    assert rates == sorted(rates) and len(set(rates)) == 3
