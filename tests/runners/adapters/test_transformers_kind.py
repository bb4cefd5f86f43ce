"""The transformers kind end to end: a tiny real BERT (save_pretrained, safetensors) with a
tokenizer trained here, on a JSONL text task with a group column, through the real worker, its
sandbox and a real database; and each bad input as a one-line error naming file and field."""

from __future__ import annotations

import json
import shutil
from functools import partial

import numpy as np
import pytest
from sqlalchemy import select

from heptathlon.bench.app import service
from heptathlon.bench.app.service import execute_run
from heptathlon.bench.errors import SubmissionError
from heptathlon.bench.manifest import load_manifest
from heptathlon.bench.scenarios import make_scenario
from heptathlon.db.models import GroupMetric, Run
from heptathlon.db.session import session_scope
from tests.text_models import text_submission

queue_runs = partial(service.queue_runs, energy={"enabled": False})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return text_submission(tmp_path_factory.mktemp("text") / "tiny-bert")


def _copy(tiny, tmp_path, name="sub"):
    d = tmp_path / name
    shutil.copytree(tiny, d)
    return d


def test_text_run_records_tokens_words_tokenize_time_groups_and_policies(tiny, tmp_path, db_url, quick):
    sub = _copy(tiny, tmp_path)
    (rid,) = queue_runs(sub, ["cpu-1core"], [make_scenario("fixed_batch", batch_size=4, **quick)], db=db_url)
    out = execute_run(rid, db=db_url)
    assert out.status == "succeeded", (out.error, out.stderr_tail)
    m = out.metrics
    thr = m["throughput_sps"].value
    tok, words = m["tokens_per_s"], m["words_per_s"]
    # The fixed corpus: 3-4 words a sentence, 5-6 tokens with [CLS]/[SEP]; the rates follow throughput.
    assert 4.5 * thr < tok.value < 6.5 * thr and tok.method == "derived:tokens/window"
    assert 2.5 * thr < words.value < 4.5 * thr and words.ci_low <= words.value <= words.ci_high
    assert m["tokenize_ms"].value > 0 and m["tokenize_ms"].n >= 1
    assert 0 <= m["accuracy"].value <= 1 and m["params"].value == 22978  # counted from the loaded weights
    with session_scope(db_url) as s:
        run = s.get(Run, rid)
        text = run.extra["describe"]["text"]
        assert text["padding"] == "longest" and text["truncation"] is False and text["max_length"] == 64
        assert run.extra["describe"]["head"] == "sequence-classification"
        groups = {g.group for g in s.scalars(select(GroupMetric).where(GroupMetric.run_id == rid))
                  if g.attribute == "lang"}
    assert groups == {"en", "de"}


def test_command_submission_gets_text_over_stdio_as_it_is(tmp_path, db_url, quick):
    d = tmp_path / "cmd-text"
    d.mkdir()
    rows = [{"sentence": f"word {'x ' * (i % 3)}end", "label": i % 2} for i in range(12)]
    (d / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "task.yaml").write_text("name: words\ndata: eval.jsonl\ninputs: [sentence]\ninput_type: text\nlabel: label\n")
    # The model answers 1 where the text has an odd number of words: it must see the text itself.
    (d / "serve.py").write_text(
        "import json, sys\nprint(json.dumps({'ready': True}), flush=True)\nfor line in sys.stdin:\n"
        "    req = json.loads(line)\n    out = [len(t.split()) % 2 for t in req['inputs']]\n"
        "    print(json.dumps({'id': req['id'], 'outputs': out}), flush=True)\n")
    (d / "submission.yaml").write_text("name: cmd-text\ntask: task.yaml\n"
                                       "model: {kind: command, command: [python, serve.py]}\n")
    (rid,) = queue_runs(d, ["cpu-1core"], [make_scenario("single_stream", **quick)], db=db_url)
    out = execute_run(rid, db=db_url)
    assert out.status == "succeeded", (out.error, out.stderr_tail)
    expected = np.mean([(len(r["sentence"].split()) % 2) == r["label"] for r in rows])
    assert out.metrics["accuracy"].value == pytest.approx(expected)
    assert out.metrics["words_per_s"].value > 0
    assert out.metrics["tokens_per_s"].value is None  # the command tokenises inside its own process
    assert "tokenize_ms" not in out.metrics


