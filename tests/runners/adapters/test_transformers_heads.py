"""Heads of the transformers kind, inferred from config.json or set in the manifest: feature
extraction (a bare BertModel), causal LM (a tiny GPT-2) and seq2seq (a tiny T5), each a real
save_pretrained folder with a tokenizer trained here, run through the adapter's quality pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from heptathlon.bench.manifest import load_manifest
from heptathlon.bench.profile import load_profile
from heptathlon.bench.tasks import resolve_task
from heptathlon.runners.adapters import make_adapter
from tests.text_models import CORPUS, tiny_bert, train_tokenizer


def _submission(root, model_extra=""):
    rows = [{"sentence": s, "label": i % 2} for i, s in enumerate(CORPUS)]
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "task.yaml").write_text("name: t\ndata: eval.jsonl\ninputs: [sentence]\ninput_type: text\nlabel: label\n")
    (root / "submission.yaml").write_text(f"name: h\ntask: task.yaml\nmodel:\n  kind: transformers\n  path: model\n"
                                          f"{model_extra}")
    return root


def _run(root):
    m = load_manifest(root)
    data = resolve_task(m.task, root).load()
    a = make_adapter(m, root, load_profile("cpu-1core"), {"input_spec": data.input_spec()})
    a.load()
    preds, scores = _raw_pass(a, data.x_test, 4)
    return a, data, preds, scores


def _raw_pass(adapter, x, batch):
    """The adapter's own answers, unvalidated: these heads answer with embeddings or vocabulary ids,
    which the worker's boundary check (runners.answers) refuses for a classification task."""
    preds, scores = [], []
    for i in range(0, len(x), batch):
        p, s = adapter.postprocess(adapter.predict(adapter.prepare(x[i:i + batch])), len(x[i:i + batch]))
        preds.append(np.asarray(p))
        scores.append(np.asarray(s))
    return np.concatenate(preds), np.concatenate(scores)


def _save(model, root):
    tok = train_tokenizer()
    model.save_pretrained(root / "model", safe_serialization=True)
    tok.save_pretrained(root / "model")


def test_feature_extraction_is_inferred_for_a_bare_encoder_and_returns_embeddings(tmp_path):
    tiny_bert(tmp_path / "model", head="feature-extraction")
    a, data, preds, scores = _run(_submission(tmp_path))
    assert a.head == "feature-extraction" and a.head_source == "config.json architectures"
    assert scores.shape == (len(data.x_test), 32) and np.array_equal(preds, scores.argmax(axis=1))


def test_head_set_in_the_manifest_wins_and_a_wrong_one_is_one_line(tmp_path):
    tiny_bert(tmp_path / "model")  # a sequence classifier
    a, _, _, scores = _run(_submission(tmp_path, "  text: {head: feature-extraction}\n"))
    assert a.head == "feature-extraction" and a.head_source == "model.text.head" and scores.shape[1] == 32
    from heptathlon.bench.errors import SubmissionError

    d = tmp_path / "bare"
    d.mkdir()
    tiny_bert(d / "model", head="feature-extraction")
    with pytest.raises(SubmissionError, match=r"the weights do not match config.json for head "
                                              r"'sequence-classification': \d+ tensor\(s\) missing"):
        _run(_submission(d, "  text: {head: sequence-classification}\n"))


def test_causal_lm_and_seq2seq_predict_the_next_token(tmp_path):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    n = len(train_tokenizer())
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    _save(GPT2LMHeadModel(GPT2Config(vocab_size=n, n_embd=32, n_layer=2, n_head=2, n_positions=64)), gpt)
    a, data, preds, scores = _run(_submission(gpt))
    assert a.head == "causal-lm" and scores.shape == (len(data.x_test), n) and preds.max() < n
    t5 = tmp_path / "t5"
    t5.mkdir()
    _save(T5ForConditionalGeneration(T5Config(vocab_size=n, d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16,
                                              decoder_start_token_id=0, pad_token_id=0)), t5)
    a, data, preds, scores = _run(_submission(t5))
    assert a.head == "seq2seq" and scores.shape == (len(data.x_test), n)
