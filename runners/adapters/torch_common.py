"""Shared by the torch adapters: threads, inference mode, parameter counting."""

from __future__ import annotations

from typing import Any

import numpy as np

from runners.adapters.base import ModelAdapter
from runners.controls import apply_torch_threads


class TorchAdapterBase(ModelAdapter):
    module: Any

    def _setup_torch(self) -> None:
        import torch

        self.torch = torch
        self.records["torch_threads"] = apply_torch_threads(self.profile)
        self.device = torch.device("cpu")

    def _finish(self, module) -> None:
        module.eval()
        self.module = module
        self._inference = self.torch.inference_mode

    def prepare(self, batch: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)

    def predict(self, prepared: Any) -> Any:
        with self._inference():
            return self.module(prepared)

    def postprocess(self, raw: Any, n: int):
        return super().postprocess(raw.detach().float().cpu().numpy(), n)

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.runtime_name, "runtime_version": self.torch.__version__,
                "params": int(sum(p.numel() for p in self.module.parameters())),
                "params_method": "artifact:torch-parameters"}
