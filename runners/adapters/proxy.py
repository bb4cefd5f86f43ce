"""``ProxyAdapter``: a submission that carries code, run in a sandboxed model process.

The measuring worker never imports a torch submission's module or loads its TorchScript
archive; it starts ``python -m heptathlon.runners.model_host`` through ``sandbox_command``
(a copy of the submission, no run directory, the run's cgroup and pinned cores inherited)
and drives it over ``heptathlon.runners.model_channel``:

- ``prepare`` serialises a batch into a request frame, outside timing;
- ``predict`` writes the frame and reads the answer: what the loadgen loops time, on the
  worker's clock. Each request carries a random token the answer must echo, and the answer's
  header is checked in full (kind, token, dtype, shape, size) before it is accepted;
- ``postprocess`` decodes the raw bytes (never a pickle) and applies the usual labels/scores rule.

A header that breaks the protocol fails the run with one line naming the submission and the
request. Runtimes the batch_sweep derives are built inside the model process by a ``derive``
control message and driven as ``RemoteRuntime`` slots on the same channel.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from heptathlon.bench.errors import ModelError, RunError
from heptathlon.runners import model_channel as ch
from heptathlon.runners.adapters.base import ModelAdapter

HOST_MODULE = "heptathlon.runners.model_host"
_TOKENS = 1 << 16
_READ = 1 << 16
_RID = struct.Struct("<I")  # the token, packed into a prepared header at offset 4


class ProxyAdapter(ModelAdapter):
    """The ModelAdapter interface over a model process; ``name``/``profiler``/``device`` are the real adapter's."""

    name = "proxy"
    profiler = "command"

    def __init__(self, manifest, folder, profile, context=None, *, host_argv: list[str] | None = None,
                 sandbox: bool = True) -> None:
        super().__init__(manifest, Path(folder) if folder is not None else None, profile, context)
        self.label = f"submission {manifest.name!r}" if manifest is not None else "model process"
        self.host_argv = host_argv  # tests: a stand-in model process (it gets the two fds appended)
        self.use_sandbox = sandbox
        self.proc: subprocess.Popen | None = None
        self.sandbox: dict[str, Any] | None = None
        self._seq = 0
        self._tokens = [int(t) for t in np.frombuffer(secrets.token_bytes(4 * _TOKENS), dtype="<u4") | 1]
        self.max_answer_bytes = ch.MAX_ARRAY_BYTES
        self.derivable: tuple[str, ...] = ()
        self._broken: str | None = None  # the protocol violation that closed the channel
        self.remote_threads: dict[str, Any] | None = None  # the sweep's thread record, from the model process

    # ---- life cycle -------------------------------------------------------------------------------
    def load(self) -> None:
        from heptathlon.runners.controls import CGROUP_ENV, control_env
        from heptathlon.runners.sandbox import sandbox_command

        to_host_r, self._wfd = os.pipe()
        self._rfd, from_host_w = os.pipe()
        argv = (list(self.host_argv) if self.host_argv else [sys.executable, "-m", HOST_MODULE])
        argv += [str(to_host_r), str(from_host_w)]
        extra = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        if self.profile is not None:
            extra.update(control_env(self.profile))
        if os.environ.get(CGROUP_ENV):
            extra[CGROUP_ENV] = os.environ[CGROUP_ENV]
        try:
            argv, env, self.sandbox = sandbox_command(
                argv, self.folder, extra_env=extra, hide=list(self.context.get("sandbox_hide") or []),
                mechanism="auto" if self.use_sandbox else "none",
                require=bool(self.profile and self.profile.require_sandbox),
                profile_name=self.profile.name if self.profile else None)
            self.proc = subprocess.Popen(argv, cwd=self.sandbox["workdir"], stdin=subprocess.DEVNULL,
                                         stdout=sys.stderr.fileno(), env=env, pass_fds=(to_host_r, from_host_w))
        except Exception:
            for fd in (to_host_r, from_host_w, self._wfd, self._rfd):
                os.close(fd)
            raise
        finally:
            if self.proc is not None:
                os.close(to_host_r)
                os.close(from_host_w)
        ch.register(self.proc, self.sandbox)
        self.records["sandbox"] = {k: self.sandbox.get(k) for k in ("active", "mechanism", "isolation", "env_dropped")}
        init = {"manifest": self.manifest.model_dump(mode="json") if self.manifest is not None else None,
                "profile": self.profile.model_dump(mode="json") if self.profile is not None else None,
                "context": {k: v for k, v in self.context.items() if k in ("host_context",)},
                "adapter": self.context.get("host_adapter")}
        ready = self._control(init, kind=ch.CALL, expect=ch.READY, what="loading the model")
        self.name = _str(ready.get("name"), "name", self)
        self.profiler = _str(ready.get("profiler"), "profiler", self)
        self.device = _str(ready.get("device"), "device", self)
        from heptathlon.runners.adapters.registry import RUNTIMES

        derivable = ready.get("derivable") or []
        if not isinstance(derivable, list) or any(r not in RUNTIMES for r in derivable):
            self._violation("the ready message", f"derivable {derivable!r} is not a list of known runtimes")
        self.derivable = tuple(derivable)
        self.details = {"how": f"the submitted {self.manifest.model.kind if self.manifest else 'model'} model, "
                               "in a sandboxed model process (timed by the worker over its channel)"}

    def close(self) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                ch.write_all(self._wfd, ch.FRAME.pack(ch.CLOSE, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        except OSError:
            pass
        ch.kill_process_tree(proc, grace_s=5.0)
        for fd in (self._wfd, self._rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wfd = self._rfd = -1  # never a number the process may reuse for another file
        ch.unregister(proc)
        from heptathlon.runners.sandbox import cleanup_sandbox

        if self.sandbox:
            cleanup_sandbox(self.sandbox)
        self.proc = None

    # ---- the timed path ---------------------------------------------------------------------------
    def prepare(self, batch: np.ndarray, slot: int = 0) -> Any:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        head, payload = ch.array_frame(ch.PREDICT, slot, 0, x)
        return bytearray(head), payload, len(x)

    def predict(self, prepared: Any) -> Any:
        head, payload, n = prepared
        self._seq = seq = self._seq + 1
        token = self._tokens[seq & (_TOKENS - 1)]
        _RID.pack_into(head, 4, token)
        try:
            ch.write_all(self._wfd, head, payload)
        except BrokenPipeError:
            raise RunError(f"{self.label}: model process exited with code {self._exit_code()} "
                           f"before request {seq} was sent") from None
        data = os.read(self._rfd, _READ)
        if len(data) < ch.HEADER:
            if not data:
                raise RunError(f"{self.label}: model process exited with code {self._exit_code()} "
                               f"while answering request {seq}")
            data = self._read_more(data, ch.HEADER, seq)
        kind, _slot, dt, nd, rid, d0, d1, _d2, _d3, nbytes = ch.FRAME.unpack_from(data)
        if kind != ch.ARRAY or rid != token:
            self._bad_answer(kind, rid, token, data, seq)
        dtype = ch.DTYPES.get(dt)
        if dtype is None or nd < 1 or nd > 2 or d0 != n or nbytes > self.max_answer_bytes \
                or nbytes != d0 * (d1 if nd == 2 else 1) * dtype.itemsize:
            self._violation(f"answer to request {seq}", _header_problem(dt, nd, d0, d1, nbytes, n,
                                                                        self.max_answer_bytes))
        need = ch.HEADER + nbytes
        if len(data) != need:
            if len(data) > need:
                self._violation(f"answer to request {seq}", f"{len(data) - need} bytes follow the answer "
                                                              "(an answer sent before its request?)")
            data = self._read_more(data, need, seq)
        return data

    def postprocess(self, raw: Any, n: int):
        _k, _s, dt, nd, _r, d0, d1, _d2, _d3, nbytes = ch.FRAME.unpack_from(raw)
        shape = (d0,) if nd == 1 else (d0, d1)
        arr = np.frombuffer(raw, dtype=ch.DTYPES[dt], count=nbytes // ch.DTYPES[dt].itemsize,
                            offset=ch.HEADER).reshape(shape)
        return super().postprocess(arr, n)

    # ---- control messages ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        got = self._control({"call": "describe"})
        describe, records = got.get("describe"), got.get("records")
        if not isinstance(describe, dict) or not isinstance(records, dict):
            self._violation("the describe answer", "describe and records must be JSON objects")
        self.records.update({k: v for k, v in records.items() if k != "sandbox"})
        return {**describe, "measured_in": "model-process"}

    def derive_remote(self, include: list[str], example: np.ndarray, compile_budget_s: float
                      ) -> tuple[dict[str, ModelAdapter], dict[str, Any]]:
        """The runtimes ``include`` derived inside the model process, as RemoteRuntime slots; and its thread record."""
        got = self._control({"call": "derive", "include": list(include), "example": np.asarray(example).tolist(),
                             "compile_budget_s": compile_budget_s})
        runtimes = got.get("runtimes")
        if not isinstance(runtimes, dict) or set(runtimes) - set(include):
            self._violation("the derive answer", f"runtimes {sorted(runtimes or {})} were not asked for")
        out = {name: RemoteRuntime(self, name, meta) for name, meta in runtimes.items()}
        threads = got.get("threads") if isinstance(got.get("threads"), dict) else {}
        return out, {**threads, "measured_in": "model-process"}

    def decompose_remote(self, batch: np.ndarray, repeats: int, warmup: int, slot: int = 0):
        from heptathlon.runners.profiling import Decomposition

        got = self._control({"call": "decompose", "slot": slot, "batch": np.asarray(batch).tolist(),
                             "repeats": repeats, "warmup": warmup})
        wall, comp = got.get("wall_s"), got.get("compute_s")
        if not (isinstance(wall, list) and isinstance(comp, list) and len(wall) == len(comp)
                and all(isinstance(v, (int, float)) and np.isfinite(v) for v in wall + comp)):
            self._violation("the decompose answer", "wall_s and compute_s must be equal-length lists of finite numbers")
        details = got.get("details") if isinstance(got.get("details"), dict) else {}
        reason = got.get("reason")
        return Decomposition(method=ch.safe_text(got.get("method") or "unavailable", 80), wall_s=tuple(wall),
                             compute_s=tuple(comp), reason=None if reason is None else ch.safe_text(reason),
                             details={**details, "measured_in": "model-process"})

    def _control(self, obj: dict[str, Any], *, kind: int = ch.CALL, expect: int = ch.JSON,
                 what: str | None = None) -> dict[str, Any]:
        what = what or f"control message {obj.get('call')!r}"
        if self._broken:
            raise RunError(self._broken)
        try:
            ch.write_all(self._wfd, ch.json_frame(kind, obj))
        except BrokenPipeError:
            raise RunError(f"{self.label}: model process exited with code {self._exit_code()} "
                           f"before {what}") from None
        try:
            head = ch.read_exact(self._rfd, ch.HEADER)
        except ch.ChannelError:
            raise RunError(f"{self.label}: model process exited with code {self._exit_code()} during {what}") from None
        k, _s, _dt, _nd, _rid, *_dims, nbytes = ch.FRAME.unpack(head)
        if k not in (expect, ch.ERROR):
            self._violation(f"the answer to {what}", f"frame kind {k} where {ch.KIND_NAMES[expect]} was expected")
        if nbytes > ch.MAX_JSON_BYTES:
            self._violation(f"the answer to {what}", f"{nbytes} bytes of JSON (at most {ch.MAX_JSON_BYTES})")
        try:
            body = ch.read_exact(self._rfd, nbytes)
        except ch.ChannelError:
            raise RunError(f"{self.label}: model process exited with code {self._exit_code()} during {what}") from None
        try:
            msg = json.loads(body)
        except ValueError:
            self._violation(f"the answer to {what}", "it is not valid JSON")
        if not isinstance(msg, dict):
            self._violation(f"the answer to {what}", "it is not a JSON object")
        if k == ch.ERROR:
            raise ModelError(f"{self.label}: {what} failed in the model process: "
                             f"{ch.safe_text(msg.get('type'), 60)}: {ch.safe_text(msg.get('error'), 1000)}")
        return msg

    # ---- failures -----------------------------------------------------------------------------------
    def _read_more(self, data: bytes, need: int, seq: int) -> bytes:
        try:
            return ch.read_exact(self._rfd, need, data)
        except ch.ChannelError as e:
            raise RunError(f"{self.label}: model process exited with code {self._exit_code()} while answering "
                           f"request {seq} ({e})") from None

    def _bad_answer(self, kind: int, rid: int, token: int, data: bytes, seq: int) -> None:
        if kind == ch.ERROR:
            nbytes = ch.FRAME.unpack_from(data)[-1]
            if nbytes <= ch.MAX_JSON_BYTES:
                try:
                    msg = json.loads(self._read_more(data, ch.HEADER + nbytes, seq)[ch.HEADER:])
                except ValueError:
                    msg = None
                if isinstance(msg, dict):
                    raise ModelError(f"{self.label}: request {seq}: the model raised "
                                     f"{ch.safe_text(msg.get('type'), 60)}: {ch.safe_text(msg.get('error'))}")
            self._violation(f"answer to request {seq}", "a malformed error frame")
        if kind != ch.ARRAY:
            self._violation(f"answer to request {seq}", f"frame kind {kind} where ARRAY was expected")
        self._violation(f"answer to request {seq}", "it does not carry its request's token "
                                                    "(an answer sent before its request arrived?)")

    def _violation(self, where: str, what: str) -> None:
        # Sticky: a caller that catches errors (the batch sweep stops at a failing size) still
        # fails the run at the next control message (describe, always called).
        self._broken = f"{self.label}: model process broke the channel protocol: {where}: {what}"
        self.close()  # a channel out of step cannot be trusted for another frame
        raise RunError(self._broken)

    def _exit_code(self) -> int | str:
        if self.proc is None:
            return "?"
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "? (still running)"


class RemoteRuntime(ModelAdapter):
    """A runtime derived inside the model process (batch_sweep), driven over the proxy's channel."""

    def __init__(self, proxy: ProxyAdapter, name: str, meta: Any) -> None:
        super().__init__(None, None, None)
        if not isinstance(meta, dict) or not isinstance(meta.get("slot"), int) or meta["slot"] < 1 or meta["slot"] > 255:
            proxy._violation("the derive answer", f"runtime {name!r} has no valid slot")
        self.proxy, self.slot, self.name = proxy, meta["slot"], name
        self.available = bool(meta.get("available"))
        self.reason = None if meta.get("reason") is None else ch.safe_text(meta["reason"])
        self.device = ch.safe_text(meta.get("device") or "cpu", 40)
        self.profiler = ch.safe_text(meta.get("profiler") or "torch", 40)
        cs = meta.get("convert_s")
        self.convert_s = float(cs) if isinstance(cs, (int, float)) and np.isfinite(cs) else None
        self.details = meta.get("details") if isinstance(meta.get("details"), dict) else {}
        self.predict = proxy.predict  # the slot travels in the prepared frame

    def load(self) -> None:
        pass

    def prepare(self, batch: np.ndarray) -> Any:
        return self.proxy.prepare(batch, slot=self.slot)

    def predict(self, prepared: Any) -> Any:  # replaced by the proxy's in __init__
        return self.proxy.predict(prepared)

    def postprocess(self, raw: Any, n: int):
        return self.proxy.postprocess(raw, n)

    def decompose_remote(self, batch: np.ndarray, repeats: int, warmup: int):
        return self.proxy.decompose_remote(batch, repeats, warmup, slot=self.slot)

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, **self.details, "measured_in": "model-process"}


def _str(v: Any, field: str, proxy: ProxyAdapter) -> str:
    if not isinstance(v, str) or not v or len(v) > 80:
        proxy._violation("the ready message", f"field {field!r} must be a short string")
    return v


def _header_problem(dt: int, nd: int, d0: int, d1: int, nbytes: int, n: int, cap: int) -> str:
    if dt not in ch.DTYPES:
        return f"dtype code {dt} is not one of {sorted(ch.DTYPES)}"
    if nd < 1 or nd > 2:
        return f"{nd} dimensions (expected 1: labels, or 2: scores)"
    if d0 != n:
        return f"{d0} rows for a batch of {n}"
    if nbytes > cap:
        return f"{nbytes} bytes (at most {cap})"
    return f"{nbytes} bytes do not match shape {(d0,) if nd == 1 else (d0, d1)} of {ch.DTYPES[dt]}"

