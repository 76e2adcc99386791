"""End to end on a tiny random timm model: study file → Optuna trials (augmentation, mixup,
cutmix, linear probe) → DuckDB → export → reload → predict."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from automl_pt import Study
from automl_pt.export import Predictor
from automl_pt_vision.testing import make_image_tree, write_table


def study_toml(tmp_path, backbone, trials: int, space: str, sampler: str = "grid",
               extra_data: str = "") -> object:
    text = f"""
[study]
name = "tiny-vision"
trials = {trials}
seed = 0

[task]
type = "image-classification"

[data]
train = "data/train"
test = "data/test.csv"
image_size = 32
{extra_data}

[search]
backbones = ["{backbone}"]
sampler = "{sampler}"
pruner = "none"

[search.space]
{space}

[resources]
devices = "cpu"

[storage]
dir = "run"
"""
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


@pytest.fixture
def image_data(tmp_path):
    train = make_image_tree(tmp_path / "data" / "train", n_per_class=24, size=36, seed=1)
    make_image_tree(tmp_path / "data" / "test_images", n_per_class=8, size=36, seed=2)
    table = write_table(tmp_path / "data" / "test.csv", tmp_path / "data" / "test_images",
                        image_column="image", label_column="label")
    return {"train": train, "test": table}


GRID_SPACE = """strategy = ["full", "linear_probe"]
mixup = ["mixup", "cutmix"]
augmentation_strength = [0.5]
learning_rate = [0.003]
head_lr_multiplier = [10.0]
layer_decay = [0.9]
weight_decay = [0.01]
warmup_ratio = [0.0]
epochs = [3]
batch_size = [16]
dropout = [0.0]
label_smoothing = [0.0]
schedule = ["cosine"]"""


@pytest.fixture
def finished_study(tmp_path, tiny_timm, image_data, vision_host):
    path = study_toml(tmp_path, tiny_timm, trials=4, space=GRID_SPACE)
    results = Study.from_config(path, host=vision_host).run(progress=False)
    return path, results


@pytest.mark.slow
def test_study_runs_every_strategy_and_mixing(finished_study, tmp_path):
    _, results = finished_study
    con = duckdb.connect(str(tmp_path / "run" / "results.duckdb"), read_only=True)
    trials = con.execute("SELECT * FROM trials ORDER BY number").df()
    epochs = con.execute("SELECT * FROM epoch_metrics").df()
    study_row = con.execute("SELECT * FROM studies").df()
    con.close()
    assert len(trials) == 4 and set(trials["state"]) == {"COMPLETE"}
    combos = {(json.loads(p)["strategy"], json.loads(p)["mixup"]) for p in trials["params"]}
    assert combos == {("full", "mixup"), ("full", "cutmix"), ("linear_probe", "mixup"),
                      ("linear_probe", "cutmix")}
    assert {"val_accuracy", "val_macro_f1", "val_top5_accuracy", "train_loss"} <= set(epochs["name"])
    # training on soft (mixed) targets still learns: every fine-tuned trial beats chance (1/3)
    full = trials[[json.loads(p)["strategy"] == "full" for p in trials["params"]]]
    assert (full["value"] > 0.5).all(), full[["number", "value"]]
    data = json.loads(study_row.loc[0, "data"])
    assert data["train"] + data["validation"] == 72 and data["test"] == 24
    assert data["labels"] == ["columns", "disc", "stripes"]
    assert 0.0 <= json.loads(study_row.loc[0, "test_metrics"])["accuracy"] <= 1.0


@pytest.mark.slow
def test_export_reloads_and_reproduces_the_test_score(finished_study, tmp_path, image_data,
                                                      vision_host):
    _, results = finished_study
    best = results.best_model_dir
    for name in ("automl_pt.json", "head.safetensors", "metrics.json", "backbone/config.json",
                 "backbone/model.safetensors", "backbone/preprocessor.json"):
        assert (best / name).is_file(), name
    config = json.loads((best / "backbone" / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]   # the size it was trained at
    model = Predictor(best, host=vision_host)
    test = pd.read_csv(image_data["test"])
    paths = [str(tmp_path / "data" / p) for p in test["image"]]
    prediction = model.predict(paths)
    assert len(prediction) == len(test)
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = float(np.mean(np.array(prediction.labels) == test["label"].to_numpy()))
    assert accuracy == pytest.approx(results.test_metrics["accuracy"], abs=1e-9)
    # PIL images and numpy arrays give the same answers as paths
    from PIL import Image

    arrays = [np.asarray(Image.open(p)) for p in paths[:5]]
    assert model.predict(arrays).labels == prediction.labels[:5]
    assert model.predict([Image.open(p) for p in paths[:5]]).labels == prediction.labels[:5]


@pytest.mark.slow
def test_decode_cache_is_reused_by_later_trials(tmp_path, tiny_timm, image_data, vision_host,
                                                monkeypatch):
    from automl_pt_vision import preprocess

    calls = {"decode": 0}
    real = preprocess.ImagePreprocessor.decode

    def counting(self, item):
        calls["decode"] += 1
        return real(self, item)

    monkeypatch.setattr(preprocess.ImagePreprocessor, "decode", counting)
    space = GRID_SPACE.replace('mixup = ["mixup", "cutmix"]', 'mixup = ["none"]') \
                      .replace("epochs = [3]", "epochs = [1]")
    path = study_toml(tmp_path, tiny_timm, trials=2, space=space)
    Study.from_config(path, host=vision_host).run(progress=False)
    assert calls["decode"] == 72 + 24          # train + validation + test, once each
    # a new process (resume with more trials) reads the on-disk cache: no decoding at all
    calls["decode"] = 0
    Study.from_config(path, host=vision_host, study={"trials": 3},
                      search={"space": {**_space_dict(space), "strategy": ["full"]}}
                      ).run(progress=False)
    assert calls["decode"] == 0


def _space_dict(space: str) -> dict:
    import tomllib

    return tomllib.loads(space)
