"""Majority baseline beside accuracy; fairlearn's base-rate-aware measures; 'not distinguishable from zero'."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from heptathlon.bench.fairness import ZERO_NOTE, base_rate_aware_values, majority_baseline, zero_note
from heptathlon.bench.stats import summarize_accuracy


def _data(seed=0, n=1200):
    rng = np.random.default_rng(seed)
    g = np.where(rng.random(n) < 0.5, "a", "b")
    y = (rng.random(n) < np.where(g == "a", 0.1, 0.3)).astype(int)  # base rates differ by group
    return g, y


def test_a_constant_answer_has_zero_parity_and_odds_differences_but_an_accuracy_gap():
    g, y = _data()
    const = np.zeros_like(y)
    _, base, per_group = majority_baseline(y, g)
    assert base == pytest.approx(np.mean(y == 0)) and per_group["a"] > per_group["b"]  # the base-rate gap
    dp, eo = base_rate_aware_values(y, const, g, n_resamples=100)
    assert dp.value == 0 and eo.value == 0 and dp.ci_low == dp.ci_high == 0
    assert dp.note == ZERO_NOTE


def test_point_values_are_fairlearns_and_a_real_disparity_excludes_zero():
    g, y = _data(1)
    rng = np.random.default_rng(2)
    pred = np.where(g == "a", y, np.where(rng.random(y.size) < 0.4, 1 - y, y))  # group b gets noisy answers
    dp, eo = base_rate_aware_values(y, pred, g, n_resamples=200)
    assert dp.value == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=g))
    assert eo.value == pytest.approx(equalized_odds_difference(y, pred, sensitive_features=g))
    assert eo.ci_low > 0 and eo.note is None
    assert base_rate_aware_values(np.array([0, 1, 2]), np.array([0, 1, 2]), np.array(["a", "a", "b"])) == []


def test_accuracy_carries_the_majority_baseline_and_says_when_it_is_no_better():
    y = np.array([0] * 90 + [1] * 10)
    v = summarize_accuracy(y, np.zeros(100, dtype=int))
    assert v.params["majority_baseline"] == pytest.approx(0.9) and "majority-class baseline 0.9000" in v.note
    assert "not better" in v.note
    assert zero_note(-0.01, 0.02) == ZERO_NOTE and zero_note(0.01, 0.02) is None
