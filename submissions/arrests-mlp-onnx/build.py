"""Build model.onnx: the arrests MLP exported to ONNX. Run: python build.py"""
import sys
from pathlib import Path

import torch

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))
from _training import accuracy, export_onnx, train_arrests_mlp  # noqa: E402

model = train_arrests_mlp()
export_onnx(model, torch.zeros(1, 7), here / "model.onnx")
print(f"wrote {here / 'model.onnx'} (test accuracy {accuracy(model, 'arrests'):.3f})")
