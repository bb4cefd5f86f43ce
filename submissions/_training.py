"""Deterministic training shared by the example build scripts. Data comes from packages on disk.

Each example folder's build.py calls one function here and saves the result in its own
format, so the four arrests examples hold the *same* weights in four runtimes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from heptathlon.bench.tasks import get_task


class ArrestsMLP(nn.Module):
    def __init__(self, n_in: int = 7, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2))

    def forward(self, x):
        return self.net(x)


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                                      nn.ReLU())
        self.head = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def _fit(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, batch: int, lr: float) -> nn.Module:
    torch.manual_seed(0)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def train_arrests_mlp(task: str = "arrests") -> nn.Module:
    torch.manual_seed(0)
    data = get_task(task).load()
    model = ArrestsMLP(n_in=data.x_train.shape[1])
    return _fit(model, data.x_train, data.y_train, epochs=40, batch=128, lr=3e-3)


def train_digits_cnn() -> nn.Module:
    torch.manual_seed(0)
    data = get_task("digits").load()
    return _fit(DigitsCNN(), data.x_train, data.y_train, epochs=15, batch=64, lr=3e-3)


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    # The TorchScript-based exporter gives a dynamic batch axis for these plain modules.
    torch.onnx.export(model, (example,), str(path), input_names=["x"], output_names=["scores"],
                      dynamic_axes={"x": {0: "batch"}, "scores": {0: "batch"}}, dynamo=False)


def accuracy(model: nn.Module, task: str) -> float:
    data = get_task(task).load()
    with torch.no_grad():
        return float((model(torch.from_numpy(data.x_test)).argmax(1).numpy() == data.y_test).mean())
