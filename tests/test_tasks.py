"""The task contract: regression and multi-label studies end to end on a tiny random BERT
(reading targets, training, the closed-form probes, export with the task's state, predict),
the metrics, threshold tuning, class weights and the data checks."""

from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import automl_pt
from automl_pt import Study
from automl_pt.errors import ConfigError, DataError, DataWarning, ModelLoadError
from tests.conftest import FILLER, TOPICS

SPACE = {"epochs": 1, "batch_size": 8, "min_steps": 0, "strategy": ["linear_probe", "full"]}


def regression_rows(n: int, seed: int) -> list[dict]:
    """Texts of four topic words: ``k`` about space, the rest about food; the target is ``k``
    (plus a little noise)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rng.randint(0, 4)
        words = rng.sample(TOPICS["space"].split(), k) + rng.sample(TOPICS["food"].split(), 4 - k)
        words += rng.sample(FILLER, 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "score": round(k + rng.random() * 0.2, 3)})
    return rows


def multilabel_rows(n: int, seed: int, as_list: bool = False) -> list[dict]:
    """Texts with words of one or two topics; the labels are those topics."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = sorted(rng.sample(list(TOPICS), rng.randint(1, 2)))
        words = [w for lab in labels for w in rng.sample(TOPICS[lab].split(), 3)] + rng.sample(FILLER, 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "topics": labels if as_list else ";".join(labels)})
    return rows


