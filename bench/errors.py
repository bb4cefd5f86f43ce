"""One error hierarchy. Messages are written for the user and name the file, field or run."""


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
