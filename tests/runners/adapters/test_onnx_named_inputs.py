"""ONNX with named int64 inputs: a tiny BERT exported with input_ids, attention_mask and
token_type_ids (dynamic batch and sequence axes), fed from a text task through its tokenizer and
from a token task by field name; it matches transformers' own logits, and a graph the task cannot
feed is one line naming the graph's inputs and what the task provides."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from heptathlon.bench.errors import ModelError, SubmissionError
from heptathlon.bench.manifest import load_manifest
from heptathlon.bench.profile import load_profile
from heptathlon.bench.tasks import resolve_task
from heptathlon.runners.adapters import make_adapter
from heptathlon.runners.worker import quality_pass, text_arrays
from tests.text_models import export_text_onnx, text_submission


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    root = text_submission(tmp_path_factory.mktemp("onnx") / "tiny")
    export_text_onnx(root / "model", root / "model.onnx")
    return root


def _adapter(folder):
    m = load_manifest(folder)
    data = resolve_task(m.task, folder).load()
    a = make_adapter(m, folder, load_profile("cpu-1core"), {"input_spec": data.input_spec()})
    return a, data


def _onnx(bert, tmp_path, manifest_model: str, task: str | None = None):
    d = tmp_path / "sub"
    shutil.copytree(bert, d)
    (d / "submission.yaml").write_text(f"name: tiny-onnx\ntask: {task or 'task.yaml'}\nmodel: {manifest_model}\n")
    return d


def test_text_task_feeds_named_int64_inputs_and_matches_transformers(bert, tmp_path):
    d = _onnx(bert, tmp_path, "{kind: onnx, path: model.onnx, text: {tokenizer: model}}")
    onnx, data = _adapter(d)
    onnx.load()
    # batches of mixed lengths: dynamic axes
    p_onnx, s_onnx, _ = quality_pass(onnx, data.x_test, 7, classes=data.n_classes, submission='tiny-onnx')
    (d / "submission.yaml").write_text("name: tiny\ntask: task.yaml\nmodel: {kind: transformers, path: model}\n")
    tf, _ = _adapter(d)
    tf.load()
    p_tf, s_tf, _ = quality_pass(tf, data.x_test, 7, classes=data.n_classes, submission='tiny')
    assert np.array_equal(p_onnx, p_tf) and np.allclose(s_onnx, s_tf, atol=1e-4)
    d_onnx = onnx.describe()
    assert [i["name"] for i in d_onnx["graph_inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert {i["dtype"] for i in d_onnx["graph_inputs"]} == {"int64"} and d_onnx["text"]["padding"] == "longest"
    arrays = text_arrays(onnx, data.x_test)
    assert arrays["tokens"].tolist() == text_arrays(tf, data.x_test)["tokens"].tolist()
    assert len(arrays["tokenize_ns"]) == -(-len(data.x_test) // 7)  # the quality pass's queries, no probe


def test_token_task_feeds_fields_by_name(bert, tmp_path):
    d = _onnx(bert, tmp_path, "{kind: onnx, path: model.onnx}", task="tokens.yaml")
    rows = [{"input_ids": [2, 7, 9, 3], "token_type_ids": [0, 0, 0, 0], "label": 1},
            {"input_ids": [2, 8, 3], "token_type_ids": [0, 0, 0], "label": 0}]
    (d / "tokens.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "tokens.yaml").write_text("name: toks\ndata: tokens.jsonl\ninputs: [input_ids, token_type_ids]\n"
                                   "input_type: tokens\nlabel: label\n")
    a, data = _adapter(d)
    a.load()
    feeds = a.prepare(data.x_test)
    assert feeds["input_ids"].tolist() == [[2, 7, 9, 3], [2, 8, 3, 0]]
    assert feeds["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]  # derived from the padding
    assert a.predict(feeds).shape == (2, 2)


def test_a_graph_the_task_cannot_feed_is_one_line(bert, tmp_path):
    export_text_onnx(bert / "model", tmp_path / "odd.onnx", inputs=["input_ids", "attention_mask", "position_ids"])
    d = _onnx(bert, tmp_path, "{kind: onnx, path: odd.onnx, text: {tokenizer: model}}")
    shutil.copy(tmp_path / "odd.onnx", d / "odd.onnx")
    a, _ = _adapter(d)
    with pytest.raises(ModelError) as e:
        a.load()
    msg = str(e.value)
    assert "the graph's inputs are [input_ids:int64" in msg and "position_ids:int64" in msg
    assert "the task provides [input_ids, token_type_ids, attention_mask]" in msg and "['position_ids']" in msg
    # a text graph under a numeric-features task
    d2 = _onnx(bert, tmp_path / "x", "{kind: onnx, path: model.onnx}", task="arrests")
    a, _ = _adapter(d2)
    with pytest.raises(ModelError,
                       match=r"graph's inputs are \[input_ids:int64.*the task provides one float32 feature"):
        a.load()
    # a text task without a tokenizer for the graph
    d3 = _onnx(bert, tmp_path / "y", "{kind: onnx, path: model.onnx}")
    a, _ = _adapter(d3)
    with pytest.raises(SubmissionError, match="field 'model.text.tokenizer': an ONNX model on a text task needs"):
        a.load()


def test_fixed_sequence_axis_pads_to_it(bert, tmp_path):
    export_text_onnx(bert / "model", tmp_path / "fixed.onnx", fixed_seq=16)
    d = _onnx(bert, tmp_path, "{kind: onnx, path: fixed.onnx, text: {tokenizer: model}}")
    shutil.copy(tmp_path / "fixed.onnx", d / "fixed.onnx")
    a, data = _adapter(d)
    a.load()
    feeds = a.prepare(data.x_test[:3])
    assert feeds["input_ids"].shape == (3, 16) and a.describe()["text"]["padding"] == "fixed:16"


def test_onnx_text_submission_runs_end_to_end_on_fp32_and_int8(bert, tmp_path, sqlite_url, quick):
    from functools import partial

    from heptathlon.bench.app import service
    from heptathlon.bench.scenarios import make_scenario

    d = _onnx(bert, tmp_path, "{kind: onnx, path: model.onnx, text: {tokenizer: model}}")
    queue = partial(service.queue_runs, energy={"enabled": False})
    ids = queue(d, ["cpu-1core", "cpu-1core-int8"], [make_scenario("single_stream", **quick)], db=sqlite_url)
    outs = [service.execute_run(r, db=sqlite_url) for r in ids]
    assert all(o.status == "succeeded" for o in outs), [(o.error, o.stderr_tail) for o in outs]
    for o in outs:
        assert o.metrics["tokens_per_s"].value > o.metrics["throughput_sps"].value > 0
        assert o.metrics["tokenize_ms"].value > 0
