"""Speech plugin benchmarks, each measured as a ratio against a baseline in the same run.

1. ``loop``: training clips/s of the automl_pt trial loop (a real one-trial study: Optuna,
   decode cache, parameter groups, callbacks, Parquet per epoch) against a hand-written PyTorch
   loop over the same decoded tensors, backbone, head, batch size and optimiser. Both train
   ``--epochs`` epochs; the first warms up allocators and kernels, the best later epoch counts
   (best-of-N: shared CPUs are noisy).
2. ``window``: encoder throughput (inference, clips/s) of Whisper on a window sized to the clips
   against Whisper's 30-second window, same clips; with ``--accuracy``, also a linear probe
   (frozen mean-pooled features, softmax regression) at each window, as evidence that the short
   window is at least as accurate.
3. ``finetune``: full fine-tuning at both windows, same recipe, a few seeds: test accuracy and
   training clips/s (the short window must be at least as accurate).
4. ``study STUDY.toml``: run a study and print per-trial clips/s and peak memory (the GPU check).

Usage::

    python studies/make_keywords.py
    python benchmarks/bench_speech.py loop window finetune [--accuracy] [--device cpu|cuda] [--json OUT]
    python benchmarks/bench_speech.py study studies/quickstart-speech.toml --trials 4
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT, ROOT / "plugins" / "automl-pt-speech"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def clips(data: Path, split: str, limit: int | None, seed: int = 0) -> tuple[list[str], list[str]]:
    """Up to ``limit`` clips of a split (a class-per-folder tree), classes taken in turn."""
    rng = np.random.default_rng(seed)
    per_class = []
    for folder in sorted(p for p in (data / split).iterdir() if p.is_dir()):
        files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
        per_class.append([files[i] for i in rng.permutation(len(files))])
    picked: list[tuple[str, str]] = []
    for rank in range(max(map(len, per_class))):
        picked += [(files[rank], Path(files[rank]).parent.name) for files in per_class
                   if rank < len(files)]
    picked = picked[: limit or len(picked)]
    return [p for p, _ in picked], [label for _, label in picked]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_backbone(name: str, pooling: str = "mean"):
    import automl_pt_speech
    from automl_pt.plugins import create_plugin_host

    host = create_plugin_host(entry_points=False, extra=[automl_pt_speech])
    info = host.registry.find_backbone(name) or host.hook.automl_pt_resolve_backbone(
        name=name, modality="audio")
    if info is None:
        raise SystemExit(f"cannot resolve backbone {name!r}")
    return info.load({"params": {"pooling": pooling}})


# -- 1. trial loop vs hand-written loop ---------------------------------------------------------
PARAMS = {"strategy": "full", "learning_rate": 3e-4, "head_lr_multiplier": 10.0, "epochs": 2,
          "layer_decay": 1.0, "warmup_ratio": 0.0, "dropout": 0.0, "label_smoothing": 0.0,
          "weight_decay": 0.01, "schedule": "cosine", "pooling": "mean",
          "augmentation_strength": 0.0}


def bench_trial_loop(args, device: torch.device, work: Path) -> float:
    import pandas as pd

    from automl_pt import Study

    import automl_pt_speech
    from automl_pt.plugins import create_plugin_host

    paths, labels = clips(args.data, "train", args.clips)
    vpaths, vlabels = clips(args.data, "validation", 64)
    work.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"audio": paths, "label": labels}).to_csv(work / "train.csv", index=False)
    pd.DataFrame({"audio": vpaths, "label": vlabels}).to_csv(work / "validation.csv", index=False)
    host = create_plugin_host(entry_points=False, extra=[automl_pt_speech])
    space = {**PARAMS, "batch_size": args.batch_size, "epochs": args.epochs}
    results = Study.from_config({
        "study": {"name": "bench-loop", "trials": 1, "seed": 0},
        "task": {"type": "audio-classification"},
        "data": {"train": str(work / "train.csv"), "validation": str(work / "validation.csv")},
        "search": {"backbones": [args.backbone], "pruner": "none", "space": space},
        "resources": {"devices": str(device), "workers": "inline"},
        "storage": {"dir": str(work / "run")},
    }, host=host).run(progress=False)
    curves = results.curves()
    return float(curves[curves["epoch"] >= 2]["samples_per_s"].max())


def bench_hand_loop(args, device: torch.device, sync_loss: bool = False) -> float:
    """``sync_loss``: read the loss back every step (``float(loss)``, as a loop that logs a
    running loss does): shows how much of the trial loop's gap a per-step sync explains."""
    from automl_pt.train.training import device_autocast

    paths, labels = clips(args.data, "train", args.clips)
    backbone = load_backbone(args.backbone)
    prep = backbone.preprocessor({})
    prep.fit(paths)
    data = prep.encode(paths)
    names = sorted(set(labels))
    targets = torch.tensor([names.index(x) for x in labels])
    head = torch.nn.Linear(backbone.feature_dim, len(names))
    model = torch.nn.ModuleDict({"backbone": backbone, "head": head}).to(device)
    lr = PARAMS["learning_rate"]
    optimizer = torch.optim.AdamW([
        {"params": backbone.parameters(), "lr": lr},
        {"params": head.parameters(), "lr": lr * PARAMS["head_lr_multiplier"]}],
        weight_decay=PARAMS["weight_decay"], fused=device.type == "cuda")
    n, bs = len(paths), args.batch_size
    generator = torch.Generator().manual_seed(0)
    model.train()
    rates = []
    for epoch in range(args.epochs):
        sync(device)
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            batch = {k: v[idx].to(device, non_blocking=True) for k, v in data.items()}
            with device_autocast(device):
                logits = head(backbone.encode(batch))
            loss = torch.nn.functional.cross_entropy(logits.float(), targets[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if sync_loss:
                float(loss.detach())
        sync(device)
        rates.append(n / (time.perf_counter() - t0))
    return max(rates[1:])


# -- 2. short window vs 30-second window ----------------------------------------------------------
@torch.no_grad()
def features(backbone, data: dict, device: torch.device, batch_size: int) -> tuple[torch.Tensor, float]:
    from automl_pt.train.training import device_autocast

    backbone.to(device).eval()
    n = len(data["length"])
    out = []
    sync(device)
    t0 = time.perf_counter()
    for start in range(0, n, batch_size):
        batch = {k: v[start:start + batch_size].to(device) for k, v in data.items()}
        with device_autocast(device):
            out.append(backbone.encode(batch).float().cpu())
    sync(device)
    return torch.cat(out), n / (time.perf_counter() - t0)


def linear_probe(train_x, train_y, test_x, test_y, steps: int = 300) -> float:
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(0)
    head = torch.nn.Linear(train_x.shape[1], int(train_y.max()) + 1)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(train_x), train_y).backward()
        opt.step()
    return float((head(test_x).argmax(1) == test_y).float().mean())


def bench_window(args, device: torch.device) -> dict:
    base = args.backbone.partition("?")[0]
    n = args.window_clips
    paths, labels = clips(args.data, "train", args.accuracy_clips if args.accuracy else n)
    tpaths, tlabels = clips(args.data, "test", args.accuracy_clips // 3 if args.accuracy else 0)
    names = sorted(set(labels))
    out = {}
    for window in ("auto", "30"):
        backbone = load_backbone(f"{base}?window={window}")
        prep = backbone.preprocessor({})
        prep.fit(paths)
        data = prep.encode(paths)
        warm = {k: v[:args.window_batch] for k, v in data.items()}
        features(backbone, warm, device, args.window_batch)          # warm-up
        timed = {k: v[:n] for k, v in data.items()}
        speed = max(features(backbone, timed, device, args.window_batch)[1] for _ in range(3))
        row = {"clips_per_s": speed, "clip_seconds": prep.max_seconds,
               "encoder_positions": math.ceil(
                   (prep.max_seconds if window == "auto" else 30.0) * 50)}
        if args.accuracy:
            train_x, _ = features(backbone, data, device, args.window_batch)
            test_x, _ = features(backbone, prep.encode(tpaths), device, args.window_batch)
            y = torch.tensor([names.index(x) for x in labels])
            ty = torch.tensor([names.index(x) for x in tlabels])
            row["linear_probe_accuracy"] = linear_probe(train_x, y, test_x, ty)
            row["probe_clips"] = {"train": len(paths), "test": len(tpaths)}
        out[window] = row
    out["speedup"] = out["auto"]["clips_per_s"] / out["30"]["clips_per_s"]
    return out


def bench_finetune_windows(args, device: torch.device) -> dict:
    """Full fine-tuning at both windows (same recipe, ``--seeds`` seeds each): test accuracy
    and training clips/s. One-trial studies on the keyword trees."""
    import automl_pt_speech
    from automl_pt import Study
    from automl_pt.plugins import create_plugin_host

    base = args.backbone.partition("?")[0]
    space = {**PARAMS, "epochs": args.epochs, "batch_size": args.batch_size,
             "augmentation_strength": 0.3}
    out: dict = {"recipe": space, "seeds": args.seeds}
    for window in ("auto", "30"):
        accs, speeds = [], []
        for seed in range(args.seeds):
            host = create_plugin_host(entry_points=False, extra=[automl_pt_speech])
            results = Study.from_config({
                "study": {"name": f"ft-{window}-{seed}", "trials": 1, "seed": seed},
                "task": {"type": "audio-classification"},
                "data": {"train": str(args.data / "train"),
                         "validation": str(args.data / "validation"),
                         "test": str(args.data / "test")},
                "search": {"backbones": [f"{base}?window={window}"], "pruner": "none",
                           "space": space},
                "resources": {"devices": str(device), "workers": "inline"},
                "storage": {"dir": str(args.work / f"ft-{window}-{seed}")},
            }, host=host).run(progress=False)
            accs.append(results.test_metrics["accuracy"])
            curves = results.curves()
            speeds.append(float(curves[curves["epoch"] >= 2]["samples_per_s"].max()))
        out[window] = {"test_accuracy": accs, "mean_test_accuracy": float(np.mean(accs)),
                       "train_clips_per_s": float(np.median(speeds))}
    out["train_speedup"] = out["auto"]["train_clips_per_s"] / out["30"]["train_clips_per_s"]
    return out


# -- 3. a study, with per-trial throughput and memory ---------------------------------------------
def bench_study(args) -> dict:
    from automl_pt import Study

    overrides = {"study": {"trials": args.trials}} if args.trials else {}
    if args.devices:
        overrides["resources"] = {"devices": args.devices}
    t0 = time.perf_counter()
    results = Study.from_config(args.study, **overrides).run(progress=False)
    wall = time.perf_counter() - t0
    trials = results.trials()
    rows = []
    for _, t in trials.iterrows():
        rows.append({k: t.get(k) for k in (
            "number", "state", "value", "strategy", "pooling", "batch_size", "epochs",
            "augmentation_strength", "best_epoch", "samples_per_s", "peak_memory_mb",
            "duration_s", "device")})
    return {"wall_s": wall, "test_metrics": results.test_metrics, "trials": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="+", help="loop, window, finetune, or: study STUDY.toml")
    parser.add_argument("--data", type=Path, default=ROOT / "studies" / "data" / "keywords")
    parser.add_argument("--backbone", default="whisper-tiny-en")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clips", type=int, default=256, help="training clips for 'loop'")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4, help="'loop': epochs (first is warm-up)")
    parser.add_argument("--window-clips", type=int, default=16, help="clips timed per window")
    parser.add_argument("--window-batch", type=int, default=8)
    parser.add_argument("--accuracy", action="store_true", help="linear probe at both windows")
    parser.add_argument("--accuracy-clips", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=3, help="'finetune': seeds per window")
    parser.add_argument("--trials", type=int, default=None, help="'study': override study.trials")
    parser.add_argument("--devices", default=None, help="'study': override resources.devices")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-speech")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    report: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
                    f"cpu ({torch.get_num_threads()} threads)"}
    if args.what[0] == "study":
        if len(args.what) != 2:
            parser.error("study needs a study file")
        args.study = args.what[1]
        report["study"] = bench_study(args)
    else:
        report["backbone"] = args.backbone
        if not (args.data / "train").is_dir():
            parser.error(f"{args.data}/train not found: run python studies/make_keywords.py")
        if "loop" in args.what:
            import shutil

            shutil.rmtree(args.work, ignore_errors=True)
            trial = bench_trial_loop(args, device, args.work)
            hand = bench_hand_loop(args, device)
            hand_sync = bench_hand_loop(args, device, sync_loss=True)
            report["loop"] = {"trial_loop_clips_per_s": trial, "hand_loop_clips_per_s": hand,
                              "ratio": trial / hand, "hand_loop_with_loss_sync_clips_per_s": hand_sync,
                              "clips": args.clips, "epochs": args.epochs,
                              "batch_size": args.batch_size}
        if "window" in args.what:
            report["window"] = bench_window(args, device)
        if "finetune" in args.what:
            args.work.mkdir(parents=True, exist_ok=True)
            report["finetune_windows"] = bench_finetune_windows(args, device)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
