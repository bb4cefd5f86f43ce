"""TorchScript adapter."""

from __future__ import annotations

from heptathlon.runners.adapters.torch_common import TorchAdapterBase


class TorchScriptAdapter(TorchAdapterBase):
    runtime_name = "torchscript"

    def load(self) -> None:
        self._setup_torch()
        module = self.torch.jit.load(str(self.folder / self.manifest.model.path), map_location="cpu")
        self._finish(module)