def test_truncation_policy_applies_and_counts_where_a_sequence_is_too_long(tiny, tmp_path, db_url, quick):
    rows = [{"sentence": "good " * 80, "label": 1, "lang": "en"}, {"sentence": "bad day", "label": 0, "lang": "en"}]
    sub = _copy(tiny, tmp_path)
    (sub / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (rid,) = queue_runs(sub, ["cpu-1core"], [make_scenario("single_stream", **quick)], db=db_url)
    out = execute_run(rid, db=db_url)
    assert out.status == "failed"
    assert "an input has 82 tokens, more than the 64 of the model's maximum; set model.text.truncation: true" \
        in out.error and "\n" not in out.error
    y = (sub / "submission.yaml").read_text() + "  text: {truncation: true, padding: buckets, bucket: 16}\n"
    (sub / "submission.yaml").write_text(y)
    (rid,) = queue_runs(sub, ["cpu-1core"], [make_scenario("single_stream", **quick)], db=db_url)
    out = execute_run(rid, db=db_url)
    assert out.status == "succeeded", out.error
    with session_scope(db_url) as s:
        text = s.get(Run, rid).extra["describe"]["text"]
    assert text["truncated_instances"] >= 1 and text["truncation"] is True and text["padding"] == "buckets"
    # tokens counted after truncation: (64 + 4) / 2 per instance
    assert out.metrics["tokens_per_s"].params["per_instance_mean"] == pytest.approx(34.0)


def test_weights_that_do_not_match_the_config_fail_the_run_in_one_line(tiny, tmp_path, db_url, quick):
    sub = _copy(tiny, tmp_path)
    cfg = json.loads((sub / "model" / "config.json").read_text())
    cfg["num_hidden_layers"] = 3  # the weights hold 2 layers
    (sub / "model" / "config.json").write_text(json.dumps(cfg))
    (rid,) = queue_runs(sub, ["cpu-1core"], [make_scenario("single_stream", **quick)], db=db_url)
    out = execute_run(rid, db=db_url)
    assert out.status == "failed" and "\n" not in out.error
    assert "field 'model.path' (model): the weights do not match config.json" in out.error
    assert "bert.encoder.layer.2" in out.error
    cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"] = 2, 48, 2
    (sub / "model" / "config.json").write_text(json.dumps(cfg))
    (rid,) = queue_runs(sub, ["cpu-1core"], [make_scenario("single_stream", **quick)], db=db_url)
    out = execute_run(rid, db=db_url)
    assert out.status == "failed" and "the weights do not match config.json" in out.error


@pytest.mark.parametrize("case, expected", [
    ("no_tokenizer", "has no tokenizer (expected one of tokenizer.json"),
    ("no_config", "has no config.json"),
    ("pickled", "pytorch_model.bin is a pickled weights file; only safetensors"),
    ("code", "modeling_evil.py is Python code; custom model code (trust_remote_code) is not run"),
    ("auto_map", "config.json has an 'auto_map' entry"),
    ("no_weights", "has no .safetensors weights"),
])
def test_a_bad_folder_is_refused_before_anything_runs(tiny, tmp_path, case, expected):
    sub = _copy(tiny, tmp_path)
    model = sub / "model"
    if case == "no_tokenizer":
        for f in ("tokenizer.json", "tokenizer_config.json"):
            (model / f).unlink()
    elif case == "no_config":
        (model / "config.json").unlink()
    elif case == "pickled":
        (model / "pytorch_model.bin").write_bytes(b"\x80\x04")
    elif case == "code":
        (model / "modeling_evil.py").write_text("import os\n")
    elif case == "auto_map":
        cfg = json.loads((model / "config.json").read_text())
        cfg["auto_map"] = {"AutoModel": "modeling_evil.Evil"}
        (model / "config.json").write_text(json.dumps(cfg))
    elif case == "no_weights":
        (model / "model.safetensors").unlink()
    with pytest.raises(SubmissionError) as e:
        load_manifest(sub)
    msg = str(e.value)
    assert expected in msg and "submission.yaml: field 'model.path'" in msg and "\n" not in msg


def test_a_features_task_is_refused_by_the_transformers_kind(tiny, tmp_path, db_url, quick):
    sub = _copy(tiny, tmp_path)
    (sub / "submission.yaml").write_text("name: tiny-bert\ntask: arrests\nmodel: {kind: transformers, path: model}\n")
    (rid,) = queue_runs(sub, ["cpu-1core"], [make_scenario("single_stream", **quick)], db=db_url)
    out = execute_run(rid, db=db_url)
    assert out.status == "failed" and "kind 'transformers' needs a text or tokens task" in out.error


def test_batch_sweep_derives_runtimes_from_a_transformers_model_at_one_sequence_length(tiny, tmp_path, db_url):
    sub = _copy(tiny, tmp_path)
    sc = make_scenario("batch_sweep", max_batch=2, min_queries=5, min_duration_s=0, max_duration_s=20,
                       warmup_queries=1, repeats=3, runtimes=["torchscript", "onnxruntime"])
    (rid,) = queue_runs(sub, ["cpu-1core"], [sc], db=db_url, timeout_s=400)
    out = execute_run(rid, db=db_url)
    assert out.status == "succeeded", (out.error, out.stderr_tail)
    rts = out.sweep["runtimes"]
    assert rts["eager"]["primary"] and rts["eager"]["batch_sizes"] == [1, 2]
    for name in ("torchscript", "onnxruntime"):  # converted, checked against eager's logits, swept
        assert rts[name]["available"], rts[name]["reason"]
        assert rts[name]["batch_sizes"] == [1, 2] and set(rts[name]["framework_tax"]) == {"1", "2"}
    with session_scope(db_url) as s:
        text = s.get(Run, rid).extra["describe"]["text"]
    assert text["padding"] == "longest" and text["sweep_sequence_length"] == 6  # the task's longest
    assert out.metrics["framework_tax"].method == "profiler:torch"


def test_text_runs_under_int8_and_bf16_give_per_group_disparity(tiny, tmp_path, db_url, quick):
    from heptathlon.bench.app.fairness import compute_disparity

    sub = _copy(tiny, tmp_path)
    ids = queue_runs(sub, ["cpu-1core", "cpu-1core-int8", "cpu-1core-bf16"], [make_scenario("single_stream", **quick)],
                     db=db_url)
    outs = [execute_run(r, db=db_url) for r in ids]
    assert all(o.status == "succeeded" for o in outs), [o.error for o in outs]
    with session_scope(db_url) as s:
        prec = {s.get(Run, r).profile_name: s.get(Run, r).controls["precision"] for r in ids}
    assert prec["cpu-1core-int8"]["effective"] == "int8" and prec["cpu-1core-bf16"]["effective"] == "bf16"
    table = compute_disparity("tiny-bert", db=db_url, store=False)
    profiles = {p for p, _, _ in table.reports["lang"]}
    assert profiles == {"cpu-1core-int8", "cpu-1core-bf16"}
    for _, _, rep in table.reports["lang"]:
        assert {g.group for g in rep.groups} == {"en", "de"} and rep.hw_disparity.value is not None


def test_batch_by_sequence_length_sweep_stores_a_cell_per_length_and_batch(tiny, tmp_path, db_url):
    from heptathlon.db.models import Measurement

    sub = _copy(tiny, tmp_path)
    sc = make_scenario("batch_sweep", max_batch=2, min_queries=5, min_duration_s=0, max_duration_s=20,
                       warmup_queries=1, repeats=3, runtimes=["onnxruntime"], seq_lengths=[4, 16])
    assert sc.to_params()["seq_lengths"] == (4, 16)
    assert "seq_lengths" not in make_scenario("batch_sweep").to_params()  # other runs' series keys unchanged
    (rid,) = queue_runs(sub, ["cpu-1core"], [sc], db=db_url, timeout_s=400)
    out = execute_run(rid, db=db_url)
    assert out.status == "succeeded", (out.error, out.stderr_tail)
    by = out.sweep["by_sequence_length"]
    assert set(by) == {"4", "16"} and out.sweep["sequence_length"] == 4
    for length in ("4", "16"):
        assert by[length]["runtimes"]["eager"]["batch_sizes"] == [1, 2]
        assert by[length]["runtimes"]["onnxruntime"]["available"], by[length]["runtimes"]["onnxruntime"]["reason"]
        assert set(by[length]["relative_to_best"]) == {"eager", "onnxruntime"}
    with session_scope(db_url) as s:
        cells = {(m.params.get("sequence_length"), m.params.get("runtime"), m.params.get("batch_size"))
                 for m in s.scalars(select(Measurement).where(Measurement.run_id == rid,
                                                              Measurement.metric == "framework_tax"))
                 if m.params.get("sequence_length")}
    assert {(s_, "eager", b) for s_ in (4, 16) for b in (1, 2)} <= cells
