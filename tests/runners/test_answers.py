"""Answers validated at the boundary, the sampler inside the measured loop, and the timed pass
compared with the quality pass (runners/answers.py); the quality pass without a silent fallback."""

from __future__ import annotations

import numpy as np
import pytest

from heptathlon.bench.errors import ModelError
from heptathlon.bench.scenarios import StopRule
from heptathlon.runners.adapters.base import ModelAdapter
from heptathlon.runners.answers import (AnswerError, AnswerSampler, Sampled, check_answer, check_labels,
                                        check_scores, compare_timed)
from heptathlon.runners.loadgen import run_closed_loop
from heptathlon.runners.worker import quality_pass

W = "submission 'evil': answer to request 6"


def _fails(labels, scores=None, n=3, classes=2) -> str:
    with pytest.raises(AnswerError) as e:
        check_answer(labels, scores, n=n, classes=classes, where=W)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(W), msg
    return msg


@pytest.mark.parametrize("bad,needle", [
    (-7, "label -7 is outside [0, 2)"),
    (99, "label 99 is outside [0, 2)"),
    (10**30, "is outside [0, 2)"),
    (3.9, "label 3.9 is not an integer (labels are never rounded or truncated)"),
    (1.0, "label 1.0 is not an integer"),
    (True, "label True is a boolean"),
    ("a", "label 'a' (str) is not an integer label"),
    ([[1]], "label [[1]] is a nested list"),
    ([1], "label [1] is a nested list"),
    (None, "label None (NoneType)"),
    ({"x": 1}, "(dict) is not an integer label"),
])
def test_a_bad_label_in_a_json_answer_is_one_line_naming_request_field_and_position(bad, needle):
    msg = _fails([0, 1, bad])
    assert "field 'outputs': position 2:" in msg and needle in msg, msg


@pytest.mark.parametrize("arr,needle", [
    (np.array([0, 1, -7]), "position 2: label -7 is outside [0, 2)"),
    (np.array([0, 2, 1], dtype=np.uint8), "position 1: label 2 is outside"),
    (np.array([0.0, 1.0, 3.9]), "position 0: label 0.0 is not an integer"),
    (np.array([True, False, True]), "position 0: label True is a boolean"),
    (np.array(["a", "b", "c"]), "label 'a' (str)"),
    (np.array([0, 1, 10**30], dtype=object), "position 2: label 1000000000000000000000000000000 is outside"),
    (np.zeros((3, 1, 2)), "labels of shape (3, 1, 2); expected (3,)"),
])
def test_a_bad_label_array_from_a_runtime_is_refused(arr, needle):
    assert needle in _fails(arr)


def test_wrong_count_and_not_a_list():
    assert "field 'outputs': 2 labels for 3 instances" in _fails([0, 1])
    assert "field 'outputs': 2 labels for 3 instances" in _fails(np.array([0, 1]))
    assert "'x' is not a list of labels" in _fails("x")


@pytest.mark.parametrize("scores,needle", [
    ([[0.1, 0.9], [float("nan"), 0.0], [0.5, 0.5]], "field 'scores': row 1, class 0: nan is not finite"),
    ([[0.1, 0.9], [0.2, 0.8], [0.5, float("inf")]], "row 2, class 1: inf is not finite"),
    ([[0.1, 0.9], [0.2, 0.8], [0.5, 1e39]], "row 2, class 1: 1e+39 is outside the float32 range"),
    ([[0.1, 0.9], [0.2, 0.8]], "field 'scores': shape (2, 2); expected (3, 2)"),
    ([[0.1, 0.9, 0.0]] * 3, "shape (3, 3); expected (3, 2)"),
    ([0.1, 0.9, 0.3], "shape (3,); expected (3, 2)"),
    ([[0.1, 0.9], [0.2], [0.5, 0.5]], "field 'scores': not a (3, 2) array of numbers"),
    ([["a", "b"]] * 3, "not a (3, 2) array of numbers"),
    ([[True, False]] * 3, "not a (3, 2) array of numbers"),
    ([[10**400, 0]] * 3, "not a (3, 2) array of numbers"),
    (np.array([[0.1, 0.9]] * 3, dtype=object), "scores of type object"),
])
def test_bad_scores_are_refused(scores, needle):
    msg = _fails([0, 1, 1], scores)
    assert needle in msg, msg


def test_scores_given_as_outputs_are_checked_as_outputs_and_give_the_argmax():
    labels, scores = check_answer([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6]], None, n=3, classes=2, where=W)
    assert labels.tolist() == [1, 0, 1] and labels.dtype == np.int64
    assert scores.dtype == np.float32 and scores.shape == (3, 2)
    assert "field 'outputs': row 0, class 1: nan is not finite" in _fails([[0.1, float("nan")]] * 3)
    assert "field 'outputs': shape (3, 3); expected (3, 2)" in _fails(np.ones((3, 3), dtype=np.float32))


def test_good_answers_pass_unchanged():
    labels, scores = check_answer([0, 1, 1], [[0.6, 0.4], [0.1, 0.9], [0, 1]], n=3, classes=2, where=W)
    assert labels.tolist() == [0, 1, 1] and scores.tolist()[2] == [0.0, 1.0]
    labels, scores = check_answer(np.array([2, 0, 9], dtype=np.int32), None, n=3, classes=10, where=W)
    assert labels.dtype == np.int64 and labels.tolist() == [2, 0, 9] and scores is None
    assert check_labels([], n=0, classes=2, where=W).size == 0
    assert check_scores(np.eye(2, dtype=np.float64), n=2, classes=2, where=W).dtype == np.float32


