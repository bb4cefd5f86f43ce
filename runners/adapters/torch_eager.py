"""Torch eager adapter: a module file exposing build() -> nn.Module, plus a state_dict."""

from __future__ import annotations

import importlib.util
import sys

from heptathlon.bench.errors import SubmissionError
from heptathlon.runners.adapters.torch_common import TorchAdapterBase


class TorchEagerAdapter(TorchAdapterBase):
    runtime_name = "torch-eager"

    def load(self) -> None:
        self._setup_torch()
        path = self.folder / self.manifest.model.module
        spec = importlib.util.spec_from_file_location("submission_model", path)
        mod = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(self.folder))
        spec.loader.exec_module(mod)
        if not hasattr(mod, "build"):
            raise SubmissionError(f"{path}: field 'model.module': the module defines no build() function; add one that returns the nn.Module")
        module = mod.build()
        state = self.torch.load(str(self.folder / self.manifest.model.weights), map_location="cpu", weights_only=True)
        module.load_state_dict(state)
        self._finish(module)
