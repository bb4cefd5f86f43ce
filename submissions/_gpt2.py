"""Causal-LM examples' builder, shared by their build.py scripts. Everything is offline: a byte-level
BPE tokenizer trained here with ``tokenizers`` on text the machine already has (the AFINN word lists
and the Python standard library's docstrings), and a GPT-2-shaped model with RANDOM weights from a
transformers config (seed 0). Quality is fidelity to the fp32 reference, never accuracy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

SEED = 0
# tiny: decodes well above a few dozen tokens/s on 2 cores; small: the full run's larger shape.
SHAPES = {"tiny": {"n_layer": 2, "n_embd": 128, "n_head": 4, "n_positions": 512, "vocab_size": 2048},
          "small": {"n_layer": 6, "n_embd": 384, "n_head": 6, "n_positions": 1024, "vocab_size": 8192}}


def corpus() -> list[str]:
    """Shipped text: the AFINN lexicons (English and Danish) and the docstrings of the stdlib's
    modules, one piece per line."""
    import pydoc  # noqa: F401  (stdlib: its modules' docstrings are plain English text)
    import sys

    from heptathlon.bench.tasks.lexicon import load_lexicons

    lines = list(load_lexicons()["text"].astype(str))
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"}:
            continue
        try:
            mod = __import__(name)
        except Exception:  # noqa: BLE001  a module this platform lacks
            continue
        if mod.__doc__:
            lines += [ln for ln in mod.__doc__.splitlines() if ln.strip()]
    return lines


def train_tokenizer(vocab_size: int):
    """A GPT-2-style byte-level BPE tokenizer, wrapped as a transformers fast tokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus(), vocab_size=vocab_size, min_frequency=2, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<|endoftext|>")


def gpt2_random(out: Path, shape: str = "tiny") -> int:
    """A GPT2LMHeadModel of the given shape with random weights and a locally trained tokenizer,
    saved as a save_pretrained folder (safetensors). Returns the parameter count."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    torch.manual_seed(SEED)
    # Untied output embeddings: tied ones make a random model repeat its last input token (the
    # residual stream stays close to that token's embedding), which no timing or fidelity test can use.
    s = SHAPES[shape]
    tok = train_tokenizer(s["vocab_size"])
    cfg = GPT2Config(vocab_size=len(tok), n_positions=s["n_positions"], n_embd=s["n_embd"], n_layer=s["n_layer"],
                     n_head=s["n_head"], bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.eos_token_id, tie_word_embeddings=False)
    model = GPT2LMHeadModel(cfg).eval()
    model.generation_config.pad_token_id = tok.eos_token_id
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return int(sum(p.numel() for p in model.parameters()))
