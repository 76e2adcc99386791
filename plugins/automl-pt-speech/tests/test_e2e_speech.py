"""End to end on tiny random audio encoders: study file → Optuna trials (pooling, augmentation,
linear probe) → DuckDB → export → reload → predict; the decode cache across trials and runs."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from automl_pt import Study
from automl_pt.export.predictor import Predictor
from automl_pt.testing import write_study
from automl_pt_speech.preprocess import AudioPreprocessor

GRID_SPACE = """strategy = ["full", "linear_probe"]
pooling = ["mean", "attention"]
augmentation_strength = [0.5]
learning_rate = [0.002]
head_lr_multiplier = [10.0]
layer_decay = [1.0]
weight_decay = [0.01]
warmup_ratio = [0.0]
epochs = [4]
batch_size = [8]
dropout = [0.0]
label_smoothing = [0.0]
schedule = ["cosine"]"""


def study_toml(tmp_path, tones, backbone: str, trials: int, space: str = GRID_SPACE,
               sampler: str = "grid", workers: str = "process") -> object:
    return write_study(tmp_path, "audio-classification", backbone,
                       {"train": tones["train"], "validation": tones["validation"],
                        "test": tones["test"]}, space, name="tiny-speech", trials=trials,
                       search={"sampler": sampler}, resources={"workers": workers})


@pytest.fixture
def finished_study(tmp_path, tiny_models, tones, speech_host):
    path = study_toml(tmp_path, tones, str(tiny_models["whisper"]), trials=4)
    results = Study.from_config(path, host=speech_host).run(progress=False)
    return path, results


@pytest.mark.slow
def test_study_runs_every_strategy_and_pooling_and_exports(finished_study, tmp_path, tones,
                                                           speech_host):
    _, results = finished_study
    con = duckdb.connect(str(tmp_path / "run" / "results.duckdb"), read_only=True)
    trials = con.execute("SELECT * FROM trials ORDER BY number").df()
    epochs = con.execute("SELECT * FROM epoch_metrics").df()
    study_row = con.execute("SELECT * FROM studies").df()
    con.close()
    assert len(trials) == 4 and set(trials["state"]) == {"COMPLETE"}
    combos = {(json.loads(p)["strategy"], json.loads(p)["pooling"]) for p in trials["params"]}
    assert combos == {("full", "mean"), ("full", "attention"), ("linear_probe", "mean"),
                      ("linear_probe", "attention")}
    assert {"val_accuracy", "val_macro_f1", "train_loss"} <= set(epochs["name"])
    full = trials[[json.loads(p)["strategy"] == "full" for p in trials["params"]]]
    assert (full["value"] > 0.6).all(), full[["number", "value"]]      # chance is 1/3
    data = json.loads(study_row.loc[0, "data"])
    assert (data["train"], data["validation"], data["test"]) == (48, 18, 18)
    assert data["labels"] == ["high", "low", "mid"]

    best = results.best_model_dir
    for name in ("automl_pt.json", "head.safetensors", "backbone/config.json",
                 "backbone/model.safetensors", "backbone/automl_pt_speech.json",
                 "backbone/automl_pt_speech_preprocessor.json"):
        assert (best / name).is_file(), name
    settings = json.loads((best / "backbone" / "automl_pt_speech.json").read_text())
    manifest = json.loads((best / "automl_pt.json").read_text())
    assert settings["pooling"] == manifest["params"]["pooling"]
    assert (best / "backbone" / "pooling.safetensors").is_file() == (settings["pooling"] == "attention")
    model = Predictor(best, host=speech_host)
    test = pd.read_csv(tones["test"])
    paths = [str(tones["test"].parent / p) for p in test["audio"]]
    prediction = model.predict(paths, batch_size=5)
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = float(np.mean(np.array(prediction.labels) == test["label"].to_numpy()))
    assert accuracy == pytest.approx(results.test_metrics["accuracy"], abs=1e-9)
    assert accuracy > 0.6
    # a table with the audio column gives the same answers, and so does the CSV file itself
    # (paths relative to its folder, as `automl-pt predict best test.csv` passes it)
    frame = pd.DataFrame({"audio": paths[:6]})
    assert model.predict(frame).labels == prediction.labels[:6]
    assert model.predict(tones["test"]).labels == prediction.labels


@pytest.mark.slow
def test_wav2vec2_study_on_a_table_with_relative_paths(tmp_path, tiny_models, tones, speech_host):
    space = GRID_SPACE.replace('strategy = ["full", "linear_probe"]', 'strategy = ["full"]') \
                      .replace('pooling = ["mean", "attention"]', 'pooling = ["attention"]') \
                      .replace("learning_rate = [0.002]", "learning_rate = [0.003]")
    path = study_toml(tmp_path, tones, str(tiny_models["wav2vec2"]), trials=1, space=space)
    results = Study.from_config(path, host=speech_host).run(progress=False)
    assert results.test_metrics["accuracy"] > 0.6
    model = Predictor(results.best_model_dir, host=speech_host)
    fitted = AudioPreprocessor(16000)
    fitted.fit([str(p) for p in tones["train"].rglob("*.*")])
    assert model.preprocessor.max_seconds == fitted.max_seconds   # fitted in training, restored


@pytest.mark.slow
def test_decode_cache_is_reused_by_later_trials_and_runs(tmp_path, tiny_models, tones,
                                                         speech_host, monkeypatch):
    from automl_pt_speech import preprocess

    calls = {"decode": 0}
    real = preprocess.read_audio

    def counting(*args, **kwargs):
        calls["decode"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(preprocess, "read_audio", counting)
    space = GRID_SPACE.replace("epochs = [4]", "epochs = [1]") \
                      .replace('pooling = ["mean", "attention"]', 'pooling = ["mean"]')
    path = study_toml(tmp_path, tones, str(tiny_models["whisper"]), trials=2, space=space,
                      workers="inline")
    Study.from_config(path, host=speech_host).run(progress=False)
    assert calls["decode"] == 48 + 18 + 18          # train + validation + test, once each
    # the study resumed for one more trial (a fresh runner, as after a restart) reads the
    # on-disk cache: no decoding at all
    calls["decode"] = 0
    path = study_toml(tmp_path, tones, str(tiny_models["whisper"]), trials=3, space=space,
                      workers="inline")
    results = Study.from_config(path, host=speech_host).run(progress=False)
    assert len(results.trials()) == 3
    assert calls["decode"] == 0
