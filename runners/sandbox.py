"""A sandbox for submitted code: scrubbed environment, own working copy, no network.

Two mechanisms, tried in this order, each verified by running ``true`` through it once:

- ``bwrap`` (bubblewrap, Debian package ``bubblewrap``): new network, PID, IPC and UTS
  namespaces; the root file system read-only; private /tmp and /run; /root and /home hidden
  except the Python installation the worker needs; all capabilities dropped.
- ``unshare`` (util-linux, always present): new network, PID, IPC and UTS namespaces, a
  private /run, capabilities dropped with ``setpriv``; the file system stays writable where
  the permissions allow.

A network namespace has only a loopback device, so nothing on the host (PostgreSQL on
127.0.0.1:5432 included) can be reached over TCP; the private /run also hides Unix sockets
such as /run/postgresql/.s.PGSQL.5432, which a network namespace alone would leave open. The
PID namespace hides the parent's /proc/PID/environ, where a database URL could be read.

The process keeps uid 0 when the harness runs as root: the project's Python lives under
/root here, which an unprivileged uid cannot traverse. Without capabilities, uid 0 cannot
leave the namespaces, mount, or read files owned by other users.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from heptathlon.bench.errors import ProfileError, SandboxError

MECHANISMS = ("bwrap", "unshare")
# Passed through when set: locale, thread pools, GPU selection and the run's cgroup.
DEFAULT_ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                     "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                     "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES",
                     "NVIDIA_DRIVER_CAPABILITIES", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONUNBUFFERED",
                     "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "VIRTUAL_ENV", "HEPTATHLON_CGROUP")
# Never passed, whatever env_allow says: database URLs and anything that looks like a secret.
_SECRET_RE = re.compile(r"^(PG[A-Z_]*|DATABASE_URL|HEPTATHLON_DB.*|.*_DSN|.*(PASSWORD|PASSWD|SECRET|TOKEN|"
                        r"CREDENTIAL|PRIVATE_KEY|API_KEY|ACCESS_KEY|AUTH).*|AWS_.*|GOOGLE_APPLICATION_.*|"
                        r"AZURE_.*|SSH_AUTH_SOCK|KRB5.*)$", re.IGNORECASE)
# Directories hidden in the bwrap sandbox (an empty tmpfs on top), apart from what the
# interpreter needs; /tmp and /run are private in both mechanisms.
_HIDDEN_DIRS = ("/root", "/home", "/tmp", "/run", "/var/run", "/var/tmp")


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_RE.match(name))


def scrub_env(base_env: Mapping[str, str], allow: Iterable[str] = ()) -> tuple[dict[str, str], list[str]]:
    """(kept variables, names dropped): only allowed, non-secret names survive."""
    allowed = set(DEFAULT_ENV_ALLOW) | set(allow)
    kept = {k: v for k, v in base_env.items() if k in allowed and not is_secret_name(k)}
    return kept, sorted(k for k in base_env if k not in kept)


# The folder that holds the installed heptathlon.runners: the checkout for an editable install,
# site-packages/heptathlon for a wheel.
HARNESS_ROOT = Path(__file__).resolve().parents[1]


def _import_dirs() -> list[Path]:
    """The directories the interpreter imports from (site-packages, .pth additions), which the
    worker needs too; the current directory ('' or cwd) is left out, it may hold a results DB."""
    cwd = Path.cwd().resolve()
    dirs = []
    for entry in sys.path:
        if not entry:
            continue
        p = Path(entry).resolve()
        if p.is_dir() and p != cwd:
            dirs.append(p)
    return dirs


def _bwrap_args(workdir: Path, writable: list[Path], hidden_extra: Iterable[str]) -> list[str]:
    args = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--tmpfs", "/dev/shm", "--proc", "/proc"]
    for dev in sorted(Path("/dev").glob("nvidia*")):  # GPUs stay usable for CUDA profiles
        args += ["--dev-bind", str(dev), str(dev)]
    for d in _HIDDEN_DIRS:
        p = Path(d)
        if p.is_dir() and not p.is_symlink():
            args += ["--tmpfs", d]
    # The interpreter, its packages and the harness's own code (an editable install points
    # there), read-only, when they live under a hidden directory such as /tmp or /root.
    needed = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.executable).resolve().parent,
              HARNESS_ROOT, *_import_dirs()}
    for p in sorted(needed):
        if any(p.is_relative_to(h) for h in _HIDDEN_DIRS):
            args += ["--ro-bind", str(p), str(p)]
    # Extra hidden directories last, so that a bind above never re-exposes them (e.g. the
    # results database under the harness's own folder).
    for d in hidden_extra:
        p = Path(d)
        if p.is_dir() and not p.is_symlink():
            args += ["--tmpfs", str(p.resolve())]
    for p in [*writable, workdir]:  # workdir last: a writable parent must not cover its bind
        args += ["--bind", str(p), str(p)]
    args += ["--chdir", str(workdir), "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
             "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--"]
    return args


def _unshare_args() -> list[str]:
    # unshare makes the mount namespace private by default, so the tmpfs on /run stays inside.
    root = os.geteuid() == 0
    script = ("mount -t tmpfs -o mode=755 tmpfs /run || exit 126; "
              "exec setpriv --inh-caps=-all --bounding-set=-all --no-new-privs -- \"$@\"")
    return ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts",
            *([] if root else ["--map-root-user"]), "--", "/bin/sh", "-c", script, "heptathlon-sandbox"]


def _probe(mechanism: str) -> str | None:
    """None when the mechanism runs here, else why not."""
    tool = {"bwrap": "bwrap", "unshare": "unshare"}[mechanism]
    if shutil.which(tool) is None:
        hint = " (apt-get install bubblewrap)" if tool == "bwrap" else " (util-linux)"
        return f"{tool} not installed{hint}"
    if mechanism == "unshare" and shutil.which("setpriv") is None:
        return "setpriv not installed (util-linux)"
    with tempfile.TemporaryDirectory(prefix="heptathlon-sbx-probe-") as d:
        args = _bwrap_args(Path(d), [], ()) if mechanism == "bwrap" else _unshare_args()
        try:
            r = subprocess.run([*args, "true"], capture_output=True, text=True, timeout=30,
                               env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{tool} failed to start: {e}"
    if r.returncode != 0:
        return f"{tool} does not work here: {' '.join(r.stderr.split())[:200] or f'exit {r.returncode}'}"
    return None


@functools.lru_cache(maxsize=None)
def _probe_cached(mechanism: str) -> str | None:
    return _probe(mechanism)


def available_mechanisms() -> list[str]:
    """The mechanisms that work on this machine, best first (checked once per process)."""
    return [m for m in MECHANISMS if _probe_cached(m) is None]


def unavailable_reasons() -> str:
    return "; ".join(f"{m}: {_probe_cached(m)}" for m in MECHANISMS if _probe_cached(m) is not None) or "none"


def sandbox_command(argv: list[str], workdir: Path | None, env_allow: Iterable[str] = (), *,
                    base_env: Mapping[str, str] | None = None, extra_env: Mapping[str, str] | None = None,
                    writable: Iterable[Path] = (), hide: Iterable[str] = (), copy_workdir: bool = True,
                    mechanism: str = "auto", require: bool = False,
                    profile_name: str | None = None) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """(argv, env, record) that run ``argv`` sandboxed; start it with ``cwd=record['workdir']``.

    - ``workdir``: copied into a fresh temporary directory that becomes the process's cwd and
      HOME (``copy_workdir=False`` uses it in place, for a copy the caller made already);
      ``None`` gives an empty one. Remove it afterwards with ``cleanup_sandbox(record)``.
    - env: ``base_env`` (default os.environ) scrubbed to DEFAULT_ENV_ALLOW + ``env_allow``,
      then ``extra_env`` (e.g. control_env(profile), a CgroupHandle's env()). Secret-looking
      names are refused even when allowed; asking for one raises SandboxError (a ValueError).
    - ``writable``: more directories the process may write (the run directory with its
      result files); ``hide``: more directories to hide (bwrap only), such as the one holding
      a SQLite results database.
    - ``require``: raise ProfileError (naming ``profile_name`` and 'require_sandbox') when no
      mechanism works; otherwise the command runs unsandboxed, scrubbed, and the record says so.
    """
    asked = [n for n in [*env_allow, *(extra_env or {})] if is_secret_name(n)]
    if asked:
        raise SandboxError(f"refusing to pass secret-looking variables into a sandbox: {asked}; drop them from the allowed env")
    env, dropped = scrub_env(os.environ if base_env is None else base_env, env_allow)
    if copy_workdir or workdir is None:
        root = Path(tempfile.mkdtemp(prefix="heptathlon-sbx-"))
        work = root / "work"
        if workdir is not None:
            shutil.copytree(workdir, work, symlinks=True)
        else:
            work.mkdir()
        owned = str(root)
    else:
        work, owned = Path(workdir).resolve(), None
    (work / ".tmp").mkdir(exist_ok=True)
    env.update({"HOME": str(work), "TMPDIR": str(work / ".tmp")})
    env.update(extra_env or {})
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")

    if mechanism == "auto":
        chosen = next(iter(available_mechanisms()), None)
    elif mechanism in MECHANISMS:
        chosen = mechanism if _probe_cached(mechanism) is None else None
    elif mechanism == "none":
        chosen = None
    else:
        raise SandboxError(f"unknown sandbox mechanism {mechanism!r}; expected auto, none or one of {MECHANISMS}")
    record: dict[str, Any] = {"active": chosen is not None, "mechanism": chosen, "workdir": str(work),
                              "owned_dir": owned, "env_kept": sorted(env), "env_dropped": dropped}
    if chosen is None:
        why = "disabled" if mechanism == "none" else (
            unavailable_reasons() if mechanism == "auto" else f"{mechanism}: {_probe_cached(mechanism)}")
        if require:
            cleanup_sandbox(record)
            who = f"profile {profile_name!r}: " if profile_name else ""
            raise ProfileError(f"{who}field 'require_sandbox': no sandbox works on this machine ({why})")
        record.update(isolation=["scrubbed-env", "own-workdir"], reason=why)
        return list(argv), env, record
    if chosen == "bwrap":
        prefix = _bwrap_args(work, [Path(p).resolve() for p in writable], hide)
        isolation = ["net", "pid", "ipc", "uts", "readonly-root", "private-tmp", "private-run",
                     "hidden-home", "no-capabilities", "scrubbed-env", "own-workdir"]
    else:
        prefix = _unshare_args()
        isolation = ["net", "pid", "ipc", "uts", "private-run", "no-capabilities", "scrubbed-env", "own-workdir"]
    record["isolation"] = isolation
    return [*prefix, *argv], env, record


def cleanup_sandbox(record: dict[str, Any]) -> None:
    """Remove the temporary working copy that sandbox_command made (if it made one)."""
    if record.get("owned_dir"):
        shutil.rmtree(record["owned_dir"], ignore_errors=True)
