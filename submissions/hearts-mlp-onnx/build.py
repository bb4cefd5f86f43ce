"""Build model.onnx: a small MLP on the hearts data (scikit-lego), exported to ONNX. Run: python build.py"""
import sys
from pathlib import Path

import torch

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))
from _training import accuracy, export_onnx, train_arrests_mlp  # noqa: E402

model = train_arrests_mlp("hearts")
export_onnx(model, torch.zeros(1, model.net[0].in_features), here / "model.onnx")
print(f"wrote {here / 'model.onnx'} (test accuracy {accuracy(model, 'hearts'):.3f})")
