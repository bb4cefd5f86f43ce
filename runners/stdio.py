"""A tiny helper for authors of ``kind: command`` submissions (the stdio protocol, DESIGN.md).

    from runners.stdio import serve

    def load():
        return MyModel()

    def predict(model, inputs):          # inputs: float32 numpy array, one row per instance
        return model.predict(inputs)     # labels, or (labels, per-class scores)

    serve(predict, load)

The helper prints ``{"ready": true}`` after ``load`` returns, then answers one line per
request with the same id and as many outputs as inputs. EOF on stdin means exit.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import numpy as np

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads


def _to_list(x: Any) -> Any:
    return x.tolist() if isinstance(x, np.ndarray) else x


def serve(predict: Callable[[Any, np.ndarray], Any], load: Callable[[], Any] | None = None, *,
          stdin=None, stdout=None, as_numpy: bool = True) -> None:
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    model = load() if load is not None else None
    stdout.write(b'{"ready": true}\n')
    stdout.flush()
    for line in stdin:
        if not line.strip():
            continue
        req = _loads(line)
        inputs = req["inputs"]
        if as_numpy:
            inputs = np.asarray(inputs, dtype=np.float32)
        result = predict(model, inputs)
        if isinstance(result, tuple):
            outputs, scores = result
            answer = {"id": req["id"], "outputs": _to_list(outputs), "scores": _to_list(scores)}
        else:
            answer = {"id": req["id"], "outputs": _to_list(result)}
        stdout.write(_dumps(answer).encode() + b"\n")
        stdout.flush()
