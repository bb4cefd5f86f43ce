"""Folder hygiene at submit, the artifact store, and the sandbox policy for code-carrying kinds.

Hostile folders (links, FIFOs, alias bombs, oversized manifests, ONNX external data that points
outside) end as one failed run record naming the path: nothing is stored, nothing else in the
database changes. A stored copy that changed fails its run before anything is spawned. A torch
or command submission without bubblewrap is refused unless --allow-unsandboxed; then it runs,
labelled.
"""

from __future__ import annotations

import os
import stat
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sqlalchemy import func, select

from heptathlon.bench.errors import SubmissionError
from heptathlon.bench.manifest import hash_folder, load_manifest
from heptathlon.bench.scenarios import make_scenario
from heptathlon.bench.app import service
from heptathlon.db.models import Machine, Measurement, Profile, Run, Samples, Submission
from heptathlon.db.session import home_dir, session_scope
from heptathlon.runners import sandbox as S

queue_runs = partial(service.queue_runs, energy={"enabled": False})
ONNX_YAML = "name: hyg\ntask: arrests\nmodel: {kind: onnx, path: model.onnx}\n"


def counts(url):
    with session_scope(url) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                for m in (Submission, Profile, Machine, Measurement, Samples, Run)}


def runs(url) -> list[Run]:
    with session_scope(url) as s:
        return list(s.scalars(select(Run)))


@pytest.fixture
def q():
    return [make_scenario("single_stream", min_queries=20, min_duration_s=0.0, max_duration_s=5.0, warmup_queries=2)]


def onnx_folder(d: Path, *, external: str | None = None) -> Path:
    """A tiny valid ONNX submission; ``external``: its weight stored as external data at that location."""
    d.mkdir(parents=True, exist_ok=True)
    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    if external is not None:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        w.external_data.add(key="location", value=external)
        w.ClearField("float_data")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])], [w])
    onnx.save(helper.make_model(g), str(d / "model.onnx"))
    (d / "submission.yaml").write_text(ONNX_YAML)
    return d


def assert_rejected(url, folder, exc_info, *needles):
    """One failed run, the one-line reason naming the path, nothing stored, nothing else written."""
    msg = str(exc_info.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)
    rs = runs(url)
    assert len(rs) == 1 and rs[0].status == "failed" and rs[0].error == msg
    assert rs[0].submission_ref == str(folder)
    assert counts(url) == {"submission": 0, "profile": 0, "machine": 0, "measurement": 0, "samples": 0, "run": 1}
    store = home_dir() / "artifacts"
    assert not store.exists() or list(store.iterdir()) == []


# ---- links and special files ------------------------------------------------------------------------
def _symlink_passwd(d):
    (d / "passwd.txt").symlink_to("/etc/passwd")
    return d / "passwd.txt", "a symbolic link"


def _symlinked_model(d):
    (d / "model.onnx").rename(d / "real.onnx")
    (d / "model.onnx").symlink_to(d / "real.onnx")
    return d / "model.onnx", "a symbolic link"


def _hard_link(d):
    os.link(d / "model.onnx", d.parent / "outside-name.onnx")
    return d / "model.onnx", "a hard link"


def _fifo(d):
    (d / "sub").mkdir()
    os.mkfifo(d / "sub" / "pipe")
    return d / "sub" / "pipe", "a FIFO"


def _dir_link(d):
    (d / "etc").symlink_to("/etc", target_is_directory=True)
    return d / "etc", "a symbolic link"


@pytest.mark.parametrize("make", [_symlink_passwd, _symlinked_model, _hard_link, _fifo, _dir_link],
                         ids=["symlink-to-passwd", "symlinked-model", "hard-link", "fifo", "dir-symlink"])
def test_links_and_special_files_are_refused_with_the_path(tmp_path, db_url, q, make):
    d = onnx_folder(tmp_path / "sub")
    path, kind = make(d)
    with pytest.raises(SubmissionError) as e:
        queue_runs(d, ["cpu-1core"], q, db=db_url)
    assert_rejected(db_url, d, e, str(path), kind)


def test_hash_folder_never_follows_a_link(tmp_path):
    d = onnx_folder(tmp_path / "sub")
    before = hash_folder(d)
    (d / "shadow").symlink_to("/etc/shadow")
    with pytest.raises(SubmissionError, match=r"shadow: a symbolic link"):
        hash_folder(d)
    (d / "shadow").unlink()
    assert hash_folder(d) == before


