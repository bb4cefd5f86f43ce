"""A sandbox for submitted code: another uid, a read-only view, private scratch, no network.

Two mechanisms, tried in this order, each verified by running ``true`` through it once:

- ``bwrap`` (bubblewrap, Debian package ``bubblewrap``): new network, PID, IPC and UTS
  namespaces; an empty root holding, read-only, only the system directories (SYSTEM_DIRS: /usr,
  /etc, /sys and the /bin, /lib links), the Python installation and packages, the harness's code
  and LD_LIBRARY_PATH; /tmp, /var/tmp, /run, /dev/shm, /root and /home empty tmpfs (a Python
  under /root bound back read-only); the working copy read-only; the directories named ``hide`` (the harness's home:
  results DB and artifact store) hidden; ``--die-with-parent``; no capabilities.
- ``unshare`` (util-linux, always present): the same namespaces and the same view, built by a
  small shell script as root inside the new mount namespace (tmpfs on top, then bind mounts
  back), the workdir remounted read-only, then ``setpriv`` drops every capability; the rest of
  the root file system stays mounted read-write (the uid below is what protects it), and
  ``setpriv --pdeathsig KILL`` in front of ``unshare`` plus ``--kill-child`` make it die with
  the harness.

When the harness runs as root, the submission runs as uid/gid 65534 (nobody/nogroup), with no
supplementary groups and ``no_new_privs``: bwrap (privileged) or unshare set up the mounts, then
``setpriv --reuid 65534 --regid 65534 --clear-groups`` drops to that uid just before the
submission starts. That uid is real on the host (unlike ``bwrap --unshare-user --uid 65534``
run as root, which maps the sandbox's 65534 back to host uid 0 and still reads root's 0600
files), so the kernel's ordinary permission checks apply: root's 0600/0640 files (/etc/shadow,
the 0600 results DB, the 0700 HEPTATHLON_HOME), the 0555/0444 artifact store and cgroupfs are
out of its reach. Only the directories named ``writable`` are chowned to it. When the harness is
not root there is no other uid to drop to: the process keeps the harness's uid (bwrap shows it
as 65534 in its user namespace) and the hidden directories are what keep the DB out of reach.

HOME and TMPDIR point at a private scratch directory in the sandbox's own /tmp (a tmpfs that
disappears with it). A network namespace has only a loopback device, so nothing on the host
(PostgreSQL on 127.0.0.1:5432 included) can be reached over TCP; the private /run hides Unix
sockets such as /run/postgresql/.s.PGSQL.5432. The PID namespace hides the parent's
/proc/PID/environ, where a database URL could be read, and the environment is scrubbed.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import stat
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
# Directories replaced by an empty tmpfs in both mechanisms, apart from what the interpreter
# needs (bound back read-only): private /tmp, /run and /dev/shm, no user homes.
_HIDDEN_DIRS = ("/root", "/home", "/tmp", "/run", "/var/run", "/var/tmp", "/dev/shm")
SANDBOX_UID = SANDBOX_GID = 65534
SANDBOX_ENV = "HEPTATHLON_SANDBOX"  # auto | bwrap | unshare | none: overrides mechanism="auto"
SCRATCH = "/tmp/heptathlon-scratch"  # HOME and TMPDIR inside the sandbox: its private /tmp
SCRATCH_HOME = f"{SCRATCH}/home"


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


def drops_uid() -> bool:
    """Whether the submission runs as SANDBOX_UID: only a root harness can switch uid."""
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def _setpriv_drop(root: bool) -> list[str]:
    ids = ["--reuid", str(SANDBOX_UID), "--regid", str(SANDBOX_GID), "--clear-groups"] if root else []
    return ["setpriv", *ids, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


def _hidden(hidden_extra: Iterable[str]) -> tuple[list[Path], list[Path]]:
    """(standard hidden directories that exist, extra ones resolved)."""
    std = [Path(d) for d in _HIDDEN_DIRS if Path(d).is_dir() and not Path(d).is_symlink()]
    extra = []
    for d in hidden_extra:
        p = Path(d)
        if p.is_dir() and not p.is_symlink():
            extra.append(p.resolve())
    return std, extra


def _needed_dirs() -> list[Path]:
    """The interpreter, its packages and the harness's own code (an editable install points there)."""
    dirs = sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
                   Path(sys.executable).resolve().parent, HARNESS_ROOT, *_import_dirs()})
    return [d for d in dirs if not any(o != d and d.is_relative_to(o) for o in dirs)]  # outermost only


