"""Greedy decoding with a KV cache for ``kind: transformers`` causal LMs (the generate scenario).

The model is a ``save_pretrained`` folder loaded by :class:`TransformersAdapter` (data, no code:
it runs in the measuring worker like any transformers submission). The engine decodes in steps
the driver (runners/generate.py) calls one at a time, so the driver owns the clock and stamps
every token when its step returns; there is no callback into harness code from inside a model
call, and no thread.

Batching is static per cohort: the requests waiting when the engine is free (at most
``max_batch``) are prefilled together, left-padded, and decoded together until every one has
finished; requests that arrive meanwhile wait, and their wait is in their TTFT. Continuous
batching is not implemented for bundled models (the protocol allows it for command submissions).

A token step ends with the new token ids copied to the host (``.tolist()``), which on CUDA
synchronises the stream: every stamp is at a token boundary the GPU has reached.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from heptathlon.bench.errors import ModelError, SubmissionError


class CausalLMEngine:
    """Steps of greedy decoding over cohorts of requests; events are protocol-shaped dicts."""

    def __init__(self, adapter: Any, *, max_new_tokens: int, ignore_eos: bool, max_batch: int,
                 truncation: bool, submission: str) -> None:
        if getattr(adapter, "head", None) != "causal-lm":
            raise SubmissionError(f"submission {submission!r}: the generate scenario needs a causal LM "
                                  f"(config.json architectures ending in ForCausalLM/LMHeadModel, or "
                                  f"model.text.head: causal-lm); this model's head is {adapter.head!r}")
        self.torch = adapter.torch
        self.model = adapter.module
        self.device = adapter.device
        self.tok = adapter.encoder.tokenizer
        if self.tok is None:
            raise SubmissionError(f"submission {submission!r}: the generate scenario needs the model's tokenizer "
                                  "and a text task (input_type: text)")
        cfg = adapter.config
        eos = getattr(cfg, "eos_token_id", None)
        self.eos = eos[0] if isinstance(eos, list) else eos
        pad = getattr(self.tok, "pad_token_id", None)
        self.pad = int(pad if pad is not None else (self.eos if self.eos is not None else 0))
        self.context = adapter.encoder.max_length  # n_positions (or model.text.max_length)
        self.max_new_tokens, self.ignore_eos, self.max_batch = max_new_tokens, ignore_eos, max_batch
        self.truncation, self.submission = truncation, submission
        # transformers 5.x renamed the KV cache argument and output field ``past_key_values`` -> ``cache``
        import inspect

        fwd = inspect.signature(self.model.forward).parameters
        self.cache_arg = "cache" if "cache" in fwd else "past_key_values"
        self.queue: deque = deque()
        self.active: dict | None = None
        self.output_ids: dict[int, list[int]] = {}
        self.truncated = 0
        self.cohorts: list[int] = []  # the size of every cohort decoded, for the record

    # ---- outside timing ---------------------------------------------------------------------------
    def tokenize(self, prompts: list[str]) -> list[list[int]]:
        """Token ids per prompt; a prompt too long for the context fails naming it, or is truncated
        from the left (model.text.truncation: true) and counted."""
        out = []
        room = None if self.context is None else self.context - self.max_new_tokens
        if room is not None and room < 1:
            raise ModelError(f"submission {self.submission!r}: --max-new-tokens {self.max_new_tokens} leaves no room "
                             f"for a prompt in the model's context of {self.context} tokens")
        for i, p in enumerate(prompts):
            ids = list(self.tok(str(p), add_special_tokens=False)["input_ids"]) or [self.pad]
            if room is not None and len(ids) > room:
                if not self.truncation:
                    raise ModelError(f"submission {self.submission!r}: prompt {i} has {len(ids)} tokens; with "
                                     f"--max-new-tokens {self.max_new_tokens} the context of {self.context} allows "
                                     f"{room}; shorten it, or set model.text.truncation: true")
                ids = ids[-room:]
                self.truncated += 1
            out.append(ids)
        return out

    def texts(self) -> dict[int, str]:
        return {rid: self.tok.decode(ids, skip_special_tokens=True) for rid, ids in self.output_ids.items()}

    # ---- the driver's calls -----------------------------------------------------------------------
    def submit(self, rid: int, ids: list[int]) -> None:
        self.queue.append((rid, ids))

    def idle(self) -> bool:
        return self.active is None and not self.queue

    def step(self, deadline_ns: int | None, clock=time.perf_counter_ns) -> list[tuple[dict, int]]:
        """One model call (a cohort's prefill, or one decode step of it) and its events, stamped
        when it returned; with nothing to do, wait until ``deadline_ns`` and return none."""
        if self.active is None:
            if not self.queue:
                if deadline_ns is not None:
                    wait = (deadline_ns - clock()) / 1e9
                    if wait > 0:
                        time.sleep(wait)
                return []
            return self._prefill(clock)
        return self._decode(clock)

    def _prefill(self, clock) -> list[tuple[dict, int]]:
        torch = self.torch
        cohort = [self.queue.popleft() for _ in range(min(self.max_batch, len(self.queue)))]
        self.cohorts.append(len(cohort))
        longest = max(len(ids) for _, ids in cohort)
        ids = torch.full((len(cohort), longest), self.pad, dtype=torch.long)
        mask = torch.zeros((len(cohort), longest), dtype=torch.long)
        for i, (_, seq) in enumerate(cohort):  # left padding: every sequence's last token is at the end
            ids[i, longest - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[i, longest - len(seq):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
            nxt = out.logits[:, -1, :].argmax(-1)
        tokens = nxt.tolist()  # to the host: on CUDA, the token boundary the stamp stands for
        t = clock()
        self.active = {"rids": [r for r, _ in cohort], "mask": mask, "pos": pos[:, -1:], "past": self._cache(out),
                       "next": nxt, "done": [False] * len(cohort)}
        for rid, _ in cohort:
            self.output_ids[rid] = []
        return self._emit(tokens, t)

    def _decode(self, clock) -> list[tuple[dict, int]]:
        torch, a = self.torch, self.active
        a["mask"] = torch.cat([a["mask"], a["mask"].new_ones((a["mask"].shape[0], 1))], dim=1)
        a["pos"] = a["pos"] + 1
        with torch.inference_mode():
            out = self.model(input_ids=a["next"][:, None], attention_mask=a["mask"], position_ids=a["pos"],
                             use_cache=True, **{self.cache_arg: a["past"]})
            nxt = out.logits[:, -1, :].argmax(-1)
        tokens = nxt.tolist()
        t = clock()
        a["past"], a["next"] = self._cache(out), nxt
        return self._emit(tokens, t)

    @staticmethod
    def _cache(out):
        c = getattr(out, "cache", None)
        return c if c is not None else out.past_key_values

    def _emit(self, tokens: list[int], t: int) -> list[tuple[dict, int]]:
        a, events = self.active, []
        for i, (rid, tok) in enumerate(zip(a["rids"], tokens)):
            if a["done"][i]:
                continue  # finished early (EOS): decoded along with its cohort, its tokens dropped
            seq = self.output_ids[rid]
            seq.append(int(tok))
            events.append(({"id": rid, "token": ""}, t))
            if len(seq) >= self.max_new_tokens or (not self.ignore_eos and tok == self.eos):
                a["done"][i] = True
                events.append(({"id": rid, "outputs": [""], "output_tokens": len(seq)}, t))
        if all(a["done"]):
            self.active = None
        return events
