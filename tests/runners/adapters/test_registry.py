"""The adapter registry: every registered kind and runtime resolves, unknown names are one-line
errors, and the profile's runtime: sections are validated by their adapters' config models."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest

from heptathlon.bench.errors import ProfileError, ScenarioError, SubmissionError
from heptathlon.bench.manifest import ModelSpec
from heptathlon.bench.profile import load_profile, load_profile_file
from heptathlon.bench.scenarios import make_scenario
from heptathlon.runners.adapters.base import ModelAdapter, RuntimeConfig
from heptathlon.runners.adapters.registry import (
    DERIVED,
    KINDS,
    RUNTIMES,
    adapter_class,
    config_sections,
    runtime_class,
    validate_runtime_names,
    validate_runtime_sections,
)

PROFILE = "name: {name}\ncpu: {{threads: 1}}\n"


def _profile(tmp_path: Path, body: str, name: str = "p"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(PROFILE.format(name=name) + body)
    return path


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_resolves_to_an_adapter(kind):
    cls = adapter_class(kind)
    assert issubclass(cls, ModelAdapter) and cls.profiler in ("torch", "onnxruntime", "command")
    assert all(r in DERIVED for r in cls.derivable)


@pytest.mark.parametrize("name", list(DERIVED))
def test_every_derived_runtime_resolves_under_its_own_name(name):
    cls = runtime_class(name)
    assert issubclass(cls, ModelAdapter) and cls.name == name and hasattr(cls, "derive")


def test_registry_kinds_are_the_manifest_kinds():
    # The manifest keeps the kind-specific fields; the registry must cover exactly its kinds.
    assert set(KINDS) == set(typing.get_args(ModelSpec.model_fields["kind"].annotation))
    assert RUNTIMES == ("eager", "torchscript", "torch.compile", "onnxruntime")


def test_unknown_kind_and_runtime_are_one_line_errors():
    with pytest.raises(SubmissionError, match=r"^submission\.yaml: field 'model\.kind': unknown kind 'tensorrt'; "
                                              r"known kinds: onnx, torchscript, torch, command, transformers$"):
        adapter_class("tensorrt")
    with pytest.raises(ValueError, match=r"unknown runtimes \['tvm'\]; known runtimes: eager, "):
        runtime_class("tvm")


def test_unknown_sweep_runtime_names_the_option():
    cfg = make_scenario("batch_sweep", runtimes=("eager", "tvm"))  # the core no longer knows runtimes
    with pytest.raises(ScenarioError) as e:
        validate_runtime_names(cfg)
    assert str(e.value) == ("scenario 'batch_sweep': --runtimes: unknown ['tvm']; "
                            "known runtimes: eager, torchscript, torch.compile, onnxruntime")
    with pytest.raises(ScenarioError, match="unknown empty list"):
        validate_runtime_names(make_scenario("batch_sweep", runtimes=()))
    assert validate_runtime_names(make_scenario("batch_sweep", runtimes=("onnxruntime",))).runtimes == ("onnxruntime",)


def test_config_sections_come_from_the_adapters():
    sections = config_sections()
    assert set(sections) == {"onnxruntime", "torch"}
    assert all(issubclass(c, RuntimeConfig) and c.section == k for k, c in sections.items())


@pytest.mark.parametrize("body, field, message", [
    ("runtime: {onnxruntime: {graph_optimization: fastest}}\n", "runtime.onnxruntime.graph_optimization",
     "'disable', 'basic', 'extended' or 'all'"),
    ("runtime: {torch: {benchmark: true}}\n", "runtime.torch.benchmark", "unknown key"),
    ("runtime: {onnxruntime: {providers: CPUExecutionProvider}}\n", "runtime.onnxruntime.providers", "list"),
    ("runtime: {tensorrt: {}}\n", "runtime.tensorrt", "unknown runtime section; known: onnxruntime, torch"),
])
def test_bad_runtime_field_names_the_profile_file_and_field(tmp_path, body, field, message):
    path = _profile(tmp_path, body)
    prof = load_profile_file(path)  # the core keeps the section raw
    with pytest.raises(ProfileError) as e:
        validate_runtime_sections(prof)
    text = str(e.value)
    assert text.startswith(f"{path}: field '{field}': ") and message in text and "\n" not in text


def test_validation_fills_defaults_so_the_spec_hash_does_not_depend_on_spelling_them(tmp_path):
    short = validate_runtime_sections(load_profile_file(_profile(tmp_path, "")))
    spelled_dir = tmp_path / "spelled"
    spelled_dir.mkdir()
    spelled = validate_runtime_sections(load_profile_file(_profile(spelled_dir, (
        "runtime: {onnxruntime: {providers: [CPUExecutionProvider], graph_optimization: all}, "
        "torch: {cudnn_benchmark: false, deterministic: false}}\n"))))
    assert short.runtime == spelled.runtime == {
        "onnxruntime": {"providers": ["CPUExecutionProvider"], "graph_optimization": "all"},
        "torch": {"cudnn_benchmark": False, "deterministic": False}}
    assert short.spec_hash == spelled.spec_hash
    assert short.source == tmp_path / "p.yaml"  # kept through validation, for later messages


def test_bundled_profiles_validate():
    for name in ("cpu-1core", "cuda-fp16"):
        prof = validate_runtime_sections(load_profile(name))
        assert prof.runtime["onnxruntime"]["providers"][-1] == "CPUExecutionProvider"


def test_cli_run_rejects_a_bad_runtime_field(examples, sqlite_url, tmp_path):
    path = _profile(tmp_path, "runtime: {onnxruntime: {graph_optimization: fastest}}\n")
    p = subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "run", str(examples["arrests-mlp-onnx"]),
                        "--profile", str(path), "--db", sqlite_url], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert f"field 'runtime.onnxruntime.graph_optimization'" in " ".join(p.stderr.split())
