import numpy as np
import pytest

from heptathlon.bench.errors import TaskError
from heptathlon.bench.tasks import get_task


def test_arrests_split_is_deterministic_with_groups():
    a, b = get_task("arrests").load(), get_task("arrests").load()
    assert a.x_test.shape == (1307, 7) and a.x_test.dtype == np.float32
    assert np.array_equal(a.y_test, b.y_test) and np.array_equal(a.x_test, b.x_test)
    assert list(a.groups.columns) == ["colour", "sex"]
    assert set(a.groups["colour"]) == {"White", "Black"}
    assert len(a.groups) == len(a.y_test)


def test_digits_and_hearts():
    d = get_task("digits").load()
    assert d.x_test.shape[1:] == (1, 8, 8) and d.n_classes == 10 and d.groups.shape[1] == 0
    h = get_task("hearts").load()
    assert list(h.groups.columns) == ["sex"] and set(h.groups["sex"]) == {"male", "female"}


def test_unknown_task():
    with pytest.raises(TaskError, match="unknown task 'imagenet'; known tasks: afinn-sentiment, arrests, digits, hearts"):
        get_task("imagenet")


def test_afinn_text_task_has_a_language_group_and_a_train_split():
    d = get_task("afinn-sentiment").load()
    assert d.input_type == "text" and d.x_test.dtype.kind == "U" and d.x_test.ndim == 1
    assert set(d.groups["language"]) == {"en", "da"} and len(d.groups) == len(d.y_test) == len(d.x_test)
    assert len(d.x_train) == len(d.y_train) > 100 and set(d.y_test) == {0, 1}
    assert not set(d.x_train) & set(d.x_test)  # entries are deduplicated before the split
    assert np.array_equal(d.x_test, get_task("afinn-sentiment").load().x_test)
