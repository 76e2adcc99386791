"""Benchmark: parameter-efficient strategies (lora, ia3, bitfit) against full fine-tuning on real
MiniLM weights (minilm-l6) and the fortunes topics (``python studies/make_fortunes.py`` first),
same data, epochs, batch size and sequence length, all in one run.

    python benchmarks/bench_peft.py [--epochs 2] [--strategies full,lora,bitfit,ia3] [--train-limit N]

Each strategy uses its KNOWN_GOOD configuration (automl_pt/engine/seeding.py) on top of a
shared base recipe; ``full`` uses the base recipe. Prints, per strategy: validation and test
accuracy (the test score of the merged model, as exported), trainable parameters (% of all),
training samples/s and its ratio to ``full``, and seconds to train.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
BASE = dict(strategy="full", learning_rate=5e-5, head_lr_multiplier=10.0, layer_decay=0.9,
            weight_decay=0.01, warmup_ratio=0.1, batch_size=32, dropout=0.1, label_smoothing=0.0,
            schedule="cosine")


def read_split(path: Path, labels: list[str] | None = None):
    import pandas as pd

    frame = pd.read_csv(path)
    names = labels or sorted(frame["label"].unique())
    return list(frame["text"].astype(str)), np.array([names.index(x) for x in frame["label"]]), names


def run(strategy: str, epochs: int, data: dict, num_labels: int, seed: int = 0) -> dict:
    from automl_pt.train.adapters import apply_strategy, count_parameters
    from automl_pt.builtin.metrics import accuracy
    from automl_pt.engine.seeding import KNOWN_GOOD
    from automl_pt.model import ClassificationTask, TrialModel
    from automl_pt.plugins import create_plugin_host
    from automl_pt.registry import Metric
    from automl_pt.train.training import evaluate, fine_tune

    params = {**BASE, **KNOWN_GOOD.get(strategy, {}), "strategy": strategy, "epochs": epochs}
    torch.manual_seed(seed)
    backbone = create_plugin_host().registry.find_backbone("minilm-l6").load({})
    task = ClassificationTask()
    model = TrialModel(backbone, task.build_head(backbone.feature_dim, num_labels, params))
    prep = backbone.preprocessor({"max_length": 64})
    enc = {k: prep.encode(texts) for k, (texts, _) in data.items()}
    adapters = apply_strategy(backbone, params)
    trainable, total = count_parameters(model)
    metrics = {"accuracy": Metric("accuracy", accuracy)}
    device = torch.device("cpu")
    t0 = time.perf_counter()
    result = fine_tune(model, task, enc["train"], data["train"][1], enc["validation"],
                       data["validation"][1], params, metrics, "accuracy", True, device, seed,
                       collate=prep.collate)
    seconds = time.perf_counter() - t0
    model.load_state_dict(result.best_state)
    if adapters is not None:
        adapters.merge()
    test, _, _ = evaluate(model, task, enc["test"], data["test"][1], metrics, device, 64, prep.collate)
    return {"strategy": strategy, "val_accuracy": result.best_metrics["accuracy"],
            "test_accuracy": test["accuracy"], "trainable": trainable,
            "trainable_pct": 100.0 * trainable / total, "samples_per_s": result.samples_per_s,
            "train_s": seconds, "best_epoch": result.best_epoch}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--strategies", default="full,lora,bitfit,ia3")
    parser.add_argument("--full-lr", type=float, default=BASE["learning_rate"],
                        help="learning rate of 'full' (default: %(default)s)")
    parser.add_argument("--full-head-multiplier", type=float, default=BASE["head_lr_multiplier"],
                        help="head learning-rate multiplier of 'full' (default: %(default)s)")
    parser.add_argument("--train-limit", type=int, default=0,
                        help="use the first N training texts (0: all), for slow machines")
    parser.add_argument("--data", type=Path, default=HERE.parent / "studies" / "data" / "fortunes")
    args = parser.parse_args()
    if not (args.data / "train.csv").is_file():
        print(f"{args.data}/train.csv is missing: run python studies/make_fortunes.py", file=sys.stderr)
        return 2
    BASE.update(learning_rate=args.full_lr, head_lr_multiplier=args.full_head_multiplier)
    train = read_split(args.data / "train.csv")
    if args.train_limit:
        train = (train[0][:args.train_limit], train[1][:args.train_limit], train[2])
    names = train[2]
    data = {"train": train[:2], "validation": read_split(args.data / "validation.csv", names)[:2],
            "test": read_split(args.data / "test.csv", names)[:2]}
    print(f"minilm-l6, fortunes: {len(train[0])} train texts, {len(names)} topics, "
          f"{args.epochs} epochs, batch {BASE['batch_size']}, max_length 64, "
          f"{torch.get_num_threads()} threads")
    rows = []
    for strategy in args.strategies.split(","):
        rows.append(run(strategy, args.epochs, data, len(names)))
        r = rows[-1]
        print(f"  {strategy}: val {r['val_accuracy']:.3f} test {r['test_accuracy']:.3f}", flush=True)
    full = next((r for r in rows if r["strategy"] == "full"), None)
    print("\n| strategy | val acc | test acc | trainable | trainable % | samples/s | vs full | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['samples_per_s'] / full['samples_per_s']:.2f}x" if full else "-"
        print(f"| {r['strategy']} | {r['val_accuracy']:.3f} | {r['test_accuracy']:.3f} | "
              f"{r['trainable']:,} | {r['trainable_pct']:.2f} | {r['samples_per_s']:.1f} | {ratio} | "
              f"{r['train_s']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
