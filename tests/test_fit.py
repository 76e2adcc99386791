"""``automl_pt.fit``: the task inferred from the data, a study file and run dir written, the
predictor returned."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pandas as pd
import pytest

import automl_pt
from automl_pt import ConfigError, DataError
from automl_pt.autofit import infer_task, to_toml
from automl_pt.plugins import create_plugin_host
from tests.conftest import make_topic_rows


@pytest.fixture(scope="module")
def host():
    """Every plugin of this repository (text, vision, speech), entry points off."""
    import automl_pt_speech
    import automl_pt_text
    import automl_pt_vision

    return create_plugin_host(entry_points=False,
                              extra=[automl_pt_text, automl_pt_vision, automl_pt_speech])


def test_fit_on_a_dataframe_returns_a_predictor_and_writes_a_study(tmp_path, tiny_bert, text_host):
    train = pd.DataFrame(make_topic_rows(20, 1)).assign(id=range(60))[["id", "text", "label"]]
    validation = pd.DataFrame(make_topic_rows(8, 2))
    run_dir = tmp_path / "run"
    predictor = automl_pt.fit(
        train, label="label", preset="fast", time_limit="10m", validation=validation,
        name="tiny-fit", run_dir=run_dir, backbones=[str(tiny_bert)], progress=False,
        host=text_host, settings={"study": {"trials": 2}, "data": {"max_length": 32},
                                  "search": {"space": {"batch_size": [8]}},
                                  "resources": {"devices": "cpu", "workers": "inline"}})
    prediction = predictor.predict(["rocket orbit moon launch", "judge court jury verdict"])
    assert len(prediction.labels) == 2 and set(prediction.labels) <= {"space", "food", "law"}

    study = tomllib.loads((run_dir / "study.toml").read_text())
    assert study["study"] == {"name": "tiny-fit", "preset": "fast", "timeout": "10m", "trials": 2}
    assert study["task"]["type"] == "text-classification"
    assert study["data"]["text_column"] == "text"                 # not the id column
    assert (run_dir / "data" / "train.parquet").is_file()
    assert (run_dir / "best" / "automl_pt.json").is_file()
    result = subprocess.run([sys.executable, "-m", "automl_pt.cli", "results", str(run_dir)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "tiny-fit: accuracy (maximize)" in result.stdout


def test_the_task_follows_the_columns(host):
    texts = pd.DataFrame({"n": [1, 2, 3], "text": ["a long text", "another text", "third"],
                          "label": ["x", "y", "x"]})
    task, columns = infer_task(texts, "label", host.registry)
    assert (task.name, columns) == ("text-classification", ["text"])
    images = pd.DataFrame({"caption": ["a cat", "a dog"], "file": ["img/1.png", "img/2.JPG"],
                           "label": ["cat", "dog"]})
    task, columns = infer_task(images, "label", host.registry)
    assert (task.name, columns) == ("image-classification", ["file"])
    audio = pd.DataFrame({"clip": ["a.wav", "b.flac"], "label": [0, 1]})
    task, columns = infer_task(audio, "label", host.registry)
    assert (task.name, columns) == ("audio-classification", ["clip"])   # few numbers: classes


def test_two_sentence_columns_are_a_pair_task(host):
    pairs = pd.DataFrame({"id": ["q1", "q2", "q3"],
                          "question1": ["how do I bake bread", "what is a comet", "why is the sky blue"],
                          "question2": ["how to bake bread", "who won the cup", "why the sky looks blue"],
                          "duplicate": ["yes", "no", "yes"]})
    task, columns = infer_task(pairs.drop(columns="id"), "duplicate", host.registry)
    assert (task.name, columns) == ("text-pair-classification", ["question1", "question2"])
    scores = pairs.drop(columns="id").assign(score=[4.6, 0.2, 3.9])
    task, columns = infer_task(scores.drop(columns="duplicate"), "score", host.registry)
    assert task.name == "text-pair-regression"
    # a third text column (ids, titles ...): not a pair; the longest text column, as before
    task, columns = infer_task(pairs, "duplicate", host.registry)
    assert (task.name, columns) == ("text-classification", ["question2"])   # the longer texts
    # named: one column, or the two of a pair
    task, columns = infer_task(pairs, "duplicate", host.registry, inputs="question1")
    assert (task.name, columns) == ("text-classification", ["question1"])
    task, columns = infer_task(pairs, "duplicate", host.registry, inputs=["question2", "question1"])
    assert (task.name, columns) == ("text-pair-classification", ["question2", "question1"])
    with pytest.raises(DataError, match="no column 'q3'"):
        infer_task(pairs, "duplicate", host.registry, inputs=["question1", "q3"])
    with pytest.raises(DataError, match="no installed task does text classification on 3 input columns"):
        infer_task(pairs, "duplicate", host.registry, inputs=["id", "question1", "question2"])
    # a title and a single-word column are not two sentences
    titled = pd.DataFrame({"text": ["a long text here", "another long text"], "tag": ["x", "y"],
                           "label": ["a", "b"]})
    assert infer_task(titled, "label", host.registry)[0].name == "text-classification"


def test_fit_on_sentence_pairs_writes_both_columns(tmp_path, tiny_bert, text_host):
    rows = make_topic_rows(12, 3)
    frame = pd.DataFrame({"first": [r["text"] for r in rows],
                          "second": [r["text"] for r in rows[1:] + rows[:1]]})
    frame["label"] = ["same" if a["label"] == b["label"] else "other"
                      for a, b in zip(rows, rows[1:] + rows[:1])]
    run_dir = tmp_path / "run"
    predictor = automl_pt.fit(
        frame, label="label", preset="fast", name="pair-fit", run_dir=run_dir,
        backbones=[str(tiny_bert)], progress=False, host=text_host,
        settings={"study": {"trials": 1}, "data": {"max_length": 32},
                  "search": {"space": {"batch_size": [8], "strategy": ["full"], "epochs": [1]}},
                  "resources": {"devices": "cpu", "workers": "inline"}})
    study = tomllib.loads((run_dir / "study.toml").read_text())
    assert study["task"]["type"] == "text-pair-classification"
    assert (study["data"]["text_column"], study["data"]["text_pair_column"]) == ("first", "second")
    prediction = predictor.predict(frame.head(3))
    assert len(prediction.labels) == 3 and set(prediction.labels) <= {"same", "other"}


def test_numbers_with_many_values_are_regression(host):
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(50)], "score": [i * 0.37 for i in range(50)]})
    task, columns = infer_task(frame, "score", host.registry)
    assert (task.name, columns) == ("text-regression", ["text"])
    # with no plugin registering regression for the modality: one clear error, not a guess
    bare = create_plugin_host(entry_points=False)
    with pytest.raises(DataError, match="regression is not supported yet"):
        infer_task(frame, "score", bare.registry)


def test_bad_inputs_are_named(tmp_path, host):
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})
    with pytest.raises(DataError, match="label column 'target' not found; the data has columns text, label"):
        infer_task(frame, "target", host.registry)
    with pytest.raises(DataError, match="no input column"):
        infer_task(pd.DataFrame({"n": [1, 2], "label": ["x", "y"]}), "label", host.registry)
    user_folder = tmp_path / "mine"
    user_folder.mkdir()
    (user_folder / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and automl_pt did not make it"):
        automl_pt.fit(frame, run_dir=user_folder, name="x", progress=False, host=host)
    assert [p.name for p in user_folder.iterdir()] == ["notes.txt"]
    with pytest.raises(ConfigError, match="time_limit"):
        automl_pt.fit(frame, time_limit="soon", run_dir=tmp_path / "new", progress=False, host=host)
    assert not (tmp_path / "new").exists()                  # checked before anything is written


def test_study_files_written_by_fit_are_valid_toml():
    sections = {"study": {"name": "a", "timeout": 1.5, "flag": True},
                "data": {"train": 'C:\\data\\"x".csv', "text_column": "t"},
                "search": {"space": {"lr": {"low": 1e-05, "high": 0.1, "log": True}, "b": [8, 16]}}}
    assert tomllib.loads(to_toml(sections)) == sections
