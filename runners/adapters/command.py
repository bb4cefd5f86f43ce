"""The stdio protocol adapter (``kind: command``): one JSON line per request, one per answer.

The round trip is on the timed path, so it is kept to what the protocol needs: the request's
payload is encoded once before timing, the envelope's id is written with it in one
``os.writev`` on the raw pipe, and answers are read with ``os.read`` into a small line buffer
of our own (no Python buffering layer). Answers are still parsed and checked as JSON.

What a submission writes is bounded and checked (DESIGN.md, "Stdio protocol"):
- answer bytes already waiting before request N is written fail the run ("answer to request
  N arrived before the request was sent"): one zero-timeout ``poll`` on the pipe just before
  each write, and a look at our own line buffer;
- ignored (non-protocol) stdout lines are capped per run, in lines and in bytes, and so is
  the length of any one line, so a flood can neither grow the harness's memory nor go on
  for ever;
- ``postprocess`` hands the answer on as the model wrote it (lists, not coerced): the worker
  validates it at the boundary (``heptathlon.runners.answers``).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from heptathlon.bench.errors import RunError
from heptathlon.runners.adapters.base import ModelAdapter
from heptathlon.runners.controls import thread_env
from heptathlon.runners.stdio import write_all

_PYTHONS = {"python", "python3", sys.executable}
MAX_IGNORED_LINES = 1000  # ignored (non-protocol) stdout lines per run, load included
MAX_IGNORED_BYTES = 1 << 20  # and their bytes (1 MiB)
MAX_LINE_BYTES = 16 << 20  # any one stdout line, an answer included (16 MiB)


class _LineTooLong(Exception):
    pass


def command_env(profile, workdir) -> dict[str, str]:
    """A scrubbed environment: no database URL, no credentials, only what a model needs."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir),
           "LANG": os.environ.get("LANG", "C.UTF-8"), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(thread_env(profile))
    return env


