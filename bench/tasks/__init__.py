"""Tasks: inputs, labels, groups and the quality metric. Labels never leave the harness side."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from heptathlon.bench.errors import TaskError


# What a task's inputs are (``TaskData.input_type``), and so how ``x_test`` is laid out:
#   features  float32, (n, ...) numeric features (the default; every bundled tabular/image task)
#   text      unicode str array, (n,) one string per example, or (n, 2) a pair (two columns)
#   tokens    int64, (n, F, L): F token fields (``feature_names``, e.g. input_ids, attention_mask),
#             each row padded with TOKEN_PAD to the task's longest sequence
# All three are plain numpy dtypes, so the worker's inputs file is an .npy that loads with
# allow_pickle=False (no pickles cross to the worker).
INPUT_TYPES = ("features", "text", "tokens")
TOKEN_PAD = -1  # never a valid token id: the adapter trims and re-pads with the tokenizer's own pad id


@dataclass(frozen=True)
class TaskData:
    """A task's evaluation split. ``x_test`` goes to the worker; ``y_test``, ``groups`` and
    ``references`` never do."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    groups: pd.DataFrame  # one column per sensitive attribute, aligned with x_test; may be empty
    n_classes: int
    feature_names: list[str] = field(default_factory=list)  # input columns (token fields for "tokens")
    input_type: str = "features"  # one of INPUT_TYPES
    references: pd.DataFrame | None = None  # generation tasks' reference columns; harness side only

    def input_spec(self) -> dict:
        """What the worker is told about its inputs (no labels): type and field names."""
        return {"type": self.input_type, "fields": list(self.feature_names)}


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    metric: str  # the quality metric; "accuracy" for every bundled task
    group_attributes: tuple[str, ...]
    loader: Callable[[], TaskData]
    generative: bool = False  # a prompt set: only the generate scenario runs it

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
    from heptathlon.bench.tasks import digits, lexicon, prompts, tabular  # noqa: F401  (registers the bundled tasks)
