"""A labelled text task with a group column, from data a PyPI package ships: the AFINN sentiment
lexicons (package ``afinn``, Finn Årup Nielsen; ODbL). Each entry is a word or short phrase with
a valence from -5 to +5; the task is its sign (positive or negative).

The group column is the entry's **language**: the English list (AFINN-en-165) or the Danish
one (AFINN-da-32). It is a linguistic group, chosen because an English-trained encoder is
expected to serve the two unevenly; it is *not* a demographic attribute of any person, and the
entries are dictionary words, not sentences people wrote. Neutral (0) entries are dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from heptathlon.bench.tasks import Task, TaskData, register

SPLIT_SEED = 0
PER_LANGUAGE = 600  # entries drawn per language (balanced), before the train/test split
TEST_SIZE = 0.5
FILES = {"en": "AFINN-en-165.txt", "da": "AFINN-da-32.txt"}


def load_lexicons() -> pd.DataFrame:
    import afinn

    data = Path(afinn.__file__).resolve().parent / "data"
    frames = []
    for lang, name in FILES.items():
        rows = [line.rsplit("\t", 1) for line in (data / name).read_text(encoding="utf-8").splitlines() if "\t" in line]
        df = pd.DataFrame(rows, columns=["text", "valence"])
        df["valence"] = df["valence"].astype(int)
        df["language"] = lang
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def load_afinn_task() -> TaskData:
    df = load_lexicons()
    df = df[df["valence"] != 0].drop_duplicates("text")
    parts = []
    for lang in FILES:
        sub = df[df["language"] == lang]
        parts.append(sub.sample(n=min(PER_LANGUAGE, len(sub)), random_state=SPLIT_SEED))
    df = pd.concat(parts, ignore_index=True)
    y = (df["valence"] > 0).to_numpy().astype(np.int64)
    strata = df["language"] + y.astype(str)
    tr, te = train_test_split(np.arange(len(df)), test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=strata)
    text = df["text"].to_numpy(dtype=str)
    return TaskData(name="afinn-sentiment", x_train=text[tr], y_train=y[tr], x_test=text[te], y_test=y[te],
                    groups=df[["language"]].iloc[te].reset_index(drop=True).astype("string"), n_classes=2,
                    feature_names=["text"], input_type="text")


register(Task("afinn-sentiment", "AFINN lexicon entries (package afinn): positive or negative; group language "
              "(English or Danish word lists; a linguistic group, not a demographic one)",
              "accuracy", ("language",), load_afinn_task))
