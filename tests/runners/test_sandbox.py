"""The submission sandbox: scrubbed environment, own working copy, no network, no way back to
the parent's secrets. Each test runs a real child through each mechanism that works here."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from heptathlon.bench.errors import ProfileError
from heptathlon.bench.profile import Profile
from heptathlon.runners import sandbox as S
from heptathlon.runners.controls import validate_profile_for_machine

PY = sys.executable
SECRET = "postgresql://heptathlon:s3cret@127.0.0.1:5432/heptathlon"


@pytest.fixture(params=S.MECHANISMS)
def mechanism(request):
    why = S._probe_cached(request.param)
    if why is not None:
        pytest.skip(f"{request.param} unavailable: {why}")
    return request.param


def _run(mechanism: str, code: str, workdir: Path | None = None, **kw) -> tuple[subprocess.CompletedProcess, dict]:
    argv, env, rec = S.sandbox_command([PY, "-c", code], workdir, mechanism=mechanism, **kw)
    try:
        r = subprocess.run(argv, env=env, cwd=rec["workdir"], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    finally:
        S.cleanup_sandbox(rec)
    return r, rec


CONNECT = """
import json, socket, sys
s = socket.socket(); s.settimeout(5)
try:
    s.connect(("127.0.0.1", int(sys.argv[1]))); print(json.dumps({"connected": True}))
except OSError as e:
    print(json.dumps({"connected": False, "error": str(e)}))
"""


def _connect_inside(mechanism: str, port: int) -> dict:
    argv, env, rec = S.sandbox_command([PY, "-c", CONNECT, str(port)], None, mechanism=mechanism)
    try:
        r = subprocess.run(argv, env=env, cwd=rec["workdir"], capture_output=True, text=True, timeout=60)
    finally:
        S.cleanup_sandbox(rec)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_database_url_and_credentials_do_not_reach_the_child(mechanism):
    base = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HEPTATHLON_DB": SECRET, "DATABASE_URL": SECRET,
            "PGPASSWORD": "s3cret", "AWS_SECRET_ACCESS_KEY": "x", "GITHUB_TOKEN": "x", "OMP_NUM_THREADS": "1"}
    r, rec = _run(mechanism, "import json, os; print(json.dumps(dict(os.environ)))", base_env=base)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    for name in ("HEPTATHLON_DB", "DATABASE_URL", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"):
        assert name not in seen
        assert name in rec["env_dropped"]
    assert SECRET not in r.stdout
    assert seen["OMP_NUM_THREADS"] == "1" and seen["HOME"] == rec["home"] == S.SCRATCH_HOME
    assert rec["active"] is True and rec["mechanism"] == mechanism


SCAN_PROC = """
import glob
found = []
for p in glob.glob('/proc/[0-9]*/environ'):
    try:
        found += [p] if b's3cret' in open(p, 'rb').read() else []
    except OSError:
        pass
