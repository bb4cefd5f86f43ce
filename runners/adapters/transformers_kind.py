"""``kind: transformers``: a folder written by ``save_pretrained`` (config, safetensors weights,
tokenizer files), loaded fully offline with no remote code.

The manifest check (``heptathlon.bench.manifest.check_pretrained_folder``) has already refused
pickled weights, Python files and ``auto_map`` entries, so this kind runs no submitted code: like
``onnx``, it is data the harness's own libraries read (docs/security.md).

The head is inferred from config.json's ``architectures`` (or ``is_encoder_decoder``) or set
with ``model.text.head``. Tokenisation happens in ``prepare``, outside the timed call, and is timed
on its own; the timed ``predict`` is the model's forward pass under ``torch.inference_mode``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from heptathlon.bench.errors import ModelError, SubmissionError, one_line
from heptathlon.bench.manifest import MANIFEST
from heptathlon.runners.adapters.text import TextEncoder, offline
from heptathlon.runners.adapters.torch_common import TorchAdapterBase

_HEAD_SUFFIX = (("ForSequenceClassification", "sequence-classification"), ("ForCausalLM", "causal-lm"),
                ("LMHeadModel", "causal-lm"),
                ("ForConditionalGeneration", "seq2seq"), ("ForSeq2SeqLM", "seq2seq"))


def infer_head(config: Any) -> str:
    """sequence-classification, causal-lm or seq2seq from ``architectures``; else feature-extraction."""
    for arch in getattr(config, "architectures", None) or []:
        for suffix, head in _HEAD_SUFFIX:
            if arch.endswith(suffix):
                return head
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    return "feature-extraction"


def _auto_class(head: str):
    import transformers as tf

    return {"sequence-classification": tf.AutoModelForSequenceClassification, "feature-extraction": tf.AutoModel,
            "causal-lm": tf.AutoModelForCausalLM, "seq2seq": tf.AutoModelForSeq2SeqLM}[head]


def _forward_names(module: Any) -> set[str]:
    """The keyword inputs forward() takes (empty: it takes **kwargs, so every field goes in)."""
    import inspect

    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return set()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return set()
    return {p.name for p in params}


def _positional_class():
    import torch

    class Positional(torch.nn.Module):
        """A transformers model as a plain module: token tensors in (by position), one tensor out."""

        def __init__(self, model: Any, names: list[str], head: str) -> None:
            super().__init__()
            self.model, self.names = model, list(names)
            self.out = "last_hidden_state" if head == "feature-extraction" else "logits"

        def forward(self, *tensors):
            return getattr(self.model(**dict(zip(self.names, tensors)), return_dict=True), self.out)

    return Positional


def _Positional(model: Any, names: list[str], head: str) -> Any:  # noqa: N802  (a class made lazily: torch import)
    return _positional_class()(model, names, head).eval()


class TransformersAdapter(TorchAdapterBase):
    name = "eager"
    runtime_name = "transformers"
    # The batch sweep derives these from the loaded model, wrapped to take its token tensors
    # positionally (``sweep_inputs``), all at one fixed sequence length (``fix_sequence_length``).
    derivable = ("torchscript", "onnxruntime", "torch.compile")

    def load(self) -> None:
        offline()
        self._setup_torch()
        spec = self.manifest.model.text_spec
        folder = self.folder / self.manifest.model.path
        where = f"{MANIFEST}: field 'model.path' ({self.manifest.model.path})"
        self.input_spec = dict(self.context.get("input_spec") or {"type": "features", "fields": []})
        if self.input_spec["type"] == "features":
            raise SubmissionError(f"{MANIFEST}: field 'model.kind': kind 'transformers' needs a text or tokens "
                                  f"task (input_type: text or tokens); task {self.manifest.task!r} has numeric "
                                  "features")
        import transformers as tf

        tf.logging.set_verbosity_error()
        try:
            config = tf.AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        except Exception as e:  # noqa: BLE001
            raise SubmissionError(f"{where}: config.json does not load ({one_line(e, 200)})") from None
        self.head = infer_head(config) if spec.head == "auto" else spec.head
        self.head_source = "config.json architectures" if spec.head == "auto" else "model.text.head"
        try:
            model, info = _auto_class(self.head).from_pretrained(
                str(folder), config=config, local_files_only=True, trust_remote_code=False, use_safetensors=True,
                output_loading_info=True)
        except Exception as e:  # noqa: BLE001  e.g. a size mismatch between weights and config
            raise SubmissionError(f"{where}: the weights do not match config.json for head {self.head!r} "
                                  f"({one_line(e, 240)})") from None
        missing, unexpected = list(info.get("missing_keys") or []), list(info.get("unexpected_keys") or [])
        mismatched = list(info.get("mismatched_keys") or [])
        if missing or mismatched:
            what = (f"{len(missing)} tensor(s) missing (e.g. {missing[0]})" if missing
                    else f"{len(mismatched)} tensor(s) of the wrong shape (e.g. {mismatched[0]})")
            raise SubmissionError(f"{where}: the weights do not match config.json for head {self.head!r}: {what}; "
                                  "they would be randomly initialised")
        self.unexpected_keys = len(unexpected)
        model_max = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        self.encoder = TextEncoder(folder, spec, self.input_spec, model_max=model_max, where=where)
        self.config = config
        if self.head == "seq2seq":
            start = getattr(config, "decoder_start_token_id", None)
            self._decoder_start = int(start if start is not None else (config.pad_token_id or 0))
        self._finish(model)
        self.forward_names = _forward_names(self.module)
        self.details = {"how": "the submitted save_pretrained folder, in transformers", "head": self.head}

    def prepare(self, batch: np.ndarray) -> Any:
        feeds = self.encoder.encode(batch)  # timed on its own (tokenize_ms), never inside predict
        torch = self.torch
        out = {k: torch.from_numpy(v).to(self.device) for k, v in feeds.items()
               if not self.forward_names or k in self.forward_names}
        if self.head == "seq2seq":
            n = next(iter(out.values())).shape[0]
            out["decoder_input_ids"] = torch.full((n, 1), self._decoder_start, dtype=torch.long, device=self.device)
        return out

    def predict(self, prepared: Any) -> Any:
        with self._inference():
            return self.module(**prepared)

    def _predict_synchronized(self, prepared: Any) -> Any:
        with self._inference():
            out = self.module(**prepared)
        self.torch.cuda.synchronize(self.device)
        return out

    def postprocess(self, raw: Any, n: int):
        if self.head == "feature-extraction":
            # Sentence embeddings (mean over the sequence), as scores; the "prediction" is the
            # embedding's argmax, a stable value to compare profiles by, not a class.
            h = raw.last_hidden_state.float()
            emb = h.mean(dim=1).cpu().numpy().astype(np.float32)
            return emb.argmax(axis=1), emb
        logits = raw.logits
        if logits.ndim == 3:  # causal LM / seq2seq: the next token after the input
            logits = logits[:, -1, :]
        if logits.ndim != 2:
            raise ModelError(f"transformers head {self.head!r} returned logits of shape {tuple(logits.shape)}")
        return super().postprocess(logits, n)

    # ---- the batch sweep ------------------------------------------------------------------------------
    def fix_sequence_length(self, x: np.ndarray, length: int | None = None) -> int:
        """Pad every sweep batch to one length (the task's longest, or ``length``), so the primary and
        every derived runtime see the same shapes; returns it (recorded in the sweep payload)."""
        s = int(length or max(int(self.encoder.count_tokens(x).max()), 1))
        if self.encoder.max_length:
            s = min(s, self.encoder.max_length)
        self.encoder.fixed_length = s
        return s

    def sweep_inputs(self, make_np):
        """(a module taking the token tensors positionally, b -> that tuple of tensors on the device)."""
        torch = self.torch
        names = [n for n in self.encoder.provides() if not self.forward_names or n in self.forward_names]
        module = _Positional(self.module, names, self.head)

        def make(b: int):
            feeds = self.encoder.encode(make_np(b))
            return tuple(torch.from_numpy(feeds[n]).to(self.device) for n in names)

        return module, make

    def token_counts(self, x: np.ndarray) -> np.ndarray:
        return self.encoder.count_tokens(x)

    def describe(self) -> dict[str, Any]:
        import transformers

        return {**super().describe(), "transformers_version": transformers.__version__, "head": self.head,
                "head_source": self.head_source, "model_type": self.config.model_type,
                "unexpected_weight_keys": self.unexpected_keys, "text": self.encoder.record()}
