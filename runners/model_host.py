"""The model process: ``python -m heptathlon.runners.model_host RFD WFD``, started sandboxed.

It is the only process that runs a submission's code (its module, its TorchScript archive,
the runtimes derived from it). The measuring worker starts it through ``sandbox_command``
with a copy of the submission as its working directory and talks to it over two pipes it
owns (``heptathlon.runners.model_channel``): the first frame is the init message (manifest,
profile, context), the answer is READY once the real adapter (``registry.make_adapter``) has
loaded. Then it serves PREDICT frames on its slots and CALL control messages (describe,
derive, decompose) until CLOSE or EOF. Its stdout is redirected to stderr at start, so a
submission's prints go to the run's log and never onto the channel.

Everything measured here (the profiler's framework-tax decomposition) is labelled
``measured_in: model-process``; every latency is timed by the worker, on its clock.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import sys
import traceback
from typing import Any

import numpy as np
from heptathlon.runners import model_channel as ch


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:  # noqa: BLE001, S110 - bwrap's --die-with-parent and the worker's kill remain
        pass


def to_numpy(raw: Any) -> np.ndarray:
    """A model's raw output as an array that can travel (float32 or int64)."""
    if isinstance(raw, (list, tuple)) and raw:  # ONNX Runtime's list of outputs: the first is the answer
        raw = raw[0]
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(raw, torch.Tensor):
        if raw.dtype is torch.float32 and raw.is_cpu:  # the common answer: no conversion, no copy
            return raw.detach().numpy()
        t = raw.detach()
        t = t.long() if not (t.is_floating_point() or t.is_complex()) else t.float()
        return t.cpu().numpy()
    arr = np.asarray(raw)
    if arr.dtype.kind in "biu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    raise TypeError(f"model output of type {type(raw).__name__} ({arr.dtype}) is not a numeric array")


