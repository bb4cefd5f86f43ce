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


class MetricError(HeptathlonError):
    """A metric name is unknown, or a measured value breaks the registry's rules (method, finiteness)."""


class ModelError(HeptathlonError):
    """A submitted model misbehaved while running: wrong inputs, outputs or prediction count."""


class UnknownRuntimeError(ScenarioError, ValueError):
    """A runtime named for a batch sweep (--runtimes) does not exist. Also a ValueError, as the
    runtime helpers raised before the hierarchy covered them."""


class SandboxError(ProfileError, ValueError):
    """A sandbox cannot be set up as asked (unknown mechanism, secret-looking variables). Also a
    ValueError, as the sandbox raised before the hierarchy covered it."""


class MeterError(HeptathlonError):
    """An energy reading or a sampler is inconsistent (method prefix, non-finite energy, interval)."""


class FairnessError(HeptathlonError):
    """Fairness inputs do not fit together, or a submission lacks the runs a disparity needs."""


class FrameworkTaxError(HeptathlonError, ValueError):
    """Framework-tax or batch-sweep arithmetic got samples it cannot use. Also a ValueError: the
    sweep summary turns any ValueError from malformed samples into a reason, never a failed run."""


class RegressionError(HeptathlonError):
    """A nightly regression-detection setting (window, thresholds, p-value) is invalid."""


class SuiteError(HeptathlonError):
    """A suite file is invalid; ``problems`` lists every problem found, each naming file and field."""

    def __init__(self, path: object, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = tuple(problems)
        n = len(problems)
        head = f"{path}: {n} problem{'s' if n != 1 else ''} in suite file"
        super().__init__(head + "".join(f"\n  - {p}" for p in problems))


class ScheduleError(HeptathlonError):
    """A nightly schedule (--schedule CRON) cannot be parsed."""


class AlertError(HeptathlonError):
    """An alert id is unknown, or the status change asked for is not allowed."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived (the CLI turns both into this). A KeyboardInterrupt, so that no
    ``except Exception`` swallows it; the run that was executing is recorded as failed
    ("interrupted by SIGINT") and the command exits 128 + the signal number (130, 143)."""

    def __init__(self, signame: str = "SIGINT", signum: int = 2) -> None:
        super().__init__(f"interrupted by {signame}")
        self.signame, self.signum = signame, signum
        self.exit_code = 128 + signum
        self.run_errors: list[str] = []  # the failed-run lines of the runs it interrupted
