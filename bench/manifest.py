"""The submission contract: ``submission.yaml``, validated with pydantic, and the artifact hash."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from heptathlon.bench.errors import SubmissionError

MANIFEST = "submission.yaml"
BUILD_STAMP = ".built"  # written by the example build scripts' runner; not part of the artifact
IGNORED = ("__pycache__", BUILD_STAMP)
MAX_MANIFEST_BYTES = 1 << 20  # 1 MiB: a manifest is a few lines
MAX_SUBMISSION_ENV = "HEPTATHLON_MAX_SUBMISSION_MB"
DEFAULT_MAX_SUBMISSION_MB = 2048


def max_submission_bytes() -> int:
    """The whole-folder cap: $HEPTATHLON_MAX_SUBMISSION_MB (MiB), 2 GiB by default."""
    raw = os.environ.get(MAX_SUBMISSION_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_SUBMISSION_MB << 20
    try:
        mb = float(raw)
        if mb <= 0:
            raise ValueError
    except ValueError:
        raise SubmissionError(f"{MAX_SUBMISSION_ENV}={raw!r}: expected a positive number of MiB") from None
    return int(mb * (1 << 20))


_KIND_OF = {stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
            stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}


def _refuse_special(path: Path, st: os.stat_result) -> None:
    kind = _KIND_OF.get(stat.S_IFMT(st.st_mode))
    if kind is not None:
        raise SubmissionError(f"{path}: {kind}; a submission folder may hold only regular files and directories "
                              "(links are never followed; copy the file in instead)")
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        raise SubmissionError(f"{path}: a hard link ({st.st_nlink} names for one file); a submission folder may hold "
                              "only files with a single name (copy the file in instead)")


def walk_folder(folder: Path) -> list[tuple[Path, os.stat_result]]:
    """Every regular file under ``folder`` (IGNORED parts skipped), in sorted order, never following
    a link: a symlink, hard link, device, FIFO or socket anywhere is a SubmissionError naming it."""
    folder = Path(folder)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        _refuse_special(folder, st)
        raise SubmissionError(f"{folder}: not a submission folder (it is not a directory)")
    files: list[tuple[Path, os.stat_result]] = []
    stack = [folder]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            p = Path(e.path)
            est = e.stat(follow_symlinks=False)
            if e.name in IGNORED and not stat.S_ISLNK(est.st_mode):
                continue
            if stat.S_ISDIR(est.st_mode):
                stack.append(p)
                continue
            _refuse_special(p, est)
            files.append((p, est))
    return sorted(files, key=lambda f: f[0].relative_to(folder).as_posix())


def check_folder(folder: Path) -> int:
    """Folder hygiene before anything is hashed or copied: no links or special files, and the whole
    folder under the size cap. Returns the folder's size in bytes."""
    folder = Path(folder)
    total = sum(st.st_size for _, st in walk_folder(folder))
    cap = max_submission_bytes()
    if total > cap:
        raise SubmissionError(f"{folder}: {total / (1 << 20):.1f} MiB is over the submission size cap of "
                              f"{cap / (1 << 20):g} MiB; raise it with {MAX_SUBMISSION_ENV}=<MiB>")
    return total


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases: a manifest needs neither, and an alias bomb
    ("billion laughs") fails on its first anchor instead of expanding."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _AliasRefused(f"line {event.start_mark.line + 1}")
        return super().compose_node(parent, index)


class _AliasRefused(Exception):
    pass


def parse_manifest_yaml(path: Path) -> object:
    """Parse a manifest file: at most MAX_MANIFEST_BYTES, a regular file, no YAML anchors or aliases."""
    st = os.lstat(path)
    _refuse_special(path, st)
    if st.st_size > MAX_MANIFEST_BYTES:
        raise SubmissionError(f"{path}: {st.st_size} bytes is over the manifest cap of {MAX_MANIFEST_BYTES} bytes "
                              "(1 MiB); a manifest is a few lines")
    with open(path, "rb") as f:
        text = f.read(MAX_MANIFEST_BYTES + 1)
    if len(text) > MAX_MANIFEST_BYTES:
        raise SubmissionError(f"{path}: over the manifest cap of {MAX_MANIFEST_BYTES} bytes (1 MiB)")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass
    except _AliasRefused as e:
        raise SubmissionError(f"{path}: YAML anchors and aliases are not allowed ({e}); write the values out") from None


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


