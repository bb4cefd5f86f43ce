"""Each adapter on a tiny real model from the bundled examples: load, predict a batch,
postprocess shapes, describe; and each derived runtime from the torch example's module."""

from __future__ import annotations

import numpy as np
import pytest

from heptathlon.bench.manifest import load_manifest
from heptathlon.bench.profile import load_profile
from heptathlon.runners.adapters import make_adapter
from heptathlon.runners.adapters.derive import derive_runtimes
from heptathlon.runners.adapters.registry import RUNTIMES, runtime_class
from heptathlon.runners.answers import check_answer

N_FEATURES = 7  # the arrests task
BATCH = np.random.default_rng(0).normal(size=(5, N_FEATURES)).astype(np.float32)


@pytest.fixture(scope="module")
def profile():
    return load_profile("cpu-1core")


def _loaded(examples, name, profile):
    folder = examples[name]
    a = make_adapter(load_manifest(folder), folder, profile)
    a.load()
    return a


@pytest.mark.parametrize("example, name, runtime, profiler", [
    ("arrests-mlp-onnx", "onnxruntime", "onnxruntime", "onnxruntime"),
    ("arrests-mlp-torch", "eager", "torch-eager", "torch"),
    ("arrests-mlp-torchscript", "torchscript", "torchscript", "torch"),
    ("arrests-mlp-command", "command", "command", "command"),
])
def test_submission_adapter_loads_predicts_and_describes(examples, profile, example, name, runtime, profiler):
    a = _loaded(examples, example, profile)
    try:
        assert (a.name, a.profiler, a.available, a.device) == (name, profiler, True, "cpu")
        labels, scores = check_answer(*a.postprocess(a.predict(a.prepare(BATCH)), len(BATCH)), n=len(BATCH),
                                      classes=2, where="test")  # what the worker does with every answer
        assert labels.shape == (5,) and set(labels.tolist()) <= {0, 1}
        if scores is not None:
            assert scores.shape == (5, 2) and scores.dtype == np.float32
            assert labels.tolist() == scores.argmax(axis=1).tolist()
        d = a.describe()
        assert d["runtime"] == runtime
        if profiler == "command":
            assert d["params"] is None and d["params_note"]
        else:
            assert d["params"] > 0 and d["runtime_version"]
        assert a.details["how"].startswith("the submitted")
    finally:
        a.close()


def test_onnx_adapter_records_the_profile_session(examples, profile):
    a = _loaded(examples, "arrests-mlp-onnx", profile)
    rec = a.records["onnxruntime"]
    assert rec["intra_op_num_threads"] == profile.cpu.threads and rec["graph_optimization"] == "all"
    assert a.providers == ("CPUExecutionProvider",)
    assert a.onnx_model == (examples["arrests-mlp-onnx"] / "model.onnx").read_bytes()
    assert a.make_session_options().intra_op_num_threads == profile.cpu.threads


def test_torch_adapters_apply_the_torch_section(examples, profile):
    a = _loaded(examples, "arrests-mlp-torch", profile)
    assert a.records["runtime.torch.deterministic"]["took_effect"]
    assert a.records["cpu.threads"]["effective"] == profile.cpu.threads
    assert a.derivable == ("torchscript", "onnxruntime", "torch.compile")


@pytest.fixture(scope="module")
def derived(examples, profile):
    import torch

    a = _loaded(examples, "arrests-mlp-torch", profile)
    example = torch.from_numpy(BATCH[:4])
    return derive_runtimes(a.module, example, include=RUNTIMES, compile_budget_s=120.0)


@pytest.mark.parametrize("name", RUNTIMES)
def test_derived_runtime_predicts_like_eager_and_describes(derived, name):
    import torch

    rt = derived[name]
    assert rt.available, rt.reason
    assert rt.name == name and rt.convert_s is not None and rt.convert_s >= 0
    x = torch.from_numpy(BATCH)
    labels, scores = rt.postprocess(rt.predict(rt.prepare(x)), len(BATCH))
    want_labels, want_scores = derived["eager"].postprocess(derived["eager"].predict(derived["eager"].prepare(x)), 5)
    assert labels.shape == (5,) and scores.shape == (5, 2)
    assert labels.tolist() == want_labels.tolist()
    np.testing.assert_allclose(scores, want_scores, rtol=1e-3, atol=1e-4)
    d = rt.describe()
    assert d["runtime"] == "onnxruntime" if name == "onnxruntime" else d["runtime"] == name
    assert d["runtime_version"]
    if name != "eager":
        assert rt.details["how"]


def test_unavailable_runtime_keeps_its_name_and_profiler():
    rt = runtime_class("onnxruntime").unavailable("no exporter here")
    assert (rt.name, rt.profiler, rt.available, rt.reason, rt.convert_s) == (
        "onnxruntime", "onnxruntime", False, "no exporter here", None)
