"""Shared by the torch adapters: the ``torch`` config section, threads, inference mode, parameter counting.

Two families share ``TorchRuntime``: the submission kinds (``TorchAdapterBase``: torch,
torchscript) and the runtimes the sweep derives from a loaded module (``TorchModuleRuntime``:
eager, torchscript trace, torch.compile), which take a tensor or tuple of tensors with the
batch on dim 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from heptathlon.runners.adapters.base import ModelAdapter, RuntimeConfig


class TorchConfig(RuntimeConfig):
    """``runtime: {torch: {...}}`` of a profile."""

    section = "torch"
    cudnn_benchmark: bool = False
    deterministic: bool = False


class TorchRuntime(ModelAdapter):
    """What every torch adapter shares: torch.profiler decomposes its calls."""

    profiler = "torch"
    config = TorchConfig

    def postprocess(self, raw: Any, n: int):
        return super().postprocess(raw.detach().float().cpu().numpy(), n)


class TorchAdapterBase(TorchRuntime):
    """A submitted torch model (``kind: torch`` or ``torchscript``), under the profile's controls."""

    module: Any
    runtime_name: str  # what describe() records as the runtime

    def _setup_torch(self) -> None:
        import torch

        from heptathlon.runners.controls import apply_torch_controls, torch_device

        self.torch = torch
        self.records.update(apply_torch_controls(self.profile))
        self.device = torch_device(self.profile)
        self.details = {"how": f"the submitted {self.manifest.model.kind} model, in the adapter"}

    def _finish(self, module) -> None:
        from heptathlon.runners.quantize import prepare_torch_precision

        self.n_params = int(sum(p.numel() for p in module.parameters()))  # before any numerics change
        module.eval()
        module, self.input_dtype, record = prepare_torch_precision(module, self.profile.precision, self.device,
                                                                    profile_name=self.profile.name)
        self.records["precision"] = record
        self.module = module
        self._inference = self.torch.inference_mode
        if self.device.startswith("cuda"):
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

    def describe(self) -> dict[str, Any]:
        out = {"runtime": self.runtime_name, "runtime_version": self.torch.__version__,
               "params": self.n_params, "params_method": "artifact:torch-parameters"}
        if self.device.startswith("cuda"):  # the allocator's own peak: exact for torch tensors, blind to the CUDA context
            out["torch_cuda_max_allocated_bytes"] = int(self.torch.cuda.max_memory_allocated(self.device))
        return out


class TorchModuleRuntime(TorchRuntime):
    """A derived runtime over a callable torch module (eager, traced, compiled).

    The timed call runs under ``torch.inference_mode()``: entering it is part of what a serving
    framework pays per call, so it stays inside the timed region. On CUDA a call ends when its
    kernels have run, not when they were queued.
    """

    def __init__(self, module: Any, *, device: str = "cpu", convert_s: float | None = None,
                 details: dict[str, Any] | None = None) -> None:
        import torch

        super().__init__(None, None, None)
        self.torch, self.module, self.device, self.convert_s = torch, module, device, convert_s
        self.details = dict(details or {})
        if device.startswith("cuda"):
            self.predict = self._predict_synchronized

    @classmethod
    def derive(cls, module: Any, example: tuple, device: str, options: Any) -> ModelAdapter:
        """Convert an eval-mode module (on ``device``) to this runtime; raises where conversion fails."""
        return cls(module, device=device, convert_s=0.0)

    def load(self) -> None:
        """Nothing left to do: ``derive`` converted the module."""

    def prepare(self, batch: Any) -> tuple:
        batch = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        return tuple(t.to(self.device) for t in batch)

    def predict(self, inputs: tuple) -> Any:
        with self.torch.inference_mode():
            return self.module(*inputs)

    def _predict_synchronized(self, inputs: tuple) -> Any:
        with self.torch.inference_mode():
            out = self.module(*inputs)
        self.torch.cuda.synchronize()
        return out

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "runtime_version": self.torch.__version__, **self.details}