def _under_any(p: Path, dirs: Iterable[Path]) -> Path | None:
    return next((d for d in dirs if p == d or p.is_relative_to(d)), None)


def _strictly_under(p: Path, dirs: Iterable[Path]) -> bool:
    """Below one of ``dirs``, not one of them: an import path such as a script's own /tmp is not
    bound back, which would undo the private /tmp."""
    return any(p != d and p.is_relative_to(d) for d in dirs)


def _bwrap_parents(dest: Path, hidden: list[Path]) -> list[str]:
    """``--perms 0755 --dir`` for each directory between a hidden tmpfs and ``dest``: bwrap would
    create them 0700 root, which SANDBOX_UID cannot traverse."""
    top = _under_any(dest, hidden)
    if top is None or dest == top:
        return []
    args: list[str] = []
    cur = top
    for part in dest.relative_to(top).parts[:-1]:
        cur = cur / part
        args += ["--perms", "0755", "--dir", str(cur)]
    return args


# bwrap's root is an empty tmpfs holding only these (read-only), the Python environment, the
# harness's code, the working copy and the writable directories: other checkouts, /srv, /mnt,
# /var, /opt and the like are not there at all.
SYSTEM_DIRS = ("/usr", "/etc", "/sys", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def _ld_library_dirs() -> list[Path]:
    out = []
    for entry in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
        p = Path(entry) if entry else None
        if p is not None and p.is_absolute() and p.is_dir():
            out.append(p.resolve())
    return out


def _bwrap_args(workdir: Path, writable: list[Path], hidden_extra: Iterable[str],
                readonly: Iterable[Path] = ()) -> list[str]:
    root = drops_uid()
    std, extra = _hidden(hidden_extra)
    args = ["bwrap", "--tmpfs", "/"]
    bound: list[Path] = []
    for d in SYSTEM_DIRS:
        p = Path(d)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), d]
        elif p.is_dir():
            args += ["--ro-bind", d, d]
            bound.append(p)
    args += ["--dev", "/dev", "--proc", "/proc"]
    for dev in sorted(Path("/dev").glob("nvidia*")):  # GPUs stay usable for CUDA profiles
        args += ["--dev-bind", str(dev), str(dev)]
    for d in std:  # private scratch places and empty user homes
        args += ["--perms", "1777" if d.name in ("tmp", "shm") else "0755", "--tmpfs", str(d)]
    made: set[Path] = set()

    def parents(dest: Path) -> list[str]:
        """``--perms 0755 --dir`` for each missing directory above ``dest`` in the new root (bwrap
        would make them 0700 root, which SANDBOX_UID cannot traverse)."""
        out: list[str] = []
        for anc in reversed(dest.parents[:-1]):  # from the top, "/" excluded
            if anc in made or any(anc == b or anc.is_relative_to(b) for b in bound):
                continue
            if any(anc == h for h in std):
                continue
            out += ["--perms", "0755", "--dir", str(anc)]
            made.add(anc)
        return out

    # The interpreter, its packages, the harness's own code (an editable install points there)
    # and LD_LIBRARY_PATH, read-only, where the system directories do not hold them already.
    for p in sorted({*_needed_dirs(), *_ld_library_dirs()}):
        if _under_any(p, bound) or _under_any(p, extra) or p in std:
            continue
        if any(p.is_relative_to(o) and p != o for o in bound):
            continue
        args += [*parents(p), "--ro-bind", str(p), str(p)]
        bound.append(p)
    # Extra hidden directories after, so that a bind above never re-exposes them (e.g. the
    # results database under the harness's own folder); outside every bind they are absent anyway.
    for p in extra:
        if _strictly_under(p, bound):
            args += ["--perms", "0755", "--tmpfs", str(p)]
    for p in readonly:  # after the hidden ones: a submission's environment under the harness home
        args += [*parents(p), "--ro-bind", str(p), str(p)]
    for p in writable:
        args += [*parents(p), "--bind", str(p), str(p)]
    # workdir last and read-only: a writable parent must not cover it
    args += [*parents(workdir), "--ro-bind", str(workdir), str(workdir)]
    args += ["--perms", "1777", "--dir", SCRATCH, "--perms", "1777", "--dir", SCRATCH_HOME]
    args += ["--chdir", str(workdir), "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
             "--die-with-parent", "--new-session"]
    if root:  # privileged bwrap mounts; setpriv then becomes SANDBOX_UID with nothing left
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_SETPCAP", "--", *_setpriv_drop(True)]
    else:
        args += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID), "--cap-drop", "ALL", "--"]
    return args


