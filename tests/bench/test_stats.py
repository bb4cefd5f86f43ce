import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heptathlon.bench.metrics import MetricValue
from heptathlon.bench.errors import HeptathlonError
from heptathlon.bench.ranking import rank_with_ties
from heptathlon.bench.stats import BOOTSTRAP_MAX_N, summarize_accuracy, summarize_latency, summarize_throughput

floats = st.floats(min_value=0.001, max_value=1000, allow_nan=False)


@settings(max_examples=25, deadline=None)
@given(st.lists(floats, min_size=2, max_size=200))
def test_latency_cis_enclose_estimates(xs):
    for m in summarize_latency(np.array(xs)):
        assert m.n == len(xs)
        assert m.ci_low <= m.value + 1e-9 and m.value <= m.ci_high + 1e-9, m


def test_large_n_uses_exact_percentile_ci_and_still_encloses():
    x = np.random.default_rng(1).lognormal(0, 0.5, BOOTSTRAP_MAX_N * 3)
    for m in summarize_latency(x):
        assert m.ci_low < m.value < m.ci_high
        assert (m.ci_high - m.ci_low) / m.value < 0.05  # many samples: a narrow interval


def test_throughput_is_samples_over_window():
    issue = np.arange(10, dtype=np.int64) * 1_000_000  # one query per ms
    m = summarize_throughput(np.full(10, 4), issue, 10_000_000)
    assert m.value == pytest.approx(4000.0)
    assert m.params["samples"] == 40


def test_accuracy_ci():
    m = summarize_accuracy(np.array([1, 0, 1, 1]), np.array([1, 1, 1, 1]))
    assert m.value == 0.75 and m.n == 4 and m.ci_low <= 0.75 <= m.ci_high


def test_metric_value_rejects_unknown_name_and_method():
    with pytest.raises(HeptathlonError, match="unknown metric"):
        MetricValue("speediness", 1.0, "timer:x")
    with pytest.raises(HeptathlonError, match="method"):
        MetricValue("latency_p50_ms", 1.0, "vibes")


def test_ranks_tie_when_cis_overlap():
    r = {x.key: x.label for x in rank_with_ties([("a", 1.0, 0.9, 1.1), ("b", 1.05, 1.0, 1.2), ("c", 3.0, 2.9, 3.1)])}
    assert r == {"a": "1–2", "b": "1–2", "c": "3"}


def test_ranks_higher_is_better():
    r = {x.key: x.label for x in rank_with_ties([("a", 0.9, 0.89, 0.91), ("b", 0.5, 0.49, 0.51)], lower_is_better=False)}
    assert r == {"a": "1", "b": "2"}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(floats, st.floats(min_value=0, max_value=5)), min_size=1, max_size=12), st.randoms())
def test_ranks_invariant_under_permutation(items, rnd):
    entries = [(f"k{i}", v, v - w, v + w) for i, (v, w) in enumerate(items)]
    shuffled = entries[:]
    rnd.shuffle(shuffled)
    a = {x.key: (x.best, x.worst) for x in rank_with_ties(entries)}
    b = {x.key: (x.best, x.worst) for x in rank_with_ties(shuffled)}
    assert a == b
    assert all(1 <= lo <= hi <= len(entries) for lo, hi in a.values())
