"""The stdio adapter against hostile models (real subprocesses): answers that arrive before
their request, stdout floods past the caps, a line that never ends (harness memory bounded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from heptathlon.bench.errors import RunError
from heptathlon.bench.manifest import load_manifest
from heptathlon.bench.profile import load_profile
from heptathlon.runners.adapters import make_adapter
from heptathlon.runners.adapters.command import MAX_IGNORED_BYTES, MAX_IGNORED_LINES, MAX_LINE_BYTES

X = np.zeros((1, 7), dtype=np.float32)
YAML = "name: evil\ntask: arrests\nmodel: {kind: command, command: [python, serve.py]}\n"
HEAD = textwrap.dedent("""
    import json, os, sys, time
    out = sys.stdout.fileno()
    def send(b):
        while b:
            b = b[os.write(out, b):]
    send(b'{"ready": true}\\n')
""")


def _adapter(tmp_path: Path, body: str):
    (tmp_path / "serve.py").write_text(HEAD + textwrap.dedent(body))
    (tmp_path / "submission.yaml").write_text(YAML)
    a = make_adapter(load_manifest(tmp_path), tmp_path, load_profile("cpu-1core"),
                     {"command_env": {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}})
    a.load()
    return a


def _run_until_error(a, n: int = 200) -> str:
    try:
        with pytest.raises(RunError) as e:
            for _ in range(n):
                a.predict(a.prepare(X))
    finally:
        a.close()
    assert "\n" not in str(e.value)
    return str(e.value)


def test_an_answer_written_with_the_previous_one_fails_the_run(tmp_path):
    # Answers request N and, in the same write, request N+1 (guessing its id) before it is sent.
    a = _adapter(tmp_path, """
        answered = 0
        for line in sys.stdin:
            rid = json.loads(line)["id"]
            if rid > answered:
                send(b'{"id":%d,"outputs":[0]}\\n{"id":%d,"outputs":[0]}\\n' % (rid, rid + 1))
                answered = rid + 1
    """)
    assert _run_until_error(a) == "submission 'evil': answer to request 2 arrived before the request was sent"


def test_answers_waiting_in_the_pipe_before_a_request_fail_the_run(tmp_path):
    # 20 ms per request, but answers to requests not yet sent are written ahead, in a write of
    # their own after the ready line: the harness's line buffer is empty, the pipe is not.
    a = _adapter(tmp_path, """
        time.sleep(0.05)
        send(b''.join(b'{"id":%d,"outputs":[0]}\\n' % i for i in range(1, 50)))
        for line in sys.stdin:
            time.sleep(0.02)
    """)
    time.sleep(0.5)  # the answers are surely in the pipe by now
    assert a._r.buf == b""  # so it is the zero-timeout poll that finds them
    assert _run_until_error(a) == "submission 'evil': answer to request 1 arrived before the request was sent"


def test_log_lines_after_an_answer_are_ignored_and_counted_not_mistaken_for_answers(tmp_path):
    a = _adapter(tmp_path, """
        for line in sys.stdin:
            rid = json.loads(line)["id"]
            send(b'{"id":%d,"outputs":[1]}\\n' % rid)
            send(b'answered %d\\n' % rid)
    """)
    try:
        for _ in range(30):
            assert a.predict(a.prepare(X))["outputs"] == [1]
    finally:
        a.close()
    d = a.describe()
    assert 29 <= d["ignored_stdout_lines"] <= 30 and d["ignored_stdout_bytes"] > 0


@pytest.mark.parametrize("flood", [
    "for i in range(5000): send(b'log line %d\\n' % i)",  # lines
    "send(b'x' * (2 << 20) + b'\\n')",  # bytes, in one ignored line
])
def test_ignored_stdout_past_the_cap_fails_the_run(tmp_path, flood):
    a = _adapter(tmp_path, f"""
        for line in sys.stdin:
            rid = json.loads(line)["id"]
            {flood}
            send(b'{{"id":%d,"outputs":[0]}}\\n' % rid)
    """)
    assert _run_until_error(a, 3) == (f"submission 'evil': more than {MAX_IGNORED_LINES} lines or "
                                      f"{MAX_IGNORED_BYTES >> 20} MiB of ignored (non-protocol) stdout; that is the "
                                      "cap per run (write logs to stderr)")


def test_a_flood_before_ready_fails_the_load(tmp_path):
    (tmp_path / "serve.py").write_text("for i in range(10**6): print('loading', i)\nprint('{\"ready\": true}')\n")
    (tmp_path / "submission.yaml").write_text(YAML)
    a = make_adapter(load_manifest(tmp_path), tmp_path, load_profile("cpu-1core"),
                     {"command_env": {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}})
    with pytest.raises(RunError, match="more than 1000 lines or 1 MiB of ignored"):
        a.load()
    a.close()


HARNESS = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    import numpy as np
    from heptathlon.bench.errors import RunError
    from heptathlon.bench.manifest import load_manifest
    from heptathlon.bench.profile import load_profile
    from heptathlon.runners.adapters import make_adapter
    d = Path(sys.argv[1])
    a = make_adapter(load_manifest(d), d, load_profile("cpu-1core"), {"command_env": {"PATH": os.environ["PATH"]}})
    a.load()
    try:
        a.predict(a.prepare(np.zeros((1, 7), dtype=np.float32)))
        err = None
    except RunError as e:
        err = str(e)
    a.proc.kill()
    # VmHWM: this process's own peak RSS (ru_maxrss would also hold the forking parent's, folded in at exec)
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(json.dumps({"error": err, "maxrss_mb": hwm / 1024}))
""")


def test_a_line_that_never_ends_fails_with_the_harness_memory_bounded(tmp_path):
    # 400 MiB of one answer line that never ends: the harness (a process of its own here, so its
    # peak RSS is its own) stops at the line cap instead of holding it all.
    (tmp_path / "serve.py").write_text(HEAD + textwrap.dedent("""
        sys.stdin.readline()
        chunk = b'{"id":1,"outputs":[' + b'0,' * (1 << 19)
        for _ in range(400):
            send(chunk)
    """))
    (tmp_path / "submission.yaml").write_text(YAML)
    (tmp_path / "harness.py").write_text(HARNESS)
    out = subprocess.run([sys.executable, str(tmp_path / "harness.py"), str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["error"] == (f"submission 'evil': a stdout line longer than {MAX_LINE_BYTES >> 20} MiB in the answer to "
                          "request 1; that is the cap on one line")
    assert r["maxrss_mb"] < 200, r  # the line alone would be 400 MiB (800 while joined)