def _unshare_script(workdir: Path, writable: list[Path], hidden_extra: Iterable[str],
                    readonly: Iterable[Path] = ()) -> str:
    """The shell script that builds the bwrap-like view inside unshare's mount namespace: stash
    what must stay visible, cover the hidden directories with tmpfs, bind the stash back."""
    q = shlex.quote
    std, extra = _hidden(hidden_extra)
    root = drops_uid()
    stash = "/run/.heptathlon-stash"
    binds: list[tuple[Path, bool]] = [(p, False) for p in _needed_dirs()
                                      if _strictly_under(p, std) and not _under_any(p, extra)]
    binds += [(p, True) for p in writable] + [(workdir, False)]
    late = list(readonly)  # bound after the hidden directories, which may hold them (the harness home)
    binds += [(p, False) for p in late]
    lines = ["set -e", "umask 022", "mount --make-rprivate / 2>/dev/null || true",
             "mount -t tmpfs -o mode=755 tmpfs /run", f"mkdir -p {stash}"]
    for i, (p, _) in enumerate(binds):
        lines += [f"mkdir -p {stash}/{i}", f"mount --rbind {q(str(p))} {stash}/{i}"]
    for d in std:
        if str(d) in ("/run", "/var/run"):
            continue
        mode = "1777" if d.name in ("tmp", "shm") else "755"
        lines.append(f"mount -t tmpfs -o mode={mode} tmpfs {q(str(d))}")
    def bind_back(i: int, p: Path, rw: bool) -> None:
        lines.extend([f"mkdir -p {q(str(p))}", f"mount --rbind {stash}/{i} {q(str(p))}"])
        if not rw:
            lines.append(f"mount -o remount,bind,ro {q(str(p))}")

    early = len(binds) - len(late)
    for i, (p, rw) in enumerate(binds[:early]):
        bind_back(i, p, rw)
    bound = [p for p, _ in binds[:early]]
    for d in extra:  # after the binds, so that none re-exposes them (e.g. a checkout under /tmp)
        if not _under_any(d, std) or _strictly_under(d, bound):
            lines.append(f"mount -t tmpfs -o mode=755 tmpfs {q(str(d))}")
    for i, (p, rw) in enumerate(binds[early:], start=early):
        bind_back(i, p, rw)
    for i in range(len(binds)):
        lines.append(f"umount -l {stash}/{i}")
    lines.append(f"rm -rf {stash}")
    lines += [f"mkdir -p -m 700 {SCRATCH_HOME}", f"chmod 700 {SCRATCH}"]
    if root:  # a non-root harness is root of its own user namespace here: the scratch is already its own
        lines.append(f"chown {SANDBOX_UID}:{SANDBOX_GID} {SCRATCH} {SCRATCH_HOME}")
    lines.append(f"cd {q(str(workdir))}")
    drop = " ".join(q(a) for a in _setpriv_drop(root)[:-1])
    lines.append(f"exec {drop} --pdeathsig KILL -- \"$@\"")
    return "\n".join(lines)


