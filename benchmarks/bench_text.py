"""Benchmark: fine-tuning throughput of automl_pt's trial loop vs. a hand-written PyTorch loop on
the same model (minilm-l6), data, batch size and sequence length, measured in the same run, plus
the start-up time of ``automl-pt --help``.

    python benchmarks/bench_text.py [--examples 256] [--repeats 3] [--bucket-examples 430]
        [--bucket-data fortunes|synthetic] [--skip-loop]

Prints samples/s of each and the ratio (automl_pt / hand-written; 1.0 = no overhead).

Then, in the same run, length-bucketed vs. random batches in ``fine_tune`` on short texts with a
long tail (like the fortunes quickstart: mean ~10 words, a few over 100): tokens the model is fed
per epoch (counted in ``collate``), of which real (non-padding) tokens, and the samples/s ratio,
with ``max_length`` fitted from the data (99th percentile) as a study does.

Last, in the same run, cached partial fine-tuning (strategy ``partial``: the top k blocks trained
on activations computed once) against full fine-tuning on the fortunes texts, with the pieces
``benchmarks/bench_partial.py`` measures at length (``--partial-examples``, ``--partial-epochs``,
``--skip-partial``): training samples/s of each and the ratio to full.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def one_epoch(model, task, enc, labels, batch_size: int, collate, lengths=None):
    """One epoch of automl_pt's ``fine_tune`` (full fine-tuning, the benchmark's fixed params;
    bucketed batches when ``lengths`` is given); returns its result."""
    from automl_pt.builtin.metrics import accuracy
    from automl_pt.registry import Metric
    from automl_pt.train.training import fine_tune

    params = dict(strategy="full", learning_rate=5e-5, head_lr_multiplier=10, layer_decay=0.9,
                  weight_decay=0.01, warmup_ratio=0.1, epochs=1, batch_size=batch_size, dropout=0.1,
                  label_smoothing=0.0, schedule="cosine")
    tiny_val = {k: v[:8] for k, v in enc.items()}
    return fine_tune(model, task, enc, labels, tiny_val, labels[:8], params,
                     {"accuracy": Metric("accuracy", accuracy)}, "accuracy", True,
                     torch.device("cpu"), seed=0, collate=collate, train_lengths=lengths)


def run_automl_pt(enc, labels, batch_size: int) -> float:
    model, task = load()
    prep = model.backbone.preprocessor({"max_length": 64})
    return one_epoch(model, task, enc, labels, batch_size, prep.collate).samples_per_s


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


def make_short_texts(n: int) -> tuple[list[str], np.ndarray]:
    """Mostly short texts with a long tail of word counts (lognormal, 2 to 111 words)."""
    rng = np.random.default_rng(1)
    words = ("orbit rocket planet court judge appeal bread soup recipe code compile kernel "
             "the a of and to in is it that was with for on").split()
    counts = np.clip(rng.lognormal(2.0, 0.7, n), 2, 111).astype(int)
    return [" ".join(rng.choice(words, size=c)) for c in counts], rng.integers(0, 4, size=n)


def run_batches(enc, labels, batch_size: int, lengths) -> tuple[float, int]:
    """One epoch of ``fine_tune`` (random batches, or bucketed with ``lengths``): samples/s and
    the tokens (padding included) its batches carried into the model."""
    model, task = load()
    prep = model.backbone.preprocessor({})
    carried = [0]

    def counting_collate(batch):
        out = prep.collate(batch)
        if model.training:
            carried[0] += out["input_ids"].numel()
        return out

    result = one_epoch(model, task, enc, labels, batch_size, counting_collate, lengths)
    return result.samples_per_s, carried[0]


def fortunes_train(directory: Path) -> tuple[list[str], np.ndarray]:
    """The text quickstart's training split (``studies/make_fortunes.py`` defaults)."""
    import pandas as pd

    from automl_pt_text.datasets import build_fortunes_dataset

    frame = pd.read_csv(build_fortunes_dataset(directory, per_topic=250, seed=0)["train"])
    codes = pd.factorize(frame["label"])[0]
    return frame["text"].astype(str).tolist(), np.asarray(codes) % 4  # the benchmark's 4-way head


def padding_per_epoch(prep, texts: list[str], batch_size: int) -> None:
    """Tokens per epoch on the whole set (no training): random vs bucketed batches, before
    (the old default max_length 256) and after fitting max_length to the data."""
    from automl_pt.train.batching import bucketed_batches, padded_tokens, random_batches

    for label in ("max_length 256 (old default)", "max_length fitted"):
        if label.startswith("max_length 256"):
            prep.max_length = 256
        else:
            prep.fit(texts)
        lengths = prep.lengths(prep.encode(texts))
        gen = torch.Generator().manual_seed(0)
        rand = [padded_tokens(lengths, random_batches(len(texts), batch_size, gen)) for _ in range(3)]
        buck = [padded_tokens(lengths, bucketed_batches(lengths, batch_size, gen)) for _ in range(3)]
        print(f"  {len(texts)} texts, batch {batch_size}, {label} ({prep.max_length}): tokens per "
              f"epoch random {', '.join(map(str, rand))}; bucketed {', '.join(map(str, buck))}; "
              f"real {int(lengths.sum())}")


