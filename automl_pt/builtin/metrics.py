"""Built-in metrics: classification, multi-label (0/1 matrices: examples x labels) and
regression (numbers); numpy, and scipy for Spearman's rank correlation.

Every metric is ``fn(labels, predictions, probabilities)`` on one split: ``labels`` as the
split keeps them (:class:`automl_pt.spec.data.Split`), ``predictions`` and ``probabilities`` from
:meth:`automl_pt.tasks.Task.predict` (``None`` probabilities for regression)."""

from __future__ import annotations

import numpy as np

from ..plugins import hookimpl
from ..registry import Metric


def accuracy(labels, predictions, probabilities=None) -> float:
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return float((labels == predictions).mean()) if len(labels) else 0.0


def macro_f1(labels, predictions, probabilities=None) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions; for
    multi-label 0/1 matrices, the mean of per-label F1 over the labels present in either."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.ndim == 2:
        y, p = labels > 0, predictions > 0
        tp, fp, fn = (p & y).sum(0), (p & ~y).sum(0), (~p & y).sum(0)
        present = (y | p).any(0)
        if not present.any():
            return 0.0
        return float(np.mean((2 * tp / np.maximum(2 * tp + fp + fn, 1))[present]))
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


# -- multi-label ------------------------------------------------------------------------------
def micro_f1(labels, predictions, probabilities=None) -> float:
    """F1 over every (example, label) decision together."""
    y, p = np.asarray(labels) > 0, np.asarray(predictions) > 0
    tp = int((p & y).sum())
    denom = int(p.sum() + y.sum())
    return 2 * tp / denom if denom else 0.0


def subset_accuracy(labels, predictions, probabilities=None) -> float:
    """Share of examples whose predicted label set is exactly right."""
    y, p = np.asarray(labels) > 0, np.asarray(predictions) > 0
    return float((y == p).all(axis=1).mean()) if len(y) else 0.0


def average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """Area under one label's precision-recall curve, as scikit-learn's
    ``average_precision_score`` computes it (steps at each distinct score)."""
    order = np.argsort(-scores, kind="mergesort")
    y, scores = y[order], scores[order]
    distinct = np.r_[np.flatnonzero(np.diff(scores)), len(y) - 1]
    tp = np.cumsum(y)[distinct]
    precision = tp / (distinct + 1)
    recall = tp / max(y.sum(), 1)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(labels, predictions, probabilities) -> float:
    """Mean over labels with at least one positive of :func:`average_precision` of the
    probabilities (independent of the decision thresholds)."""
    y = np.asarray(labels) > 0
    probs = np.asarray(probabilities, dtype=np.float64)
    scores = [average_precision(y[:, j], probs[:, j]) for j in range(y.shape[1]) if y[:, j].any()]
    return float(np.mean(scores)) if scores else 0.0


# -- regression -------------------------------------------------------------------------------
def rmse(labels, predictions, probabilities=None) -> float:
    y, p = np.asarray(labels, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
    return float(np.sqrt(np.mean((p - y) ** 2))) if len(y) else 0.0


def mae(labels, predictions, probabilities=None) -> float:
    y, p = np.asarray(labels, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
    return float(np.mean(np.abs(p - y))) if len(y) else 0.0


def r2(labels, predictions, probabilities=None) -> float:
    """Coefficient of determination: 1 - residual / total sum of squares (0 when the labels
    do not vary)."""
    y, p = np.asarray(labels, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
    total = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    return 1.0 - float(((y - p) ** 2).sum()) / total if total > 0 else 0.0


def spearman(labels, predictions, probabilities=None) -> float:
    """Spearman's rank correlation (0 where either side is constant)."""
    y, p = np.asarray(labels, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
    if len(y) < 2 or np.all(y == y[0]) or np.all(p == p[0]):
        return 0.0
    from scipy.stats import spearmanr

    return float(spearmanr(y, p).statistic)


def pearson(labels, predictions, probabilities=None) -> float:
    """Pearson's linear correlation (0 where either side is constant)."""
    y, p = np.asarray(labels, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
    if len(y) < 2 or np.all(y == y[0]) or np.all(p == p[0]):
        return 0.0
    yc, pc = y - y.mean(), p - p.mean()
    return float((yc * pc).sum() / np.sqrt((yc ** 2).sum() * (pc ** 2).sum()))


@hookimpl
def automl_pt_register_metrics(register):
    register.metric(Metric("accuracy", accuracy))
    register.metric(Metric("macro_f1", macro_f1))
    register.metric(Metric("top5_accuracy", top5_accuracy, min_classes=5))
    register.metric(Metric("micro_f1", micro_f1))
    register.metric(Metric("subset_accuracy", subset_accuracy))
    register.metric(Metric("mean_average_precision", mean_average_precision))
    register.metric(Metric("rmse", rmse, greater_is_better=False))
    register.metric(Metric("mae", mae, greater_is_better=False))
    register.metric(Metric("r2", r2))
    register.metric(Metric("spearman", spearman))
    register.metric(Metric("pearson", pearson))
