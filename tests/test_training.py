"""The fine-tuning loop: parameter groups, schedule, strategies, gradient accumulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from automl_pt.builtin.metrics import accuracy
from automl_pt.model import ClassificationTask, TrialModel
from automl_pt.registry import Metric
from automl_pt.train.training import TrainerCallback, fine_tune, lr_lambda, param_groups

PARAMS = dict(learning_rate=1e-3, head_lr_multiplier=10.0, layer_decay=0.5, weight_decay=0.01,
              warmup_ratio=0.0, epochs=2, batch_size=8, dropout=0.0, label_smoothing=0.0,
              schedule="cosine", strategy="full")
METRICS = {"accuracy": Metric("accuracy", accuracy)}


@pytest.fixture
def model_and_data(tiny_bert):
    from automl_pt_text.backbone import load_transformers_backbone
    from tests.conftest import make_topic_rows

    backbone = load_transformers_backbone(str(tiny_bert), "tiny", {})
    backbone.set_dropout(0.0)
    task = ClassificationTask()
    model = TrialModel(backbone, task.build_head(backbone.feature_dim, 3, {"dropout": 0.0}))
    prep = backbone.preprocessor({"max_length": 16})
    rows = make_topic_rows(8, 0)
    names = sorted({r["label"] for r in rows})
    enc = prep.encode([r["text"] for r in rows])
    labels = np.array([names.index(r["label"]) for r in rows])
    return model, task, prep, enc, labels


def test_param_groups_apply_layer_decay_head_multiplier_and_no_decay(model_and_data):
    model = model_and_data[0]
    groups = param_groups(model, PARAMS, train_backbone=True)
    top, ids = model.backbone.num_layers_and_ids()
    assert top == 3  # embeddings 0, two encoder layers 1-2, pooler 3
    by_param = {id(p): g for g in groups for p in g["params"]}
    for name, p in model.backbone.named_parameters():
        g = by_param[id(p)]
        assert g["lr"] == pytest.approx(1e-3 * 0.5 ** (top - ids[name]))
        assert g["weight_decay"] == (0.0 if p.ndim <= 1 else 0.01)
    for p in model.head.parameters():
        assert by_param[id(p)]["lr"] == pytest.approx(1e-2)
    embed = [n for n in ids if "embeddings" in n]
    assert embed and all(ids[n] == 0 for n in embed)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_warmup_then_cosine_and_linear():
    f = lr_lambda(100, 0.1, "cosine")
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    g = lr_lambda(100, 0.0, "linear")
    assert g(0) == 1.0 and g(50) == pytest.approx(0.5)


class _Watch(TrainerCallback):
    def __init__(self, model):
        self.model, self.frozen_at = model, []

    def on_step_end(self, state):
        self.frozen_at.append(not any(p.requires_grad for p in self.model.backbone.parameters()))


def _train(model, task, enc, labels, prep, params, **kw):
    return fine_tune(model, task, enc, labels, enc, labels, params, METRICS, "accuracy", True,
                     torch.device("cpu"), seed=0, collate=prep.collate, **kw)


def test_freeze_then_unfreeze_trains_head_first(model_and_data):
    model, task, prep, enc, labels = model_and_data
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    watch = _Watch(model)
    params = {**PARAMS, "strategy": "freeze_then_unfreeze", "epochs": 3}
    _train(model, task, enc, labels, prep, params, callbacks=[watch])
    steps = 3 * math.ceil(24 / 8)
    assert len(watch.frozen_at) == steps
    # head only for the first third of the optimizer steps, then everything
    assert watch.frozen_at == [True] * (steps // 3) + [False] * (steps - steps // 3)
    changed = [k for k, v in model.backbone.state_dict().items() if not torch.equal(v, before[k])]
    assert changed


def test_linear_probe_leaves_backbone_untouched(model_and_data):
    model, task, prep, enc, labels = model_and_data
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    feats = {"features": torch.randn(len(labels), model.backbone.feature_dim)}
    fine_tune(model, task, feats, labels, feats, labels, {**PARAMS, "strategy": "linear_probe"},
              METRICS, "accuracy", True, torch.device("cpu"), seed=0)
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, before[k])
    assert any(not torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())


def test_gradient_accumulation_matches_full_batch(model_and_data):
    model, task, prep, enc, labels = model_and_data
    start = {k: v.clone() for k, v in model.state_dict().items()}
    params = {**PARAMS, "epochs": 1, "weight_decay": 0.0}
    full = _train(model, task, enc, labels, prep, params)
    model.load_state_dict(start)
    accumulated = _train(model, task, enc, labels, prep, params, micro_batch_size=3)
    for k in full.best_state:
        torch.testing.assert_close(accumulated.best_state[k], full.best_state[k], rtol=1e-4, atol=1e-5)


def test_best_epoch_weights_are_kept(model_and_data):
    model, task, prep, enc, labels = model_and_data
    result = _train(model, task, enc, labels, prep, {**PARAMS, "epochs": 3})
    values = [h["val_accuracy"] for h in result.history]
    assert result.best_epoch == int(np.argmax(values)) + 1
    assert result.best_metrics["accuracy"] == max(values)
    model.load_state_dict(result.best_state)
    from automl_pt.train.training import evaluate

    again, _, _ = evaluate(model, task, enc, labels, METRICS, torch.device("cpu"), 64, prep.collate)
    assert again["accuracy"] == pytest.approx(max(values))
