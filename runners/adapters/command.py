"""The stdio protocol adapter (``kind: command``): one JSON line per request, one per answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np

from bench.errors import RunError
from runners.adapters.base import ModelAdapter
from runners.controls import thread_env

_PYTHONS = {"python", "python3", sys.executable}


def command_env(profile, workdir) -> dict[str, str]:
    """A scrubbed environment: no database URL, no credentials, only what a model needs."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir),
           "LANG": os.environ.get("LANG", "C.UTF-8"), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(thread_env(profile))
    return env


class CommandAdapter(ModelAdapter):
    def load(self) -> None:
        argv = list(self.manifest.model.command)
        if argv[0] in _PYTHONS:  # run Python submissions with the harness's interpreter and packages
            argv[0] = sys.executable
        self.argv = argv
        self.ignored_lines = 0
        self._next_id = 0
        try:
            self.proc = subprocess.Popen(argv, cwd=self.folder, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         env=self.context.get("command_env") or command_env(self.profile, self.folder))
        except OSError as e:
            raise RunError(f"submission {self.manifest.name!r}: field 'model.command': cannot start {argv[0]!r} ({e})") from None
        self._w = self.proc.stdin
        self._r = self.proc.stdout
        while True:
            line = self._r.readline()
            if not line:
                code = self.proc.wait()
                raise RunError(f"submission {self.manifest.name!r}: command exited with code {code} "
                               'before printing {"ready": true}')
            try:
                msg = json.loads(line)
            except ValueError:
                self.ignored_lines += 1
                continue
            if isinstance(msg, dict) and msg.get("ready") is True:
                return
            self.ignored_lines += 1

    def prepare(self, batch: np.ndarray) -> Any:
        return json.dumps(batch.tolist(), separators=(",", ":")).encode(), len(batch)

    def predict(self, prepared: Any) -> Any:
        payload, n = prepared
        self._next_id += 1
        rid = self._next_id
        self._w.write(b'{"id":%d,"inputs":%s}\n' % (rid, payload))
        self._w.flush()
        while True:
            line = self._r.readline()
            if not line:
                raise RunError(f"submission {self.manifest.name!r}: command exited mid-run with code "
                               f"{self.proc.wait()} while answering request {rid}")
            if line[:1] != b"{":  # not a protocol line: ignored but counted
                self.ignored_lines += 1
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
        preds = np.asarray(raw["outputs"])
        if preds.ndim == 2:  # scores given as outputs
            return preds.argmax(axis=1), preds.astype(np.float32)
        scores = raw.get("scores")
        return preds.astype(np.int64), None if scores is None else np.asarray(scores, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"runtime": "command", "runtime_version": None, "params": None,
                "params_note": "a command submission's parameters are not visible to the harness",
                "ignored_stdout_lines": self.ignored_lines}

    def close(self) -> None:
        try:
            self._w.close()  # EOF on stdin means exit
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
