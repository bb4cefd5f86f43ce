"""User-defined tasks from a CSV or JSONL file, declared in a task YAML inside the submission folder:

    name: loan-approval            # [a-z0-9-]+
    data: eval.csv                 # .csv or .jsonl, inside the folder
    inputs: [income, age, debt]    # numeric columns, or one column holding a list per row
    label: approved                # integer class labels (or strings, mapped in sorted order)
    groups: [sex, region]          # optional sensitive attributes; missing values become "unknown"
    input_type: features           # features (default) | text | tokens
    references: [summary]          # optional reference columns (generation tasks); harness side only

Text tasks: ``input_type: text`` with one column of strings (``inputs: [sentence]``) or two (a
pair: ``inputs: [premise, hypothesis]``). Token tasks: ``input_type: tokens`` with one column per
token field (``inputs: [input_ids, attention_mask]``), each cell a list of ints (a JSON list in a
CSV cell); the fields of one row have one length.

Every row is evaluation data (the author trains elsewhere). The data file is removed from the
worker's working copy, so labels never reach the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from heptathlon.bench.errors import TaskError
from heptathlon.bench.tasks import TOKEN_PAD, Task, TaskData


class TaskFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    data: str
    inputs: list[str] = Field(min_length=1)
    label: str
    groups: list[str] = Field(default_factory=list)
    input_type: Literal["features", "text", "tokens"] = "features"
    references: list[str] = Field(default_factory=list)


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
        try:  # no dtype guessing: a text "007" stays text, and a label's type stays what the file says
            df = pd.read_json(data_path, lines=True, dtype=False)
        except ValueError as e:
            raise TaskError(f"{task_path}: field 'data': {spec.data} is not valid JSON lines ({e})") from None
    elif data_path.suffix == ".csv":
        text_cols = {c: str for c in spec.inputs} if spec.input_type == "text" else None
        # Text: only an empty cell is missing ("NA" or "null" are words, not gaps).
        na = {"keep_default_na": False, "na_values": [""]} if text_cols else {}
        df = pd.read_csv(data_path, dtype=text_cols, **na)
    else:
        raise TaskError(f"{task_path}: field 'data': expected a .csv or .jsonl file, got {spec.data!r}")
    for field, cols in (("inputs", spec.inputs), ("label", [spec.label]), ("groups", spec.groups),
                        ("references", spec.references)):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise TaskError(f"{task_path}: field '{field}': column(s) {missing} not in {spec.data} "
                            f"(columns: {list(df.columns)})")
    if spec.input_type == "text":
        x = _text_inputs(df, spec, task_path)
    elif spec.input_type == "tokens":
        x = _token_inputs(df, spec, task_path)
    elif len(spec.inputs) == 1 and df[spec.inputs[0]].map(lambda v: isinstance(v, (list, str))).all():
        try:
            col = df[spec.inputs[0]].map(lambda v: json.loads(v) if isinstance(v, str) else v)
            x = np.asarray(col.tolist(), dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise TaskError(f"{task_path}: field 'inputs': column {spec.inputs[0]!r} is not numeric lists "
                            f"({type(e).__name__}); for text set input_type: text") from None
    else:
        try:
            x = df[spec.inputs].to_numpy(dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise TaskError(f"{task_path}: field 'inputs': columns must be numeric ({e}); "
                            "for text set input_type: text") from None
    labels = df[spec.label]
    if labels.isna().any():
        raise TaskError(f"{task_path}: field 'label': column {spec.label!r} has missing values")
    if pd.api.types.is_integer_dtype(labels):
        y = labels.to_numpy(dtype=np.int64)
    else:
        classes = sorted(labels.astype(str).unique())
        y = labels.astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    groups = df[spec.groups].astype("string").fillna("unknown") if spec.groups else pd.DataFrame(index=df.index)
    empty = np.zeros((0,) + x.shape[1:], dtype=x.dtype)
    refs = df[spec.references].astype("string").reset_index(drop=True) if spec.references else None
    return TaskData(name=spec.name, x_train=empty, y_train=np.zeros(0, np.int64), x_test=x, y_test=y,
                    groups=groups.reset_index(drop=True), n_classes=int(max(y.max() + 1, 2)),
                    feature_names=list(spec.inputs), input_type=spec.input_type, references=refs)


def _text_inputs(df: pd.DataFrame, spec: TaskFile, task_path: Path) -> np.ndarray:
    """(n,) strings, or (n, 2) for a pair; a missing or non-text cell names its column and row."""
    if len(spec.inputs) > 2:
        raise TaskError(f"{task_path}: field 'inputs': a text task takes one column or a pair (two), "
                        f"got {len(spec.inputs)}: {spec.inputs}")
    for c in spec.inputs:
        bad = df.index[~df[c].map(lambda v: isinstance(v, str))]
        if len(bad):
            v = df[c].iloc[int(bad[0])]
            raise TaskError(f"{task_path}: field 'inputs': column {c!r} of {spec.data} is not text "
                            f"(row {int(bad[0])}: {type(v).__name__} {str(v)[:40]!r}); "
                            f"input_type: text needs a string in every row")
    cols = [df[c].to_numpy(dtype=str) for c in spec.inputs]
    return cols[0] if len(cols) == 1 else np.stack(cols, axis=1)


def _token_inputs(df: pd.DataFrame, spec: TaskFile, task_path: Path) -> np.ndarray:
    """(n, F, L) int64, each row padded with TOKEN_PAD to the longest row."""
    rows: list[list[list[int]]] = []
    for i in range(len(df)):
        fields = []
        for c in spec.inputs:
            v = df[c].iloc[i]
            try:
                seq = json.loads(v) if isinstance(v, str) else v
                seq = [int(t) for t in seq] if isinstance(seq, list) and all(
                    isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in seq) else None
            except (TypeError, ValueError):
                seq = None
            if seq is None:
                raise TaskError(f"{task_path}: field 'inputs': column {c!r} of {spec.data}, row {i}: "
                                f"expected a list of integer token ids, got {str(v)[:40]!r}")
            if any(t < 0 for t in seq):
                raise TaskError(f"{task_path}: field 'inputs': column {c!r} of {spec.data}, row {i}: "
                                "token ids must be >= 0")
            fields.append(seq)
        if len({len(f) for f in fields}) > 1:
            raise TaskError(f"{task_path}: field 'inputs': row {i} of {spec.data}: the token fields "
                            f"{spec.inputs} have different lengths {[len(f) for f in fields]}")
        rows.append(fields)
    width = max((len(r[0]) for r in rows), default=0)
    x = np.full((len(rows), len(spec.inputs), width), TOKEN_PAD, dtype=np.int64)
    for i, r in enumerate(rows):
        for j, f in enumerate(r):
            x[i, j, :len(f)] = f
    return x
