"""Torch eager: the ``torch`` submission kind (a module file exposing build() -> nn.Module, plus a
state_dict), and the ``eager`` runtime the sweep runs a loaded module in."""

from __future__ import annotations

import importlib.util
import sys

from heptathlon.bench.errors import SubmissionError
from heptathlon.runners.adapters.torch_common import TorchAdapterBase, TorchModuleRuntime


class TorchEagerAdapter(TorchAdapterBase):
    name = "eager"
    runtime_name = "torch-eager"
    # A TorchScript module is already compiled; an eager one can be traced, exported and compiled.
    derivable = ("torchscript", "onnxruntime", "torch.compile")

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


class EagerRuntime(TorchModuleRuntime):
    """The loaded module itself: the reference every derived runtime's outputs are checked against."""

    name = "eager"
