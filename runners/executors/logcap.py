"""The worker's log, bounded: the first and last ``cap`` bytes of its combined stdout/stderr.

The executor (outside the run's memory cgroup) drains the worker's pipe in a thread and writes
the file itself, so neither a flood's bytes nor their page cache are charged to the run. The
full byte count is kept (``total``); the tail is read with a seek, never by reading the file.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

LOG_CAP_BYTES = 64 * 1024  # kept at each end


class BoundedLog:
    """Write ``head`` bytes as they come, keep the last ``tail`` bytes in memory, join them at ``close``."""

    def __init__(self, path: Path, head: int = LOG_CAP_BYTES, tail: int = LOG_CAP_BYTES) -> None:
        self.path = Path(path)
        self.head, self.tail_cap = head, tail
        self.total = 0
        self._head_left = head
        self._tail = bytearray()
        self._f = self.path.open("wb", buffering=0)  # the head is on disk as it arrives (a live log)
        self._thread: threading.Thread | None = None

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if self._head_left:
            part = data[:self._head_left]
            self._f.write(part)
            self._head_left -= len(part)
            data = data[len(part):]
        if data:
            self._tail += data
            if len(self._tail) > 2 * self.tail_cap:
                del self._tail[:-self.tail_cap]

    def drain(self, fd: int) -> "BoundedLog":
        """Start a thread that reads ``fd`` to EOF (then closes it) into this log."""
        def run() -> None:
            try:
                while chunk := os.read(fd, 1 << 16):
                    self.feed(chunk)
            except OSError:
                pass
            finally:
                os.close(fd)

        self._thread = threading.Thread(target=run, name="heptathlon-log-drain", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 10.0) -> int:
        """Wait for the drain to reach EOF, write the tail; the total byte count."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        tail = bytes(self._tail[-self.tail_cap:])
        omitted = self.total - (self.head - self._head_left) - len(tail)
        if omitted > 0:
            self._f.write(b"\n[... %d bytes omitted: the log keeps its first and last %d KiB of %d bytes ...]\n"
                          % (omitted, self.tail_cap // 1024, self.total))
        self._f.write(tail)
        self._f.close()
        return self.total


def read_tail(path: Path, limit: int) -> str:
    """The last ``limit`` bytes of a file, by seeking (never the whole file)."""
    try:
        with Path(path).open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - limit))
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""
