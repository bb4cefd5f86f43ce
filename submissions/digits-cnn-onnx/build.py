"""Build model.onnx: a two-layer CNN on sklearn's 8x8 digits, exported to ONNX. Run: python build.py"""
import sys
from pathlib import Path

import torch

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))
from _training import accuracy, export_onnx, train_digits_cnn  # noqa: E402

model = train_digits_cnn()
export_onnx(model, torch.zeros(1, 1, 8, 8), here / "model.onnx")
print(f"wrote {here / 'model.onnx'} (test accuracy {accuracy(model, 'digits'):.3f})")
