"""End to end on a tiny random timm model: study file → Optuna trials (augmentation, mixup,
cutmix, linear probe) → DuckDB → export → reload → predict."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from automl_pt import Study
from automl_pt.export.predictor import Predictor
from automl_pt.testing import write_study
from automl_pt_vision.testing import make_image_tree, write_table


def study_toml(tmp_path, backbone, trials: int, space: str, sampler: str = "grid",
               workers: str = "process") -> object:
    return write_study(tmp_path, "image-classification", backbone,
                       {"train": "data/train", "test": "data/test.csv", "image_size": 32}, space,
                       name="tiny-vision", trials=trials, search={"sampler": sampler},
                       resources={"workers": workers, "num_threads": 1})


def make_data(root):
    train = make_image_tree(root / "data" / "train", n_per_class=24, size=36, seed=1)
    make_image_tree(root / "data" / "test_images", n_per_class=8, size=36, seed=2)
    table = write_table(root / "data" / "test.csv", root / "data" / "test_images",
                        image_column="image", label_column="label")
    return {"train": train, "test": table, "root": root}


@pytest.fixture
def image_data(tmp_path):
    return make_data(tmp_path)


GRID_SPACE = """strategy = ["full", "linear_probe"]
mixup = ["none", "mixup", "cutmix"]
augmentation_strength = [0.3]
learning_rate = [0.003]
head_lr_multiplier = [10.0]
layer_decay = [0.9]
weight_decay = [0.01]
warmup_ratio = [0.0]
epochs = [6]
batch_size = [16]
dropout = [0.0]
label_smoothing = [0.0]
schedule = ["cosine"]"""


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, tiny_timm):
    """Six trials (grid: strategy x mixing) run once for the tests of this module."""
    import automl_pt_vision
    from automl_pt.plugins import create_plugin_host

    root = tmp_path_factory.mktemp("e2e")
    data = make_data(root)
    path = study_toml(root, tiny_timm, trials=6, space=GRID_SPACE, workers="inline")
    host = create_plugin_host(entry_points=False, extra=[automl_pt_vision])
    results = Study.from_config(path, host=host).run(progress=False)
    return root, data, results


@pytest.mark.slow
def test_study_runs_every_strategy_and_mixing(finished_study):
    root, _, results = finished_study
    con = duckdb.connect(str(root / "run" / "results.duckdb"), read_only=True)
    trials = con.execute("SELECT * FROM trials ORDER BY number").df()
    epochs = con.execute("SELECT * FROM epoch_metrics").df()
    study_row = con.execute("SELECT * FROM studies").df()
    con.close()
    assert len(trials) == 6 and set(trials["state"]) == {"COMPLETE"}
    params = [json.loads(p) for p in trials["params"]]
    value = {(p["strategy"], p["mixup"]): v for p, v in zip(params, trials["value"])}
    assert set(value) == {(s, m) for s in ("full", "linear_probe")
                          for m in ("none", "mixup", "cutmix")}
    assert {"val_accuracy", "val_macro_f1", "train_loss"} <= set(epochs["name"])
    assert "val_top5_accuracy" not in set(epochs["name"])   # 3 classes: top-5 would always be 1
    # the synthetic patterns are easy: fine-tuning learns them, with hard and with mixed targets
    assert value[("full", "none")] >= 0.8, value
    assert value[("full", "mixup")] > 0.5, value
    data = json.loads(study_row.loc[0, "data"])
    assert data["train"] + data["validation"] == 72 and data["test"] == 24
    assert data["labels"] == ["columns", "disc", "stripes"]
    assert 0.0 <= json.loads(study_row.loc[0, "test_metrics"])["accuracy"] <= 1.0


@pytest.mark.slow
def test_export_reloads_and_reproduces_the_test_score(finished_study, vision_host):
    root, image_data, results = finished_study
    best = results.best_model_dir
    for name in ("automl_pt.json", "head.safetensors", "metrics.json", "backbone/config.json",
                 "backbone/model.safetensors", "backbone/preprocessor.json"):
        assert (best / name).is_file(), name
    config = json.loads((best / "backbone" / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]   # the size it was trained at
    model = Predictor(best, host=vision_host)
    test = pd.read_csv(image_data["test"])
    paths = [str(root / "data" / p) for p in test["image"]]
    prediction = model.predict(paths)
    assert len(prediction) == len(test)
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = float(np.mean(np.array(prediction.labels) == test["label"].to_numpy()))
    assert accuracy == pytest.approx(results.test_metrics["accuracy"], abs=1e-9)
    # PIL images and numpy arrays give the same answers as paths
    from PIL import Image

    # a table of paths relative to it, through the installed entry point (as the CLI does)
    import automl_pt

    from_table = automl_pt.load(best).predict(image_data["test"])
    assert from_table.labels == prediction.labels
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
    space = GRID_SPACE.replace('mixup = ["none", "mixup", "cutmix"]', 'mixup = ["none"]') \
                      .replace("epochs = [6]", "epochs = [1]")
    path = study_toml(tmp_path, tiny_timm, trials=2, space=space, workers="inline")
    Study.from_config(path, host=vision_host).run(progress=False)
    assert calls["decode"] == 72 + 24          # train + validation + test, once each
    # the study resumed for one more trial (a fresh runner, as after a restart) reads the
    # on-disk cache: no decoding at all
    calls["decode"] = 0
    path = study_toml(tmp_path, tiny_timm, trials=3, space=space, workers="inline")
    results = Study.from_config(path, host=vision_host).run(progress=False)
    assert len(results.trials()) == 3
    assert calls["decode"] == 0
