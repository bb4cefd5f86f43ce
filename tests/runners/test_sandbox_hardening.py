"""The hardened sandbox, tried as a hostile submission would: another uid, nothing of the
harness's readable or writable, dies with its harness; and the escape probe shows it all.

Every test runs a real child through each mechanism that works here (real bubblewrap, real
unshare + setpriv)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from heptathlon.runners import sandbox as S
from heptathlon.runners.escape_probe import run_escape_probe

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only a root harness can drop to uid 65534")


@pytest.fixture(params=S.MECHANISMS)
def mechanism(request):
    why = S._probe_cached(request.param)
    if why is not None:
        pytest.skip(f"{request.param} unavailable: {why}")
    return request.param


def _run(mechanism: str, code: str, *args: str, **kw) -> tuple[subprocess.CompletedProcess, dict]:
    argv, env, rec = S.sandbox_command([PY, "-c", textwrap.dedent(code), *args], kw.pop("workdir", None),
                                       mechanism=mechanism, **kw)
    try:
        r = subprocess.run(argv, env=env, cwd=rec["workdir"], capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL, check=False)
    finally:
        S.cleanup_sandbox(rec)
    assert r.returncode == 0, r.stderr
    return r, rec


TRY = """
import json, os, sys
out = {}
for p in sys.argv[1:]:
    op, path = p.split(":", 1)
    try:
        if op == "r":
            open(path, "rb").read(); out[p] = "ok"
        else:
            open(path, "a").write("x"); out[p] = "ok"
    except OSError as e:
        out[p] = type(e).__name__
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "res": out}))
"""


@needs_root
def test_runs_as_65534_with_no_capabilities(mechanism):
    r, rec = _run(mechanism, """
        import json, os
        caps = {l.split(':')[0]: l.split()[1] for l in open('/proc/self/status') if l.startswith(('Cap', 'NoNew'))}
        print(json.dumps({"ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()], "groups": os.getgroups(),
                          "caps": caps}))
    """)
    seen = json.loads(r.stdout)
    assert seen["ids"] == [65534] * 4 and seen["groups"] == []
    assert {k: v for k, v in seen["caps"].items() if k.startswith("Cap")} == {
        k: "0000000000000000" for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    assert seen["caps"]["NoNewPrivs"] == "1"
    assert rec["uid"] == 65534 and "uid-65534" in rec["isolation"]


@needs_root
def test_root_only_files_the_db_and_the_store_are_out_of_reach(mechanism, tmp_path):
    """Outside the hidden directories (the repository is visible read-only, as the harness's code
    is), only the uid keeps a 0600 file, a 0600 SQLite DB and a 0444 store out of reach."""
    from heptathlon.bench.app.service import store_submission
    from heptathlon.db.session import ensure_schema

    base = REPO / f".sandbox-test-{uuid.uuid4().hex[:8]}"
    try:
        base.mkdir()
        base.chmod(0o755)  # a traversable parent: what stops the reads below is each file's own mode
        secret = base / "root-only.txt"
        secret.write_text("s3cret")
        secret.chmod(0o600)
        home = base / "home"
        url = f"sqlite:///{home / 'heptathlon.db'}"
        ensure_schema(url)  # a real results DB, created 0600 in a 0700 home
        sub = tmp_path / "sub"
        sub.mkdir()
        (sub / "submission.yaml").write_text("name: s\ntask: arrests\nmodel: {kind: onnx, path: m.onnx}\n")
        (sub / "m.onnx").write_bytes(b"not a model")
        _, _, store = store_submission(sub, home=home)
        home.chmod(0o711)  # even with the home traversable, the DB (0600) and store (0555/0444) hold
        targets = [f"r:{secret}", f"r:{home / 'heptathlon.db'}", f"w:{home / 'heptathlon.db'}",
                   f"w:{store / 'm.onnx'}", f"w:{store / 'new.txt'}", "r:/etc/shadow"]
        r, _ = _run(mechanism, TRY, *targets)
        res = json.loads(r.stdout)["res"]
        assert all(v == "PermissionError" for k, v in res.items() if os.path.exists(k.split(":", 1)[1])), res
        assert (store / "m.onnx").read_bytes() == b"not a model" and not (store / "new.txt").exists()
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def test_cannot_write_its_copy_host_tmp_or_home(mechanism, tmp_path):
    src = tmp_path / "sub"
    src.mkdir()
    (src / "model.txt").write_text("weights")
    tag = uuid.uuid4().hex[:8]
    host_tmp = Path("/tmp") / f"heptathlon-sbx-test-{tag}"
    host_home = Path.home() / f".heptathlon-sbx-test-{tag}"
    try:
        r, _ = _run(mechanism, TRY, f"w:{host_tmp}", f"w:{host_home}", "w:model.txt", "w:new.txt",
                      workdir=src)
        res = json.loads(r.stdout)["res"]
        assert not host_tmp.exists(), "host /tmp written"  # /tmp inside is the sandbox's own
        assert not host_home.exists(), "host $HOME written"
        assert res["w:model.txt"] != "ok" and res["w:new.txt"] != "ok", res
    finally:
        host_tmp.unlink(missing_ok=True)
        host_home.unlink(missing_ok=True)


def test_the_harness_home_is_hidden(mechanism):
    """A home outside /tmp (here under the repository, which the sandbox sees read-only) is
    covered by an empty tmpfs when named in ``hide``; without ``hide`` it is visible."""
    import shutil

    from heptathlon.db.session import ensure_schema

    home = REPO / f".sandbox-home-test-{uuid.uuid4().hex[:8]}"
    try:
        ensure_schema(f"sqlite:///{home / 'heptathlon.db'}")
        code = "import os, sys; print(sorted(os.listdir(sys.argv[1])))"
        hidden, _ = _run(mechanism, code, str(home), hide=[str(home)])
        assert hidden.stdout.strip() == "[]"
        home.chmod(0o755)  # visible without hide (the DB itself stays 0600)
        shown, _ = _run(mechanism, code, str(home))
        assert "heptathlon.db" in shown.stdout
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_the_database_url_is_neither_in_its_env_nor_in_proc(mechanism):
    secret = "postgresql://h:pw-" + uuid.uuid4().hex + "@127.0.0.1/h"
    r, _ = _run(mechanism, """
        import glob, os, sys
        hits = []
        for p in glob.glob('/proc/[0-9]*/environ'):
            try:
                hits += [p] if sys.argv[1].encode() in open(p, 'rb').read() else []
            except OSError:
                pass
        print(sys.argv[1] in str(os.environ), hits)
    """, secret.split("@")[0][-20:], base_env={**os.environ, "HEPTATHLON_DB": secret})
    assert r.stdout.strip() == "False []"


def test_it_dies_with_its_harness(mechanism, tmp_path):
    """SIGKILL of the harness leaves no sandboxed process behind (bwrap --die-with-parent;
    unshare under setpriv --pdeathsig KILL, with --kill-child)."""
    tag = f"heptathlon-orphan-{uuid.uuid4().hex[:8]}"
    harness = textwrap.dedent(f"""
        import subprocess, sys, time
        from heptathlon.runners import sandbox as S
        argv, env, rec = S.sandbox_command([sys.executable, "-c", "import time; time.sleep(120)", {tag!r}], None,
                                           mechanism={mechanism!r})
        subprocess.Popen(argv, env=env, cwd=rec["workdir"])
        print("started", flush=True)
        time.sleep(120)
    """)
    h = subprocess.Popen([PY, "-c", harness], stdout=subprocess.PIPE, text=True)

    def alive() -> list[int]:
        pids = []
        for p in Path("/proc").glob("[0-9]*"):
            try:
                cmd = (p / "cmdline").read_bytes()
                if tag.encode() in cmd and b"sandbox_command" not in cmd:  # not the harness itself
                    pids.append(int(p.name))
            except OSError:
                pass
        return pids

    try:
        assert h.stdout.readline().strip() == "started"
        for _ in range(200):  # wait until the sandboxed sleeper exists
            if _sleeper(alive()):
                break
            time.sleep(0.05)
        assert _sleeper(alive()), "the sandboxed process never started"
        h.send_signal(signal.SIGKILL)
        h.wait()
        for _ in range(200):  # the kernel delivers the parent-death signal asynchronously
            if not alive():
                break
            time.sleep(0.05)
        assert alive() == [], "sandboxed processes outlived the harness"
    finally:
        if h.poll() is None:
            h.kill()
        for pid in alive():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _sleeper(pids: list[int]) -> bool:
    """One of them is the sandboxed Python itself (not only a bwrap/unshare/setpriv wrapper)."""
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:2] == [b"-c"]:
                return True
        except OSError:
            pass
    return False


def test_the_escape_probe_shows_every_attempt_blocked(mechanism):
    attempts, rec = run_escape_probe(mechanism=mechanism)
    assert rec["active"] and rec["mechanism"] == mechanism
    through = [a for a in attempts if not a.blocked]
    assert through == [], through
    kinds = {a.attempt for a in attempts}
    assert {"read", "write", "connect", "setuid", "see the DB URL"} <= kinds
    targets = " ".join(a.target for a in attempts)
    for needle in ("/etc/shadow", "heptathlon.db", "artifacts", "127.0.0.1:5432", "/sys/fs/cgroup", "setuid(0)"):
        assert needle in targets, needle


def test_the_escape_probe_sees_through_no_sandbox():
    """The probe can fail: without a sandbox its attempts get through, and it says so."""
    attempts, rec = run_escape_probe(mechanism="none")
    assert rec["active"] is False
    through = {a.target for a in attempts if not a.blocked}
    assert any(t.endswith("model.txt") for t in through)  # its own copy, writable without a sandbox
    assert any("connect" == a.attempt and not a.blocked for a in attempts)


def test_a_private_run_directory_as_the_executor_makes_it(mechanism):
    """The executor's layout: a 0700 mkdtemp run directory (writable) holding the working copy
    (used in place, read-only): the child starts in it and writes only its result file."""
    import shutil
    import tempfile

    run_dir = Path(tempfile.mkdtemp(prefix="heptathlon-run-test-"))
    try:
        work = run_dir / "work"
        work.mkdir()
        (work / "model.txt").write_text("weights")
        (run_dir / "job.json").write_text("{}")
        r, rec = _run(mechanism, """
            import os, sys
            print(open('model.txt').read(), open(os.path.join(sys.argv[1], 'job.json')).read())
            open(os.path.join(sys.argv[1], 'result.json'), 'w').write('ok')
        """, str(run_dir), workdir=work, copy_workdir=False, writable=[run_dir])
        assert r.stdout.split() == ["weights", "{}"]
        assert (run_dir / "result.json").read_text() == "ok"
        assert rec["workdir"] == str(work.resolve())
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def test_bwrap_shows_only_system_directories_the_python_environment_and_its_copy():
    """Another checkout beside this one, /var, /srv, /mnt: not there at all under bwrap."""
    import shutil

    if S._probe_cached("bwrap") is not None:
        pytest.skip(f"bwrap unavailable: {S._probe_cached('bwrap')}")
    sibling = REPO.parent / f".sandbox-sibling-{uuid.uuid4().hex[:8]}"
    try:
        sibling.mkdir()
        (sibling / "data.txt").write_text("another project's file")
        sibling.chmod(0o755)
        (sibling / "data.txt").chmod(0o644)
        paths = [str(sibling / "data.txt"), "/var/lib", "/srv", "/mnt", "/usr/bin/env", "/etc/hostname",
                 str(REPO / "runners" / "sandbox.py")]
        r, _ = _run("bwrap", "import json, os, sys; print(json.dumps([os.path.exists(p) for p in sys.argv[1:]]))",
                    *paths)
        seen = dict(zip(paths, json.loads(r.stdout)))
        assert not seen[str(sibling / "data.txt")] and not seen["/var/lib"], seen
        assert not seen["/srv"] and not seen["/mnt"], seen
        assert seen["/usr/bin/env"] and seen[str(REPO / "runners" / "sandbox.py")], seen  # what it needs
        assert (sibling / "data.txt").exists()  # it is there outside
    finally:
        shutil.rmtree(sibling, ignore_errors=True)
