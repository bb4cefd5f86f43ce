"""Tabular group tasks that scikit-lego ships: Toronto arrests and hearts."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from heptathlon.bench.tasks import Task, TaskData, register

SPLIT_SEED = 0
TEST_SIZE = 0.25


def _standardise(train: np.ndarray, test: np.ndarray, cols: list[int]) -> tuple[np.ndarray, np.ndarray]:
    mu = train[:, cols].mean(axis=0)
    sd = train[:, cols].std(axis=0)
    sd[sd == 0] = 1.0
    train, test = train.copy(), test.copy()
    train[:, cols] = (train[:, cols] - mu) / sd
    test[:, cols] = (test[:, cols] - mu) / sd
    return train, test


def _split(name: str, features: pd.DataFrame, y: np.ndarray, groups: pd.DataFrame, numeric: list[str]) -> TaskData:
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=y)
    x = features.to_numpy(dtype=np.float32)
    cols = [features.columns.get_loc(c) for c in numeric]
    x_tr, x_te = _standardise(x[tr], x[te], cols)
    return TaskData(
        name=name,
        x_train=x_tr.astype(np.float32), y_train=y[tr].astype(np.int64),
        x_test=x_te.astype(np.float32), y_test=y[te].astype(np.int64),
        groups=groups.iloc[te].reset_index(drop=True).astype("string"),
        n_classes=2, feature_names=list(features.columns),
    )


def load_arrests_task() -> TaskData:
    from sklego.datasets import load_arrests

    df = load_arrests(as_frame=True)
    y = (df["released"] == "Yes").to_numpy().astype(np.int64)
    features = pd.DataFrame({
        "year": df["year"], "age": df["age"], "checks": df["checks"],
        "colour_white": (df["colour"] == "White").astype(float),
        "sex_male": (df["sex"] == "Male").astype(float),
        "employed": (df["employed"] == "Yes").astype(float),
        "citizen": (df["citizen"] == "Yes").astype(float),
    })
    groups = df[["colour", "sex"]]
    return _split("arrests", features, y, groups, numeric=["year", "age", "checks"])


def load_hearts_task() -> TaskData:
    from sklego.datasets import load_hearts

    df = load_hearts(as_frame=True)
    y = df["target"].to_numpy().astype(np.int64)
    thal = pd.get_dummies(df["thal"].astype(str), prefix="thal").astype(float)
    numeric = ["age", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak", "slope", "ca"]
    features = pd.concat([df[numeric].astype(float), df[["sex"]].astype(float), thal], axis=1)
    groups = pd.DataFrame({"sex": df["sex"].map({1: "male", 0: "female"})})
    return _split("hearts", features, y, groups, numeric=numeric)


register(Task("arrests", "Toronto arrests (scikit-lego): predict release; groups colour and sex",
              "accuracy", ("colour", "sex"), load_arrests_task))
register(Task("hearts", "Heart disease (scikit-lego): predict diagnosis; group sex",
              "accuracy", ("sex",), load_hearts_task))
