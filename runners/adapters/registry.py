"""Which adapter runs what: one line per submission kind, one line per derived runtime.

Entries are "module:Class" strings so that importing the registry imports no runtime (torch,
onnxruntime): an adapter module imports its runtime inside ``load``/``derive`` only. A new
runtime is one adapter module (its class, and its ``RuntimeConfig`` for the profile's
``runtime:`` section) plus one line here; see docs/adding-a-runtime.md.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from typing import Any

from heptathlon.bench.errors import ProfileError, ScenarioError, SubmissionError, UnknownRuntimeError
from heptathlon.bench.manifest import MANIFEST, Manifest
from heptathlon.bench.profile import Profile
from heptathlon.bench.scenarios import ScenarioConfig

_PKG = "heptathlon.runners.adapters"

# manifest ``model.kind`` -> the adapter that runs a submission of that kind.
KINDS = {
    "onnx": f"{_PKG}.onnx:OnnxAdapter",
    "torchscript": f"{_PKG}.torchscript:TorchScriptAdapter",
    "torch": f"{_PKG}.torch_eager:TorchEagerAdapter",
    "command": f"{_PKG}.command:CommandAdapter",
    "transformers": f"{_PKG}.transformers_kind:TransformersAdapter",
}

# runtime name -> the adapter the batch_sweep derives from a loaded torch module, in the order
# the sweep records them.
DERIVED = {
    "eager": f"{_PKG}.torch_eager:EagerRuntime",
    "torchscript": f"{_PKG}.torchscript:TracedRuntime",
    "torch.compile": f"{_PKG}.torch_compile:CompiledRuntime",
    "onnxruntime": f"{_PKG}.onnx:OnnxSessionRuntime",
}

RUNTIMES = tuple(DERIVED)  # the one list of derived runtime names (``--runtimes``)


@cache
def _load(ref: str) -> type:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def adapter_class(kind: str):
    """The adapter class for a manifest kind; an unknown kind names submission.yaml and the field."""
    if kind not in KINDS:
        raise SubmissionError(f"{MANIFEST}: field 'model.kind': unknown kind {kind!r}; "
                              f"known kinds: {', '.join(KINDS)}")
    return _load(KINDS[kind])


def runtime_class(name: str):
    """The derived-runtime adapter class for a runtime name; an unknown name is a caller error."""
    if name not in DERIVED:
        raise UnknownRuntimeError(f"unknown runtimes [{name!r}]; known runtimes: {', '.join(RUNTIMES)}")
    return _load(DERIVED[name])


def make_adapter(manifest: Manifest, folder: Path, profile: Profile, context: dict[str, Any] | None = None):
    """Build the adapter for a submission (not loaded yet: the worker times ``load``)."""
    return adapter_class(manifest.model.kind)(manifest, Path(folder), profile, context or {})


def config_sections() -> dict[str, type]:
    """Profile ``runtime:`` section name -> its config model, over every registered adapter."""
    out: dict[str, type] = {}
    for ref in (*KINDS.values(), *DERIVED.values()):
        cfg = _load(ref).config
        if cfg is not None:
            out[cfg.section] = cfg
    return out


def validate_runtime_sections(profile: Profile) -> Profile:
    """The profile with every runtime section validated by its adapter's config and defaults filled.

    The filled form is what the run records and hashes (``spec_hash``), so a profile that leaves
    a section out hashes the same as one that spells its defaults out. Errors name the profile
    file and the field (``runtime.onnxruntime.graph_optimization``).
    """
    sections = config_sections()
    unknown = [k for k in profile.runtime if k not in sections]
    if unknown:
        where = profile.source or f"profile {profile.name!r}"
        raise ProfileError(f"{where}: field 'runtime.{unknown[0]}': unknown runtime section; "
                           f"known: {', '.join(sorted(sections))}")
    filled = {name: cfg.of(profile).model_dump(mode="json") for name, cfg in sorted(sections.items())}
    return profile.model_copy(update={"runtime": filled})


def validate_runtime_names(cfg: ScenarioConfig) -> ScenarioConfig:
    """The batch_sweep's ``--runtimes``, checked against the registry."""
    if cfg.runtimes is not None:
        unknown = [r for r in cfg.runtimes if r not in DERIVED]
        if unknown or not cfg.runtimes:
            raise ScenarioError(f"scenario 'batch_sweep': --runtimes: unknown {unknown or 'empty list'}; "
                                f"known runtimes: {', '.join(RUNTIMES)}")
    return cfg
