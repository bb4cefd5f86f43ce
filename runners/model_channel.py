"""The channel between the measuring worker and a sandboxed model process (docs/security.md).

Two pipes the harness creates and owns, one each way. Every frame is a fixed 32-byte header
(``FRAME``) and a payload of ``nbytes``:

    kind u8 | slot u8 | dtype u8 | ndim u8 | rid u32 | dim0..dim3 u32 | nbytes u64

- requests (worker -> model): ``PREDICT`` (payload: the raw C-order bytes of a ``dtype``
  array of shape ``dims[:ndim]``, run on runtime ``slot``: 0 is the submission, 1.. are the
  runtimes derived for the batch_sweep), ``CALL`` (payload: one JSON object, a control
  message) and ``CLOSE``;
- answers (model -> worker): ``ARRAY`` (same layout as a request), ``JSON``, ``ERROR`` (a
  JSON object ``{"type", "error"}``) and ``READY``.

Nothing on the channel is ever unpickled: arrays are raw bytes whose dtype comes from a fixed
table and whose size must equal its shape's; JSON is size-capped and type-checked by the
caller. ``rid`` on a PREDICT is a random 32-bit token per request, which the answer must
echo: a model cannot answer a request before it has read it.

This module is imported by both sides; it imports numpy only.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
from typing import Any

import numpy as np

FRAME = struct.Struct("<BBBBI4IQ")
HEADER = FRAME.size  # 32
MAX_NDIM = 4

# request kinds
PREDICT, CALL, CLOSE = 1, 2, 3
# answer kinds
ARRAY, JSON, ERROR, READY = 11, 12, 13, 14
KIND_NAMES = {PREDICT: "PREDICT", CALL: "CALL", CLOSE: "CLOSE", ARRAY: "ARRAY", JSON: "JSON", ERROR: "ERROR",
              READY: "READY"}

# dtype code <-> numpy dtype: the only element types that travel.
DTYPES = {1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<f2"), 4: np.dtype("<i8"), 5: np.dtype("<i4")}
DTYPE_CODES = {v: k for k, v in DTYPES.items()}

MAX_JSON_BYTES = 16 << 20  # a control answer (describe, records, a decomposition)
MAX_ARRAY_BYTES = 256 << 20  # one answer array
MAX_ERROR_CHARS = 400


class ChannelError(Exception):
    """The other side broke the protocol or went away; the message is one line."""


def dtype_code(dtype: np.dtype) -> int:
    code = DTYPE_CODES.get(np.dtype(dtype).newbyteorder("<"))
    if code is None:
        raise ChannelError(f"dtype {np.dtype(dtype)} cannot travel on the model channel "
                           f"(allowed: {', '.join(str(d) for d in DTYPES.values())})")
    return code


def array_frame(kind: int, slot: int, rid: int, arr: np.ndarray) -> tuple[bytes, memoryview]:
    """(header, payload) for an array; the payload is a view of a C-contiguous copy when needed."""
    a = np.ascontiguousarray(arr)
    if a.ndim < 1 or a.ndim > MAX_NDIM:
        raise ChannelError(f"an array of {a.ndim} dimensions cannot travel (1..{MAX_NDIM})")
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    dims = list(a.shape) + [0] * (MAX_NDIM - a.ndim)
    head = FRAME.pack(kind, slot, dtype_code(a.dtype), a.ndim, rid, *dims, a.nbytes)
    return head, memoryview(a).cast("B")


def json_frame(kind: int, obj: Any, rid: int = 0) -> bytes:
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_jsonable).encode()
    return FRAME.pack(kind, 0, 0, 0, rid, 0, 0, 0, 0, len(body)) + body


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_all(fd: int, *parts: bytes | memoryview) -> None:
    """Write every byte of ``parts`` (one writev in the common case)."""
    total = sum(len(p) for p in parts)
    sent = os.writev(fd, parts)
    if sent < total:
        rest = b"".join(bytes(p) for p in parts)[sent:]
        while rest:
            rest = rest[os.write(fd, rest):]


def read_exact(fd: int, n: int, first: bytes = b"") -> bytes:
    """``n`` bytes from ``fd`` (starting with ``first`` already read); ChannelError at EOF."""
    if len(first) >= n:
        return first[:n]
    buf = bytearray(n)
    buf[:len(first)] = first
    view = memoryview(buf)
    got = len(first)
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            raise ChannelError(f"the channel closed after {got} of {n} bytes")
        got += k
    return bytes(buf)


def safe_text(raw: Any, limit: int = MAX_ERROR_CHARS) -> str:
    """Text from the model process, made one printable line and capped."""
    s = raw if isinstance(raw, str) else str(raw)
    s = "".join(ch if ch.isprintable() else " " for ch in s)
    s = " ".join(s.split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def kill_process_tree(proc: subprocess.Popen | None, grace_s: float = 0.0) -> None:
    """Stop a model process we started (and, through its sandbox, everything under it)."""
    if proc is None or proc.poll() is not None:
        return
    if grace_s > 0:
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            pass
    try:
        proc.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not block
        pass


# Model processes this worker has started and not yet stopped; the worker kills what is left
# on every exit path (``stop_all``), besides bwrap's --die-with-parent.
_LIVE: dict[int, tuple[subprocess.Popen, dict | None]] = {}


def register(proc: subprocess.Popen, sandbox_record: dict | None) -> None:
    _LIVE[proc.pid] = (proc, sandbox_record)


def unregister(proc: subprocess.Popen) -> None:
    _LIVE.pop(proc.pid, None)


def stop_all() -> int:
    """Kill every model process still registered and remove its sandbox copy; how many were live."""
    from heptathlon.runners.sandbox import cleanup_sandbox

    n = 0
    for pid in list(_LIVE):
        proc, record = _LIVE.pop(pid)
        if proc.poll() is None:
            n += 1
        kill_process_tree(proc)
        if record:
            cleanup_sandbox(record)
    return n
