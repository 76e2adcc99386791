"""Benchmark: fine-tuning throughput of automl_pt's trial loop vs. a hand-written PyTorch loop on
the same model (minilm-l6), data, batch size and sequence length, measured in the same run, plus
the start-up time of ``automl-pt --help``.

    python benchmarks/bench_text.py [--examples 256] [--repeats 3]

Prints samples/s of each and the ratio (automl_pt / hand-written; 1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np
import torch


def make_texts(n: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(0)
    words = ("orbit rocket planet court judge appeal bread soup recipe code compile kernel "
             "the a of and to in is it that was with for on").split()
    texts = [" ".join(rng.choice(words, size=rng.integers(12, 40))) for _ in range(n)]
    return texts, rng.integers(0, 4, size=n)


def load(seed: int = 0):
    from automl_pt.model import ClassificationTask, TrialModel
    from automl_pt.plugins import create_plugin_host

    host = create_plugin_host()
    torch.manual_seed(seed)
    backbone = host.registry.find_backbone("minilm-l6").load({})
    task = ClassificationTask()
    return TrialModel(backbone, task.build_head(backbone.feature_dim, 4, {"dropout": 0.1})), task


def run_automl_pt(enc, labels, batch_size: int) -> float:
    from automl_pt.builtin.metrics import accuracy
    from automl_pt.registry import Metric
    from automl_pt.training import fine_tune

    model, task = load()
    prep = model.backbone.preprocessor({"max_length": 64})
    params = dict(strategy="full", learning_rate=5e-5, head_lr_multiplier=10, layer_decay=0.9,
                  weight_decay=0.01, warmup_ratio=0.1, epochs=1, batch_size=batch_size, dropout=0.1,
                  label_smoothing=0.0, schedule="cosine")
    tiny_val = {k: v[:8] for k, v in enc.items()}
    result = fine_tune(model, task, enc, labels, tiny_val, labels[:8], params,
                       {"accuracy": Metric("accuracy", accuracy)}, "accuracy", True,
                       torch.device("cpu"), seed=0, collate=prep.collate)
    return result.samples_per_s


def run_hand_written(enc, labels, batch_size: int) -> float:
    model, _ = load()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    targets = torch.as_tensor(labels)
    n = len(labels)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        ids, mask = enc["input_ids"][idx], enc["attention_mask"][idx]
        longest = int(mask.sum(1).max())
        ids, mask = ids[:, :longest], mask[:, :longest]
        hidden = model.backbone.model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        logits = model.head((hidden * m).sum(1) / m.sum(1))
        loss = torch.nn.functional.cross_entropy(logits, targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return n / (time.perf_counter() - t0)


def startup_seconds(cmd: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    model, _ = load()
    texts, labels = make_texts(args.examples)
    enc = model.backbone.preprocessor({"max_length": 64}).encode(texts)
    del model
    ours, hand = [], []
    for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
        hand.append(run_hand_written(enc, labels, args.batch_size))
        ours.append(run_automl_pt(enc, labels, args.batch_size))
    ratio = statistics.median(o / h for o, h in zip(ours, hand))
    print(f"fine-tuning minilm-l6, {args.examples} examples, batch {args.batch_size}, max_length 64, "
          f"{torch.get_num_threads()} threads")
    print(f"  hand-written loop: {statistics.median(hand):7.1f} samples/s  (runs: "
          f"{', '.join(f'{h:.1f}' for h in hand)})")
    print(f"  automl_pt loop:    {statistics.median(ours):7.1f} samples/s  (runs: "
          f"{', '.join(f'{o:.1f}' for o in ours)})")
    print(f"  ratio automl_pt / hand-written: {ratio:.3f}")

    python = sys.executable
    base = startup_seconds([python, "-c", "pass"])
    helpt = startup_seconds([python, "-m", "automl_pt.cli", "--help"])
    plugins = startup_seconds([python, "-m", "automl_pt.cli", "plugins"])
    torch_import = startup_seconds([python, "-c", "import torch"])
    print(f"start-up (median of 5): python {base:.3f}s, automl-pt --help {helpt:.3f}s, "
          f"automl-pt plugins {plugins:.3f}s, import torch {torch_import:.3f}s")


if __name__ == "__main__":
    main()