# ---- the sampler, inside the real closed loop ------------------------------------------------------------
@pytest.mark.parametrize("queries", [10, 64, 500, 5000])
def test_sampler_keeps_at_most_cap_answers_spread_over_the_loop(queries):
    prepared = list(range(7))
    sampler = AnswerSampler(cap=16, seed=1)
    r = run_closed_loop(lambda p: ("answer", p), prepared, [1] * 7,
                        StopRule(min_queries=queries, min_duration_s=0.0, max_duration_s=60.0), sampler=sampler)
    assert r.n == queries
    kept = sampler.samples()
    ns = [n for n, _, _ in kept]
    assert len(kept) == min(queries, 16) and ns == sorted(set(ns))
    for n, p, raw in kept:  # each kept answer is the one the model gave to that query's input
        assert p == prepared[n % 7] and raw == ("answer", p)
    if queries >= 500:  # spread: some in each half of the loop, none only at its start
        assert min(ns) < queries // 2 <= max(ns)


def test_sampled_positions_are_not_predictable():
    def positions(seed):
        s = AnswerSampler(cap=8, seed=seed)
        run_closed_loop(lambda p: p, [0], [1], StopRule(min_queries=1000, min_duration_s=0.0, max_duration_s=60.0),
                        sampler=s)
        return [n for n, _, _ in s.samples()]
    assert positions(1) != positions(2)


# ---- the timed pass against the quality pass -----------------------------------------------------------------
def _quality(n=100, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, classes)).astype(np.float32)
    return scores.argmax(axis=1), scores


def test_matching_answers_pass_and_are_recorded():
    preds, scores = _quality()
    idx = np.array([5, 6, 7])
    rec = compare_timed([Sampled(0, idx, preds[idx], scores[idx] * (1 + 1e-6))], preds, scores, precision="fp32",
                        submission="s")
    assert rec["instances"] == 3 and rec["queries"] == 1 and rec["mismatched"] == 0


def test_differing_labels_fail_with_the_consistency_line():
    preds, _ = _quality()
    a, b = np.array([3]), np.array([10, 11])
    wrong = (preds[b] + 1) % 3
    with pytest.raises(AnswerError) as e:
        compare_timed([Sampled(0, a, preds[a], None), Sampled(9, b, wrong, None)], preds, None, precision="fp32",
                      submission="cheat")
    assert str(e.value) == ("submission 'cheat': timed-pass outputs differ from the quality pass "
                            "(2 of 3 sampled instances, first at instance 10)")


def test_scores_beyond_the_precisions_tolerance_fail_and_a_near_tie_does_not():
    preds, scores = _quality()
    i = np.array([4])
    off = scores[i].copy()
    off[0, 0] += 0.05  # beyond fp32's tolerance, within int8's
    with pytest.raises(AnswerError, match="1 of 1 sampled instances, first at instance 4"):
        compare_timed([Sampled(0, i, preds[i], off)], preds, scores, precision="fp32", submission="s")
    compare_timed([Sampled(0, i, preds[i], off)], preds, scores, precision="int8", submission="s")
    tie = np.array([[1.0, 1.0 - 1e-5, -1.0]], dtype=np.float32)  # a near tie: either label is fine
    q_scores = scores.copy()
    q_scores[4] = tie[0]
    q_preds = q_scores.argmax(axis=1)
    compare_timed([Sampled(0, i, np.array([1]), tie)], q_preds, q_scores, precision="fp32", submission="s")
    with pytest.raises(AnswerError):  # no scores this time where the quality pass had them
        compare_timed([Sampled(0, i, q_preds[i], None)], q_preds, q_scores, precision="fp32", submission="s")


# ---- the quality pass: no silent fallback ------------------------------------------------------------------
class OneAtATime(ModelAdapter):
    """A hostile-or-broken in-process model: anything but one instance at a time raises."""

    name = profiler = "test"

    def load(self):
        pass

    def predict(self, prepared):
        if len(prepared) > 1:
            raise RuntimeError(f"Got: {len(prepared)} Expected: 1")
        return np.zeros((1, 2), dtype=np.float32)

    def describe(self):
        return {}


def test_a_first_batch_that_fails_is_the_reason_with_no_fallback():
    x = np.zeros((100, 7), dtype=np.float32)
    with pytest.raises(ModelError) as e:
        quality_pass(OneAtATime(None, None, None), x, 64, classes=2, submission="one")
    assert str(e.value) == ("submission 'one': the quality pass's first batch, of 64 instances, failed: "
                            "RuntimeError: Got: 64 Expected: 1; a model must take any batch size up to 64 "
                            "(there is no fallback to batch size 1)")


def test_a_fixed_batch_onnx_model_runs_at_its_batch_size_and_the_record_says_so(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from heptathlon.bench.manifest import load_manifest
    from heptathlon.bench.profile import load_profile
    from heptathlon.runners.adapters import make_adapter

    w = helper.make_tensor("w", TensorProto.FLOAT, [7, 2], np.linspace(-1, 1, 14, dtype=np.float32).tolist())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "fixed",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    (tmp_path / "submission.yaml").write_text("name: fixed\ntask: arrests\nmodel: {kind: onnx, path: m.onnx}\n")
    a = make_adapter(load_manifest(tmp_path), tmp_path, load_profile("cpu-1core"))
    a.load()
    assert a.fixed_batch == 1
    x = np.random.default_rng(0).normal(size=(10, 7)).astype(np.float32)
    preds, scores, record = quality_pass(a, x, 64, classes=2, submission="fixed")
    assert record == {"batch": 1, "requested_batch": 64, "requests": 10,
                      "why": "the model's input shape fixes the batch dimension to 1"}
    assert preds.tolist() == (x @ np.linspace(-1, 1, 14, dtype=np.float32).reshape(7, 2)).argmax(axis=1).tolist()
    assert scores.shape == (10, 2)
