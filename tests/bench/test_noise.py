"""Between-run noise model (heptathlon.bench.noise): fit, widen one run, pool k trials."""

from __future__ import annotations

import numpy as np
import pytest

from heptathlon.bench.errors import MetricError
from heptathlon.bench.metrics import MetricValue
from heptathlon.bench.noise import NoiseModel, fit_noise_model, widen_pooled, widen_single
from heptathlon.bench.stats import pool_trial_values


def _model(rel_sd=0.02, df=19):
    rng = np.random.default_rng(0)
    vals = 100 * (1 + rng.normal(0, rel_sd, df + 1))
    return fit_noise_model("cls", [{"throughput_sps": list(vals)}])


def test_fit_pools_series_by_degrees_of_freedom():
    m = fit_noise_model("c", [{"latency_p50_ms": [1.0, 1.1, 0.9]}, {"latency_p50_ms": [2.0, 2.0, 2.0, 2.0]},
                              {"latency_p99_ms": [5.0]}])
    n = m.metrics["latency_p50_ms"]
    assert n.df == 2 + 3 and n.runs == 7
    assert n.rel_sd == pytest.approx(np.sqrt(2 * np.var([1.0, 1.1, 0.9], ddof=1) / 5))
    assert "latency_p99_ms" not in m.metrics  # one run: no spread to fit
    assert NoiseModel.from_json(m.to_json()) == m
    with pytest.raises(MetricError, match="not a noise model"):
        NoiseModel.from_json({"metrics": 3}, "x.json")


def test_one_run_ci_gets_the_between_run_component_and_says_how():
    model = _model()
    sd = model.metrics["throughput_sps"].rel_sd
    v = MetricValue("throughput_sps", 100.0, "timer:x", n=1000, ci_low=99.9, ci_high=100.1)
    w = widen_single(v, model)
    assert w.ci_low < 100 - 1.9 * sd * 100 and w.ci_high > 100 + 1.9 * sd * 100
    assert (w.ci_high - 100) < 3 * sd * 100  # not uselessly wide: t(19) * sd, sampling in quadrature
    assert w.params["ci_sampling"] == [99.9, 100.1] and w.params["noise_model"]["df"] == 19
    assert "between-run" in w.params["ci_method"]
    assert widen_single(MetricValue("accuracy", 0.5, "quality:x"), model).ci_low is None  # not in the model


def test_pooled_three_trials_borrow_the_models_df_and_are_narrower_than_t2():
    model = _model()
    p = pool_trial_values("throughput_sps", [97.0, 100.0, 103.0], "timer:x", ci=(99.0, 101.0))
    w = widen_pooled(p, model)
    assert (w.ci_high - w.ci_low) < (p.ci_high - p.ci_low)  # t(2) * s/sqrt(3) was wider
    assert w.ci_low <= 99.0 and w.ci_high >= 101.0  # never narrower than the sampling CI
    assert w.params["ci_unpooled"] == [p.ci_low, p.ci_high]
