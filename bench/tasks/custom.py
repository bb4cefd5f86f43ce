"""User-defined tasks from a CSV or JSONL file, declared in a task YAML inside the submission folder:

    name: loan-approval            # [a-z0-9-]+
    data: eval.csv                 # .csv or .jsonl, inside the folder
    inputs: [income, age, debt]    # numeric columns, or one column holding a list per row
    label: approved                # integer class labels (or strings, mapped in sorted order)
    groups: [sex, region]          # optional sensitive attributes; missing values become "unknown"

Every row is evaluation data (the author trains elsewhere). The data file is removed from the
worker's working copy, so labels never reach the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from heptathlon.bench.errors import TaskError
from heptathlon.bench.tasks import Task, TaskData


class TaskFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    data: str
    inputs: list[str] = Field(min_length=1)
    label: str
    groups: list[str] = Field(default_factory=list)


def is_task_file(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml"))


def load_task_file(path: Path, folder: Path) -> Task:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
        spec = TaskFile.model_validate(raw)
    except FileNotFoundError:
        raise TaskError(f"{path}: task file not found") from None
    except yaml.YAMLError as e:
        raise TaskError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise TaskError(f"{path}: field '{loc}': {msg}") from None
    data_path = (folder / spec.data).resolve()
    if not data_path.is_relative_to(folder.resolve()):
        raise TaskError(f"{path}: field 'data': path {spec.data!r} leaves the submission folder")

    def loader() -> TaskData:
        return _load(spec, data_path, path)

    return Task(spec.name, spec.description or f"user task from {spec.data}", "accuracy", tuple(spec.groups), loader)


def _load(spec: TaskFile, data_path: Path, task_path: Path) -> TaskData:
    if not data_path.is_file():
        raise TaskError(f"{task_path}: field 'data': file {spec.data!r} not found")
    if data_path.suffix == ".jsonl":
        df = pd.read_json(data_path, lines=True)
    elif data_path.suffix == ".csv":
        df = pd.read_csv(data_path)
    else:
        raise TaskError(f"{task_path}: field 'data': expected a .csv or .jsonl file, got {spec.data!r}")
    for field, cols in (("inputs", spec.inputs), ("label", [spec.label]), ("groups", spec.groups)):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise TaskError(f"{task_path}: field '{field}': column(s) {missing} not in {spec.data} "
                            f"(columns: {list(df.columns)})")
    if len(spec.inputs) == 1 and df[spec.inputs[0]].map(lambda v: isinstance(v, (list, str))).all():
        col = df[spec.inputs[0]].map(lambda v: json.loads(v) if isinstance(v, str) else v)
        x = np.asarray(col.tolist(), dtype=np.float32)
    else:
        try:
            x = df[spec.inputs].to_numpy(dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise TaskError(f"{task_path}: field 'inputs': columns must be numeric ({e})") from None
    labels = df[spec.label]
    if labels.isna().any():
        raise TaskError(f"{task_path}: field 'label': column {spec.label!r} has missing values")
    if pd.api.types.is_integer_dtype(labels):
        y = labels.to_numpy(dtype=np.int64)
    else:
        classes = sorted(labels.astype(str).unique())
        y = labels.astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    groups = df[spec.groups].astype("string").fillna("unknown") if spec.groups else pd.DataFrame(index=df.index)
    empty = np.zeros((0,) + x.shape[1:], dtype=np.float32)
    return TaskData(name=spec.name, x_train=empty, y_train=np.zeros(0, np.int64), x_test=x, y_test=y,
                    groups=groups.reset_index(drop=True), n_classes=int(max(y.max() + 1, 2)),
                    feature_names=list(spec.inputs))
