"""Benchmark: cached partial fine-tuning (strategy ``partial``, top k layers on cached
activations) against full fine-tuning, on the text quickstart data with the shipped MiniLM.

    python studies/make_fortunes.py
    python benchmarks/bench_partial.py [--train 256] [--epochs 3] [--ks 1,2]

Every strategy runs the trial's own pieces (``automl_pt.train.partial`` + ``fine_tune``) with the same
hyperparameters, seed, data and number of epochs, one after another in this process. Prints, per
strategy: training samples/s (epochs only, as the trial records it), the one-off seconds to
compute the activation cache, seconds to the end of training including it, and the validation
accuracy of the best epoch; then the speed ratios to full fine-tuning (measured in this run).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

DATA = Path(__file__).resolve().parent.parent / "studies" / "data" / "fortunes"
PARAMS = dict(learning_rate=1e-4, head_lr_multiplier=10.0, layer_decay=0.9, weight_decay=0.01,
              warmup_ratio=0.1, batch_size=16, dropout=0.1, label_smoothing=0.0, schedule="cosine")


def load_split(name: str, n: int | None, labels: list[str]) -> tuple[list[str], np.ndarray]:
    frame = pd.read_csv(DATA / f"{name}.csv")
    if n is not None and n < len(frame):
        frame = frame.sample(n=n, random_state=0)
    return frame["text"].astype(str).tolist(), np.array([labels.index(x) for x in frame["label"]])


def run(strategy: str, k: int, train, val, epochs: int, learning_rate: float | None = None) -> dict:
    from automl_pt.train import partial
    from automl_pt.builtin.metrics import accuracy
    from automl_pt.model import ClassificationTask, TrialModel
    from automl_pt.plugins import create_plugin_host
    from automl_pt.registry import Metric
    from automl_pt.train.training import fine_tune

    (train_enc, train_y), (val_enc, val_y), n_labels = train, val, int(train[1].max()) + 1
    torch.manual_seed(0)
    backbone = create_plugin_host().registry.find_backbone("minilm-l6").load({})
    prep = backbone.preprocessor({"max_length": 64})
    task = ClassificationTask()
    head = task.build_head(backbone.feature_dim, n_labels, PARAMS)
    backbone.set_dropout(PARAMS["dropout"])
    device = torch.device("cpu")
    t0 = time.perf_counter()
    cache_s = 0.0
    if strategy == "partial":
        train_data = partial.compute_activations(backbone, train_enc, k, device, 64, prep.collate)
        val_data = partial.compute_activations(backbone, val_enc, k, device, 64, prep.collate)
        cache_s = time.perf_counter() - t0
        trainable = partial.freeze_bottom(backbone, k)
        model = partial.PartialTrialModel(backbone, head, k)
        collate = partial.collate_for(backbone)
    else:
        train_data, val_data, collate = train_enc, val_enc, prep.collate
        trainable = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
        model = TrialModel(backbone, head)
    params = {**PARAMS, "strategy": strategy, "epochs": epochs,
              "learning_rate": learning_rate or PARAMS["learning_rate"]}
    result = fine_tune(model, task, train_data, train_y, val_data, val_y, params,
                       {"accuracy": Metric("accuracy", accuracy)}, "accuracy", True, device,
                       seed=0, collate=collate)
    return {"strategy": strategy if strategy == "full" else f"partial k={k}",
            "learning_rate": params["learning_rate"],
            "trainable_backbone_params": trainable, "samples_per_s": result.samples_per_s,
            "cache_s": cache_s, "total_s": time.perf_counter() - t0,
            "val_accuracy": result.best_metrics["accuracy"], "best_epoch": result.best_epoch,
            "per_epoch": [round(h["val_accuracy"], 3) for h in result.history]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=256, help="training texts (subsampled)")
    parser.add_argument("--validation", type=int, default=None, help="validation texts")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ks", default="1,2")
    parser.add_argument("--partial-lr", type=float, default=None,
                        help="learning rate of the partial runs (default: the full run's)")
    parser.add_argument("--no-full", action="store_true",
                        help="partial runs only (accuracy at another learning rate; no ratios)")
    args = parser.parse_args()
    if not (DATA / "train.csv").is_file():
        raise SystemExit(f"{DATA} is missing: run python studies/make_fortunes.py first")
    from automl_pt.plugins import create_plugin_host

    labels = sorted(pd.read_csv(DATA / "train.csv")["label"].astype(str).unique())
    backbone = create_plugin_host().registry.find_backbone("minilm-l6").load({})
    prep = backbone.preprocessor({"max_length": 64})
    splits = []
    for name, n in (("train", args.train), ("validation", args.validation)):
        texts, y = load_split(name, n, labels)
        splits.append((prep.encode(texts), y))
    del backbone
    rows = [] if args.no_full else [run("full", 0, *splits, args.epochs)]
    partial_lr = args.partial_lr or PARAMS["learning_rate"]
    rows += [run("partial", int(k), *splits, args.epochs, partial_lr) for k in args.ks.split(",")]
    full = rows[0]  # the ratios are to this row (the first partial run with --no-full)
    print(f"minilm-l6 on fortunes: {len(splits[0][1])} training / {len(splits[1][1])} validation "
          f"texts, {len(labels)} labels, {args.epochs} epochs, batch {PARAMS['batch_size']}, "
          f"max_length 64, {torch.get_num_threads()} threads")
    print(f"{'strategy':<13} {'lr':>7} {'trainable':>10} {'samples/s':>10} {'x full':>7} {'cache s':>8} "
          f"{'total s':>8} {'x full':>7} {'val acc':>8}  per epoch")
    for r in rows:
        print(f"{r['strategy']:<13} {r['learning_rate']:>7.0e} {r['trainable_backbone_params']:>10,} {r['samples_per_s']:>10.1f} "
              f"{r['samples_per_s'] / full['samples_per_s']:>7.2f} {r['cache_s']:>8.1f} "
              f"{r['total_s']:>8.1f} {full['total_s'] / r['total_s']:>7.2f} {r['val_accuracy']:>8.3f}  "
              f"{r['per_epoch']}")


if __name__ == "__main__":
    main()
