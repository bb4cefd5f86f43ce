"""Submission environments: ``environment: {requirements: requirements.txt}`` in a ``command``
submission's manifest gets a venv of its own, built by the harness with pip, cached by content
and shared between runs (docs/security.md, "Submission environments").

- **Key:** sha256 of the requirements file's bytes, the harness's Python version and platform, and
  the torch pin. The same requirements on the same machine build once.
- **Base:** the venv's own site-packages come first; a ``.pth`` file then adds the harness's
  site-packages, so torch, numpy and the ``heptathlon.runners.stdio`` helper are there without a
  reinstall, and a requirement the author pins (``numpy==1.26.4``) shadows the harness's.
- **Wheels only** (``--only-binary :all:``): building a source distribution would run its setup
  code in the harness, unsandboxed; a requirement with no wheel fails the build naming it.
- **torch stays pinned:** pip runs with a constraints file ``torch==<the harness's version>``, since
  any other torch spec pulls a multi-GB CUDA build.
- **Build** under a file lock (two runs of one environment never build twice), in
  ``$HEPTATHLON_ENV_DIR`` (default ``$HEPTATHLON_HOME/envs``); a ``.complete`` stamp marks a
  finished build, and a half-built one is removed and built again. The build's log and time go on
  the run (``run.extra.environment``), never into load time. A failed build fails the run with
  pip's last lines.
- **Sandbox:** the venv is bound read-only into the model process's sandbox; the submission
  cannot change it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from heptathlon.bench.errors import SubmissionError

BUILD_TIMEOUT_S = 1800.0
LOG_TAIL_LINES = 15
STAMP = ".complete"


@dataclass(frozen=True)
class Environment:
    key: str
    path: Path
    python: Path
    built: bool  # built by this run (False: taken from the cache)
    build_s: float
    log_tail: str

    def record(self) -> dict:
        return {"key": self.key, "path": str(self.path), "python": str(self.python), "built": self.built,
                "build_s": round(self.build_s, 3), "log_tail": self.log_tail}


def env_root() -> Path:
    from heptathlon.db.session import home_dir

    return Path(os.environ.get("HEPTATHLON_ENV_DIR") or home_dir() / "envs")


def _torch_pin() -> str | None:
    try:
        from importlib.metadata import version

        return f"torch=={version('torch')}"
    except Exception:  # noqa: BLE001  no torch in the harness: nothing to pin
        return None


def _harness_site_dirs() -> list[str]:
    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(d for d in dirs if Path(d).is_dir())


def environment_key(requirements: bytes) -> str:
    h = hashlib.sha256()
    for part in (requirements, sys.version.encode(), platform.platform().encode(), (_torch_pin() or "").encode(),
                 json.dumps(_harness_site_dirs()).encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:32]


def ensure_environment(folder: Path, requirements: str, submission: str) -> Environment:
    """The venv for ``folder/requirements``, built now or taken from the cache."""
    req_path = Path(folder) / requirements
    data = req_path.read_bytes()
    key = environment_key(data)
    root = env_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / key
    python = path / "bin" / "python"
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per key, across runs and processes
        if (path / STAMP).is_file():
            return Environment(key, path, python, False, 0.0, (path / STAMP).read_text()[-2000:])
        shutil.rmtree(path, ignore_errors=True)  # a half-built one
        t0 = time.perf_counter()
        log = _build(path, req_path, Path(folder), submission)
        took = time.perf_counter() - t0
        tail = "\n".join(log.strip().splitlines()[-LOG_TAIL_LINES:])
        (path / STAMP).write_text(tail)
        _read_only(path)
        return Environment(key, path, python, True, took, tail)


def _build(path: Path, req_path: Path, folder: Path, submission: str) -> str:
    where = f"submission {submission!r}: field 'environment.requirements'"
    out = []

    def step(argv: list[str], cwd: Path | None = None) -> None:
        try:
            p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                               env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"})
        except subprocess.TimeoutExpired:
            shutil.rmtree(path, ignore_errors=True)
            raise SubmissionError(f"{where}: building the environment took over {BUILD_TIMEOUT_S:.0f} s") from None
        out.append(p.stdout + p.stderr)
        if p.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            last = " | ".join(ln.strip() for ln in (p.stderr or p.stdout).strip().splitlines()[-4:])
            raise SubmissionError(f"{where}: building the environment failed ({Path(argv[0]).name} "
                                  f"{' '.join(argv[1:3])} exited {p.returncode}): {last}")

    step([sys.executable, "-m", "venv", str(path)])
    site = Path(subprocess.run([str(path / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    # site.addsitedir, not a bare path: the harness's own .pth files (an editable install's finder) run too
    (site / "_heptathlon_harness.pth").write_text("".join(f"import site; site.addsitedir({d!r})\n"
                                                          for d in _harness_site_dirs()))
    cons = path / "constraints.txt"
    cons.write_text((_torch_pin() or "") + "\n")
    # Wheels only: building an sdist runs its setup code here, outside the sandbox, with the harness's
    # rights; installing a wheel runs nothing (its code runs later, in the sandboxed model process).
    step([str(path / "bin" / "python"), "-m", "pip", "install", "--no-warn-script-location", "--only-binary",
          ":all:", "-r", str(req_path), "-c", str(cons)], cwd=folder)
    return "\n".join(out)


def _read_only(path: Path) -> None:
    """World-readable (the sandbox's uid runs from it), writable by no one but the harness."""
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            if p.is_symlink():
                continue
            mode = p.stat().st_mode
            p.chmod((mode | 0o444 | (0o111 if p.is_dir() or mode & 0o100 else 0)) & ~0o022)
    path.chmod(0o755)
