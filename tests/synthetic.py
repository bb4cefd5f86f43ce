"""Two synthetic torch models with known structure, for framework-tax tests and benchmarks.

- ``TinyOpsModel``: many tiny operators on width 8. Each call dispatches ~200 operators that each
  do almost no arithmetic, so framework overhead dominates (the regime of Fernandez et al. 2023).
- ``BigMatmulModel``: a few wide Linear layers. Each call is a handful of large GEMMs, so
  compute dominates.

Both are deterministic (seeded weights) and small enough for 2 CPU cores. This module imports
torch; the rest of ``bench`` does not need it.
"""

from __future__ import annotations

import torch
from torch import nn


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TinyOpsModel(nn.Module):
    """``n_blocks`` blocks of x = x + 0.5 * relu(linear_8x8(x)), i.e. 4 dispatched operators per block.

    The 0.5 residual scale keeps activations bounded over many blocks.
    """

    def __init__(self, width: int = 8, n_blocks: int = 50, seed: int = 0) -> None:
        super().__init__()
        self.in_features = width
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(n_blocks))
        g = _seeded(seed)
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.copy_(torch.randn(width, width, generator=g) / width)
                layer.bias.copy_(torch.randn(width, generator=g) * 0.01)

    @property
    def ops_per_call(self) -> int:
        return 4 * len(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + 0.5 * torch.relu(layer(x))
        return x


class BigMatmulModel(nn.Module):
    """``depth`` Linear(width, width) layers with ReLU between: a few large GEMMs per call."""

    def __init__(self, width: int = 2048, depth: int = 3, seed: int = 0) -> None:
        super().__init__()
        self.in_features = width
        g = _seeded(seed)
        layers: list[nn.Module] = []
        for i in range(depth):
            lin = nn.Linear(width, width)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(width, width, generator=g) / width ** 0.5)
                lin.bias.zero_()
            layers.append(lin)
            if i < depth - 1:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_input(model: nn.Module, batch_size: int, seed: int = 0) -> torch.Tensor:
    """A deterministic (batch_size, in_features) float32 input for either model."""
    return torch.randn(batch_size, model.in_features, generator=_seeded(seed))


def synthetic_models() -> dict[str, nn.Module]:
    """Both models in eval mode, keyed by the names used in benchmarks and docs."""
    return {"tiny-ops": TinyOpsModel().eval(), "big-matmul": BigMatmulModel().eval()}
