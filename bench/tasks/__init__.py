"""Tasks: inputs, labels, groups and the quality metric. Labels never leave the harness side."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from heptathlon.bench.errors import TaskError


@dataclass(frozen=True)
class TaskData:
    """A task's evaluation split. ``x_test`` goes to the worker; ``y_test`` and ``groups`` never do."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    groups: pd.DataFrame  # one column per sensitive attribute, aligned with x_test; may be empty
    n_classes: int
    feature_names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    metric: str  # the quality metric; "accuracy" for every bundled task
    group_attributes: tuple[str, ...]
    loader: Callable[[], TaskData]

    def load(self) -> TaskData:
        try:
            return self.loader()
        except TaskError:
            raise
        except Exception as e:  # a broken data package must name the task
            raise TaskError(f"task {self.name!r}: could not load its data ({type(e).__name__}: {e})") from e


_REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    _REGISTRY[task.name] = task
    return task


def get_task(name: str) -> Task:
    _ensure_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))}") from None


def resolve_task(ref: str, folder=None) -> Task:
    """A bundled task by name, or a task YAML file inside the submission folder."""
    from pathlib import Path

    from heptathlon.bench.tasks.custom import is_task_file, load_task_file

    if is_task_file(ref):
        if folder is None:
            raise TaskError(f"task file {ref!r} needs its submission folder")
        folder = Path(folder)
        path = (folder / ref).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise TaskError(f"task file {ref!r} leaves the submission folder")
        return load_task_file(path, folder)
    return get_task(ref)


def task_data_files(ref: str, folder) -> list[str]:
    """Files inside the folder that hold labels (removed from the worker's copy)."""
    from pathlib import Path

    import yaml

    from heptathlon.bench.tasks.custom import is_task_file

    if not is_task_file(ref):
        return []
    raw = yaml.safe_load((Path(folder) / ref).read_text()) or {}
    return [ref] + ([raw["data"]] if isinstance(raw, dict) and isinstance(raw.get("data"), str) else [])


def _ensure_builtin() -> None:
    from heptathlon.bench.tasks import tabular, digits  # noqa: F401  (registers the bundled tasks)