class NullAdapter:
    """A model that does nothing (for benchmarks/harness_overhead.py and tests): labels 0."""

    name, profiler, derivable, device = "null", "command", (), "cpu"

    def __init__(self, *args, **kwargs) -> None:
        self.records: dict[str, Any] = {}
        self._out: dict[int, np.ndarray] = {}

    def load(self) -> None:
        pass

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        return batch

    def predict(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        out = self._out.get(n)
        if out is None:
            out = self._out[n] = np.zeros(n, dtype=np.int64)
        return out

    def describe(self) -> dict[str, Any]:
        return {"runtime": "null", "runtime_version": None, "params": None, "params_note": "null model"}

    def close(self) -> None:
        pass


class Host:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.adapter: Any = None
        self.slots: list[Any] = []
        self.tensor_slots: set[int] = set()
        self.thread_record: dict[str, Any] | None = None

    # ---- frames -----------------------------------------------------------------------------------
    def read_frame(self) -> tuple[tuple, bytes] | None:
        first = os.read(self.rfd, 1 << 16)
        if not first:
            return None
        head = ch.FRAME.unpack(ch.read_exact(self.rfd, ch.HEADER, first))
        body = ch.read_exact(self.rfd, head[-1], first[ch.HEADER:]) if head[-1] else b""
        return head, body

    def send_json(self, kind: int, obj: Any) -> None:
        ch.write_all(self.wfd, ch.json_frame(kind, obj))

    def send_error(self, exc: BaseException) -> None:
        traceback.print_exc(file=sys.stderr)
        from heptathlon.bench.errors import one_line

        self.send_json(ch.ERROR, {"type": type(exc).__name__, "error": ch.safe_text(one_line(exc), 2000)})

    # ---- start-up ---------------------------------------------------------------------------------
    def init(self, msg: dict[str, Any]) -> dict[str, Any]:
        from pathlib import Path

        from heptathlon.bench.manifest import Manifest
        from heptathlon.bench.profile import Profile

        manifest = Manifest.model_validate(msg["manifest"]) if msg.get("manifest") else None
        profile = Profile.model_validate(msg["profile"]) if msg.get("profile") else None
        ref = msg.get("adapter")
        if ref:  # a harness adapter by reference (the null model); never a submission's
            module, _, name = ref.partition(":")
            if not module.startswith("heptathlon."):
                raise ValueError(f"adapter {ref!r} is not a heptathlon adapter")
            cls = getattr(importlib.import_module(module), name)
            self.adapter = cls(manifest, Path.cwd(), profile, msg.get("context") or {})
        else:
            from heptathlon.runners.adapters import make_adapter

            self.adapter = make_adapter(manifest, Path.cwd(), profile, msg.get("context") or {})
        self.profile = profile
        self.adapter.load()
        self.slots = [self.adapter]
        a = self.adapter
        return {"name": a.name, "profiler": a.profiler, "device": a.device, "derivable": list(a.derivable),
                "details": getattr(a, "details", {}) or {}}

    # ---- control messages -------------------------------------------------------------------------
    def call(self, msg: dict[str, Any]) -> Any:
        what = msg.get("call")
        if what == "describe":
            return {"describe": self.adapter.describe(), "records": self.adapter.records}
        if what == "derive":
            return self._derive(msg)
        if what == "decompose":
            return self._decompose(msg)
        raise ValueError(f"unknown control message {what!r}")

    def _derive(self, msg: dict[str, Any]) -> dict[str, Any]:
        from heptathlon.runners.sweep import _thread_record, derived_runtimes

        example = np.asarray(msg["example"], dtype=np.float32)

        def make_np(b: int) -> np.ndarray:
            return np.ascontiguousarray(np.resize(example, (b, *example.shape[1:])), dtype=np.float32)

        derived, _ = derived_runtimes(self.adapter, self.profile, tuple(msg["include"]), make_np,
                                      compile_budget_s=float(msg["compile_budget_s"]))
        out = {}
        for name, rt in derived.items():
            slot = len(self.slots)
            self.slots.append(rt)
            self.tensor_slots.add(slot)
            out[name] = {"slot": slot, "available": bool(rt.available), "reason": rt.reason, "device": rt.device,
                         "convert_s": rt.convert_s, "profiler": rt.profiler, "details": rt.details or {}}
        self.thread_record = _thread_record(self.profile, {"primary": self.adapter, **derived})
        return {"runtimes": out, "threads": self.thread_record}

    def _decompose(self, msg: dict[str, Any]) -> dict[str, Any]:
        from heptathlon.runners.profiling import decompose_call

        slot = int(msg["slot"])
        rt = self.slots[slot]
        batch = self._input(slot, np.asarray(msg["batch"], dtype=np.float32))
        d = decompose_call(rt, batch, repeats=int(msg["repeats"]), warmup=int(msg["warmup"]))
        return {"method": d.method, "wall_s": list(map(float, d.wall_s)), "compute_s": list(map(float, d.compute_s)),
                "reason": d.reason, "details": {**(d.details or {}), "measured_in": "model-process"}}

    def _input(self, slot: int, x: np.ndarray) -> Any:
        if slot in self.tensor_slots:  # derived runtimes take a tensor on the submission's device and dtype
            import torch

            return torch.from_numpy(x).to(self.adapter.device, self.adapter.input_dtype)
        return x

    # ---- the serving loop -------------------------------------------------------------------------
    def serve(self) -> int:
        rfd, wfd, frame, slots, tensor_slots = self.rfd, self.wfd, ch.FRAME, self.slots, self.tensor_slots
        dtypes, codes = ch.DTYPES, {np.dtype(k): v for k, v in ch.DTYPE_CODES.items() if np.dtype(k).isnative}
        while True:
            first = os.read(rfd, 1 << 16)
            if not first:
                return 0
            kind, slot, dt, nd, rid, d0, d1, d2, d3, nbytes = frame.unpack(ch.read_exact(rfd, ch.HEADER, first))
            body = first[ch.HEADER:] if len(first) == ch.HEADER + nbytes else ch.read_exact(rfd, nbytes, first[ch.HEADER:])
            if kind == ch.PREDICT:
                try:
                    x = np.frombuffer(bytearray(body), dtype=dtypes[dt]).reshape((d0, d1, d2, d3)[:nd])
                    rt = slots[slot]
                    if slot in tensor_slots:
                        out = rt.predict(rt.prepare(self._input(slot, x)))
                    else:
                        out = rt.predict(rt.prepare(x))
                    arr = to_numpy(out)
                    code = codes.get(arr.dtype)
                    if code is not None and 1 <= arr.ndim <= 2 and arr.size and arr.flags.c_contiguous:  # fast path
                        shape = arr.shape
                        head = frame.pack(ch.ARRAY, slot, code, arr.ndim, rid, shape[0],
                                          shape[1] if arr.ndim == 2 else 0, 0, 0, arr.nbytes)
                        payload = memoryview(arr).cast("B")
                    else:
                        head, payload = ch.array_frame(ch.ARRAY, slot, rid, arr)
                except Exception as exc:  # noqa: BLE001 - the model's failure is the answer
                    self.send_error(exc)
                    continue
                ch.write_all(wfd, head, payload)
            elif kind == ch.CALL:
                try:
                    answer = self.call(json.loads(body))
                except Exception as exc:  # noqa: BLE001
                    self.send_error(exc)
                    continue
                self.send_json(ch.JSON, answer)
            elif kind == ch.CLOSE:
                try:
                    self.adapter.close()
                except Exception:  # noqa: BLE001 - the worker is done with it either way
                    traceback.print_exc(file=sys.stderr)
                return 0
            else:
                print(f"model_host: unknown frame kind {kind}", file=sys.stderr)
                return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _die_with_parent()
    rfd, wfd = int(argv[0]), int(argv[1])
    os.dup2(2, 1)  # the submission's prints go to the log, never onto the channel
    sys.stdout = sys.stderr
    host = Host(rfd, wfd)
    got = host.read_frame()
    if got is None:
        return 0
    (kind, *_), body = got
    try:
        if kind != ch.CALL:
            raise ValueError(f"first frame must be the init message, got kind {kind}")
        ready = host.init(json.loads(body))
    except BaseException as exc:  # noqa: BLE001 - a failed load is reported, with its traceback on stderr
        host.send_error(exc)
        return 3
    host.send_json(ch.READY, ready)
    return host.serve()


if __name__ == "__main__":
    sys.exit(main())
