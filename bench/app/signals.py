"""SIGINT and SIGTERM as :class:`~heptathlon.bench.errors.Interrupted`, raised in the main thread.

``heptathlon`` installs the handlers for the whole command (:func:`interruptible`). The run
being executed is then recorded as failed ("interrupted by SIGINT"), its worker's process group
is killed and its run directory and cgroup removed (``execute_run``'s and the executor's
``finally`` blocks), and the command exits 130 (SIGINT) or 143 (SIGTERM). Runs of the same
command that had not started stay queued. Inside :func:`deferred` (a run's last transaction)
a signal waits until the block ends, so a record is never half-written.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from heptathlon.bench.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state: dict = {"defer": 0, "pending": None, "last": None}


def _raise(name: str, signum: int) -> None:
    e = Interrupted(name, signum)
    _state["last"] = e  # the CLI reads it back: typer turns a KeyboardInterrupt into a bare exit code
    raise e


def last_interrupt() -> Interrupted | None:
    """The Interrupted raised by the last signal, if one arrived."""
    return _state["last"]


def _handler(signum: int, _frame) -> None:
    name = signal.Signals(signum).name
    if _state["defer"]:
        _state["pending"] = (name, signum)
        return
    _raise(name, signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into Interrupted while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a SIGINT/SIGTERM that arrives inside the block until it ends, then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state["defer"] += 1
    try:
        yield
    finally:
        _state["defer"] -= 1
        pending = _state["pending"] if not _state["defer"] else None
        if pending:
            _state["pending"] = None
            _raise(*pending)
