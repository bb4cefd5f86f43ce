"""The seam between harness and model (after MLPerf LoadGen's SUT): load, predict, describe.

Scenarios, timing and stopping live on the harness side and never leak in here.
``prepare`` converts a batch to the runtime's native input *before* timing, so the timed
``predict`` call is the model call and nothing else.

Every way of running a model is a ``ModelAdapter``: the four submission kinds (built from a
manifest by ``registry.make_adapter``) and the runtimes the batch_sweep derives from a loaded
torch module (built by ``derive.derive_runtimes``). The sweep and the profiler read the same
few attributes from both: ``name``, ``profiler``, ``available``/``reason``, ``device``,
``convert_s`` and ``details``. A runtime that cannot run here is an adapter with
``available=False`` and the reason, never an exception.

Each adapter module may declare a ``RuntimeConfig``: its section of the profile's ``runtime:``
mapping, validated by ``RuntimeConfig.of(profile)`` where the section is used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from heptathlon.bench.errors import ProfileError
from heptathlon.bench.manifest import Manifest
from heptathlon.bench.profile import Profile, format_validation_error


class RuntimeConfig(BaseModel):
    """One section of a profile's ``runtime:`` mapping; ``section`` is its key there."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    section: ClassVar[str]

    @classmethod
    def of(cls, profile: Profile) -> "RuntimeConfig":
        """The section, validated; a bad field is a ProfileError naming the profile file and field."""
        try:
            return cls.model_validate(profile.runtime.get(cls.section) or {})
        except ValidationError as e:
            where = profile.source or f"profile {profile.name!r}"
            raise ProfileError(format_validation_error(where, e, prefix=("runtime", cls.section))) from None


class ModelAdapter(ABC):
    name: ClassVar[str]  # the runtime's name in the registry and the sweep ("eager", "onnxruntime", ...)
    # Which profiler decomposes a call ("torch", "onnxruntime"; "command" has none); recorded as the runtime's kind.
    profiler: ClassVar[str]
    config: ClassVar[type[RuntimeConfig] | None] = None  # its section of the profile's runtime: mapping
    derivable: ClassVar[tuple[str, ...]] = ()  # derived runtimes (registry.RUNTIMES) the sweep converts this kind to

    def __init__(self, manifest: Manifest | None, folder: Path | None, profile: Profile | None,
                 context: dict[str, Any] | None = None) -> None:
        self.manifest = manifest
        self.folder = folder
        self.profile = profile
        self.context = context or {}
        self.records: dict[str, Any] = {}  # controls/precision records the adapter applied
        self.available = True
        self.reason: str | None = None  # why the runtime is unavailable
        self.device = "cpu"  # where the model runs, as torch names it
        self.convert_s: float | None = 0.0  # conversion/compile time; not part of any latency
        self.details: dict[str, Any] = {}  # how the runtime was made ("how"), for the sweep's record

    @classmethod
    def unavailable(cls, reason: str, device: str = "cpu") -> "ModelAdapter":
        """This runtime, not runnable here, with the reason."""
        self = cls.__new__(cls)
        ModelAdapter.__init__(self, None, None, None)
        self.available, self.reason, self.device, self.convert_s = False, reason, device, None
        return self

    @abstractmethod
    def load(self) -> None:
        """Load the model. The time until this returns is part of the cold start."""

    def prepare(self, batch: np.ndarray) -> Any:
        """Convert a float32 batch to the native input. Called outside the timed window."""
        return batch

    @abstractmethod
    def predict(self, prepared: Any) -> Any:
        """Run the model on one prepared batch; the timed call."""

    def postprocess(self, raw: Any, n: int) -> tuple[Any, Any]:
        """(predicted labels, per-class scores or None) from a raw output. Outside timing.

        Nothing is coerced here (a float label is not truncated): the worker validates the pair
        at the boundary with ``heptathlon.runners.answers.check_answer``, which also names the
        submission, the request and the field of any violation."""
        arr = np.asarray(raw)
        if arr.ndim == 2 and arr.dtype.kind in "iuf":
            with np.errstate(over="ignore"):
                return arr.argmax(axis=1), arr.astype(np.float32)
        return arr, None

    def answer_id(self, raw: Any) -> int | None:
        """The request id a raw answer carries, where the protocol has one (stdio); for messages."""
        return None

    fixed_batch: int | None = None  # a batch size the artifact is fixed to (an ONNX input shape), else None

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Runtime, versions and what can be derived from the artifact (params)."""

    def close(self) -> None:
        pass
