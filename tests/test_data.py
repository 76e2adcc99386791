"""Data reading and validation: formats, clear errors with counts and row numbers, splits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from automl_pt import DataError
from automl_pt.spec.config import config_from_dict
from automl_pt.spec.data import load_study_data
from tests.conftest import make_topic_rows


def _load(text_host, tmp_path, train, validation=None, test=None, **data):
    cfg = config_from_dict({"study": {"name": "d"}, "task": {"type": "text-classification"},
                            "data": {"train": train, "validation": validation, "test": test, **data},
                            "search": {"backbones": ["minilm-l6"]}}, base_dir=tmp_path)
    task = text_host.registry.tasks["text-classification"]
    return load_study_data(cfg, task, text_host.registry)


def test_csv_jsonl_parquet_give_the_same_data(tmp_path, text_host):
    frame = pd.DataFrame(make_topic_rows(5, 0))
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "t.parquet")
    loaded = [_load(text_host, tmp_path, str(tmp_path / f"t.{ext}"), str(tmp_path / f"t.{ext}"))
              for ext in ("csv", "jsonl", "parquet")]
    for data in loaded[1:]:
        assert data.train.inputs == loaded[0].train.inputs
        np.testing.assert_array_equal(data.train.labels, loaded[0].train.labels)
    assert loaded[0].label_names == ["food", "law", "space"]


def test_empty_texts_reported_with_count_and_rows(tmp_path, text_host):
    rows = make_topic_rows(4, 0)
    rows[2]["text"] = "   "
    rows[7]["text"] = ""
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError) as info:
        _load(text_host, tmp_path, str(path))
    msg = str(info.value)
    assert str(path) in msg and "2 empty value(s) in column 'text'" in msg and "rows 3, 8" in msg


def test_missing_labels_reported(tmp_path, text_host):
    path = tmp_path / "train.csv"
    path.write_text("text,label\nhello,a\nworld,\nagain,b\nmore,\n")
    with pytest.raises(DataError, match=r"2 missing label\(s\) in column 'label' \(train\), data rows 2, 4"):
        _load(text_host, tmp_path, str(path))


def test_unseen_validation_labels_reported(tmp_path, text_host):
    train = pd.DataFrame(make_topic_rows(4, 0))
    val = pd.DataFrame({"text": ["x y", "z w", "q"], "label": ["food", "sports", "music"]})
    with pytest.raises(DataError) as info:
        _load(text_host, tmp_path, train, val)
    msg = str(info.value)
    assert "2 row(s) in validation have labels never seen in train" in msg
    assert "'music', 'sports'" in msg and "data rows 2, 3" in msg


def test_missing_column_names_the_setting(tmp_path, text_host):
    path = tmp_path / "train.csv"
    path.write_text("sentence,label\nhello,a\nworld,b\n")
    with pytest.raises(DataError, match="no column 'text'.*text_column"):
        _load(text_host, tmp_path, str(path))
    data = _load(text_host, tmp_path, str(path), str(path), text_column="sentence")
    assert data.train.inputs == ["hello", "world"]


def test_stratified_validation_split_when_none_given(tmp_path, text_host):
    rows = make_topic_rows(10, 0)
    data = _load(text_host, tmp_path, rows, validation_fraction=0.2)
    assert len(data.train) == 24 and len(data.validation) == 6
    assert np.bincount(data.validation.labels).tolist() == [2, 2, 2]
    assert sorted(data.train.rows.tolist() + data.validation.rows.tolist()) == list(range(1, 31))


def test_single_class_is_an_error(tmp_path, text_host):
    with pytest.raises(DataError, match="at least 2"):
        _load(text_host, tmp_path, [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}])


def test_unknown_format_lists_readers(tmp_path, text_host):
    path = tmp_path / "train.xlsx"
    path.write_text("nope")
    with pytest.raises(DataError, match="no data reader accepts"):
        _load(text_host, tmp_path, str(path))
