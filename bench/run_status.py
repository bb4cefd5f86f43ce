"""The states of a run. The database stores the plain strings, so the values never change."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# A run in one of these states will not change again (history and nightly read only these).
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED)