class CommandAdapter(ModelAdapter):
    """``kind: command``: a process speaking the stdio protocol. No profiler sees inside it."""

    name = "command"
    profiler = "command"

    def load(self) -> None:
        self.details = {"how": "the submitted command, over the stdio protocol"}
        argv = list(self.manifest.model.command)
        self._environment = self.context.get("environment") or {}
        if argv[0] in _PYTHONS:  # the submission's own environment, else the harness's interpreter and packages
            argv[0] = self._environment.get("python") or sys.executable
        self.argv = argv
        self.ignored_lines = 0
        self.ignored_bytes = 0
        self._next_id = 0
        self._start(argv)
        self._w = self.proc.stdin
        self._wfd = self._w.fileno()
        self._r = _LineReader(self.proc.stdout.fileno())
        poller = select.poll()
        poller.register(self._r.fd, select.POLLIN)
        self._poll = poller.poll
        while True:
            try:
                line = self._r.readline()
            except _LineTooLong:
                raise RunError(self._too_long("before printing {\"ready\": true}")) from None
            if not line:
                code = self.proc.wait()
                raise RunError(f"submission {self.manifest.name!r}: command exited with code {code} "
                               'before printing {"ready": true}')
            try:
                msg = json.loads(line)
            except ValueError:
                self._ignore(line)
                continue
            if isinstance(msg, dict) and msg.get("ready") is True:
                return
            self._ignore(line)

    def _ignore(self, line: bytes) -> None:
        """Count an ignored stdout line; past the caps the run fails."""
        self.ignored_lines += 1
        self.ignored_bytes += len(line)
        if self.ignored_lines > MAX_IGNORED_LINES or self.ignored_bytes > MAX_IGNORED_BYTES:
            raise RunError(f"submission {self.manifest.name!r}: more than {MAX_IGNORED_LINES} lines or "
                           f"{MAX_IGNORED_BYTES >> 20} MiB of ignored (non-protocol) stdout; that is the cap per run "
                           "(write logs to stderr)")

    def _too_long(self, when: str) -> str:
        return (f"submission {self.manifest.name!r}: a stdout line longer than {MAX_LINE_BYTES >> 20} MiB {when}; "
                "that is the cap on one line")

    def _before_request(self, rid: int) -> None:
        """Bytes were waiting before request ``rid`` was written (the rare path): a protocol line
        (one starting with '{') is an answer to a request not yet sent and fails the run; other
        whole lines are ignored and counted, a partial one is left for the next read."""
        r = self._r
        if self._poll(0):
            chunk = os.read(r.fd, r.size)  # does not block: poll said readable (or hung up: b"")
            r.buf += chunk
        while r.buf:
            if r.buf[:1] == b"{":
                raise RunError(f"submission {self.manifest.name!r}: answer to request {rid} arrived before "
                               "the request was sent")
            i = r.buf.find(b"\n")
            if i < 0:
                if len(r.buf) > MAX_LINE_BYTES:
                    raise RunError(self._too_long(f"before request {rid}"))
                return
            line, r.buf = r.buf[:i + 1], r.buf[i + 1:]
            self._ignore(line)

    def _start(self, argv: list[str]) -> None:
        """Start the submitted process in the sandbox, in its own copy of the folder (the
        measuring worker itself is not sandboxed); ``command_env`` in the context (the
        harness-overhead benchmark) runs it unsandboxed with that environment."""
        from heptathlon.runners import model_channel
        from heptathlon.runners.controls import CGROUP_ENV
        from heptathlon.runners.sandbox import sandbox_command

        self.sandbox = None
        if self.context.get("command_env"):
            cwd, env, spawn = self.folder, self.context["command_env"], argv
        else:
            extra = command_env(self.profile, self.folder)
            for k in ("PATH", "HOME"):
                extra.pop(k, None)
            if os.environ.get(CGROUP_ENV):
                extra[CGROUP_ENV] = os.environ[CGROUP_ENV]
            spawn, env, self.sandbox = sandbox_command(argv, self.folder, extra_env=extra,
                                                       hide=list(self.context.get("sandbox_hide") or []),
                                                       readonly=[Path(p) for p in
                                                                 [self._environment.get("path")] if p],
                                                       require=self.profile.require_sandbox,
                                                       profile_name=self.profile.name)
            cwd = self.sandbox["workdir"]
            self.records["sandbox"] = {k: self.sandbox.get(k) for k in ("active", "mechanism", "isolation",
                                                                         "env_dropped")}
        try:
            self.proc = subprocess.Popen(spawn, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        except OSError as e:
            self._cleanup_sandbox()
            raise RunError(f"submission {self.manifest.name!r}: field 'model.command': cannot start {argv[0]!r} ({e})") from None
        model_channel.register(self.proc, self.sandbox)

    def _cleanup_sandbox(self) -> None:
        from heptathlon.runners.sandbox import cleanup_sandbox

        if getattr(self, "sandbox", None):
            cleanup_sandbox(self.sandbox)

    def prepare(self, batch: np.ndarray) -> Any:
        # Everything after the id, encoded once, outside timing.
        return b',"inputs":' + _encode_inputs(batch) + b"}\n", len(batch)

    def predict(self, prepared: Any) -> Any:
        body, n = prepared
        self._next_id += 1
        rid = self._next_id
        head = b'{"id":%d' % rid
        if self._r.buf or self._poll(0):  # an answer must not be there before its request
            self._before_request(rid)
        try:
            sent = os.writev(self._wfd, (head, body))
            if sent < len(head) + len(body):  # a pipe may take a large request in pieces
                write_all(self._wfd, (head + body)[sent:])
        except BrokenPipeError:
            raise RunError(f"submission {self.manifest.name!r}: command exited mid-run with code "
                           f"{self.proc.wait()} while answering request {rid}") from None
        while True:
            try:
                line = self._r.readline()
            except _LineTooLong:
                raise RunError(self._too_long(f"in the answer to request {rid}")) from None
            if not line:
                raise RunError(f"submission {self.manifest.name!r}: command exited mid-run with code "
                               f"{self.proc.wait()} while answering request {rid}")
            if line[:1] != b"{":  # not a protocol line: ignored but counted
                self._ignore(line)
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                raise RunError(f"submission {self.manifest.name!r}: answer to request {rid} is not valid JSON: "
                               f"{line[:80]!r}") from None
            if not isinstance(msg, dict) or msg.get("id") != rid:
                got = msg.get("id") if isinstance(msg, dict) else msg
                raise RunError(f"submission {self.manifest.name!r}: answer has id {got!r}, expected {rid}")
            outputs = msg.get("outputs")
            if not isinstance(outputs, list) or len(outputs) != n:
                got = len(outputs) if isinstance(outputs, list) else type(outputs).__name__
                raise RunError(f"submission {self.manifest.name!r}: answer to request {rid} has {got} outputs "
                               f"for {n} inputs")
            return msg

    def postprocess(self, raw: Any, n: int):
        # As the model wrote them: coercing here would truncate 3.9 or turn [true, 1] into ints.
        # The worker validates both (runners.answers.check_answer); 2-D outputs are scores.
        return raw["outputs"], raw.get("scores")

    def answer_id(self, raw: Any) -> int | None:
        return raw.get("id") if isinstance(raw, dict) else None

    def describe(self) -> dict[str, Any]:
        return {"runtime": "command", "runtime_version": None, "params": None,
                "params_note": "a command submission's parameters are not visible to the harness",
                "ignored_stdout_lines": self.ignored_lines, "ignored_stdout_bytes": self.ignored_bytes}

    def close(self) -> None:
        from heptathlon.runners import model_channel

        try:
            self._w.close()  # EOF on stdin means exit
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
        model_channel.kill_process_tree(self.proc)
        model_channel.unregister(self.proc)
        self._cleanup_sandbox()


def _encode_inputs(batch: np.ndarray) -> bytes:
    """JSON for a batch. float32 rows are written with the shortest repr that round-trips in
    float32 (``str`` of a numpy float32) rather than float64's 17 digits: half the bytes, and
    about a microsecond less parsing on the submission's side for a 7-feature row."""
    a = np.asarray(batch)
    if a.dtype == np.float32 and a.ndim == 2 and np.isfinite(a).all():
        return ("[" + ",".join("[" + ",".join(map(str, row)) + "]" for row in a) + "]").encode()
    return json.dumps(a.tolist(), separators=(",", ":")).encode()


class _LineReader:
    """Lines from a pipe via ``os.read``. The usual answer arrives whole in one read and is
    returned as is; longer ones are put together from several reads."""

    def __init__(self, fd: int, size: int = 1 << 16, max_line: int = MAX_LINE_BYTES) -> None:
        self.fd = fd
        self.size = size
        self.max_line = max_line
        self.buf = b""

    def readline(self) -> bytes:
        """The next line with its newline; at EOF what is left (b"" when nothing is).
        Raises _LineTooLong once a line passes ``max_line`` bytes without its newline."""
        buf = self.buf
        if not buf:
            buf = os.read(self.fd, self.size)
            if buf.endswith(b"\n") and buf.find(b"\n") == len(buf) - 1:
                return buf  # the common case: exactly one whole line
            if not buf:
                return b""
        i = buf.find(b"\n")
        parts = [buf]
        total = len(buf)
        while i < 0:
            if total > self.max_line:
                self.buf = b""
                raise _LineTooLong
            chunk = os.read(self.fd, self.size)
            if not chunk:  # EOF: return the partial line, then b"" next time
                self.buf = b""
                return b"".join(parts)
            j = chunk.find(b"\n")
            parts.append(chunk)
            total += len(chunk)
            if j >= 0:
                buf = b"".join(parts)
                i = len(buf) - len(chunk) + j
        self.buf = buf[i + 1:]
        return buf[:i + 1]