def bench_bucketing(examples: int, batch_size: int, repeats: int, data: str) -> None:
    model, _ = load()
    prep = model.backbone.preprocessor({})
    if data == "fortunes":
        import tempfile

        texts, labels = fortunes_train(Path(tempfile.mkdtemp()) / "fortunes")
        print(f"fortunes quickstart train split: {len(texts)} texts, mean "
              f"{np.mean([len(t.split()) for t in texts]):.1f} words, longest "
              f"{max(len(t.split()) for t in texts)}")
        padding_per_epoch(prep, texts, batch_size)
        keep = np.random.default_rng(0).permutation(len(texts))[:examples]
        texts, labels = [texts[i] for i in keep], labels[keep]
    else:
        texts, labels = make_short_texts(examples)
    prep.fit(texts)
    enc = prep.encode(texts)
    lengths = prep.lengths(enc)
    del model
    rand, buck = [], []
    for _ in range(repeats):  # interleaved
        rand.append(run_batches(enc, labels, batch_size, None))
        buck.append(run_batches(enc, labels, batch_size, lengths))
    real = int(lengths.sum())
    ratio = statistics.median(b[0] / r[0] for b, r in zip(buck, rand))
    print(f"bucketed vs random batches: minilm-l6, {len(texts)} {data} texts (mean "
          f"{np.mean([len(t.split()) for t in texts]):.1f} words, longest "
          f"{max(len(t.split()) for t in texts)}), batch {batch_size}, one epoch each")
    print(f"  {prep.summary()}")
    print(f"  tokens per epoch: random {rand[0][1]}, bucketed {buck[0][1]}, real {real} "
          f"(random / bucketed {rand[0][1] / buck[0][1]:.2f}x)")
    print(f"  random batches:   {statistics.median(r[0] for r in rand):7.1f} samples/s  (runs: "
          f"{', '.join(f'{r[0]:.1f}' for r in rand)})")
    print(f"  bucketed batches: {statistics.median(b[0] for b in buck):7.1f} samples/s  (runs: "
          f"{', '.join(f'{b[0]:.1f}' for b in buck)})")
    print(f"  ratio bucketed / random samples/s: {ratio:.2f}")


def bench_partial(examples: int, epochs: int) -> None:
    """Full fine-tuning vs. ``partial`` k = 1, 2 (same data, parameters, seed), in this run."""
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_partial as bp
    from automl_pt.plugins import create_plugin_host

    if not (bp.DATA / "train.csv").is_file():
        print(f"partial: {bp.DATA} is missing (python studies/make_fortunes.py); skipped")
        return
    labels = sorted(pd.read_csv(bp.DATA / "train.csv")["label"].astype(str).unique())
    prep = create_plugin_host().registry.find_backbone("minilm-l6").load({}).preprocessor({"max_length": 64})
    splits = [(prep.encode(t), y) for t, y in (bp.load_split("train", examples, labels),
                                               bp.load_split("validation", None, labels))]
    rows = [bp.run("full", 0, *splits, epochs)] + [bp.run("partial", k, *splits, epochs) for k in (1, 2)]
    full = rows[0]
    print(f"cached partial fine-tuning, minilm-l6, {examples} fortunes, {epochs} epochs, batch "
          f"{bp.PARAMS['batch_size']}, lr {bp.PARAMS['learning_rate']:g}:")
    for r in rows:
        print(f"  {r['strategy']:<13} {r['samples_per_s']:7.1f} samples/s  x{r['samples_per_s'] / full['samples_per_s']:.2f}"
              f"  (cache {r['cache_s']:.1f}s, total {r['total_s']:.1f}s, x{full['total_s'] / r['total_s']:.2f} end to end)"
              f"  val acc {r['val_accuracy']:.3f}")


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
    parser.add_argument("--bucket-examples", type=int, default=430)
    parser.add_argument("--bucket-batch-size", type=int, default=32)
    parser.add_argument("--bucket-repeats", type=int, default=2)
    parser.add_argument("--bucket-data", choices=("fortunes", "synthetic"), default="fortunes",
                        help="the text quickstart's texts (Debian package fortunes), or synthetic")
    parser.add_argument("--partial-examples", type=int, default=256)
    parser.add_argument("--partial-epochs", type=int, default=2)
    parser.add_argument("--skip-partial", action="store_true", help="no partial-vs-full section")
    parser.add_argument("--skip-loop", action="store_true",
                        help="only the bucketing comparison (not the trial-loop ratio, not start-up)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    if args.skip_loop:
        bench_bucketing(args.bucket_examples, args.bucket_batch_size, args.bucket_repeats, args.bucket_data)
        if not args.skip_partial:
            bench_partial(args.partial_examples, args.partial_epochs)
        return
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

    bench_bucketing(args.bucket_examples, args.bucket_batch_size, args.bucket_repeats, args.bucket_data)
    if not args.skip_partial:
        bench_partial(args.partial_examples, args.partial_epochs)

    python = sys.executable
    base = startup_seconds([python, "-c", "pass"])
    helpt = startup_seconds([python, "-m", "automl_pt.cli", "--help"])
    plugins = startup_seconds([python, "-m", "automl_pt.cli", "plugins"])
    torch_import = startup_seconds([python, "-c", "import torch"])
    print(f"start-up (median of 5): python {base:.3f}s, automl-pt --help {helpt:.3f}s, "
          f"automl-pt plugins {plugins:.3f}s, import torch {torch_import:.3f}s")


if __name__ == "__main__":
    main()
