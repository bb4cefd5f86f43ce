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


HEADS = ("sequence-classification", "feature-extraction", "causal-lm", "seq2seq")


class TextSpec(BaseModel):
    """``model.text``: how text becomes the model's inputs (kinds transformers and onnx).

    Tokenisation runs in the model process, outside the timed model call, and is timed on its
    own (``tokenize_ms``). Every policy here is recorded on the run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    head: Literal["auto", *HEADS] = "auto"  # transformers: auto = inferred from config.json
    tokenizer: str | None = None  # onnx: a folder with tokenizer.json (transformers: the model folder)
    max_length: int | None = Field(default=None, gt=0)  # at most the model's own maximum
    truncation: bool = False  # false: a longer input fails the run; true: truncated, and counted
    padding: Literal["longest", "buckets"] = "longest"  # pad to the longest in the batch, or up to a bucket
    bucket: int = Field(default=32, gt=0)  # padding: buckets pads lengths up to a multiple of this


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["onnx", "torchscript", "torch", "command", "transformers"]
    path: str | None = None  # onnx / torchscript artifact; transformers: a save_pretrained folder
    module: str | None = None  # torch: a file exposing build() -> nn.Module
    weights: str | None = None  # torch: a state_dict file
    command: list[str] | None = None  # command: argv, stdio protocol
    text: TextSpec | None = None  # transformers / onnx on a text task

    @model_validator(mode="after")
    def _fields_for_kind(self) -> "ModelSpec":
        need = {"onnx": ["path"], "torchscript": ["path"], "torch": ["module", "weights"], "command": ["command"],
                "transformers": ["path"]}
        allowed = set(need[self.kind])
        for f in ("path", "module", "weights", "command"):
            v = getattr(self, f)
            if f in allowed and not v:
                raise ValueError(f"kind {self.kind!r} needs field 'model.{f}'")
            if f not in allowed and v is not None:
                raise ValueError(f"field 'model.{f}' is not used by kind {self.kind!r}; remove it")
        if self.text is not None and self.kind not in ("transformers", "onnx"):
            raise ValueError(f"field 'model.text' is not used by kind {self.kind!r}; remove it")
        if self.text is not None and self.kind == "transformers" and self.text.tokenizer is not None:
            raise ValueError("field 'model.text.tokenizer': kind 'transformers' uses the tokenizer in model.path; "
                             "remove it")
        if self.text is not None and self.kind == "onnx" and self.text.head != "auto":
            raise ValueError("field 'model.text.head': only kind 'transformers' has a head to choose; remove it")
        return self

    @property
    def text_spec(self) -> TextSpec:
        return self.text or TextSpec()

    def file_fields(self) -> dict[str, str]:
        """The fields that name files inside the folder."""
        if self.kind == "transformers":
            return {}
        return {f: getattr(self, f) for f in ("path", "module", "weights") if getattr(self, f)}

    def folder_fields(self) -> dict[str, str]:
        """The fields that name folders inside the submission folder."""
        out = {"path": self.path} if self.kind == "transformers" else {}
        if self.text is not None and self.text.tokenizer:
            out["text.tokenizer"] = self.text.tokenizer
        return out


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
    for field, rel in m.model.folder_fields().items():
        try:
            target = inside(folder, rel)
        except ValueError as e:
            raise SubmissionError(f"{path}: field 'model.{field}': {e}") from None
        if not target.is_dir():
            raise SubmissionError(f"{path}: field 'model.{field}': folder {rel!r} not found in {folder} "
                                  "(did you run the folder's build script?)")
        check = check_pretrained_folder if field == "path" else check_tokenizer_folder
        check(target, f"{path}: field 'model.{field}'")
    if m.model.kind == "command":
        for arg in m.model.command[1:]:
            if arg.endswith((".py", ".sh")) or "/" in arg:
                try:
                    inside(folder, arg)
                except ValueError as e:
                    raise SubmissionError(f"{path}: field 'model.command': {e}") from None
    return m


# ---- save_pretrained folders: data only, never code ----------------------------------------------------
# Files that carry (or may carry) code: pickled weights unpickle arbitrary objects, and Python
# files or an ``auto_map`` entry are what trust_remote_code would run. A transformers folder is
# refused with any of them, so the kind runs no submitted code (docs/security.md).
PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".h5", ".msgpack")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def _read_json(p: Path, where: str) -> dict:
    import json

    try:
        raw = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise SubmissionError(f"{where}: {p.name} is not readable JSON ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict):
        raise SubmissionError(f"{where}: {p.name} is not a JSON object")
    return raw


def _refuse_code(folder: Path, where: str) -> None:
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(folder).as_posix()
        if p.suffix == ".py":
            raise SubmissionError(f"{where}: {rel} is Python code; custom model code (trust_remote_code) is "
                                  "not run: use a model class transformers ships")
        if p.suffix in PICKLED_WEIGHTS:
            raise SubmissionError(f"{where}: {rel} is a pickled weights file; only safetensors weights are "
                                  "loaded (save_pretrained(..., safe_serialization=True))")
    for name in ("config.json", "tokenizer_config.json", "processor_config.json"):
        p = folder / name
        if p.is_file() and "auto_map" in _read_json(p, where):
            raise SubmissionError(f"{where}: {name} has an 'auto_map' entry (custom code via trust_remote_code); "
                                  "it is not run: remove it and use a model class transformers ships")


def check_tokenizer_folder(folder: Path, where: str) -> None:
    """A folder holding a tokenizer as data (tokenizer.json or a vocabulary), and no code."""
    _refuse_code(folder, where)
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise SubmissionError(f"{where}: {folder.name}/ has no tokenizer (expected one of "
                              f"{', '.join(TOKENIZER_FILES)}; save it with tokenizer.save_pretrained)")


def check_pretrained_folder(folder: Path, where: str) -> None:
    """A save_pretrained folder: config.json, safetensors weights, a tokenizer; no code, no pickles."""
    _refuse_code(folder, where)
    if not (folder / "config.json").is_file():
        raise SubmissionError(f"{where}: {folder.name}/ has no config.json (write it with model.save_pretrained)")
    cfg = _read_json(folder / "config.json", where)
    if not isinstance(cfg.get("model_type"), str):
        raise SubmissionError(f"{where}: config.json has no 'model_type'; it was not written by save_pretrained")
    if not any(p.suffix == ".safetensors" for p in folder.iterdir()):
        raise SubmissionError(f"{where}: {folder.name}/ has no .safetensors weights "
                              "(save_pretrained(..., safe_serialization=True))")
    check_tokenizer_folder(folder, where)


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
    files = [Path(folder) / rel for rel in m.model.file_fields().values()]
    for rel in m.model.folder_fields().values():
        files += [p for p in sorted((Path(folder) / rel).rglob("*")) if p.is_file()]
    return files
