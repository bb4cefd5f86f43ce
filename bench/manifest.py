"""The submission contract: ``submission.yaml``, validated with pydantic, and the artifact hash."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from heptathlon.bench.errors import SubmissionError

MANIFEST = "submission.yaml"
BUILD_STAMP = ".built"  # written by the example build scripts' runner; not part of the artifact
IGNORED = ("__pycache__", BUILD_STAMP)


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["onnx", "torchscript", "torch", "command"]
    path: str | None = None  # onnx / torchscript artifact
    module: str | None = None  # torch: a file exposing build() -> nn.Module
    weights: str | None = None  # torch: a state_dict file
    command: list[str] | None = None  # command: argv, stdio protocol

    @model_validator(mode="after")
    def _fields_for_kind(self) -> "ModelSpec":
        need = {"onnx": ["path"], "torchscript": ["path"], "torch": ["module", "weights"], "command": ["command"]}
        allowed = set(need[self.kind])
        for f in ("path", "module", "weights", "command"):
            v = getattr(self, f)
            if f in allowed and not v:
                raise ValueError(f"kind {self.kind!r} needs field 'model.{f}'")
            if f not in allowed and v is not None:
                raise ValueError(f"field 'model.{f}' is not used by kind {self.kind!r}; remove it")
        return self

    def file_fields(self) -> dict[str, str]:
        """The fields that name files inside the folder."""
        return {f: getattr(self, f) for f in ("path", "module", "weights") if getattr(self, f)}


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: str = "1"
    task: str
    model: ModelSpec
    description: str = ""


def _first_error(path: Path, err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
    if e["type"] == "extra_forbidden":
        msg = "unknown key; remove it (allowed keys: see DESIGN.md 'Submission contract')"
    elif e["type"] == "missing":
        msg = "required field is missing"
    elif e["type"] == "string_pattern_mismatch" and loc == "name":
        msg = "expected lowercase letters, digits and dashes ([a-z0-9-]+)"
    else:
        msg = e["msg"].removeprefix("Value error, ")
    return f"{path}: field '{loc}': {msg}"


def inside(folder: Path, rel: str) -> Path:
    """Resolve ``rel`` inside ``folder``; a path that leaves the folder is an error."""
    folder = folder.resolve()
    target = (folder / rel).resolve()
    if not target.is_relative_to(folder):
        raise ValueError(f"path {rel!r} leaves the submission folder")
    return target


def load_manifest(folder: Path) -> Manifest:
    """Validate ``folder/submission.yaml`` and the files it names. Errors name file and field."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise SubmissionError(f"{folder}: not a submission folder (it does not exist or is not a directory)")
    if not path.is_file():
        raise SubmissionError(f"{path}: missing; a submission folder needs a {MANIFEST} (see submissions/ for examples)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SubmissionError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise SubmissionError(f"{path}: expected a mapping with keys name, version, task, model")
    if "version" in raw and not isinstance(raw["version"], str):
        raw["version"] = str(raw["version"])
    try:
        m = Manifest.model_validate(raw)
    except ValidationError as e:
        raise SubmissionError(_first_error(path, e)) from None
    for field, rel in m.model.file_fields().items():
        try:
            target = inside(folder, rel)
        except ValueError as e:
            raise SubmissionError(f"{path}: field 'model.{field}': {e}") from None
        if not target.is_file():
            raise SubmissionError(f"{path}: field 'model.{field}': file {rel!r} not found in {folder} "
                                  "(did you run the folder's build script?)")
    if m.model.kind == "command":
        for arg in m.model.command[1:]:
            if arg.endswith((".py", ".sh")) or "/" in arg:
                try:
                    inside(folder, arg)
                except ValueError as e:
                    raise SubmissionError(f"{path}: field 'model.command': {e}") from None
    return m


def hash_folder(folder: Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted order: the artifact identity."""
    h = hashlib.sha256()
    folder = Path(folder)
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not any(part in IGNORED for part in p.relative_to(folder).parts):
            h.update(p.relative_to(folder).as_posix().encode() + b"\0")
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()


def artifact_files(folder: Path, m: Manifest) -> list[Path]:
    """The files whose size is the artifact size."""
    if m.model.kind == "command":
        return [p for p in Path(folder).rglob("*")
                if p.is_file() and not any(part in IGNORED for part in p.relative_to(folder).parts)]
    return [Path(folder) / rel for rel in m.model.file_fields().values()]
