"""Benchmark: the closed-form (L-BFGS) linear probe vs. the SGD linear probe it replaces, on the
text quickstart data (fortunes topics) with the real MiniLM weights (``minilm-l6``), on the same
cached frozen features, measured in the same run.

    python studies/make_fortunes.py          # once: builds studies/data/fortunes
    python benchmarks/bench_probe.py [--max-length 64] [--per-class 4]

Prints validation / test accuracy and fit seconds of the L-BFGS probe (L2 chosen on validation)
and of SGD probes (AdamW, 4 epochs, batch 32, as the old search space allowed), on all training
texts and on a ``--per-class`` labels-per-class subset (label efficiency's tiny budgets).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[1] / "studies" / "data" / "fortunes"


def features(max_length: int):
    """(features, labels) per split from the frozen MiniLM, the label count, seconds, dim."""
    import pandas as pd

    from automl_pt.model import TrialModel
    from automl_pt.plugins import create_plugin_host
    from automl_pt.train.training import predict_logits

    host = create_plugin_host()
    backbone = host.registry.find_backbone("minilm-l6").load({"max_length": max_length})
    prep = backbone.preprocessor({"max_length": max_length})
    frames = {s: pd.read_csv(DATA / f"{s}.csv") for s in ("train", "validation", "test")}
    names = sorted(set(frames["train"]["label"]))
    model = TrialModel(backbone, torch.nn.Identity()).eval()
    out, t0 = {}, time.perf_counter()
    for split, frame in frames.items():
        enc = prep.encode(list(frame["text"]))
        out[split] = (predict_logits(model, enc, torch.device("cpu"), 128, prep.collate),
                      np.array([names.index(v) for v in frame["label"]]))
    return out, len(names), time.perf_counter() - t0, backbone.feature_dim


def accuracy(y, pred, probs=None):  # noqa: ARG001
    return float(np.mean(np.asarray(y) == np.asarray(pred)))


def lbfgs(train, val, test, n_labels):
    from automl_pt.core.linear import fit_logistic

    t0 = time.perf_counter()
    fit = fit_logistic(train[0], train[1], val[0], val[1], n_labels,
                       lambda y, p, pr: {"accuracy": accuracy(y, p)}, "accuracy", True)
    seconds = time.perf_counter() - t0
    pred = (test[0] @ fit.weight.T + fit.bias).argmax(1).numpy()
    return fit.metrics["accuracy"], accuracy(test[1], pred), seconds, f"l2={fit.l2:g}"


def sgd(train, val, test, n_labels, dim, lr, mult, epochs):
    from automl_pt.model import ClassificationTask, TrialModel
    from automl_pt.registry import Metric
    from automl_pt.train.training import evaluate, fine_tune

    torch.manual_seed(0)
    task = ClassificationTask()
    model = TrialModel(torch.nn.Module(), task.build_head(dim, n_labels, {"dropout": 0.1}))
    params = dict(strategy="linear_probe", learning_rate=lr, head_lr_multiplier=mult,
                  layer_decay=1.0, weight_decay=0.01, warmup_ratio=0.0, epochs=epochs,
                  batch_size=32, dropout=0.1, label_smoothing=0.0, schedule="cosine")
    metrics = {"accuracy": Metric("accuracy", accuracy)}
    t0 = time.perf_counter()
    result = fine_tune(model, task, {"features": train[0]}, train[1], {"features": val[0]}, val[1],
                       params, metrics, "accuracy", True, torch.device("cpu"), seed=0)
    seconds = time.perf_counter() - t0
    model.load_state_dict(result.best_state)
    test_metrics, _, _ = evaluate(model, task, {"features": test[0]}, test[1], metrics,
                                  torch.device("cpu"), 256)
    return (result.best_metrics["accuracy"], test_metrics["accuracy"], seconds,
            f"lr={lr:g}x{mult:g}, best epoch {result.best_epoch}/{epochs}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--per-class", type=int, default=4)
    args = ap.parse_args()
    if not (DATA / "train.csv").exists():
        raise SystemExit(f"{DATA} is missing: run python studies/make_fortunes.py")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    feats, n_labels, feature_s, dim = features(args.max_length)
    train, val, test = feats["train"], feats["validation"], feats["test"]
    print(f"features: {len(train[1])} train / {len(val[1])} validation / {len(test[1])} test texts, "
          f"{n_labels} labels, dim {dim}, extracted once in {feature_s:.1f} s")
    from automl_pt.efficiency import subset_indices

    idx = subset_indices(train[1], args.per_class, 0)
    small = (train[0][idx], train[1][idx])
    print(f"{'train set':<14} {'probe':<34} {'val acc':>8} {'test acc':>8} {'fit s':>7}")
    for label, data in (("all", train), (f"{args.per_class}/class ({len(idx)})", small)):
        rows = [("L-BFGS", *lbfgs(data, val, test, n_labels))]
        for lr, mult, epochs in ((1e-3, 10.0, 4), (1e-4, 10.0, 4), (1e-3, 1.0, 4), (1e-3, 10.0, 3)):
            rows.append(("SGD", *sgd(data, val, test, n_labels, dim, lr, mult, epochs)))
        for kind, v, t, s, note in rows:
            print(f"{label:<14} {kind + ' ' + note:<34} {v:8.3f} {t:8.3f} {s:7.2f}")


if __name__ == "__main__":
    main()
