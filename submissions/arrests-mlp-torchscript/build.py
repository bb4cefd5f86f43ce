"""Build model.ts: the arrests MLP as TorchScript. Run: python build.py"""
import sys
from pathlib import Path

import torch

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))
from _training import accuracy, train_arrests_mlp  # noqa: E402

model = train_arrests_mlp()
torch.jit.trace(model, torch.zeros(1, 7)).save(str(here / "model.ts"))
print(f"wrote {here / 'model.ts'} (test accuracy {accuracy(model, 'arrests'):.3f})")
