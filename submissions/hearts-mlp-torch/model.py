"""The hearts MLP as plain torch code: build() returns the module; weights come from weights.pt."""
from torch import nn


def build() -> nn.Module:
    return nn.Sequential(nn.Linear(17, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
