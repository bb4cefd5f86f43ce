"""Build model/: a GPT-2-shaped causal LM (2 layers, hidden 128) with random weights and a locally
trained byte-level BPE tokenizer. Run: python build.py"""
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))
from _gpt2 import gpt2_random  # noqa: E402

n = gpt2_random(here / "model", "tiny")
print(f"wrote {here / 'model'} ({n:,} parameters, random weights)")
