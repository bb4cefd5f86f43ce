"""ProxyAdapter against real model processes over real pipes (started through the real sandbox):
the honest null model round-trips; a hostile model process that breaks the framing fails the
run with one line naming the submission and the request."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from heptathlon.bench.errors import ModelError, RunError
from heptathlon.bench.manifest import load_manifest
from heptathlon.runners import model_channel as ch
from heptathlon.runners.adapters.proxy import ProxyAdapter

# A stand-in model process: READY, then answers each PREDICT with ``answer(kind, slot, dt, nd,
# rid, dims, body)`` -> bytes to write (the test's hostile part).
HOST = '''
import json, os, struct, sys
import numpy as np
F = struct.Struct("<BBBBI4IQ")
rfd, wfd = int(sys.argv[-2]), int(sys.argv[-1])
def read(n):
    b = b""
    while len(b) < n:
        c = os.read(rfd, n - len(b))
        if not c:
            sys.exit(0)
        b += c
    return b
def frame(kind, rid, dt, dims, body):
    nd = len(dims)
    return F.pack(kind, 0, dt, nd, rid, *(list(dims) + [0] * (4 - nd)), len(body)) + body
def ready():
    body = json.dumps({"name": "eager", "profiler": "torch", "device": "cpu", "derivable": []}).encode()
    return F.pack(14, 0, 0, 0, 0, 0, 0, 0, 0, len(body)) + body
head = F.unpack(read(32)); read(head[-1])
PRE
os.write(wfd, ready())
while True:
    kind, slot, dt, nd, rid, d0, d1, d2, d3, nbytes = F.unpack(read(32))
    body = read(nbytes)
    if kind == 3:
        sys.exit(0)
    n = d0
ANSWER
'''


def _host(tmp_path, answer: str, pre: str = "") -> ProxyAdapter:
    d = tmp_path / "sub"
    d.mkdir()
    (d / "submission.yaml").write_text("name: hostile\ntask: arrests\nmodel: {kind: command, command: [python, x.py]}\n")
    (d / "host.py").write_text(HOST.replace("PRE", textwrap.dedent(pre)).replace(
        "ANSWER", textwrap.indent(textwrap.dedent(answer), "    ")))
    import sys

    p = ProxyAdapter(load_manifest(d), d, None, {}, host_argv=[sys.executable, "host.py"])
    p.load()
    return p


X = np.arange(14, dtype=np.float32).reshape(2, 7)


def _one(p: ProxyAdapter, x=X):
    try:
        return p.postprocess(p.predict(p.prepare(x)), len(x))
    finally:
        p.close()


def test_honest_answers_round_trip_and_are_decoded(tmp_path):
    p = _host(tmp_path, """
        scores = np.frombuffer(body, np.float32).reshape(d0, d1)[:, :2].copy()
        os.write(wfd, frame(11, rid, 1, (n, 2), scores.tobytes()))
    """)
    assert p.name == "eager" and p.sandbox["active"]
    preds, scores = _one(p)
    assert preds.tolist() == [1, 1] and scores.tolist() == X[:, :2].tolist()


def test_the_null_model_host_serves_many_requests(tmp_path):
    d = tmp_path / "sub"
    d.mkdir()
    (d / "submission.yaml").write_text("name: null-model\ntask: arrests\nmodel: {kind: command, command: [python, x.py]}\n")
    p = ProxyAdapter(load_manifest(d), d, None, {"host_adapter": "heptathlon.runners.model_host:NullAdapter"})
    p.load()
    try:
        prepared = [p.prepare(X[:k]) for k in (1, 2)]
        for i in range(200):
            raw = p.predict(prepared[i % 2])
        assert p.postprocess(raw, 2)[0].tolist() == [0, 0]
        assert p.describe()["runtime"] == "null"
    finally:
        p.close()
    assert p.proc is None


@pytest.mark.parametrize("answer,needle", [
    ("os.write(wfd, frame(11, rid ^ 1, 4, (n,), bytes(8 * n)))",
     "answer to request 1: it does not carry its request's token (an answer sent before its request arrived?)"),
    ("os.write(wfd, F.pack(11, 0, 4, 1, rid, n, 0, 0, 0, 1 << 40))",
     "answer to request 1: 1099511627776 bytes (at most 268435456)"),
    ("os.write(wfd, frame(11, rid, 99, (n,), bytes(8 * n)))",
     "answer to request 1: dtype code 99 is not one of [1, 2, 3, 4, 5]"),
    ("os.write(wfd, frame(11, rid, 4, (n + 5,), bytes(8 * (n + 5))))",
     "answer to request 1: 7 rows for a batch of 2"),
    ("os.write(wfd, F.pack(11, 0, 4, 1, rid, n, 0, 0, 0, 3) + b'abc')",
     "answer to request 1: 3 bytes do not match shape (2,) of int64"),
    ("os.write(wfd, frame(11, rid, 1, (n, 2, 2), bytes(16 * n)))",
     "answer to request 1: 3 dimensions (expected 1: labels, or 2: scores)"),
    ("os.write(wfd, frame(11, rid, 4, (n,), bytes(8 * n)) + b'junk')",
     "answer to request 1: 4 bytes follow the answer (an answer sent before its request?)"),
    ("os.write(wfd, frame(12, rid, 0, (), b'{}'))",
     "answer to request 1: frame kind 12 where ARRAY was expected"),
])
def test_a_malformed_answer_fails_with_one_line_naming_the_request(tmp_path, answer, needle):
    p = _host(tmp_path, answer)
    with pytest.raises(RunError) as e:
        _one(p)
    msg = str(e.value)
    assert msg == f"submission 'hostile': model process broke the channel protocol: {needle}"
    assert "\n" not in msg and p.proc is None  # the model process is stopped at once


def test_an_answer_written_before_the_request_is_refused(tmp_path):
    # The model guesses the answer and writes it before reading anything (tokens are random).
    p = _host(tmp_path, "pass", pre="""
        os.write(wfd, ready())
        for rid in range(1, 5):
            os.write(wfd, frame(11, rid, 4, (2,), bytes(16)))
        while True:
            read(1)
    """)
    with pytest.raises(RunError, match=r"request 1: .*(token|follow the answer)"):
        _one(p)


def test_a_model_that_dies_mid_answer_is_named(tmp_path):
    p = _host(tmp_path, "os.write(wfd, F.pack(11, 0, 4, 1, rid, n, 0, 0, 0, 8 * n)); sys.exit(9)")
    with pytest.raises(RunError, match=r"^submission 'hostile': model process exited with code 9 while answering "
                                       r"request 1 \(the channel closed after 32 of 48 bytes\)$"):
        _one(p)


def test_an_error_answer_is_the_models_reason_sanitised(tmp_path):
    p = _host(tmp_path, """
        body = json.dumps({"type": "ValueError", "error": "bad\\nshape \\x1b[31m"}).encode()
        os.write(wfd, F.pack(13, 0, 0, 0, 0, 0, 0, 0, 0, len(body)) + body)
    """)
    with pytest.raises(ModelError, match=r"^submission 'hostile': request 1: the model raised ValueError: bad shape \[31m$"):
        _one(p)


def test_oversized_control_answers_are_refused(tmp_path):
    p = _host(tmp_path, "os.write(wfd, F.pack(12, 0, 0, 0, 0, 0, 0, 0, 0, 1 << 30))")
    with pytest.raises(RunError, match=r"the answer to control message 'describe': 1073741824 bytes of JSON"):
        try:
            p._control({"call": "describe"})
        finally:
            p.close()


def test_channel_frames_refuse_unknown_dtypes():
    with pytest.raises(ch.ChannelError, match="cannot travel"):
        ch.array_frame(ch.ARRAY, 0, 1, np.zeros(2, dtype=np.complex64))


def test_a_violation_swallowed_by_a_caller_still_fails_the_next_control_message(tmp_path):
    # The batch sweep ends a runtime at the first size that raises; a protocol violation must not
    # pass for "this batch size failed".
    p = _host(tmp_path, "os.write(wfd, frame(11, rid, 99, (n,), bytes(8 * n)))")
    with pytest.raises(RunError):
        p.predict(p.prepare(X))
    with pytest.raises(OSError):  # the channel is closed: no stray write to a reused descriptor
        p.predict(p.prepare(X))
    with pytest.raises(RunError, match=r"^submission 'hostile': model process broke the channel protocol: "
                                       r"answer to request 1: dtype code 99"):
        p.describe()
