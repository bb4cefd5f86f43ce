"""sklearn's 8x8 digits, as 1x8x8 float images in [0, 1]."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from heptathlon.bench.tasks import Task, TaskData, register


def load_digits_task() -> TaskData:
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return TaskData(name="digits", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
                    groups=pd.DataFrame(index=range(len(y_te))), n_classes=10)


register(Task("digits", "sklearn 8x8 handwritten digits, 10 classes; no group labels",
              "accuracy", (), load_digits_task))