def _unshare_args(workdir: Path, writable: list[Path], hidden_extra: Iterable[str],
                  readonly: Iterable[Path] = ()) -> list[str]:
    root = os.geteuid() == 0
    script = _unshare_script(workdir, writable, hidden_extra, readonly)
    return ["setpriv", "--pdeathsig", "KILL", "--",  # unshare dies with the harness; --kill-child takes the rest
            "unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts",
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
        args = (_bwrap_args if mechanism == "bwrap" else _unshare_args)(Path(d), [], ())
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
                    writable: Iterable[Path] = (), hide: Iterable[str] = (), readonly: Iterable[Path] = (),
                    copy_workdir: bool = True,
                    mechanism: str = "auto", require: bool = False,
                    profile_name: str | None = None) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """(argv, env, record) that run ``argv`` sandboxed; start it with ``cwd=record['workdir']``.

    - ``workdir``: copied into a fresh temporary directory that becomes the process's cwd,
      read-only inside the sandbox (``copy_workdir=False`` uses it in place, for a copy the
      caller made already; it must be readable by SANDBOX_UID); ``None`` gives an empty one.
      Remove it afterwards with ``cleanup_sandbox(record)``.
    - HOME and TMPDIR: ``record['home']`` / ``record['tmpdir']``, a private scratch in the
      sandbox's own /tmp (unsandboxed: the copy itself and its .tmp, as before).
    - env: ``base_env`` (default os.environ) scrubbed to DEFAULT_ENV_ALLOW + ``env_allow``,
      then ``extra_env`` (e.g. control_env(profile), a CgroupHandle's env()). Secret-looking
      names are refused even when allowed; asking for one raises SandboxError (a ValueError).
    - ``writable``: more directories the process may write (the run directory with its
      result files); a root harness chowns each (the directory itself) to SANDBOX_UID.
      ``hide``: more directories to hide, such as the one holding a SQLite results database.
      ``readonly``: directories bound read-only even where a hidden one holds them (a
      submission's environment, bench/app/environments.py).
    - ``mechanism``: auto (the best that works), bwrap, unshare, or none; the environment
      variable HEPTATHLON_SANDBOX (same values) overrides auto, e.g. to test the refusal path.
    - ``require``: raise ProfileError (naming ``profile_name`` and 'require_sandbox') when no
      mechanism works; otherwise the command runs unsandboxed, scrubbed, and the record says so.
    """
    asked = [n for n in [*env_allow, *(extra_env or {})] if is_secret_name(n)]
    if asked:
        raise SandboxError(f"refusing to pass secret-looking variables into a sandbox: {asked}; drop them from the allowed env")
    env, dropped = scrub_env(os.environ if base_env is None else base_env, env_allow)
    chosen, why = choose_mechanism(mechanism)
    if copy_workdir or workdir is None:
        root = Path(tempfile.mkdtemp(prefix="heptathlon-sbx-"))
        work = root / "work"
        if workdir is not None:
            shutil.copytree(workdir, work, symlinks=True)
        else:
            work.mkdir()
        owned = str(root)
        if chosen is not None:
            _readable_by_all(work)
    else:
        work, owned = Path(workdir).resolve(), None
    writable = [Path(p).resolve() for p in writable]
    if chosen is None:
        (work / ".tmp").mkdir(exist_ok=True)
        home, tmpdir = str(work), str(work / ".tmp")
    else:
        home, tmpdir = SCRATCH_HOME, SCRATCH
    env.update({"HOME": home, "TMPDIR": tmpdir})
    env.update(extra_env or {})
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    record: dict[str, Any] = {"active": chosen is not None, "mechanism": chosen, "workdir": str(work),
                              "owned_dir": owned, "home": home, "tmpdir": tmpdir,
                              "env_kept": sorted(env), "env_dropped": dropped}
    if chosen is None:
        if require:
            cleanup_sandbox(record)
            who = f"profile {profile_name!r}: " if profile_name else ""
            raise ProfileError(f"{who}field 'require_sandbox': no sandbox works on this machine ({why})")
        record.update(isolation=["scrubbed-env", "own-workdir"], reason=why, uid=os.geteuid())
        return list(argv), env, record
    dropped_uid = drops_uid()
    if dropped_uid:
        for p in writable:  # its own; 0711 so that bwrap (uid 0, no capabilities) can still pass through
            os.chown(p, SANDBOX_UID, SANDBOX_GID)
            p.chmod(stat.S_IMODE(p.stat().st_mode) | 0o711)
    ro = [Path(p).resolve() for p in readonly]
    if chosen == "bwrap":
        prefix = _bwrap_args(work, writable, hide, ro)
        isolation = ["net", "pid", "ipc", "uts", "readonly-root", "minimal-root"]
    else:
        prefix = _unshare_args(work, writable, hide, ro)
        isolation = ["net", "pid", "ipc", "uts"]
    isolation += ["private-tmp", "private-home", "private-run", "hidden-home", "readonly-workdir",
                  *([f"uid-{SANDBOX_UID}"] if dropped_uid else []), "no-capabilities", "no-new-privs",
                  "die-with-parent", "scrubbed-env", "own-workdir"]
    record.update(isolation=isolation, uid=SANDBOX_UID if dropped_uid else os.geteuid())
    return [*prefix, *argv], env, record


