"""The typed contract between the harness and a worker: a :class:`WorkerJob` goes in, a
:class:`WorkerResult` (or a :class:`WorkerFailure`) comes out.

Both are plain JSON (``model_dump_json`` / ``model_validate_json``), so the same contract
crosses a process boundary today and a network (a Celery fleet) later. The raw arrays
travel as one npz blob inside the result; labels never do, they stay with the parent.
A result file is validated where it is read: a malformed or truncated one is a one-line
:class:`WorkerResultError` naming the run, never a ``KeyError`` further down.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from heptathlon.bench.errors import RunError
from heptathlon.bench.manifest import Manifest
from heptathlon.bench.profile import Profile


class WorkerResultError(RunError):
    """A worker's result (or error) file is missing, malformed or truncated."""


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()  # a numpy count stays a number (np.int64 is no int subclass)
    return str(value)  # anything else as its text, as the worker's json.dumps(default=str) always did


def _plain_json(value: Any) -> Any:
    # The free-form payloads (describe, controls, loop summary) come from adapters and meters and
    # may hold numpy scalars or paths: made plain JSON here, at the boundary, not a failed run.
    return None if value is None else json.loads(json.dumps(value, default=_json_default))


JsonDict = Annotated[dict[str, Any], BeforeValidator(_plain_json)]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeterSettings(_Contract):
    """The run's meter settings (run.params["energy"]; ``heptathlon run --no-meters/--idle-seconds/--country``)."""

    enabled: bool = True
    idle_s: float = Field(default=1.0, ge=0)  # idle-power baseline before the window (at least the meters' minimum)
    country_iso: str = "USA"
    allow_estimate: bool = True


class WorkerJob(_Contract):
    """Everything a worker needs to run one benchmark; paths are on the machine that runs it."""

    run_id: str
    manifest: Manifest
    folder: Path  # the worker's writable copy of the submission (labels removed)
    profile: Profile
    scenario: dict[str, Any]  # ScenarioConfig.to_params()
    inputs: Path  # .npy of the test inputs, no labels (float features, unicode text or int64 tokens)
    out_dir: Path  # where the worker writes result.json or error.json
    quality_batch: int = Field(default=64, gt=0)
    n_classes: int = Field(ge=2)  # the task's classes: answers are validated against it (runners.answers)
    context: dict[str, Any] = Field(default_factory=dict)  # e.g. model_path_override for a derived precision
    meters: MeterSettings = Field(default_factory=MeterSettings)
    # --trusted: a torch/torchscript model runs in the worker itself (the author's own machine only)
    trusted: bool = False
    sandbox_hide: list[str] = Field(default_factory=list)  # more directories the model process must not see

    @property
    def result_path(self) -> Path:
        return self.out_dir / "result.json"  # a WorkerResult

    @property
    def error_path(self) -> Path:
        return self.out_dir / "error.json"  # a WorkerFailure


ARRAY_NAMES = ("issue_ns", "done_ns", "batch", "preds", "scores", "tokens", "tokenize_ns")
_REQUIRED_ARRAYS = ARRAY_NAMES[:4]  # scores only for models that return them; tokens* only on text tasks


@dataclass(frozen=True)
class RunArrays:
    """The worker's raw samples: per query issue/done timestamps (ns) and batch size, and the
    quality pass's predictions (and scores)."""

    issue_ns: np.ndarray  # under server: the scheduled arrivals
    done_ns: np.ndarray
    batch: np.ndarray
    preds: np.ndarray
    scores: np.ndarray | None = None
    tokens: np.ndarray | None = None  # text tasks: tokens per task instance, the submission's tokenizer
    tokenize_ns: np.ndarray | None = None  # text tasks: tokenisation time per prepared query (outside timing)

    def pack(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **{n: getattr(self, n) for n in ARRAY_NAMES if getattr(self, n) is not None})
        return buf.getvalue()

    @classmethod
    def unpack(cls, blob: bytes) -> "RunArrays":
        """Raises ValueError when the blob is not an npz holding at least the required arrays."""
        try:
            npz = np.load(io.BytesIO(blob), allow_pickle=False)  # the worker ran untrusted code: no pickles
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:  # ValueError: not npz, so a pickle
            raise ValueError(f"not a readable npz blob ({type(e).__name__}: {e})") from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an npz blob")
        with npz:
            missing = [n for n in _REQUIRED_ARRAYS if n not in npz.files]
            if missing:
                raise ValueError(f"arrays {missing} missing")
            try:
                return cls(**{n: npz[n] for n in ARRAY_NAMES if n in npz.files})
            except (OSError, EOFError, zipfile.BadZipFile) as e:  # a member cut short
                raise ValueError(f"truncated npz blob ({type(e).__name__}: {e})") from None


class WorkerResult(_Contract):
    """What a worker returns after a successful run."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    run_id: str
    ready_time: float  # epoch seconds on the worker's clock when the model was loaded
    n_queries: int
    stopped_by: str
    describe: JsonDict  # the adapter's runtime, versions, params
    controls: JsonDict  # what each profile control requested and what took effect
    loop: JsonDict  # the loop summary: drift, adaptive width, server stats
    energy: JsonDict | None = None  # meter payload (runners.metering); None when meters were off
    sweep: JsonDict | None = None  # batch_sweep's raw per-batch samples
    answers: JsonDict | None = None  # the quality pass's batch and the consistency check (run.extra["answers"])
    generate: JsonDict | None = None  # the generate scenario's passes and raw token stamps (runners/generate.py)
    machine: JsonDict  # collect_fingerprint() on the machine that ran the model
    arrays_npz: bytes  # RunArrays.pack()

    @classmethod
    def build(cls, arrays: RunArrays, **fields: Any) -> "WorkerResult":
        return cls(arrays_npz=arrays.pack(), **fields)

    @cached_property
    def arrays(self) -> RunArrays:
        return RunArrays.unpack(self.arrays_npz)

    @classmethod
    def read(cls, path: Path, run_id: str) -> "WorkerResult":
        """The validated result file of ``run_id``, its arrays unpacked; else WorkerResultError."""
        result = _read_contract(cls, path, run_id)
        if result.run_id != run_id:
            raise WorkerResultError(f"run {run_id}: worker result {path.name} belongs to run {result.run_id}")
        try:
            result.arrays  # noqa: B018  unpacked here, so a truncated blob fails at the boundary
        except ValueError as e:
            raise WorkerResultError(f"run {run_id}: worker result {path.name}: arrays_npz: {e}") from None
        return result


class WorkerFailure(_Contract):
    """What a worker reports when the run failed inside it (error.json)."""

    error: str  # one line, for the run record
    type: str  # the exception's class name

    @classmethod
    def read(cls, path: Path, run_id: str) -> "WorkerFailure":
        return _read_contract(cls, path, run_id)


def _read_contract(model: type[BaseModel], path: Path, run_id: str) -> Any:
    try:
        return model.model_validate_json(path.read_bytes())
    except OSError as e:
        raise WorkerResultError(f"run {run_id}: cannot read worker file {path.name}: {e.strerror or e}") from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise WorkerResultError(f"run {run_id}: worker file {path.name} is malformed: {where}: {first['msg']}{more}") \
            from None
