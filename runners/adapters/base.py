"""The seam between harness and model (after MLPerf LoadGen's SUT): load, predict, describe.

Scenarios, timing and stopping live on the harness side and never leak in here.
``prepare`` converts a batch to the runtime's native input *before* timing, so the timed
``predict`` call is the model call and nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from heptathlon.bench.errors import ModelError
from heptathlon.bench.manifest import Manifest
from heptathlon.bench.profile import Profile


class ModelAdapter(ABC):
    def __init__(self, manifest: Manifest, folder: Path, profile: Profile, context: dict[str, Any]) -> None:
        self.manifest = manifest
        self.folder = folder
        self.profile = profile
        self.context = context
        self.records: dict[str, Any] = {}  # controls/precision records the adapter applied

    @abstractmethod
    def load(self) -> None:
        """Load the model. The time until this returns is part of the cold start."""

    def prepare(self, batch: np.ndarray) -> Any:
        """Convert a float32 batch to the native input. Called outside the timed window."""
        return batch

    @abstractmethod
    def predict(self, prepared: Any) -> Any:
        """Run the model on one prepared batch; the timed call."""

    def postprocess(self, raw: Any, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(predicted labels, per-class scores or None) from a raw output. Outside timing."""
        arr = np.asarray(raw)
        if arr.ndim == 2:
            return arr.argmax(axis=1), arr.astype(np.float32)
        if arr.ndim == 1:
            return arr.astype(np.int64), None
        raise ModelError(f"model output has shape {arr.shape}; expected (batch, classes) scores or (batch,) labels; make predict() return one row or label per input")

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Runtime, versions and what can be derived from the artifact (params)."""

    def close(self) -> None:
        pass
