"""tokens/s, words/s and tokenize_ms from raw arrays (heptathlon.bench.text): exact totals from the
closed-loop schedule, the mean-based fallback under server, and the unavailable cases."""

import numpy as np
import pytest

from heptathlon.bench.metrics import MetricValue
from heptathlon.bench.scenarios import build_schedule, make_scenario
from heptathlon.bench.text import text_values, word_counts


def _thr(samples: int, window_s: float) -> MetricValue:
    v = samples / window_s
    return MetricValue("throughput_sps", v, "timer:perf_counter_ns", n=10, ci_low=0.9 * v, ci_high=1.1 * v,
                       params={"window_s": window_s, "samples": samples})


def test_closed_loop_totals_follow_the_schedule_exactly():
    x = np.array(["a b", "c", "d e f", "g h i j", "k"])
    tokens = np.array([4, 3, 5, 6, 3])
    cfg = make_scenario("fixed_batch", batch_size=2)
    schedule = build_schedule(cfg, len(x))
    n_queries = 7  # wraps around the schedule
    batch = np.array([len(schedule[i % len(schedule)]) for i in range(n_queries)])
    expected_tokens = sum(int(tokens[schedule[i % len(schedule)]].sum()) for i in range(n_queries))
    expected_words = sum(int(word_counts(x)[schedule[i % len(schedule)]].sum()) for i in range(n_queries))
    out = {v.name: v for v in text_values(x_test=x, input_type="text", tokens=tokens,
                                          tokenize_ns=np.array([1_000_000, 3_000_000]),
                                          cfg=cfg, batch=batch, throughput=_thr(int(batch.sum()), 2.0))}
    assert out["tokens_per_s"].value == pytest.approx(expected_tokens / 2.0)
    assert out["tokens_per_s"].method == "derived:tokens/window"
    assert out["words_per_s"].value == pytest.approx(expected_words / 2.0)
    scale = out["tokens_per_s"].value / (batch.sum() / 2.0)
    assert out["tokens_per_s"].ci_low == pytest.approx(0.9 * batch.sum() / 2.0 * scale)
    assert out["tokenize_ms"].value == pytest.approx(2.0) and out["tokenize_ms"].n == 2


def test_server_uses_the_mean_per_instance_and_says_so():
    x = np.array(["a", "b c"])
    out = {v.name: v for v in text_values(x_test=x, input_type="text", tokens=np.array([2, 4]), tokenize_ns=None,
                                          cfg=make_scenario("server"), batch=np.ones(10, int),
                                          throughput=_thr(10, 1.0))}
    assert out["tokens_per_s"].value == pytest.approx(30.0)
    assert out["tokens_per_s"].method == "derived:throughput*mean-tokens"
    assert out["words_per_s"].value == pytest.approx(15.0) and "tokenize_ms" not in out


def test_pairs_count_both_sides_and_features_get_nothing():
    assert word_counts(np.array([["a b", "c"], ["d", "e f g"]])).tolist() == [3, 4]
    assert text_values(x_test=np.zeros((3, 2), np.float32), input_type="features", tokens=None, tokenize_ns=None,
                       cfg=make_scenario("single_stream"), batch=np.ones(3, int), throughput=_thr(3, 1.0)) == []
    out = text_values(x_test=np.array(["a"]), input_type="text", tokens=None, tokenize_ns=None,
                      cfg=make_scenario("single_stream"), batch=np.ones(3, int), throughput=_thr(3, 1.0))
    assert out[0].name == "tokens_per_s" and out[0].value is None and "command" in out[0].note