def run_study(tmp_path, tiny_bert, host, kind: str, data: dict, **sections) -> automl_pt.Results:
    config = {
        "study": {"name": f"tiny-{kind}", "trials": 3, "seed": 0},
        "task": {"type": f"text-{kind}"},
        "data": data,
        "search": {"backbones": [str(tiny_bert)], "pruner": "none", "space": SPACE},
        "resources": {"devices": "cpu", "workers": "inline"},
        "storage": {"dir": str(tmp_path / "run")},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return Study.from_config(config, host=host).run(progress=False)


def test_text_regression_trains_on_scaled_targets_and_predicts_numbers(tmp_path, tiny_bert, text_host):
    train = pd.DataFrame(regression_rows(60, 1))
    data = {"train": train, "validation": pd.DataFrame(regression_rows(20, 2)),
            "test": pd.DataFrame(regression_rows(20, 3)), "label_column": "score"}
    results = run_study(tmp_path, tiny_bert, text_host, "regression", data)

    assert results.metric == "rmse"
    board = results.leaderboard()
    assert board["rmse"].is_monotonic_increasing          # rmse is minimised: best first
    trials = results.trials()
    assert "label_smoothing" not in trials.columns         # single-label only
    metrics = json.loads((results.best_model_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"rmse", "mae", "r2", "spearman"}
    # the probe alone (ridge on frozen features) explains the target well
    probe = trials[trials["strategy"] == "linear_probe"].iloc[0]
    assert json.loads(probe["metrics"])["r2"] > 0.5
    manifest = json.loads((results.best_model_dir / "automl_pt.json").read_text())
    assert manifest["task_kind"] == "regression" and manifest["labels"] == ["score"]
    assert manifest["task_state"]["target_mean"] == pytest.approx(train["score"].mean(), rel=1e-6)
    assert manifest["task_state"]["target_std"] == pytest.approx(train["score"].std(ddof=0), rel=1e-6)

    model = automl_pt.load(results.best_model_dir, host=text_host)
    test = pd.DataFrame(regression_rows(20, 3))
    prediction = model.predict(test)
    assert prediction.probabilities is None and prediction.values.dtype == np.float64
    assert all(isinstance(v, float) for v in prediction.labels)
    # predictions are in the target's units: the export reproduces the test score
    rmse = float(np.sqrt(np.mean((prediction.values - test["score"].to_numpy()) ** 2)))
    assert rmse == pytest.approx(metrics["test"]["rmse"], rel=1e-4)
    assert list(prediction.to_frame().columns) == ["prediction"]


def test_multilabel_tunes_thresholds_on_validation_and_saves_them(tmp_path, tiny_bert, text_host):
    data = {"train": pd.DataFrame(multilabel_rows(60, 1)),
            "validation": pd.DataFrame(multilabel_rows(24, 2)),
            "test": pd.DataFrame(multilabel_rows(24, 3)),
            "label_column": "topics", "label_separator": ";"}
    results = run_study(tmp_path, tiny_bert, text_host, "multilabel", data)

    assert results.metric == "micro_f1"
    metrics = json.loads((results.best_model_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"micro_f1", "macro_f1", "subset_accuracy", "mean_average_precision"}
    manifest = json.loads((results.best_model_dir / "automl_pt.json").read_text())
    assert manifest["labels"] == ["food", "law", "space"]
    thresholds = manifest["task_state"]["thresholds"]
    assert len(thresholds) == 3 and all(0 < t < 1 for t in thresholds)

    model = automl_pt.load(results.best_model_dir, host=text_host)
    texts = ["rocket orbit planet moon galaxy", "bread cheese soup judge court jury"]
    prediction = model.predict(texts)
    assert prediction.probabilities.shape == (2, 3)
    for labels, probs in zip(prediction.labels, prediction.probabilities):
        # a label is predicted exactly when its probability passes its saved threshold
        assert labels == [n for n, p, t in zip(model.label_names, probs, thresholds) if p >= t]
    frame = prediction.to_frame()
    assert list(frame.columns) == ["labels", "p_food", "p_law", "p_space"]

    # thresholds are data: a manifest that holds something else is refused by name
    manifest["task_state"]["thresholds"] = ["import os"]
    (results.best_model_dir / "automl_pt.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="task_state.thresholds"):
        automl_pt.load(results.best_model_dir, host=text_host)


def test_multilabel_reads_lists_from_jsonl(tmp_path, text_host):
    from automl_pt.spec.config import parse_dict
    from automl_pt.spec.data import load_study_data

    path = tmp_path / "train.jsonl"
    rows = multilabel_rows(12, 1, as_list=True) + [{"text": "nothing to see", "topics": []}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    cfg, _ = parse_dict({"study": {"name": "x"}, "task": {"type": "text-multilabel"},
                         "data": {"train": str(path), "label_column": "topics"}})
    data = load_study_data(cfg, text_host.registry.tasks["text-multilabel"], text_host.registry)
    assert data.label_names == ["food", "law", "space"]
    labels = np.concatenate([data.train.labels, data.validation.labels])
    assert labels.shape == (13, 3) and set(np.unique(labels)) == {0.0, 1.0}
    assert (labels.sum(1) == 0).sum() == 1      # the example with no labels is kept


@pytest.mark.parametrize("kind, rows, message", [
    ("regression", [{"text": "a", "y": "3.5"}, {"text": "b", "y": "high"}, {"text": "c", "y": "1"}],
     r"1 label\(s\) in train are not finite numbers.*row 2: 'high'"),
    ("regression", [{"text": "a", "y": "2"}, {"text": "b", "y": "2"}], "all the same number"),
    ("multilabel", [{"text": "a", "y": "x|"}, {"text": "b", "y": "x|z"}], r"empty label \(row 1"),
    ("multilabel", [{"text": "a", "y": "x"}, {"text": "b", "y": "x"}], "needs at least 2"),
])
def test_bad_targets_are_one_clear_error(tmp_path, text_host, kind, rows, message):
    from automl_pt.spec.config import parse_dict
    from automl_pt.spec.data import load_study_data

    cfg, _ = parse_dict({"study": {"name": "x"}, "task": {"type": f"text-{kind}"},
                         "data": {"train": pd.DataFrame(rows), "label_column": "y"}})
    with pytest.raises(DataError, match=message):
        load_study_data(cfg, text_host.registry.tasks[f"text-{kind}"], text_host.registry)


def test_unseen_label_in_validation_names_its_rows(tmp_path, text_host):
    from automl_pt.spec.config import parse_dict
    from automl_pt.spec.data import load_study_data

    train = pd.DataFrame([{"text": "a", "y": "x|z"}, {"text": "b", "y": "x"}, {"text": "c", "y": "z"}])
    validation = pd.DataFrame([{"text": "d", "y": "x"}, {"text": "e", "y": "q|x"}])
    cfg, _ = parse_dict({"study": {"name": "x"}, "task": {"type": "text-multilabel"},
                         "data": {"train": train, "validation": validation, "label_column": "y"}})
    with pytest.raises(DataError, match=r"1 row\(s\) in validation have labels never seen in train \('q'\), data rows 2"):
        load_study_data(cfg, text_host.registry.tasks["text-multilabel"], text_host.registry)


def test_empty_label_separator_is_a_config_error(tmp_path):
    from automl_pt.spec.config import parse_dict

    _, where = parse_dict({"study": {"name": "x"}, "task": {"type": "text-multilabel"},
                           "data": {"train": pd.DataFrame([{"text": "a", "label": "x"}]),
                                    "label_separator": ""}})
    with pytest.raises(ConfigError, match="label_separator"):
        where.check()


def test_unknown_task_names_the_new_ones(text_host):
    with pytest.raises(ConfigError, match="text-regression"):
        Study.from_config({"study": {"name": "x"}, "task": {"type": "text-regresion"},
                           "data": {"train": pd.DataFrame([{"text": "a", "label": "1"}])}},
                          host=text_host).prepare()


# -- metrics and decisions ---------------------------------------------------------------------
def test_regression_metrics_against_hand_computed_values():
    from automl_pt.builtin.metrics import mae, r2, rmse, spearman

    y, p = [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.5, 5.0]
    assert rmse(y, p) == pytest.approx(np.sqrt((0.25 + 0 + 0.25 + 1) / 4))
    assert mae(y, p) == pytest.approx(0.5)
    assert r2(y, p) == pytest.approx(1 - 1.5 / 5.0)
    assert spearman(y, p) == pytest.approx(1.0)
    assert spearman(y, [4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1.0)


def test_multilabel_metrics_against_hand_computed_values():
    from automl_pt.builtin.metrics import (average_precision, macro_f1, mean_average_precision,
                                           micro_f1, subset_accuracy)

    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    p = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]])
    # tp 3, fp 1, fn 2
    assert micro_f1(y, p) == pytest.approx(6 / 9)
    # per label F1: 1, 2/3, 0
    assert macro_f1(y, p) == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert subset_accuracy(y, p) == pytest.approx(1 / 3)
    # positives ranked 1st and 3rd: AP = (1/1 + 2/3) / 2
    assert average_precision(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.7])) == pytest.approx(5 / 6)
    probs = np.array([[0.9, 0.1, 0.2], [0.2, 0.8, 0.1], [0.7, 0.6, 0.9]])
    assert mean_average_precision(y, None, probs) == pytest.approx((1 + 1 + 0.5) / 3)


def test_thresholds_maximise_each_labels_f1():
    from automl_pt.tasks import tune_thresholds

    probs = np.array([[0.9, 0.3], [0.35, 0.2], [0.3, 0.1], [0.1, 0.05]])
    y = np.array([[1, 1], [1, 0], [0, 0], [0, 0]])
    t = tune_thresholds(probs, y)
    assert 0.3 < t[0] <= 0.35          # both positives of label 0, not the negative at 0.3
    assert 0.2 < t[1] <= 0.3           # label 1: only its positive


def test_ridge_probe_recovers_a_linear_target():
    from automl_pt.core.linear import fit_ridge

    rng = np.random.default_rng(0)
    w = rng.normal(size=8)
    x = torch.as_tensor(rng.normal(size=(200, 8)) * 3 + 1, dtype=torch.float32)
    v = torch.as_tensor(rng.normal(size=(50, 8)) * 3 + 1, dtype=torch.float32)
    y, vy = x.double().numpy() @ w, v.double().numpy() @ w

    def score(logits):
        return {"rmse": float(np.sqrt(np.mean((logits.numpy().reshape(-1) - vy) ** 2)))}

    fit = fit_ridge(x, torch.as_tensor(y), v, torch.as_tensor(vy), score, "rmse", maximize=False,
                    grid=(100.0, 1.0, 0.01))
    assert fit.l2 == 0.01 and fit.metrics["rmse"] < 0.05
    pred = (v @ fit.weight.T + fit.bias).numpy().reshape(-1)   # weights act on raw features
    assert np.abs(pred - vy).max() < 0.1


# -- class imbalance ---------------------------------------------------------------------------
def test_balanced_class_weights_weigh_rare_classes_up():
    from automl_pt.tasks import ClassificationTask, MultilabelTask

    task = ClassificationTask()
    task.fit(np.array([0] * 8 + [1] * 2), ["a", "b"])
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    targets = torch.tensor([1, 1])
    plain = task.loss(logits, targets, {"class_weights": "none"})
    balanced = task.loss(logits, targets, {"class_weights": "balanced"})
    assert float(balanced) == pytest.approx(float(plain))   # one class: the weights cancel out
    mixed = torch.tensor([0, 1])
    per = torch.nn.functional.cross_entropy(logits, mixed, reduction="none")
    w = torch.tensor([10 / 16, 10 / 4])                      # n / (classes * count)
    assert float(task.loss(logits, mixed, {"class_weights": "balanced"})) == pytest.approx(
        float((per * w).sum() / w.sum()))

    ml = MultilabelTask()
    ml.fit(np.array([[1, 0], [1, 0], [1, 1], [0, 0]], dtype=np.float32), ["a", "b"])
    z = torch.zeros(1, 2)
    t = torch.tensor([[1.0, 1.0]])
    # label b: 1 positive of 4 → its positives weigh 3x; label a: 3 of 4 → 1/3
    expected = float(np.log(2) * (1 / 3 + 3) / 2)
    assert float(ml.loss(z, t, {"class_weights": "balanced"})) == pytest.approx(expected, rel=1e-5)


def test_imbalanced_classes_search_class_weights_and_warn_about_rare_ones(tmp_path, tiny_bert, text_host):
    rows = [{"text": "rocket orbit moon", "label": "space"}] * 30 + [{"text": "bread soup", "label": "food"}] * 4
    config = {"study": {"name": "imb"}, "task": {"type": "text-classification"},
              "data": {"train": pd.DataFrame(rows), "validation": pd.DataFrame(rows[::3])},
              "search": {"backbones": [str(tiny_bert)]}, "storage": {"dir": str(tmp_path / "r")}}
    with pytest.warns(DataWarning, match=r"1 class with fewer than 5 training examples: 'food' \(4\)"):
        prepared = Study.from_config(config, host=text_host).prepare()
    assert prepared.space["class_weights"].choices == ("none", "balanced")

    balanced = [{"text": "rocket orbit moon", "label": "space"}, {"text": "bread soup", "label": "food"}] * 10
    config["data"] = {"train": pd.DataFrame(balanced)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        prepared = Study.from_config(config, host=text_host).prepare()
    assert prepared.space["class_weights"].choices == ("none",)   # unchanged behaviour


def test_run_names_what_the_study_predicts():
    from automl_pt.cli import _targets
    from automl_pt.tasks import task_info

    regression = task_info("regression", "text-regression", "text", "text_column")
    multilabel = task_info("multilabel", "text-multilabel", "text", "text_column")
    assert _targets(regression, ["score"]) == "a number per example"     # not "1 labels"
    assert _targets(multilabel, ["food", "law", "space"]) == "3 labels"
