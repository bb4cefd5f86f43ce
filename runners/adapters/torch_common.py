"""Shared by the torch adapters: threads, inference mode, parameter counting."""

from __future__ import annotations

from typing import Any

import numpy as np

from heptathlon.runners.adapters.base import ModelAdapter
from heptathlon.runners.controls import apply_torch_controls, torch_device


class TorchAdapterBase(ModelAdapter):
    module: Any

    def _setup_torch(self) -> None:
        import torch

        self.torch = torch
        self.records.update(apply_torch_controls(self.profile))
        self.device = torch.device(torch_device(self.profile))

    def _finish(self, module) -> None:
        from heptathlon.runners.quantize import prepare_torch_precision

        self.n_params = int(sum(p.numel() for p in module.parameters()))  # before any numerics change
        module.eval()
        module, self.input_dtype, record = prepare_torch_precision(module, self.profile.precision, str(self.device),
                                                                    profile_name=self.profile.name)
        self.records["precision"] = record
        self.module = module
        self._inference = self.torch.inference_mode
        if self.device.type == "cuda":
            # CUDA launches are asynchronous: a timed call must end when the GPU is done, so
            # the synchronising variant replaces predict (no per-call branch on the CPU path).
            self.predict = self._predict_synchronized

    def prepare(self, batch: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, self.input_dtype)

    def predict(self, prepared: Any) -> Any:
        with self._inference():
            return self.module(prepared)

    def _predict_synchronized(self, prepared: Any) -> Any:
        with self._inference():
            out = self.module(prepared)
        self.torch.cuda.synchronize(self.device)
        return out

    def postprocess(self, raw: Any, n: int):
        return super().postprocess(raw.detach().float().cpu().numpy(), n)

    def describe(self) -> dict[str, Any]:
        out = {"runtime": self.runtime_name, "runtime_version": self.torch.__version__,
               "params": self.n_params, "params_method": "artifact:torch-parameters"}
        if self.device.type == "cuda":  # the allocator's own peak: exact for torch tensors, blind to the CUDA context
            out["torch_cuda_max_allocated_bytes"] = int(self.torch.cuda.max_memory_allocated(self.device))
        return out
