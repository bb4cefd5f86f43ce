"""Model adapters: one module per runtime, each implementing ``ModelAdapter``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heptathlon.bench.errors import SubmissionError
from heptathlon.bench.manifest import Manifest
from heptathlon.bench.profile import Profile
from heptathlon.runners.adapters.base import ModelAdapter


def make_adapter(manifest: Manifest, folder: Path, profile: Profile, context: dict[str, Any] | None = None) -> ModelAdapter:
    """Build the adapter for a submission. Imports the runtime lazily: only the worker calls this."""
    kind = manifest.model.kind
    if kind == "onnx":
        from heptathlon.runners.adapters.onnx import OnnxAdapter as cls
    elif kind == "torchscript":
        from heptathlon.runners.adapters.torchscript import TorchScriptAdapter as cls
    elif kind == "torch":
        from heptathlon.runners.adapters.torch_eager import TorchEagerAdapter as cls
    elif kind == "command":
        from heptathlon.runners.adapters.command import CommandAdapter as cls
    else:  # the manifest schema makes this unreachable
        raise SubmissionError(f"submission.yaml: field 'model.kind': unknown model kind {kind!r}; use onnx, torchscript, torch or command")
    return cls(manifest, Path(folder), profile, context or {})