# ---- ONNX external data ---------------------------------------------------------------------------------
def test_onnx_external_data_inside_the_folder_is_accepted(tmp_path):
    d = onnx_folder(tmp_path / "sub", external="weights.bin")
    (d / "weights.bin").write_bytes(np.ones((4, 2), np.float32).tobytes())
    assert load_manifest(d).model.kind == "onnx"


@pytest.mark.parametrize("location,setup,needle", [
    ("/etc/passwd", None, "must be a relative path inside the submission folder"),
    ("../outside.bin", "outside", "must be a relative path inside the submission folder"),
    ("weights.bin", "link", "weights.bin: a symbolic link"),  # the folder walk finds it before ONNX is read
    ("missing.bin", None, "file not found"),
])
def test_onnx_external_data_outside_or_linked_is_refused(tmp_path, db_url, q, location, setup, needle):
    d = onnx_folder(tmp_path / "sub", external=location)
    if setup == "outside":
        (tmp_path / "outside.bin").write_bytes(b"\0" * 32)
    if setup == "link":
        (d / "weights.bin").symlink_to("/etc/passwd")
    with pytest.raises(SubmissionError) as e:
        queue_runs(d, ["cpu-1core"], q, db=db_url)
    where = [str(d / "weights.bin")] if setup == "link" else [str(d / "model.onnx"), "tensor 'w' external data"]
    assert_rejected(db_url, d, e, *where, needle)


# ---- the manifest ---------------------------------------------------------------------------------------
BOMB = ("name: hyg\ntask: arrests\nmodel: {kind: onnx, path: model.onnx}\n"
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
        "version: &v [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n")


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path, db_url, q):
    d = onnx_folder(tmp_path / "sub")
    (d / "submission.yaml").write_text(BOMB)
    with pytest.raises(SubmissionError) as e:
        queue_runs(d, ["cpu-1core"], q, db=db_url)
    assert_rejected(db_url, d, e, str(d / "submission.yaml"), "YAML anchors and aliases are not allowed", "line 4")


def test_a_single_alias_is_refused_too(tmp_path):
    d = onnx_folder(tmp_path / "sub")
    (d / "submission.yaml").write_text("name: &n hyg\ndescription: *n\ntask: arrests\n"
                                       "model: {kind: onnx, path: model.onnx}\n")
    with pytest.raises(SubmissionError, match=r"submission\.yaml: YAML anchors and aliases are not allowed \(line 1\)"):
        load_manifest(d)


def test_an_oversized_manifest_is_refused(tmp_path, db_url, q):
    d = onnx_folder(tmp_path / "sub")
    (d / "submission.yaml").write_text(ONNX_YAML + "description: " + "x" * (2 << 20) + "\n")
    with pytest.raises(SubmissionError) as e:
        queue_runs(d, ["cpu-1core"], q, db=db_url)
    assert_rejected(db_url, d, e, str(d / "submission.yaml"), "over the manifest cap of 1048576 bytes")


def test_the_folder_size_cap_names_the_folder_and_how_to_raise_it(tmp_path, db_url, q, monkeypatch):
    d = onnx_folder(tmp_path / "sub")
    (d / "padding.bin").write_bytes(b"\0" * (2 << 20))
    monkeypatch.setenv("HEPTATHLON_MAX_SUBMISSION_MB", "1")
    with pytest.raises(SubmissionError) as e:
        queue_runs(d, ["cpu-1core"], q, db=db_url)
    assert_rejected(db_url, d, e, str(d), "over the submission size cap of 1 MiB", "HEPTATHLON_MAX_SUBMISSION_MB")
    monkeypatch.setenv("HEPTATHLON_MAX_SUBMISSION_MB", "3")
    assert load_manifest(d).name == "hyg"


# ---- the artifact store -----------------------------------------------------------------------------------
def test_the_store_is_read_only_and_the_home_private(tmp_path):
    d = onnx_folder(tmp_path / "sub")
    (d / "lib").mkdir()
    (d / "lib" / "x.txt").write_text("x")
    _, sha, dest = service.store_submission(d)
    assert sha == hash_folder(d) == hash_folder(dest)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o555 and stat.S_IMODE((dest / "lib").stat().st_mode) == 0o555
    assert stat.S_IMODE((dest / "model.onnx").stat().st_mode) == 0o444
    assert stat.S_IMODE((dest / "lib" / "x.txt").stat().st_mode) == 0o444
    assert stat.S_IMODE(dest.parent.stat().st_mode) == 0o711
    assert stat.S_IMODE(home_dir().stat().st_mode) == 0o700


