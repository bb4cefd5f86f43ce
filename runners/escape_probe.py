"""The escape probe of ``heptathlon profiles check``: a hostile submission, run through the same
``sandbox_command`` as a real one, tries to break out; every attempt must be blocked.

The harness side (``run_escape_probe``) sets the scene as a real run has it: a harness home
(0700) with a results database file (0600) and an artifact store (0711/0555/0444), the
database URL in the harness's environment, a TCP listener on the host's loopback, a root-only
0600 file outside the hidden directories. The sandboxed side (``python -m
heptathlon.runners.escape_probe``) tries each way out and reports; the harness then checks from
outside that nothing it claims blocked was written anyway (a write counts only if it landed).

Run as a module with a JSON plan as its argument, it is the hostile process.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROBE_TIMEOUT_S = 60.0
SECRET = "postgresql://heptathlon:escape-probe-secret@127.0.0.1:5432/heptathlon"
SECRET_MARK = "escape-probe-secret"


@dataclass
class Attempt:
    attempt: str
    target: str
    blocked: bool
    detail: str


# -- the hostile side (runs inside the sandbox) ------------------------------------------------------
def _try_read(path: str) -> tuple[bool, str]:
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except OSError as e:
        return True, f"{type(e).__name__}: {e.strerror or e}"
    return False, f"read {len(data)} bytes"


def _try_write(path: str) -> tuple[bool, str]:
    try:
        with open(path, "a") as f:
            f.write("escaped\n")
    except OSError as e:
        return True, f"{type(e).__name__}: {e.strerror or e}"
    return False, "wrote"


def _try_open_for_write(path: str) -> tuple[bool, str]:
    try:
        os.close(os.open(path, os.O_WRONLY))
    except OSError as e:
        return True, f"{type(e).__name__}: {e.strerror or e}"
    return False, "opened for writing"


def _try_connect(port: int) -> tuple[bool, str]:
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
    except OSError as e:
        return True, f"{type(e).__name__}: {e.strerror or e}"
    finally:
        s.close()
    return False, "connected"


def _secret_in_proc() -> tuple[bool, str]:
    found = []
    for p in glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(p, "rb") as f:
                if SECRET_MARK.encode() in f.read():
                    found.append(p)
        except OSError:
            pass
    if any(SECRET_MARK in v for v in os.environ.values()):
        found.append("os.environ")
    return (not found), (f"seen in {found}" if found else "not in os.environ nor any readable /proc/*/environ")


def _cgroup_files() -> list[str]:
    """Its own cgroup's limit and procs files (v1 and v2), and the root cgroup's procs file."""
    out = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for ln in lines:
        _, ctrl, path = ln.split(":", 2)
        for base in ([f"/sys/fs/cgroup/{c}" for c in ctrl.split(",") if c] if ctrl else ["/sys/fs/cgroup",
                                                                                          "/sys/fs/cgroup/unified"]):
            d = base + path
            for name in ("memory.max", "memory.limit_in_bytes"):
                if os.path.exists(os.path.join(d, name)):
                    out.append(os.path.join(d, name))
            own_procs = d.rstrip("/").startswith(("/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified")) or not ctrl
            if own_procs and os.path.exists(os.path.join(d, "cgroup.procs")):
                out.append(os.path.join(d, "cgroup.procs"))
    for root in ("/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/memory/cgroup.procs", "/sys/fs/cgroup/unified/cgroup.procs"):
        if os.path.exists(root):
            out.append(root)
    return list(dict.fromkeys(out))[:10]


def hostile(plan: dict[str, Any]) -> list[dict[str, Any]]:
    res: list[dict[str, Any]] = []

    def add(attempt: str, target: str, r: tuple[bool, str]) -> None:
        res.append({"attempt": attempt, "target": target, "blocked": r[0], "detail": r[1]})

    for path in plan["read"]:
        add("read", path, _try_read(path))
    add("see the DB URL", "env + /proc/*/environ", _secret_in_proc())
    try:
        with open("/proc/1/environ", "rb") as f:
            leaked = SECRET_MARK.encode() in f.read()
        add("read the DB URL", "/proc/1/environ", (not leaked, "pid 1 of its own PID namespace: "
                                                   + ("the secret is there" if leaked else "no secret there")))
    except OSError as e:
        add("read the DB URL", "/proc/1/environ", (True, f"{type(e).__name__}: {e.strerror or e}"))
    for path in plan["write"]:
        add("write", path, _try_write(path))
    cg = _cgroup_files()
    if not cg:
        add("write", "cgroupfs", (True, "no cgroup files visible"))
    for path in cg:  # opened for writing (the permission check), nothing written: harmless even unsandboxed
        add("write", path, _try_open_for_write(path))
    for port in plan["ports"]:
        add("connect", f"127.0.0.1:{port}", _try_connect(port))
    try:
        os.setuid(0)
        add("setuid", "setuid(0)", (os.getuid() != 0, f"uid now {os.getuid()}"))
    except OSError as e:
        add("setuid", "setuid(0)", (True, f"{type(e).__name__}: {e.strerror or e}"))
    add("uid", "runs as", (os.getuid() != 0, f"uid {os.getuid()} gid {os.getgid()}"))
    return res


# -- the harness side ---------------------------------------------------------------------------------
def _scene(base: Path) -> dict[str, Path]:
    """A harness home as a real run has it, with decoys that must stay out of reach."""
    home = base / "harness-home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    db = home / "heptathlon.db"
    db.write_text("SQLite format 3 decoy")
    db.chmod(0o600)
    store = home / "artifacts"
    art = store / ("0" * 64)
    art.mkdir(parents=True)
    (art / "model.onnx").write_text("decoy artifact")
    (art / "model.onnx").chmod(0o444)
    art.chmod(0o555)
    store.chmod(0o711)
    src = base / "submission"
    src.mkdir()
    (src / "model.txt").write_text("its own copy")
    root_only = Path(__file__).resolve().parents[1] / f".escape-probe-root-only-{uuid.uuid4().hex[:8]}"
    return {"home": home, "db": db, "store": store, "artifact": art / "model.onnx", "src": src, "root_only": root_only}


def run_escape_probe(*, db_path: Path | None = None, store_dir: Path | None = None, hide: list[str] | None = None,
                     mechanism: str = "auto") -> tuple[list[Attempt], dict[str, Any]]:
    """Run the hostile probe through ``sandbox_command`` and return every attempt, blocked or not,
    with the sandbox record. ``db_path``/``store_dir``: the real results DB and artifact store,
    tried too when given (their folder is hidden, as a run hides it)."""
    from heptathlon.runners.sandbox import cleanup_sandbox, sandbox_command

    base = Path(tempfile.mkdtemp(prefix="heptathlon-escape-"))
    listener = socket.socket()
    tag = uuid.uuid4().hex[:10]
    host_tmp = Path(tempfile.gettempdir()) / f"heptathlon-escape-{tag}"
    host_home = Path(os.path.expanduser("~")) / f".heptathlon-escape-{tag}"
    try:
        sc = _scene(base)
        try:  # a root-only file outside the hidden directories: only the uid keeps it out of reach
            sc["root_only"].write_text("root only")
            sc["root_only"].chmod(0o600)
        except OSError:
            sc["root_only"] = Path("")
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        reads = [p for p in ["/etc/shadow", str(sc["db"]), str(sc["root_only"]), *([str(db_path)] if db_path else [])]
                 if p and p != "."]
        writes = [str(host_tmp), str(host_home), str(sc["artifact"]), str(sc["store"] / f"new-{tag}"),
                  *([str(Path(store_dir) / f"new-{tag}")] if store_dir else [])]
        hidden = [str(sc["home"]), *(hide or [])]
        argv, env, rec = sandbox_command([sys.executable, "-m", "heptathlon.runners.escape_probe"], sc["src"],
                                         base_env={**os.environ, "HEPTATHLON_DB": SECRET}, hide=hidden,
                                         mechanism=mechanism)
        own = Path(rec["workdir"]) / "model.txt"
        plan = {"read": reads, "write": [*writes, str(own), str(Path(rec["workdir"]) / f"new-{tag}")],
                "ports": [5432, port]}
        try:
            r = subprocess.run([*argv, json.dumps(plan)], env=env, cwd=rec["workdir"], capture_output=True,
                               text=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
            if r.returncode != 0 or not lines:
                tail = " ".join((r.stderr or r.stdout).split())[-300:]
                raise RuntimeError(f"the escape probe did not run (exit {r.returncode}): {tail}")
            attempts = [Attempt(**a) for a in json.loads(lines[-1])]
            # from outside: a write counts if it landed, whatever the process said
            landed = {str(host_tmp): host_tmp.exists(), str(host_home): host_home.exists(),
                      str(sc["artifact"]): sc["artifact"].read_text() != "decoy artifact",
                      str(sc["store"] / f"new-{tag}"): (sc["store"] / f"new-{tag}").exists(),
                      str(own): own.read_text() != "its own copy",
                      str(Path(rec["workdir"]) / f"new-{tag}"): (Path(rec["workdir"]) / f"new-{tag}").exists()}
            for a in attempts:
                if a.attempt != "write" or a.target not in landed:
                    continue
                if landed[a.target]:
                    a.blocked, a.detail = False, f"{a.detail}; found on the host afterwards"
                elif not a.blocked:  # e.g. /tmp inside is the sandbox's own tmpfs
                    a.blocked, a.detail = True, f"{a.detail} (its private view); nothing on the host"
        finally:
            cleanup_sandbox(rec)
    finally:
        listener.close()
        for p in (host_tmp, host_home, *([sc["root_only"]] if "sc" in locals() and str(sc["root_only"]) != "." else [])):
            try:
                p.unlink()
            except OSError:
                pass
        shutil.rmtree(base, ignore_errors=True)
    return attempts, rec


if __name__ == "__main__":
    print(json.dumps(hostile(json.loads(sys.argv[1]))))
