"""Text into model inputs, in the model process: the tokenizer, the padding and truncation
policies, and the per-query records (tokenisation time, token counts) the parent turns into
``tokenize_ms`` and ``tokens_per_s`` (``heptathlon.bench.text``).

``TextEncoder.encode`` runs in the adapter's ``prepare``, which the harness calls before the
timed loop, so tokenisation is never inside a timed model call; it is timed on its own. The
tokenizer is loaded from the submission's folder only (``local_files_only``, no remote code).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from heptathlon.bench.errors import ModelError, SubmissionError, one_line
from heptathlon.bench.manifest import TextSpec
from heptathlon.bench.tasks import TOKEN_PAD

HUGE = 10**6  # tokenizers without a maximum report model_max_length as about 1e30


def offline() -> None:
    """Nothing in the model process reaches a hub: every load is from the submission's folder."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # no progress bars in the run's stderr
    try:
        from transformers.utils import logging as tf_logging

        tf_logging.disable_progress_bar()
        tf_logging.set_verbosity_error()
    except ImportError:
        pass


class TextEncoder:
    """A tokenizer plus the run's text policies. ``encode`` returns numpy int64 fields by name."""

    def __init__(self, folder: Path, spec: TextSpec, input_spec: dict[str, Any], *, model_max: int | None,
                 where: str, fixed_length: int | None = None) -> None:
        self.spec = spec
        self.input_type = input_spec.get("type", "features")
        self.fields = list(input_spec.get("fields") or [])
        self.where = where
        self.fixed_length = fixed_length  # an ONNX graph with a fixed sequence axis pads to it
        self.graph_length = fixed_length  # the timed pass's policy (the batch sweep may fix a length later)
        self.tokenizer = None
        if self.input_type == "text":
            offline()
            from transformers import AutoTokenizer

            try:
                self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                               trust_remote_code=False)
            except Exception as e:  # noqa: BLE001  a broken tokenizer names the folder
                raise SubmissionError(f"{where}: the tokenizer in {folder.name}/ does not load "
                                      f"({one_line(e, 200)})") from None
        limits = [v for v in (model_max, spec.max_length, fixed_length) if v]
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if tok_max and tok_max < HUGE:
            limits.append(int(tok_max))
        self.max_length = min(limits) if limits else None
        self.max_source = ("model.text.max_length" if spec.max_length and spec.max_length == self.max_length
                           else "the model's maximum")
        self.pad_id = int(getattr(self.tokenizer, "pad_token_id", None) or 0)
        self.tokenize_ns: list[int] = []
        self.truncated = 0
        self.longest = 0
        self.padded_tokens = 0
        self.real_tokens = 0

    # What the parent needs to know about the policies; recorded on the run (describe()).
    def record(self) -> dict[str, Any]:
        return {"input_type": self.input_type, "fields": self.fields,
                "tokenizer": type(self.tokenizer).__name__ if self.tokenizer is not None else None,
                "padding": self.spec.padding if self.graph_length is None else f"fixed:{self.graph_length}",
                **({"sweep_sequence_length": self.fixed_length} if self.fixed_length != self.graph_length else {}),
                **({"bucket": self.spec.bucket} if self.spec.padding == "buckets" else {}),
                "truncation": self.spec.truncation, "max_length": self.max_length,
                "truncated_instances": self.truncated, "longest_seen": self.longest,
                "padding_share": (1 - self.real_tokens / self.padded_tokens) if self.padded_tokens else None,
                "tokenize_outside_timed_call": True}

    def provides(self) -> list[str]:
        """The named fields this encoder produces for the task."""
        if self.input_type == "tokens":
            return self.fields + ([] if "attention_mask" in self.fields else ["attention_mask"])
        if self.input_type == "text":
            names = list(self.tokenizer.model_input_names)
            return names
        return []

    def encode(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        t0 = time.perf_counter_ns()
        out = self._tokens(batch) if self.input_type == "tokens" else self._text(batch)
        self.tokenize_ns.append(time.perf_counter_ns() - t0)
        mask = out.get("attention_mask")
        if mask is not None and not self._limit()[1]:  # the timed pass's padding, not a sweep's
            self.real_tokens += int(mask.sum())
            self.padded_tokens += int(mask.size)
        return out

    def _limit(self) -> tuple[int | None, bool]:
        """(the longest sequence allowed now, whether a batch sweep fixed it: then it truncates)."""
        swept = self.fixed_length is not None and self.fixed_length != self.graph_length
        if swept:
            return min(v for v in (self.max_length, self.fixed_length) if v), True
        return self.max_length, False

    def _pad_to(self, longest: int) -> int:
        if self.fixed_length is not None:
            return self.fixed_length
        if self.spec.padding == "buckets":
            b = self.spec.bucket
            longest = -(-longest // b) * b
            if self.max_length:
                longest = min(longest, self.max_length)
        return longest

    def _too_long(self, n: int) -> ModelError:
        return ModelError(f"{self.where}: an input has {n} tokens, more than the {self.max_length} of "
                          f"{self.max_source}; set model.text.truncation: true in submission.yaml to truncate "
                          "(applied and recorded on the run)")

    def _text(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        a = np.asarray(batch)
        first = [str(t) for t in (a if a.ndim == 1 else a[:, 0])]
        second = None if a.ndim == 1 else [str(t) for t in a[:, 1]]
        tok = self.tokenizer
        enc = tok(first, second, truncation=False)  # once; padding below is cheap next to tokenising
        lengths = [len(ids) for ids in enc["input_ids"]]
        longest = max(lengths)
        self.longest = max(self.longest, longest)
        limit, swept = self._limit()
        over = sum(n > limit for n in lengths) if limit else 0
        if over:
            if not (self.spec.truncation or swept):
                raise self._too_long(longest)
            if not swept:
                self.truncated += over
            enc = tok(first, second, truncation=True, max_length=limit)  # the tokenizer's own strategy
            longest = limit
        target = self._pad_to(longest)
        enc = tok.pad(enc, padding="max_length", max_length=target, return_tensors="np")
        return {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}

    def _tokens(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        a = np.asarray(batch, dtype=np.int64)  # (b, F, L), TOKEN_PAD past each row's end
        real = a[:, 0, :] != TOKEN_PAD
        lengths = real.sum(axis=1)
        longest = int(lengths.max()) if lengths.size else 0
        self.longest = max(self.longest, longest)
        limit, swept = self._limit()
        if limit and longest > limit:
            if not (self.spec.truncation or swept):
                raise self._too_long(longest)
            if not swept:
                self.truncated += int((lengths > limit).sum())
            longest = limit
        width = self._pad_to(longest)
        cut = a[:, :, :width]
        if cut.shape[2] < width:
            cut = np.concatenate([cut, np.full(cut.shape[:2] + (width - cut.shape[2],), TOKEN_PAD, np.int64)], 2)
        mask = (cut[:, 0, :] != TOKEN_PAD).astype(np.int64)
        out = {}
        for j, name in enumerate(self.fields):
            f = cut[:, j, :]
            out[name] = np.where(f == TOKEN_PAD, 0 if name != "input_ids" else self.pad_id, f).astype(np.int64)
        out.setdefault("attention_mask", mask)
        return out

    def count_tokens(self, x: np.ndarray) -> np.ndarray:
        """Tokens per task instance as the model sees them (after truncation, without padding)."""
        if self.input_type == "tokens":
            n = (np.asarray(x)[:, 0, :] != TOKEN_PAD).sum(axis=1)
        else:
            a = np.asarray(x)
            first = [str(t) for t in (a if a.ndim == 1 else a[:, 0])]
            second = None if a.ndim == 1 else [str(t) for t in a[:, 1]]
            n = np.array([len(ids) for ids in self.tokenizer(first, second, truncation=False)["input_ids"]])
        if self.max_length:
            n = np.minimum(n, self.max_length)
        return np.asarray(n, dtype=np.int64)
