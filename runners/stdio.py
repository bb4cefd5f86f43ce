"""A tiny helper for authors of ``kind: command`` submissions (the stdio protocol, DESIGN.md).

    from heptathlon.runners.stdio import serve

    def load():
        return MyModel()

    def predict(model, inputs):          # inputs: float32 numpy array, one row per instance
        return model.predict(inputs)     # labels, or (labels, per-class scores)

    serve(predict, load)

The helper prints ``{"ready": true}`` after ``load`` returns, then answers one line per
request with the same id and as many outputs as inputs. EOF on stdin means exit.

Every microsecond spent here is added to the submission's measured latency, so the loop is
lean: raw ``os.read``/``os.write`` on the file descriptors (one syscall each way, no Python
buffering layer), the fixed envelope sliced and formatted as bytes instead of going through
JSON, and JSON kept only for the payloads. A request in any other valid JSON layout still
works, through the general path.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

import numpy as np

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads
_HEAD = b'{"id":'
_INPUTS = b',"inputs":'
_READ_SIZE = 1 << 16


def _to_list(x: Any) -> Any:
    return x.tolist() if isinstance(x, np.ndarray) else x


def _split_request(line: bytes) -> tuple[bytes, Any]:
    """(the id as bytes, the inputs) of one request line.

    Fast path for the harness's own layout, ``{"id":N,"inputs":[...]}``; anything else is
    parsed as JSON, so a hand-written client with spaces works too.
    """
    if line.startswith(_HEAD):
        k = line.find(_INPUTS, 6, 32)
        if k > 6 and line[6:k].isdigit() and line.endswith(b"}"):
            return line[6:k], _loads(line[k + 10:-1])
    req = _loads(line)
    return _dumps(req["id"]).encode(), req["inputs"]


def _answer(rid: bytes, result: Any) -> bytes:
    if isinstance(result, tuple):
        outputs, scores = result
        return b"".join((_HEAD, rid, b',"outputs":', _dumps(_to_list(outputs)).encode(), b',"scores":',
                         _dumps(_to_list(scores)).encode(), b"}\n"))
    return b"".join((_HEAD, rid, b',"outputs":', _dumps(_to_list(result)).encode(), b"}\n"))


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a raw descriptor: a pipe may take a large write in pieces.
    Also used by the harness's side of the protocol (adapters/command.py)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.BytesIO and friends: no descriptor
        return None


def serve(predict: Callable[[Any, np.ndarray], Any], load: Callable[[], Any] | None = None, *,
          stdin=None, stdout=None, as_numpy: bool = True) -> None:
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    model = load() if load is not None else None
    rfd, wfd = _fileno(stdin), _fileno(stdout)
    if rfd is None or wfd is None:  # in-memory streams (tests, embedding): the buffered path
        stdout.write(b'{"ready": true}\n')
        stdout.flush()
        for line in stdin:
            _serve_line(line, predict, model, as_numpy, lambda b: (stdout.write(b), stdout.flush()))
        return
    stdout.flush()  # anything the loader printed goes out before the ready line
    write_all(wfd, b'{"ready": true}\n')
    write = write_all
    pending = b""
    while True:
        chunk = os.read(rfd, _READ_SIZE)
        if not chunk:
            return  # EOF on stdin means exit
        if pending:
            chunk = pending + chunk
        start = 0
        end = chunk.find(b"\n")
        while end >= 0:
            line = chunk[start:end]
            if line.strip():
                rid, inputs = _split_request(line)
                if as_numpy:
                    inputs = np.asarray(inputs, dtype=np.float32)
                write(wfd, _answer(rid, predict(model, inputs)))
            start = end + 1
            end = chunk.find(b"\n", start)
        pending = chunk[start:]


def _serve_line(line: bytes, predict, model, as_numpy: bool, write) -> None:
    line = line.rstrip(b"\r\n")
    if not line.strip():
        return
    rid, inputs = _split_request(line)
    if as_numpy:
        inputs = np.asarray(inputs, dtype=np.float32)
    write(_answer(rid, predict(model, inputs)))


# ---- the streaming extension (the generate scenario, docs/generate.md) --------------------------------
def serve_generate(generate: Callable[..., Any], load: Callable[[], Any] | None = None, *,
                   stdin=None, stdout=None) -> None:
    """Serve the generate scenario: one request at a time, each token streamed as it is made.

        def generate(model, prompt, *, max_new_tokens, ignore_eos):
            for piece in model.stream(prompt, max_new_tokens, ignore_eos):
                yield piece                 # one token's text (or a list of texts: one line, many tokens)

        serve_generate(generate, load)

    A request is ``{"id": N, "inputs": ["<prompt>"], "max_new_tokens": K, "ignore_eos": b}``.
    Each yielded piece goes out at once as ``{"id": N, "token": "<text>"}`` (a list as
    ``"tokens"``); when the generator ends, ``{"id": N, "outputs": ["<text>"], "output_tokens": k}``
    follows. The harness stamps every line on receipt, so a piece must be written when it is
    made, not held back. A submission that batches requests or interleaves them (continuous
    batching) writes the same lines itself; the protocol allows any order across ids.
    """
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    model = load() if load is not None else None
    wfd = _fileno(stdout)
    if wfd is None:
        def write(b: bytes) -> None:
            stdout.write(b)
            stdout.flush()
    else:
        stdout.flush()

        def write(b: bytes) -> None:
            write_all(wfd, b)
    write(b'{"ready": true}\n')
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        req = _loads(line)
        head = b'{"id":' + _dumps(req["id"]).encode()
        pieces: list[str] = []
        for piece in generate(model, req["inputs"][0], max_new_tokens=int(req.get("max_new_tokens", 16)),
                              ignore_eos=bool(req.get("ignore_eos", False))):
            if isinstance(piece, (list, tuple)):
                write(head + b',"tokens":' + _dumps(list(piece)).encode() + b"}\n")
                pieces.extend(piece)
            else:
                write(head + b',"token":' + _dumps(piece).encode() + b"}\n")
                pieces.append(piece)
        write(head + b',"outputs":' + _dumps(["".join(pieces)]).encode() + b',"output_tokens":%d}\n' % len(pieces))
