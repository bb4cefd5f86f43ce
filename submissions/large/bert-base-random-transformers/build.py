"""Build model/: a BERT-base-shaped encoder classifier (12 layers, hidden 768, ~110M parameters)
with random weights from a transformers config (seed 0). About 440 MB; built only on request
(`heptathlon demo --bert-base`, or python build.py). Run: python build.py"""
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parents[1]))
from _text import bert_base_classifier  # noqa: E402

n = bert_base_classifier(here / "model")
print(f"wrote {here / 'model'} ({n:,} parameters, random weights)")
