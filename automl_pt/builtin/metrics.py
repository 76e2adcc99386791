"""Built-in classification metrics (numpy only)."""

from __future__ import annotations

import numpy as np

from ..plugins import hookimpl
from ..registry import Metric


def accuracy(labels, predictions, probabilities=None) -> float:
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return float((labels == predictions).mean()) if len(labels) else 0.0


def macro_f1(labels, predictions, probabilities=None) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    classes = np.union1d(labels, predictions)
    if len(classes) == 0:
        return 0.0
    scores = []
    for c in classes:
        tp = np.sum((predictions == c) & (labels == c))
        fp = np.sum((predictions == c) & (labels != c))
        fn = np.sum((predictions != c) & (labels == c))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def top5_accuracy(labels, predictions, probabilities) -> float:
    labels = np.asarray(labels)
    top = np.argsort(-np.asarray(probabilities), axis=1)[:, :5]
    return float(np.mean([labels[i] in top[i] for i in range(len(labels))])) if len(labels) else 0.0


@hookimpl
def automl_pt_register_metrics(register):
    register.metric(Metric("accuracy", accuracy))
    register.metric(Metric("macro_f1", macro_f1))
    register.metric(Metric("top5_accuracy", top5_accuracy, min_classes=5))
