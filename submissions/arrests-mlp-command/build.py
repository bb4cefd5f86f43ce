"""Build weights.npz: the arrests MLP's weights for serve.py's numpy forward pass. Run: python build.py"""
import sys
from pathlib import Path

import numpy as np

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))
from _training import accuracy, train_arrests_mlp  # noqa: E402

model = train_arrests_mlp()
layers = [m for m in model.net if hasattr(m, "weight")]
np.savez(here / "weights.npz", **{f"w{i}": l.weight.detach().numpy().T for i, l in enumerate(layers)},
         **{f"b{i}": l.bias.detach().numpy() for i, l in enumerate(layers)})
print(f"wrote {here / 'weights.npz'} (test accuracy {accuracy(model, 'arrests'):.3f})")
