"""Text and token tasks from a task file: layout, the worker's inputs file, and each bad input."""

import json

import numpy as np
import pytest

from heptathlon.bench.errors import TaskError
from heptathlon.bench.tasks import TOKEN_PAD
from heptathlon.bench.tasks.custom import load_task_file


def _task(tmp_path, rows, *, data="eval.jsonl", **spec):
    path = tmp_path / data
    if data.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text(rows)
    body = {"name": "t", "data": data, "label": "label", **spec}
    (tmp_path / "task.yaml").write_text(json.dumps(body))
    return load_task_file(tmp_path / "task.yaml", tmp_path)


ROWS = [{"sentence": "a good film", "label": 1, "lang": "en"},
        {"sentence": "007", "label": 0, "lang": "en"},
        {"sentence": "ein Film", "label": 1, "lang": "de"}]


def test_text_task_is_a_string_array_that_round_trips_without_pickles(tmp_path):
    d = _task(tmp_path, ROWS, inputs=["sentence"], input_type="text", groups=["lang"]).load()
    assert d.input_type == "text" and d.x_test.dtype.kind == "U" and d.x_test.shape == (3,)
    assert list(d.x_test) == ["a good film", "007", "ein Film"]  # "007" stays text
    assert list(d.groups["lang"]) == ["en", "en", "de"] and list(d.y_test) == [1, 0, 1]
    np.save(tmp_path / "in.npy", d.x_test)
    back = np.load(tmp_path / "in.npy", allow_pickle=False)
    assert np.array_equal(back, d.x_test)
    assert d.input_spec() == {"type": "text", "fields": ["sentence"]}


def test_text_pair_and_references_stay_on_the_harness_side(tmp_path):
    rows = [{"p": "it rains", "h": "it is wet", "label": "yes", "ref": "wet"},
            {"p": "sun", "h": "it snows", "label": "no", "ref": "dry"}]
    d = _task(tmp_path, rows, inputs=["p", "h"], input_type="text", references=["ref"]).load()
    assert d.x_test.shape == (2, 2) and d.x_test[0, 1] == "it is wet"
    assert list(d.references["ref"]) == ["wet", "dry"] and list(d.y_test) == [1, 0]


def test_csv_text_keeps_na_as_a_word_and_an_empty_cell_is_an_error(tmp_path):
    d = _task(tmp_path, "sentence,label\nNA,1\nnull,0\n", data="eval.csv", inputs=["sentence"],
              input_type="text").load()
    assert list(d.x_test) == ["NA", "null"]
    with pytest.raises(TaskError,
                       match=r"task.yaml: field 'inputs': column 'sentence' of eval.csv is not text \(row 1"):
        _task(tmp_path, "sentence,label\nok,1\n,0\n", data="eval.csv", inputs=["sentence"], input_type="text").load()


def test_missing_or_non_text_column_is_one_line_naming_file_and_field(tmp_path):
    with pytest.raises(TaskError, match=r"task.yaml: field 'inputs': column\(s\) \['text'\] not in eval.jsonl"):
        _task(tmp_path, ROWS, inputs=["text"], input_type="text").load()
    rows = [{"sentence": 3, "label": 1}]
    with pytest.raises(TaskError, match=r"field 'inputs': column 'sentence' of eval.jsonl is not text \(row 0: int"):
        _task(tmp_path, rows, inputs=["sentence"], input_type="text").load()
    with pytest.raises(TaskError, match="a text task takes one column or a pair"):
        _task(tmp_path, [{"a": "x", "b": "y", "c": "z", "label": 0}], inputs=["a", "b", "c"], input_type="text").load()
    with pytest.raises(TaskError, match="for text set input_type: text"):
        _task(tmp_path, ROWS, inputs=["sentence"]).load()  # text without input_type: text
    with pytest.raises(TaskError, match="field 'input_type'"):
        _task(tmp_path, ROWS, inputs=["sentence"], input_type="audio").load()


def test_token_task_pads_with_a_value_no_tokenizer_uses(tmp_path):
    rows = [{"input_ids": [101, 7, 102], "attention_mask": [1, 1, 1], "label": 0},
            {"input_ids": "[101, 102]", "attention_mask": "[1, 1]", "label": 1}]
    d = _task(tmp_path, rows, inputs=["input_ids", "attention_mask"], input_type="tokens").load()
    assert d.x_test.dtype == np.int64 and d.x_test.shape == (2, 2, 3)
    assert list(d.x_test[1, 0]) == [101, 102, TOKEN_PAD]
    bad = [{"input_ids": [1, 2], "attention_mask": [1], "label": 0}]
    with pytest.raises(TaskError, match=r"row 0 of eval.jsonl: the token fields .* different lengths \[2, 1\]"):
        _task(tmp_path, bad, inputs=["input_ids", "attention_mask"], input_type="tokens").load()
    with pytest.raises(TaskError, match=r"column 'input_ids' of eval.jsonl, row 0: expected a list of integer"):
        _task(tmp_path, [{"input_ids": "hello", "label": 0}], inputs=["input_ids"], input_type="tokens").load()
