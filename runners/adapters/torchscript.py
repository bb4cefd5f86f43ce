"""TorchScript: the ``torchscript`` submission kind, and the ``torchscript`` runtime the sweep
derives from a torch module by tracing."""

from __future__ import annotations

import time
import warnings
from typing import Any

from heptathlon.runners.adapters.base import ModelAdapter
from heptathlon.runners.adapters.torch_common import TorchAdapterBase, TorchModuleRuntime


class TorchScriptAdapter(TorchAdapterBase):
    name = "torchscript"
    runtime_name = "torchscript"
    derivable = ("onnxruntime",)

    def load(self) -> None:
        self._setup_torch()
        module = self.torch.jit.load(str(self.folder / self.manifest.model.path), map_location="cpu")
        self._finish(module)


class TracedRuntime(TorchModuleRuntime):
    name = "torchscript"

    @classmethod
    def derive(cls, module: Any, example: tuple, device: str, options: Any) -> ModelAdapter:
        import torch

        t0 = time.perf_counter()
        # trace, not script: trace handles any module whose control flow does not depend on
        # data, script rejects much ordinary Python. freeze folds weights into constants, as a
        # TorchScript deployment would. TorchScript is deprecated in torch 2.x; its warnings are
        # silenced here and the runtime is still measured while torch ships it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.inference_mode(False), torch.no_grad():
                scripted = torch.jit.freeze(torch.jit.trace(module, example, check_trace=False))
        return cls(scripted, device=device, convert_s=time.perf_counter() - t0,
                   details={"how": "torch.jit.trace + torch.jit.freeze"})
