"""End to end on a tiny random BERT: study file → Optuna trials → DuckDB → export → predict."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

import automl_pt
from automl_pt import Study
from tests.conftest import study_toml


@pytest.fixture
def finished_study(tmp_path, tiny_bert, topic_data, text_host):
    path = study_toml(tmp_path, tiny_bert)
    results = Study.from_config(path, host=text_host).run(progress=False)
    return path, results


def test_duckdb_has_every_trial_with_params_and_epochs(finished_study, tmp_path):
    path, results = finished_study
    con = duckdb.connect(str(tmp_path / "run" / "results.duckdb"), read_only=True)
    trials = con.execute("SELECT * FROM trials ORDER BY number").df()
    epochs = con.execute("SELECT * FROM epoch_metrics ORDER BY trial, epoch").df()
    study_row = con.execute("SELECT * FROM studies").df()
    con.close()

    assert list(trials["number"]) == [0, 1, 2]
    assert set(trials["state"]) == {"COMPLETE"}
    assert list(trials["seed"]) == [0, 1, 2]            # study seed + trial number
    assert trials["device"].eq("cpu").all()
    assert (trials["peak_memory_mb"] > 0).all()
    assert (trials["duration_s"] > 0).all()
    assert (trials["datetime_complete"] > trials["datetime_start"]).all()
    for _, t in trials.iterrows():
        params = json.loads(t["params"])
        for name in ("backbone", "strategy", "learning_rate", "head_lr_multiplier", "layer_decay",
                     "weight_decay", "warmup_ratio", "epochs", "batch_size", "dropout",
                     "label_smoothing"):
            assert name in params
        assert t["strategy"] == params["strategy"]
        mine = epochs[epochs["trial"] == t["number"]]
        # min_steps may stretch a run beyond its searched epochs, never below them (patience 3)
        assert t["epochs_run"] >= (1 if params["strategy"] == "linear_probe" else params["epochs"])
        assert sorted(mine["epoch"].unique()) == list(range(1, int(t["epochs_run"]) + 1))
        assert {"train_loss", "samples_per_s", "val_accuracy", "val_macro_f1"} <= set(mine["name"])
        # the trial's value is its best epoch's validation accuracy
        val_acc = mine[mine["name"] == "val_accuracy"]["value"]
        assert t["value"] == pytest.approx(val_acc.max())
    assert (trials["memory_after_mb"] > 0).all() and trials["micro_batch_size"].notna().all()
    # one worker process ran all trials and shared its caches: one tokenized file per split
    assert len(list((tmp_path / "run" / "cache").glob("encoded-*.safetensors"))) == 3
    assert study_row.loc[0, "study"] == "tiny"
    test_metrics = json.loads(study_row.loc[0, "test_metrics"])
    assert 0.0 <= test_metrics["accuracy"] <= 1.0
    assert json.loads(study_row.loc[0, "environment"])["packages"]["torch"]


def test_leaderboard_and_export_round_trip(finished_study, tmp_path, topic_data):
    _, results = finished_study
    board = results.leaderboard()
    assert list(board["rank"]) == list(range(1, len(board) + 1))
    assert (board["kind"] == "trial").sum() == 3     # and the soups that were measured (if any)
    assert board["accuracy"].is_monotonic_decreasing
    best = results.best_model_dir
    for name in ("automl_pt.json", "head.safetensors", "metrics.json", "backbone/config.json",
                 "backbone/model.safetensors", "backbone/tokenizer.json"):
        assert (best / name).is_file(), name
    manifest = json.loads((best / "automl_pt.json").read_text())
    assert manifest["labels"] == ["food", "law", "space"]
    assert manifest["trial"] == int(board.loc[0, "trial"])
    # Only the best trial keeps its weights.
    kept = sorted(p.parent.name for p in (tmp_path / "run" / "trials").glob("*/model.safetensors"))
    assert kept == [f"{manifest['trial']:05d}"]

    model = automl_pt.load(best)
    test = pd.read_csv(topic_data["test"])
    prediction = model.predict(test["text"].tolist())
    assert len(prediction) == len(test)
    assert set(prediction.labels) <= set(manifest["labels"])
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # The reloaded model reproduces the test score measured at export time.
    accuracy = float(np.mean(np.array(prediction.labels) == test["label"].to_numpy()))
    assert accuracy == pytest.approx(results.test_metrics["accuracy"], abs=1e-9)
    # DataFrame and file inputs give the same answers as a list.
    assert model.predict(test).labels == prediction.labels
    assert model.predict(topic_data["test"]).labels == prediction.labels


def test_resume_adds_trials_without_duplicates(finished_study, tmp_path, text_host):
    path, first = finished_study
    before = first.trials()[["number", "value"]].set_index("number")["value"].to_dict()
    again = Study.from_config(path, host=text_host, study={"trials": 5}).run(progress=False)
    trials = again.trials()
    assert list(trials["number"]) == [0, 1, 2, 3, 4]
    assert trials["number"].is_unique
    for number, value in before.items():     # completed trials are kept as they were
        assert trials.set_index("number").loc[number, "value"] == value
    # Running again with the target already met adds nothing.
    same = Study.from_config(path, host=text_host, study={"trials": 5}).run(progress=False)
    assert len(same.trials()) == 5


def test_caches_tokenize_once_and_reuse_frozen_features(tmp_path, tiny_bert, topic_data, text_host,
                                                        monkeypatch):
    from automl_pt_text import backbone as text_backbone

    calls = {"tokenize": 0, "encode": 0}
    real_tokenize = text_backbone.TokenizerPreprocessor.encode
    real_encode = text_backbone.TransformersTextBackbone.encode

    def count_tokenize(self, inputs):
        calls["tokenize"] += 1
        return real_tokenize(self, inputs)

    def count_encode(self, batch):
        calls["encode"] += 1
        return real_encode(self, batch)

    monkeypatch.setattr(text_backbone.TokenizerPreprocessor, "encode", count_tokenize)
    monkeypatch.setattr(text_backbone.TransformersTextBackbone, "encode", count_encode)
    path = study_toml(tmp_path, tiny_bert, trials=3,
                      space='strategy = ["linear_probe"]\nepochs = 2\nbatch_size = [8]',
                      resources='workers = "inline"')
    Study.from_config(path, host=text_host).run(progress=False)
    # train, validation and test tokenized once each for three trials plus the export.
    assert calls["tokenize"] == 3
    # frozen features: one pass over train (60 rows) and validation (24) in batches of 128, shared
    # by all three trials and by the soups of their heads (automl_pt.engine.finish); one pass over test
    # for the features the soups' test scores use; one pass over test (batches of 64) at export.
    assert calls["encode"] == 1 + 1 + 1 + 1
    cache = tmp_path / "run" / "cache"
    assert len(list(cache.glob("features-*.safetensors"))) == 3
    assert len(list(cache.glob("encoded-*.safetensors"))) == 3