def test_the_default_sqlite_database_is_private(tmp_path):
    from heptathlon.db.session import default_url, ensure_schema

    ensure_schema(None)
    db = Path(default_url().removeprefix("sqlite:///"))
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700


def test_a_changed_stored_copy_fails_the_run_before_anything_runs(tmp_path, db_url, q):
    d = onnx_folder(tmp_path / "sub")
    (rid,) = queue_runs(d, ["cpu-1core"], q, db=db_url)
    with session_scope(db_url) as s:
        sub = s.scalars(select(Submission)).one()
        store, sha = Path(sub.store_path), sub.artifact_sha256
    (store / "model.onnx").chmod(0o644)
    (store / "model.onnx").write_bytes(b"tampered")
    before = counts(db_url)
    o = service.execute_run(rid, db=db_url)
    assert o.status == "failed"
    assert f"stored artifact changed (expected sha256 {sha}, found {hash_folder(store)})" in o.error
    (run,) = runs(db_url)
    assert run.status == "failed" and run.error == o.error and "\n" not in run.error
    assert counts(db_url) == before  # no measurement, no sample, no machine


# ---- code-carrying kinds need bubblewrap --------------------------------------------------------------------
SERVE = """
import json, sys
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    print(json.dumps({"id": req["id"], "outputs": [0] * len(req["inputs"])}), flush=True)
"""


def command_folder(d: Path) -> Path:
    d.mkdir()
    (d / "serve.py").write_text(SERVE)
    (d / "submission.yaml").write_text("name: cmd-hyg\ntask: arrests\nmodel: {kind: command, command: [python, serve.py]}\n")
    return d


@pytest.mark.parametrize("kind", ["command", "torch"])
def test_code_kinds_without_a_sandbox_are_refused_with_the_hint(tmp_path, db_url, q, monkeypatch, kind):
    monkeypatch.setenv(S.SANDBOX_ENV, "none")
    if kind == "command":
        d = command_folder(tmp_path / "cmd")
    else:
        d = tmp_path / "t"
        d.mkdir()
        (d / "model.py").write_text("def build():\n    raise SystemExit('never imported')\n")
        (d / "weights.pt").write_bytes(b"never loaded")
        (d / "submission.yaml").write_text("name: t-hyg\ntask: arrests\nmodel: {kind: torch, module: model.py, "
                                           "weights: weights.pt}\n")
    (rid,) = queue_runs(d, ["cpu-1core"], q, db=db_url)
    before = counts(db_url)
    o = service.execute_run(rid, db=db_url)
    assert o.status == "failed"
    assert f"kind {kind!r} runs the submission's own code and needs bubblewrap" in o.error
    assert "apt-get install bubblewrap, or pass --allow-unsandboxed" in o.error
    assert "HEPTATHLON_SANDBOX=none" in o.error
    (run,) = runs(db_url)
    assert run.status == "failed" and "\n" not in run.error
    assert counts(db_url) == before


def test_onnx_does_not_need_the_sandbox(monkeypatch):
    monkeypatch.setenv(S.SANDBOX_ENV, "none")
    assert S.code_sandbox_refusal("onnx") is None
    assert S.code_sandbox_refusal("torchscript") is not None


def test_allow_unsandboxed_runs_and_is_labelled(tmp_path, sqlite_url, q, monkeypatch):
    monkeypatch.setenv(S.SANDBOX_ENV, "none")
    d = command_folder(tmp_path / "cmd")
    from heptathlon.bench.app.options import RunOptions

    opts = RunOptions(profiles=["cpu-1core"], scenarios=["single_stream"], allow_unsandboxed=True)
    (rid,) = queue_runs(d, ["cpu-1core"], q, db=sqlite_url, **opts.queue_kwargs())
    o = service.execute_run(rid, db=sqlite_url)
    assert o.status == "succeeded", o.error
    (run,) = runs(sqlite_url)
    assert run.controls["sandbox"]["unsandboxed"] is True and run.controls["sandbox"]["active"] is False
    assert run.controls["sandbox"]["allow_unsandboxed"] is True
    assert run.extra["sandbox_policy"] == {"kind": "command", "allow_unsandboxed": True, "needs_bwrap": True,
                                           "unsandboxed": True}
    rows = [r for g in service.leaderboard_groups(sqlite_url) for r in g["rows"]]
    assert [r["unsandboxed"] for r in rows] == [True]


def test_an_existing_open_home_is_made_private(tmp_path):
    home = home_dir()
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o755)
    service.store_submission(onnx_folder(tmp_path / "sub"))
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
