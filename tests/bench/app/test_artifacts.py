"""The content-addressed artifact store: put, fetch by sha256 with verification, cache; real files."""

from __future__ import annotations

import io
import tarfile

import pytest

from heptathlon.bench.app.artifacts import ArtifactError, ArtifactStore, pack
from heptathlon.bench.manifest import hash_folder


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "sub"
    (d / "nested").mkdir(parents=True)
    (d / "submission.yaml").write_text("name: x\n")
    (d / "nested" / "weights.bin").write_bytes(bytes(range(256)) * 10)
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "junk.pyc").write_bytes(b"ignored")
    return d


@pytest.mark.parametrize("scheme", ["path", "file"])
def test_put_then_fetch_gives_a_verified_read_only_copy(folder, tmp_path, scheme):
    root = tmp_path / "shared-store"
    url = str(root) if scheme == "path" else f"file://{root}"
    sha = hash_folder(folder)
    key = ArtifactStore(url).put(folder, sha)
    assert key.endswith(f"/{sha[:2]}/{sha}.tar") and (root / sha[:2] / f"{sha}.tar").is_file()
    got = ArtifactStore(url).fetch(sha, cache=tmp_path / "cache")  # another "machine": its own cache
    assert got == tmp_path / "cache" / sha
    assert hash_folder(got) == sha
    assert (got / "nested" / "weights.bin").read_bytes() == (folder / "nested" / "weights.bin").read_bytes()
    assert not (got / "__pycache__").exists()
    assert not (got / "submission.yaml").stat().st_mode & 0o222
    # the cache answers the second time, even with the store gone
    (root / sha[:2] / f"{sha}.tar").unlink()
    assert ArtifactStore(url).fetch(sha, cache=tmp_path / "cache") == got


def test_pack_is_deterministic(folder):
    assert pack(folder) == pack(folder)


def test_put_refuses_a_folder_that_does_not_hash_to_the_sha(folder, tmp_path):
    with pytest.raises(ArtifactError, match="hashes to"):
        ArtifactStore(str(tmp_path / "s")).put(folder, "0" * 64)


def test_fetch_of_a_missing_artifact_names_sha_and_store(tmp_path):
    with pytest.raises(ArtifactError, match=r"artifact 000000000000: not found in the store"):
        ArtifactStore(str(tmp_path / "s")).fetch("0" * 64, cache=tmp_path / "cache")


def test_fetch_refuses_a_replaced_object_and_caches_nothing(folder, tmp_path):
    store = ArtifactStore(str(tmp_path / "s"))
    sha = hash_folder(folder)
    key = store.put(folder, sha)
    (folder / "submission.yaml").write_text("name: tampered\n")
    with open(key, "wb") as f:
        f.write(pack(folder))
    with pytest.raises(ArtifactError, match="hashes to .*refused"):
        store.fetch(sha, cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / sha).exists()


def test_fetch_refuses_a_tar_that_escapes_its_folder(tmp_path):
    store = ArtifactStore(str(tmp_path / "s"))
    sha = "a" * 64
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    (tmp_path / "s" / "aa").mkdir(parents=True)
    (tmp_path / "s" / "aa" / f"{sha}.tar").write_bytes(buf.getvalue())
    with pytest.raises(ArtifactError, match="could not be fetched"):
        store.fetch(sha, cache=tmp_path / "cache")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "cache" / sha).exists()


def test_bad_sha_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="not a sha256"):
        ArtifactStore(str(tmp_path)).key("../../etc/passwd")


def test_a_relative_store_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ArtifactStore("rel/store").url == str(tmp_path / "rel" / "store")
    assert ArtifactStore("file:///srv/x").url == "file:///srv/x"
