"""Hardware profiles: one YAML file per profile in ``hw_profiles/``, parsed here and only here."""

from __future__ import annotations

import hashlib
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from heptathlon.bench.errors import ProfileError

# Bundled profiles are package data (heptathlon.hw_profiles), so a wheel install has them too.
PROFILES_DIR = Path(os.environ.get("HEPTATHLON_PROFILES_DIR") or str(resources.files("heptathlon.hw_profiles")))

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
          "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def parse_size_bytes(text: str | int) -> int:
    """'2GiB' -> 2147483648. Plain integers are bytes."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"expected a size such as 512MiB or 2GiB, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


# Controls a profile may list in ``best_effort``: the run goes on, recording took_effect=False,
# when such a control cannot be applied. The device itself never degrades (a CUDA profile
# does not fall back to the CPU), and neither does require_sandbox (that would defeat it).
BEST_EFFORT_FIELDS = ("cpu.cores", "cpu.threads", "cpu.interop_threads", "cpu.quota", "memory_limit",
                      "precision", "gpu.index", "gpu.memory_fraction", "gpu.tf32",
                      "runtime.torch.cudnn_benchmark", "runtime.torch.deterministic")
# Short names accepted as well; "affinity" is what the first profiles used.
BEST_EFFORT_ALIASES = {"affinity": "cpu.cores", "threads": "cpu.threads", "quota": "cpu.quota",
                       "memory": "memory_limit", "tf32": "gpu.tf32"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CpuSpec(_Strict):
    cores: list[int] | None = None  # CPU affinity; None = all cores
    threads: int = Field(default=1, ge=1)  # intra-op threads
    interop_threads: int = Field(default=1, ge=1)
    quota: float | None = Field(default=None, gt=0)  # CFS quota in cores (0.5 = half a core)
    # "any N cores": at run time the harness pins the N least-loaded allowed cores and records which
    # (heptathlon.runners.meters.contention.least_loaded_cores); exclusive with ``cores``.
    count: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _cores_or_count(self) -> "CpuSpec":
        if self.cores is not None and self.count is not None:
            raise ValueError("give either cores (these cores) or count (any N cores), not both")
        return self

    @field_validator("cores")
    @classmethod
    def _cores_valid(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("cores must list at least one core index")
        if any(c < 0 for c in v):
            raise ValueError("core indices must be >= 0")
        if len(set(v)) != len(v):
            raise ValueError("core indices must be unique")
        return v


class GpuSpec(_Strict):
    index: int = Field(default=0, ge=0)
    memory_fraction: float = Field(default=1.0, gt=0, le=1.0)
    tf32: bool = False


class Profile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    device: Literal["cpu", "cuda"] = "cpu"
    cpu: CpuSpec = Field(default_factory=CpuSpec)
    memory_limit: str | None = None
    precision: Literal["fp32", "bf16", "fp16", "int8"] = "fp32"
    # Per-runtime sections (onnxruntime: {...}, torch: {...}), kept raw here: each runtime's adapter
    # module declares and validates its own (heptathlon.runners.adapters.registry), so a new
    # runtime needs no edit of the core.
    runtime: dict[str, dict[str, Any]] = Field(default_factory=dict)
    gpu: GpuSpec | None = None
    best_effort: list[str] = Field(default_factory=list)  # controls allowed to not take effect
    require_sandbox: bool = False
    default: bool = False  # part of the default set used by `demo` and `submit`
    _source: Path | None = PrivateAttr(default=None)  # the YAML file, for error messages; not part of the spec

    @property
    def source(self) -> Path | None:
        return self._source

    @field_validator("best_effort")
    @classmethod
    def _best_effort_valid(cls, v: list[str]) -> list[str]:
        unknown = [x for x in v if x not in BEST_EFFORT_FIELDS and x not in BEST_EFFORT_ALIASES]
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; expected some of {list(BEST_EFFORT_FIELDS)}")
        return v

    @field_validator("memory_limit")
    @classmethod
    def _mem_valid(cls, v: str | None) -> str | None:
        if v is not None:
            parse_size_bytes(v)
        return v

    @property
    def memory_limit_bytes(self) -> int | None:
        return None if self.memory_limit is None else parse_size_bytes(self.memory_limit)

    def with_cores(self, cores: list[int]) -> "Profile":
        """This profile pinned to ``cores`` (an "any N cores" profile once the harness picked them)."""
        p = self.model_copy(update={"cpu": self.cpu.model_copy(update={"cores": sorted(cores), "count": None})})
        p._source = self._source
        return p

    def allows_best_effort(self, field: str) -> bool:
        """True when the profile lets ``field`` (a BEST_EFFORT_FIELDS name) fail to take effect."""
        return any(BEST_EFFORT_ALIASES.get(x, x) == field for x in self.best_effort)

    @property
    def spec_hash(self) -> str:
        canon = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()


def format_validation_error(path: Path | str, err: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    """'<file>: field '<a.b>': <message>' for the first error; ``prefix`` is where the validated part sits."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in (*prefix, *first["loc"])) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{path}: field '{loc}': {msg}{more}"


def load_profile_file(path: Path) -> Profile:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: profile file not found") from None
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: expected a mapping of profile fields")
    try:
        prof = Profile.model_validate(raw)
    except ValidationError as e:
        raise ProfileError(format_validation_error(path, e)) from None
    if prof.name != path.stem:
        raise ProfileError(f"{path}: field 'name': {prof.name!r} must match the file name {path.stem!r}")
    prof._source = path
    return prof


def list_profiles(directory: Path | None = None) -> list[Profile]:
    directory = Path(directory or PROFILES_DIR)
    return [load_profile_file(p) for p in sorted(directory.glob("*.yaml"))]


def load_profile(name_or_path: str, directory: Path | None = None) -> Profile:
    """Look a profile up by name in hw_profiles/, or load it from a YAML path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_profile_file(p)
    directory = Path(directory or PROFILES_DIR)
    path = directory / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(x.stem for x in directory.glob("*.yaml"))) or "none"
        raise ProfileError(f"unknown profile {name_or_path!r}; known profiles: {known} (see `heptathlon profiles list`)")
    return load_profile_file(path)


def default_profiles(directory: Path | None = None) -> list[Profile]:
    return [p for p in list_profiles(directory) if p.default]