def choose_mechanism(mechanism: str = "auto") -> tuple[str | None, str | None]:
    """(the mechanism to use or None, why none when None). HEPTATHLON_SANDBOX overrides auto."""
    if mechanism == "auto":
        mechanism = os.environ.get(SANDBOX_ENV, "").strip() or "auto"
    if mechanism == "auto":
        chosen = next(iter(available_mechanisms()), None)
        return chosen, None if chosen else unavailable_reasons()
    if mechanism in MECHANISMS:
        why = _probe_cached(mechanism)
        return (mechanism, None) if why is None else (None, f"{mechanism}: {why}")
    if mechanism == "none":
        return None, "disabled" if os.environ.get(SANDBOX_ENV, "").strip() != "none" else f"disabled ({SANDBOX_ENV}=none)"
    raise SandboxError(f"unknown sandbox mechanism {mechanism!r}; expected auto, none or one of {MECHANISMS}")


# Kinds that carry the author's code (a module, a TorchScript archive's code, a program): they
# run only in bubblewrap unless the request says --allow-unsandboxed. ONNX carries no code.
CODE_KINDS = ("torch", "torchscript", "command")
INSTALL_HINT = "apt-get install bubblewrap, or pass --allow-unsandboxed"


def code_sandbox_refusal(kind: str) -> str | None:
    """None when a submission of ``kind`` may run here, else the one-line reason it may not:
    a code-carrying kind needs a working bubblewrap (HEPTATHLON_SANDBOX=none forces that off)."""
    if kind not in CODE_KINDS:
        return None
    chosen, why = choose_mechanism("auto")
    if chosen == "bwrap":
        return None
    now = f"no sandbox works here: {why}" if chosen is None else f"only the {chosen} fallback works here"
    if chosen is not None and why is None:
        now += f" (bwrap: {_probe_cached('bwrap')})"
    return f"kind {kind!r} runs the submission's own code and needs bubblewrap ({now}): {INSTALL_HINT}"


def _readable_by_all(tree: Path) -> None:
    """A copy we made may come from a 0700 temporary folder: let SANDBOX_UID read it."""
    for p in [tree, *tree.rglob("*")]:
        if p.is_symlink():
            continue
        mode = p.stat().st_mode
        p.chmod(mode | (0o555 if p.is_dir() else 0o444))


def cleanup_sandbox(record: dict[str, Any]) -> None:
    """Remove the temporary working copy that sandbox_command made (if it made one)."""
    if record.get("owned_dir"):
        shutil.rmtree(record["owned_dir"], ignore_errors=True)