class EnvironmentSpec(BaseModel):
    """``environment: {requirements: requirements.txt}``: the submission's own Python packages,
    installed by the harness into a venv cached by content (bench/app/environments.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requirements: str = Field(min_length=1)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: str = "1"
    task: str
    model: ModelSpec
    description: str = ""
    environment: Optional[EnvironmentSpec] = None


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
    if not folder.is_dir() or folder.is_symlink():
        raise SubmissionError(f"{folder}: not a submission folder (it does not exist or is not a directory)")
    check_folder(folder)  # no links or special files anywhere, under the size cap
    if not os.path.lexists(path):
        raise SubmissionError(f"{path}: missing; a submission folder needs a {MANIFEST} (see submissions/ for examples)")
    try:
        raw = parse_manifest_yaml(path)
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
        if not os.path.lexists(target):
            raise SubmissionError(f"{path}: field 'model.{field}': file {rel!r} not found in {folder} "
                                  "(did you run the folder's build script?)")
        _refuse_special(folder / rel, os.lstat(folder / rel))
        if not target.is_file():
            raise SubmissionError(f"{path}: field 'model.{field}': {rel!r} is not a regular file")
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
    if m.model.kind == "onnx":
        check_onnx_external_data(folder, m.model.path)
    if m.environment is not None:
        if m.model.kind != "command":
            raise SubmissionError(f"{path}: field 'environment': only kind command runs the author's own "
                                  f"interpreter; kind {m.model.kind} runs in the harness's (remove 'environment')")
        try:
            target = inside(folder, m.environment.requirements)
        except ValueError as e:
            raise SubmissionError(f"{path}: field 'environment.requirements': {e}") from None
        if not target.is_file():
            raise SubmissionError(f"{path}: field 'environment.requirements': file "
                                  f"{m.environment.requirements!r} not found in {folder}")
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


def check_onnx_external_data(folder: Path, rel: str) -> None:
    """Every external-data ``location`` in the ONNX file must name a regular, single-name file inside
    the folder: no absolute path, no '..', no link. Reads the protobuf only, never the data."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    path = Path(folder) / rel
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001  not a protobuf ONNX can parse: the runtime cannot load it either, and
        return  # the run fails there with the runtime's own reason; no external data can be named
    base = path.parent
    for t in _get_all_tensors(model):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        loc = next((e.value for e in t.external_data if e.key == "location"), None)
        where = f"{path}: tensor {t.name!r} external data location {loc!r}"
        if not loc:
            raise SubmissionError(f"{where}: missing")
        lp = Path(loc)
        if lp.is_absolute() or ".." in lp.parts:
            raise SubmissionError(f"{where}: must be a relative path inside the submission folder (no '/' start, no '..')")
        cur = Path(folder)
        for part in (base / lp).relative_to(folder).parts:  # no link anywhere on the way
            cur = cur / part
            if not os.path.lexists(cur):
                raise SubmissionError(f"{where}: file not found in {folder}")
            st = os.lstat(cur)
            if cur != base / lp and not stat.S_ISDIR(st.st_mode):
                _refuse_special(cur, st)
                raise SubmissionError(f"{where}: {cur} is not a directory")
        _refuse_special(cur, st)
        if not stat.S_ISREG(st.st_mode):
            raise SubmissionError(f"{where}: not a regular file")


def hash_folder(folder: Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted order: the artifact identity."""
    h = hashlib.sha256()
    folder = Path(folder)
    for p, _ in walk_folder(folder):  # never follows a link; refuses one
        h.update(p.relative_to(folder).as_posix().encode() + b"\0")
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def artifact_files(folder: Path, m: Manifest) -> list[Path]:
    """The files whose size is the artifact size."""
    if m.model.kind == "command":
        return [p for p, _ in walk_folder(Path(folder))]
    files = [Path(folder) / rel for rel in m.model.file_fields().values()]
    for rel in m.model.folder_fields().values():
        files += [p for p in sorted((Path(folder) / rel).rglob("*")) if p.is_file()]
    return files
