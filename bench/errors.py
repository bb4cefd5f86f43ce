"""One error hierarchy. Messages are written for the user and name the file, field or run."""

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(exc: BaseException, limit: int = 500) -> str:
    """An exception as one line for a run record: our own messages as written, others prefixed
    with their type. The whole text is kept, not the first line: ONNX Runtime and the torch
    exporters put the useful part ("Got: 2 Expected: 1") after a line break."""
    text = " ".join(_ANSI.sub("", str(exc)).split())
    if not isinstance(exc, HeptathlonError):
        text = f"{type(exc).__name__}: {text}".strip()
    return text[:limit] or type(exc).__name__


class HeptathlonError(Exception):
    """Base of every error the CLI turns into a one-line message and an exit code."""

    exit_code = 2


class SubmissionError(HeptathlonError):
    """A submission folder or its submission.yaml is invalid."""


class ProfileError(HeptathlonError):
    """A hardware profile is unknown, invalid or cannot be applied here."""


class TaskError(HeptathlonError):
    """A task is unknown or its data cannot be loaded."""


class ScenarioError(HeptathlonError):
    """A scenario name or its parameters are invalid."""


class RunError(HeptathlonError):
    """A run failed while executing; the run is recorded as failed."""

    exit_code = 1


class StorageError(HeptathlonError):
    """The results database cannot be opened or migrated."""


class OptionsError(HeptathlonError):
    """A command-line option has a value that does not fit (after the parser accepted its type)."""


class RegressionError(HeptathlonError):
    """A nightly regression-detection setting (window, thresholds, p-value) is invalid."""
