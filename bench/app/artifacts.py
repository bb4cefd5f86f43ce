"""The fleet's content-addressed artifact store, behind one URL ($HEPTATHLON_ARTIFACTS).

A stored submission (the immutable copy ``store_submission`` keeps) is packed into one
deterministic tar file named by its sha256 (``hash_folder``: paths and bytes) at
``<root>/<sha[:2]>/<sha>.tar``. The root is any fsspec URL: a local folder (the default,
``$HEPTATHLON_HOME/artifacts/fleet``), a shared filesystem path, ``file:///...``, or an
object store such as ``s3://bucket/heptathlon`` (with s3fs installed). A worker fetches by
sha256 into its own cache, unpacks with tarfile's ``data`` filter (no links out, no absolute
paths, no device files), recomputes the hash and uses the copy only when it matches; a
verified copy is cached read-only under ``$HEPTATHLON_HOME/cache/artifacts/<sha>``.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import tarfile
import tempfile
import uuid
from pathlib import Path

from heptathlon.bench.errors import RunError
from heptathlon.bench.manifest import IGNORED, hash_folder
from heptathlon.db.session import home_dir

ARTIFACTS_ENV = "HEPTATHLON_ARTIFACTS"
_SHA = re.compile(r"^[0-9a-f]{64}$")
MAX_ARTIFACT_BYTES = 8 << 30  # a tar bigger than this is refused before it is unpacked


class ArtifactError(RunError):
    """An artifact that cannot be stored or fetched; the message names the sha and the store."""


def store_url(url: str | None = None) -> str:
    """``url``, else $HEPTATHLON_ARTIFACTS, else the local folder under $HEPTATHLON_HOME."""
    return url or os.environ.get(ARTIFACTS_ENV) or str(home_dir() / "artifacts" / "fleet")


def _check_sha(sha: str) -> str:
    if not isinstance(sha, str) or not _SHA.match(sha):
        raise ArtifactError(f"artifact {sha!r}: not a sha256 (64 lowercase hex digits)")
    return sha


def pack(folder: Path) -> bytes:
    """A deterministic tar of the folder (sorted, no owners, zero mtimes, read-only modes)."""
    folder = Path(folder)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(folder)
            if any(part in IGNORED for part in rel.parts) or p.is_symlink():
                continue
            info = tarfile.TarInfo(rel.as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if p.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif p.is_file():
                info.size, info.mode = p.stat().st_size, 0o644
                with p.open("rb") as f:
                    tar.addfile(info, f)
    return buf.getvalue()


class ArtifactStore:
    """put(folder, sha) on the submitting side; fetch(sha) on a worker."""

    def __init__(self, url: str | None = None) -> None:
        import fsspec

        self.url = store_url(url)
        if "://" not in self.url:  # a path: absolute, so that a message names the same place everywhere
            self.url = str(Path(self.url).expanduser().resolve())
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as e:
            raise ArtifactError(f"artifact store {self.url!r}: cannot be opened ({e}); "
                                f"set ${ARTIFACTS_ENV} to a folder or an fsspec URL") from None
        self.root = self.root.rstrip("/")

    def key(self, sha: str) -> str:
        _check_sha(sha)
        return f"{self.root}/{sha[:2]}/{sha}.tar"

    def has(self, sha: str) -> bool:
        return self.fs.exists(self.key(sha))

    def put(self, folder: Path, sha: str) -> str:
        """Store the folder under its sha (checked); an existing object is left as it is."""
        key = self.key(sha)
        actual = hash_folder(folder)
        if actual != sha:
            raise ArtifactError(f"artifact {sha[:12]}: folder {folder} hashes to {actual[:12]}; not stored")
        try:
            if self.fs.exists(key):
                return key
            self.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
            part = f"{key}.part-{uuid.uuid4().hex}"
            with self.fs.open(part, "wb") as f:
                f.write(pack(folder))
            self.fs.mv(part, key)  # readers see the whole object or none
        except OSError as e:
            raise ArtifactError(f"artifact {sha[:12]}: could not be written to {self.url}: {e}") from None
        return key

    def fetch(self, sha: str, cache: Path | None = None) -> Path:
        """A verified local copy of the artifact ``sha`` (from the cache when it is there)."""
        key = self.key(sha)
        cache = Path(cache or home_dir() / "cache" / "artifacts")
        dest = cache / sha
        if dest.is_dir():
            return dest  # only a verified copy is ever renamed into place
        cache.mkdir(parents=True, exist_ok=True)
        try:
            size = self.fs.size(key)
        except FileNotFoundError:
            raise ArtifactError(f"artifact {sha[:12]}: not found in the store {self.url} ({key})") from None
        except OSError as e:
            raise ArtifactError(f"artifact {sha[:12]}: the store {self.url} cannot be read: {e}") from None
        if size is not None and size > MAX_ARTIFACT_BYTES:
            raise ArtifactError(f"artifact {sha[:12]}: {size} bytes in {self.url}, over the "
                                f"{MAX_ARTIFACT_BYTES} byte limit")
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{sha[:12]}-"))
        try:
            try:
                with self.fs.open(key, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
                    tar.extractall(tmp / "copy", filter="data")
            except (OSError, tarfile.TarError) as e:
                raise ArtifactError(f"artifact {sha[:12]}: could not be fetched from {self.url}: {e}") from None
            got = hash_folder(tmp / "copy")
            if got != sha:
                raise ArtifactError(f"artifact {sha[:12]}: the copy fetched from {self.url} hashes to {got[:12]}; "
                                    "refused (the store object is corrupt or was replaced)")
            for p in (tmp / "copy").rglob("*"):
                if p.is_file():
                    p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            try:
                os.replace(tmp / "copy", dest)
            except OSError:
                if not dest.is_dir():  # another worker process verified and placed it first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest
