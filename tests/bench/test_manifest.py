from pathlib import Path

import pytest

from heptathlon.bench.errors import SubmissionError
from heptathlon.bench.manifest import hash_folder, load_manifest


def write(folder: Path, text: str, files=("model.onnx",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submission.yaml").write_text(text)
    for f in files:
        (folder / f).write_bytes(b"x")
    return folder


GOOD = "name: demo\nversion: '1'\ntask: arrests\nmodel: {kind: onnx, path: model.onnx}\n"


def test_valid_manifest(tmp_path):
    m = load_manifest(write(tmp_path / "s", GOOD))
    assert (m.name, m.task, m.model.kind, m.model.path) == ("demo", "arrests", "onnx", "model.onnx")


def test_missing_manifest_names_the_file(tmp_path):
    (tmp_path / "s").mkdir()
    with pytest.raises(SubmissionError, match=r"submission\.yaml: missing"):
        load_manifest(tmp_path / "s")


def test_malformed_yaml(tmp_path):
    with pytest.raises(SubmissionError, match="not valid YAML"):
        load_manifest(write(tmp_path / "s", "name: [unclosed\n"))


def test_unknown_key_names_the_field(tmp_path):
    with pytest.raises(SubmissionError, match=r"field 'flavour': unknown key"):
        load_manifest(write(tmp_path / "s", GOOD + "flavour: vanilla\n"))


def test_unknown_nested_key(tmp_path):
    text = GOOD.replace("path: model.onnx}", "path: model.onnx, speed: fast}")
    with pytest.raises(SubmissionError, match=r"field 'model.speed': unknown key"):
        load_manifest(write(tmp_path / "s", text))


def test_path_leaving_folder(tmp_path):
    (tmp_path / "outside.onnx").write_bytes(b"x")
    text = GOOD.replace("model.onnx", "../outside.onnx")
    with pytest.raises(SubmissionError, match=r"field 'model.path': path '../outside.onnx' leaves the submission folder"):
        load_manifest(write(tmp_path / "s", text, files=()))


def test_missing_model_file(tmp_path):
    with pytest.raises(SubmissionError, match=r"field 'model.path': file 'model.onnx' not found"):
        load_manifest(write(tmp_path / "s", GOOD, files=()))


def test_kind_needs_its_fields(tmp_path):
    with pytest.raises(SubmissionError, match=r"kind 'torch' needs field 'model.module'"):
        load_manifest(write(tmp_path / "s", "name: a\ntask: arrests\nmodel: {kind: torch}\n"))


def test_bad_name(tmp_path):
    with pytest.raises(SubmissionError, match=r"field 'name'.*\[a-z0-9-\]"):
        load_manifest(write(tmp_path / "s", GOOD.replace("name: demo", "name: Demo_Model")))


def test_hash_changes_with_content(tmp_path):
    f = write(tmp_path / "s", GOOD)
    h1 = hash_folder(f)
    assert h1 == hash_folder(f)
    (f / "model.onnx").write_bytes(b"y")
    assert hash_folder(f) != h1
