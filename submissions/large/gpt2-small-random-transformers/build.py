"""Build model/: a GPT-2-shaped causal LM (6 layers, hidden 384) with random weights and a locally
trained byte-level BPE tokenizer. Run: python build.py"""
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parents[1]))
from _gpt2 import gpt2_random  # noqa: E402

n = gpt2_random(here / "model", "small")
print(f"wrote {here / 'model'} ({n:,} parameters, random weights)")
