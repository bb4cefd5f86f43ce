"""Build model.onnx: the arrests MLP with one dead hidden unit whose input weights are large (an
outlier). Run: python build.py

The unit's output weights are zero, so it changes no fp32 output (exactly: ReLU(.) x 0 = 0). But
per-tensor int8 quantisation (ONNX Runtime's dynamic quantisation, the cpu-1core-int8 profile)
takes one scale for the whole first-layer weight matrix from its largest magnitude: the outlier
makes that scale coarse, every other first-layer weight loses resolution, and the predictions of
examples near the decision boundary flip - unevenly across groups. A demo of numerics moving a
group's outcomes (docs/fairness.md), not a model anyone should ship.
"""
import sys
from pathlib import Path

import torch

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))
from _training import accuracy, export_onnx, train_arrests_mlp  # noqa: E402

OUTLIER = 5.0  # measured: 5 moves the colour groups' accuracy gap by a CI that excludes 0

model = train_arrests_mlp()
linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
first, second = linears[0], linears[1]
with torch.no_grad():
    unit = int(torch.argmin(first.weight.abs().sum(1)))  # the least used hidden unit
    first.weight[unit, :] = OUTLIER
    first.bias[unit] = 0.0
    second.weight[:, unit] = 0.0
export_onnx(model, torch.zeros(1, 7), here / "model.onnx")
print(f"wrote {here / 'model.onnx'} (test accuracy {accuracy(model, 'arrests'):.3f}; hidden unit {unit} "
      f"has input weights {OUTLIER} and output weights 0)")
