"""Tiny real transformers models for tests: a WordPiece tokenizer trained here with `tokenizers`,
and a 2-layer, hidden-32 BERT from a config, written with save_pretrained (safetensors)."""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = ["the film was good", "the film was bad", "a good day", "a bad day", "rain and sun",
          "ein guter Film", "ein schlechter Tag", "it rains today", "the sun is out", "good good good"]


def train_tokenizer(vocab_size: int = 200):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size,
                                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(CORPUS * 5, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def tiny_bert(folder: Path, *, head: str = "sequence-classification", max_positions: int = 64, seed: int = 0,
              num_labels: int = 2) -> Path:
    """A save_pretrained folder with a tiny BERT (2 layers, hidden 32) and its tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(seed)
    tok = train_tokenizer()
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=max_positions, num_labels=num_labels)
    model = BertForSequenceClassification(cfg) if head == "sequence-classification" else BertModel(cfg)
    model.eval()
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def text_submission(root: Path, *, rows: list[dict] | None = None, model_extra: str = "", head: str =
                    "sequence-classification", max_positions: int = 64, name: str = "tiny-bert") -> Path:
    """A submission folder: model/ (tiny BERT), a JSONL text task with a group column."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tiny_bert(root / "model", head=head, max_positions=max_positions)
    rows = rows or [{"sentence": s, "label": i % 2, "lang": "de" if s.startswith("ein") else "en"}
                    for i, s in enumerate(CORPUS * 3)]
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "task.yaml").write_text("name: tiny-text\ndata: eval.jsonl\ninputs: [sentence]\ninput_type: text\n"
                                    "label: label\ngroups: [lang]\n")
    (root / "submission.yaml").write_text(f"name: {name}\ntask: task.yaml\nmodel:\n  kind: transformers\n"
                                          f"  path: model\n{model_extra}")
    return root


TEXT_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def export_text_onnx(model_folder: Path, out: Path, *, inputs: list[str] = TEXT_INPUTS, fixed_seq: int | None = None):
    """A sequence classifier exported to ONNX with named int64 inputs and dynamic batch/sequence axes."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_folder, local_files_only=True).eval()

    class Named(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *args):
            return self.m(**dict(zip(inputs, args))).logits

    seq = fixed_seq or 8
    example = tuple((torch.zeros if n == "token_type_ids" else torch.ones)(2, seq, dtype=torch.long) for n in inputs)
    axes = {n: ({0: "batch"} if fixed_seq else {0: "batch", 1: "sequence"}) for n in inputs}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Named(model), example, str(out), dynamo=False, input_names=inputs, output_names=["logits"],
                          dynamic_axes=axes)
    return out