print(found)
"""


def test_other_processes_environments_are_not_readable_through_proc(mechanism):
    # A process started with the database URL in its environment, as the harness might be.
    holder = subprocess.Popen([PY, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                              env={"PATH": os.environ["PATH"], "HEPTATHLON_DB": SECRET})
    try:
        outside = subprocess.run([PY, "-c", SCAN_PROC], capture_output=True, text=True, timeout=60)
        assert f"/proc/{holder.pid}/environ" in outside.stdout  # readable without the sandbox
        r, _ = _run(mechanism, SCAN_PROC)
    finally:
        holder.communicate(b"")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_no_tcp_to_a_listener_on_the_host(mechanism):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # reachable outside
        inside = _connect_inside(mechanism, port)
    assert inside["connected"] is False


def test_postgresql_on_5432_is_reachable_outside_and_not_inside(mechanism):
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=5).close()
    except OSError:
        pytest.skip("no PostgreSQL listening on 127.0.0.1:5432 on this machine")
    inside = _connect_inside(mechanism, 5432)
    assert inside["connected"] is False, inside


def test_unix_sockets_under_run_are_hidden(mechanism):
    path = Path("/run") / f"heptathlon-test-{uuid.uuid4().hex[:8]}.sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
    except OSError as e:
        server.close()
        pytest.skip(f"cannot create a socket under /run: {e}")
    try:
        server.listen(1)
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(str(path))  # reachable outside
        code = (f"import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n"
                f"    s.connect({str(path)!r}); print('connected')\n"
                f"except OSError as e:\n    print('refused', e)")
        r, _ = _run(mechanism, code)
    finally:
        server.close()
        path.unlink(missing_ok=True)
    assert r.stdout.startswith("refused"), r.stdout + r.stderr


def test_child_works_in_its_own_read_only_copy_and_a_private_home(mechanism, tmp_path):
    src = tmp_path / "submission"
    src.mkdir()
    (src / "model.txt").write_text("weights")
    code = ("import os\nprint(open('model.txt').read(), os.getcwd())\n"
            "open(os.path.join(os.environ['HOME'], 'scratch.txt'), 'w').write('x')\n"
            "open(os.path.join(os.environ['TMPDIR'], 'scratch.txt'), 'w').write('x')\n"
            "for p in ('model.txt', 'new.txt'):\n"
            "    try:\n        open(p, 'w').write('tampered'); print('wrote', p)\n"
            "    except OSError as e:\n        print('denied', p, e.errno)\n")
    argv, env, rec = S.sandbox_command([PY, "-c", code], src, mechanism=mechanism)
    try:
        r = subprocess.run(argv, env=env, cwd=rec["workdir"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["weights", rec["workdir"]]
        assert [ln.split()[:2] for ln in lines[1:]] == [["denied", "model.txt"], ["denied", "new.txt"]]
        assert (Path(rec["workdir"]) / "model.txt").read_text() == "weights"
        assert not (Path(rec["workdir"]) / "new.txt").exists()
        assert "readonly-workdir" in rec["isolation"] and "private-home" in rec["isolation"]
    finally:
        S.cleanup_sandbox(rec)
    assert (src / "model.txt").read_text() == "weights"
    assert not Path(rec["workdir"]).exists()


def test_bwrap_makes_the_rest_of_the_file_system_read_only(tmp_path):
    if S._probe_cached("bwrap") is not None:
        pytest.skip(f"bwrap unavailable: {S._probe_cached('bwrap')}")
    outside = tmp_path / "outside"
    outside.mkdir()
    repo_file = Path(__file__).resolve().parents[2] / f".sandbox-write-test-{uuid.uuid4().hex[:6]}"
    code = ("import sys\nfor p in sys.argv[1:]:\n    try:\n        open(p, 'w').write('x'); print('wrote', p)\n"
            "    except OSError as e:\n        print('denied', e.errno)")
    argv, env, rec = S.sandbox_command([PY, "-c", code, str(outside / "f"), str(repo_file)], None, mechanism="bwrap")
    try:
        r = subprocess.run(argv, env=env, cwd=rec["workdir"], capture_output=True, text=True, timeout=60)
    finally:
        S.cleanup_sandbox(rec)
        repo_file.unlink(missing_ok=True)
    assert r.returncode == 0, r.stderr
    assert [ln.split()[0] for ln in r.stdout.splitlines()] == ["denied", "denied"]
    assert not (outside / "f").exists()


def test_writable_paths_are_writable_inside(mechanism, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    code = f"open({str(run_dir / 'result.json')!r}, 'w').write('{{}}')"
    r, _ = _run(mechanism, code, writable=[run_dir])
    assert r.returncode == 0, r.stderr
    assert (run_dir / "result.json").read_text() == "{}"


def test_require_sandbox_fails_when_no_mechanism_works(monkeypatch):
    monkeypatch.setattr(S, "_probe_cached", lambda m: f"{m} not here")
    with pytest.raises(ProfileError, match=r"profile 'locked': field 'require_sandbox': no sandbox works"):
        S.sandbox_command([PY, "-c", "pass"], None, require=True, profile_name="locked")
    with pytest.raises(ProfileError, match=r"'locked': field 'require_sandbox'"):
        validate_profile_for_machine(Profile(name="locked", require_sandbox=True))
    argv, env, rec = S.sandbox_command([PY, "-c", "pass"], None, base_env={"HEPTATHLON_DB": SECRET, "PATH": "/bin"})
    try:
        assert rec["active"] is False and argv == [PY, "-c", "pass"]
        assert "HEPTATHLON_DB" not in env  # scrubbed all the same
        assert "bwrap not here" in rec["reason"]
    finally:
        S.cleanup_sandbox(rec)


def test_secret_names_cannot_be_allowed_in():
    with pytest.raises(ValueError, match="DATABASE_URL"):
        S.sandbox_command([PY], None, env_allow=["DATABASE_URL"])
    with pytest.raises(ValueError, match="PGPASSWORD"):
        S.sandbox_command([PY], None, extra_env={"PGPASSWORD": "x"})
    kept, dropped = S.scrub_env({"PATH": "/bin", "MY_API_KEY": "k", "HEPTATHLON_DB_URL": "x", "FOO": "1"}, ["FOO"])
    assert kept == {"PATH": "/bin", "FOO": "1"} and dropped == ["HEPTATHLON_DB_URL", "MY_API_KEY"]
