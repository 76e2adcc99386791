"""Benchmark the vision plugin, every number a ratio against a baseline measured in the same run:

1. **trial loop vs hand-written loop**: training images/s of automl_pt's ``fine_tune`` (uint8
   decode cache, on-device normalisation, channels_last, bf16 autocast on CUDA, augmentation
   off and on) against a plain PyTorch loop on the same model, data and batch size (float
   tensors prepared once, the model in its default memory format);
2. **decode cache**: getting a split's tensors on a repeated trial (memory cache) and in a new
   process (safetensors cache on disk) against decoding the JPEG files again.

    python benchmarks/bench_vision.py [--device cpu|cuda] [--image-size 64] [--batch-size 64]
                                      [--images 512] [--repeats 3]

``--gpu-study`` instead runs a 4-trial study of studies/quickstart-vision.toml on CUDA (bf16
autocast, channels_last, image size 224; ``--study-data``, ``--backbones`` and ``--study-epochs``
change its data, candidates and length) and reports training images/s, peak GPU memory and GPU
utilisation sampled with ``nvidia-smi`` while it runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BACKBONE = "mobilenetv2-100"


def make_jpegs(folder: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` 640x480 JPEGs (a small camera photo) resampled from scikit-image's photos (or
    noise without it)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    try:
        from skimage import data as photos

        sources = [photos.chelsea(), photos.coffee(), photos.astronaut(), photos.rocket()]
    except ImportError:
        sources = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        y = rng.integers(0, max(1, src.shape[0] - 240))
        x = rng.integers(0, max(1, src.shape[1] - 320))
        crop = Image.fromarray(src[y:y + 240, x:x + 320]).resize((640, 480))
        path = folder / f"{i:05d}.jpg"
        crop.save(path, quality=90)
        paths.append(str(path))
    return paths


def load_backbone(image_size: int):
    from automl_pt.plugins import create_plugin_host

    host = create_plugin_host(extra=["automl_pt_vision"])  # works from a source tree on PYTHONPATH too
    info = host.registry.find_backbone(BACKBONE)
    if info is None:
        sys.exit("the vision plugin is not installed: pip install -e plugins/automl-pt-vision")
    return info.load({"image_size": image_size})


def build(image_size: int, num_labels: int, seed: int = 0):
    from automl_pt.model import ClassificationTask, TrialModel

    torch.manual_seed(seed)
    backbone = load_backbone(image_size)
    task = ClassificationTask()
    head = task.build_head(backbone.feature_dim, num_labels, {"dropout": 0.1})
    return TrialModel(backbone, head), task


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_trial_loop(pixels, labels, args, device, augment: bool) -> float:
    from automl_pt.builtin.metrics import accuracy
    from automl_pt.registry import Metric
    from automl_pt.train.training import fine_tune
    from automl_pt_vision.augment import make_augment

    model, task = build(args.image_size, int(labels.max()) + 1)
    params = dict(strategy="full", learning_rate=1e-3, head_lr_multiplier=10.0, layer_decay=1.0,
                  weight_decay=0.01, warmup_ratio=0.0, epochs=args.epochs,
                  batch_size=args.batch_size, dropout=0.1, label_smoothing=0.0, schedule="cosine")
    tiny_val = {"pixel_values": pixels[:8]}
    result = fine_tune(model, task, {"pixel_values": pixels}, labels, tiny_val, labels[:8], params,
                       {"accuracy": Metric("accuracy", accuracy)}, "accuracy", True, device,
                       seed=0, augment=make_augment(0.5, "mixup", int(labels.max()) + 1)
                       if augment else None)
    # epoch 1 includes warm-up (cuDNN autotuning, allocator); report the steady state
    return result.history[-1]["samples_per_s"]


def run_hand_written(pixels, labels, args, device, channels_last: bool) -> float:
    """The loop a user would write: float inputs normalised once up front, bf16 autocast on
    CUDA like the trial loop; the model in the default memory format or in channels_last."""
    model, _ = build(args.image_size, int(labels.max()) + 1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.backbone.model.to(memory_format=fmt)
    model.to(device).train()
    cfg = model.backbone.data_config
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    inputs = ((pixels.float() / 255.0 - mean) / std)
    targets = torch.as_tensor(labels)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01,
                            fused=device.type == "cuda")
    n = len(labels)
    rates = []
    for epoch in range(args.epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        sync(device)
        t0 = time.perf_counter()
        for start in range(0, n, args.batch_size):
            idx = order[start:start + args.batch_size]
            x = inputs[idx].to(device, non_blocking=True).contiguous(memory_format=fmt)
            y = targets[idx].to(device, non_blocking=True)
            with (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                  else torch.autocast("cpu", enabled=False)):
                logits = model.head(model.backbone.model(x))
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        rates.append(n / (time.perf_counter() - t0))
    return rates[-1]


def bench_loops(args, device) -> dict:
    rng = np.random.default_rng(0)
    pixels = torch.from_numpy(rng.integers(0, 256, (args.images, 3, args.image_size,
                                                    args.image_size), dtype=np.uint8))
    labels = rng.integers(0, 10, size=args.images)
    hand, hand_cl, ours, ours_aug = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so machine noise hits all alike
        hand.append(run_hand_written(pixels, labels, args, device, channels_last=False))
        hand_cl.append(run_hand_written(pixels, labels, args, device, channels_last=True))
        ours.append(run_trial_loop(pixels, labels, args, device, augment=False))
        ours_aug.append(run_trial_loop(pixels, labels, args, device, augment=True))

    def ratio(a, b):
        return statistics.median(x / y for x, y in zip(a, b))

    out = {"hand_images_per_s": statistics.median(hand),
           "hand_channels_last_images_per_s": statistics.median(hand_cl),
           "trial_loop_images_per_s": statistics.median(ours),
           "trial_loop_augmented_images_per_s": statistics.median(ours_aug),
           "ratio_vs_hand": ratio(ours, hand), "ratio_vs_hand_channels_last": ratio(ours, hand_cl),
           "ratio_augmented_vs_hand_channels_last": ratio(ours_aug, hand_cl),
           "channels_last_speedup_hand": ratio(hand_cl, hand)}

    def runs(xs):
        return ", ".join(f"{x:.1f}" for x in xs)

    print(f"fine-tuning {BACKBONE} at {args.image_size}px, {args.images} images, batch "
          f"{args.batch_size}, {args.epochs} epochs (last epoch timed), {device}, "
          f"{torch.get_num_threads()} threads")
    print(f"  hand-written loop:                 {out['hand_images_per_s']:8.1f} images/s  ({runs(hand)})")
    print(f"  hand-written loop, channels_last:  {out['hand_channels_last_images_per_s']:8.1f} images/s  ({runs(hand_cl)})")
    print(f"  automl_pt trial loop:              {out['trial_loop_images_per_s']:8.1f} images/s  ({runs(ours)})")
    print(f"  automl_pt + augmentation + mixup:  {out['trial_loop_augmented_images_per_s']:8.1f} images/s  ({runs(ours_aug)})")
    print(f"  ratio trial loop / hand-written channels_last: {out['ratio_vs_hand_channels_last']:.3f} "
          f"(with augmentation: {out['ratio_augmented_vs_hand_channels_last']:.3f}); "
          f"/ plain hand-written: {out['ratio_vs_hand']:.3f}")
    return out


def bench_decode_cache(args, device) -> dict:
    """Cold decode vs memory cache (a repeated trial) vs disk cache (a new worker process)."""
    from automl_pt.spec.config import config_from_dict
    from automl_pt.spec.data import Split
    from automl_pt.engine.trial import TrialRunner

    tmp = Path(tempfile.mkdtemp(prefix="bench-vision-"))
    try:
        paths = make_jpegs(tmp / "images", args.decode_images)
        split = Split("train", paths, np.zeros(len(paths), dtype=np.int64),
                      np.arange(1, len(paths) + 1), "bench")
        backbone = load_backbone(args.decode_image_size)
        config = config_from_dict({"study": {"name": "bench"}, "task": {"type": "image-classification"},
                                   "data": {"train": [{"image": p, "label": "x"} for p in paths]},
                                   "search": {"backbones": [BACKBONE]}}, base_dir=tmp)

        from automl_pt.plugins import create_plugin_host

        host = create_plugin_host(extra=["automl_pt_vision"])
        task = host.registry.tasks["image-classification"]

        def runner():
            from types import SimpleNamespace

            data = SimpleNamespace(train=split, label_names=["x"])  # the runner reads the label count
            return TrialRunner(config, host, task, data, {}, device, tmp / "run")

        def timed(fn):
            """Seconds to get the tensors and touch every memory page of them (a safetensors
            file is memory-mapped: reading it happens on first access)."""
            t0 = time.perf_counter()
            for tensor in fn().values():
                int(tensor.reshape(-1)[::4096].sum())
            return time.perf_counter() - t0

        prep = backbone.preprocessor({})
        first = runner()
        cold = timed(lambda: first.encoded(prep, split))
        repeat = statistics.median(timed(lambda: first.encoded(prep, split)) for _ in range(5))
        disk = statistics.median(timed(lambda: runner().encoded(prep, split)) for _ in range(3))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"images": args.decode_images, "decode_s": cold, "disk_cache_s": disk,
           "memory_cache_s": repeat, "speedup_disk": cold / disk,
           "speedup_memory": cold / max(repeat, 1e-9)}
    print(f"decode cache, {args.decode_images} JPEGs 640x480 -> {args.decode_image_size}px "
          f"({prep.data_config['interpolation']}, {prep.data_config['crop_pct']} crop):")
    print(f"  decode + resize (first trial):  {cold * 1e3:9.1f} ms  ({args.decode_images / cold:.0f} images/s)")
    print(f"  disk cache (new worker/run):    {disk * 1e3:9.1f} ms  speed-up x{out['speedup_disk']:.0f}")
    print(f"  memory cache (repeated trial):  {repeat * 1e3:9.3f} ms  speed-up x{out['speedup_memory']:.0f}")
    return out


class GpuSampler:
    """Samples GPU utilisation (%) and memory with nvidia-smi every ``interval`` seconds."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.samples, self._stop = interval, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                line = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                     "--format=csv,noheader,nounits", "-i", "0"],
                    capture_output=True, text=True, timeout=5).stdout.strip().splitlines()[0]
                util, mem = (float(v) for v in line.split(","))
                self.samples.append((time.time(), util, mem))
            except Exception:
                pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def gpu_study(args) -> dict:
    """A 4-trial study of the quickstart data on CUDA at 224 px: images/s, peak memory,
    utilisation. Needs the data (python studies/make_fashion_mnist.py)."""
    import automl_pt

    study_file = ROOT / "studies" / "quickstart-vision.toml"
    run_dir = Path(tempfile.mkdtemp(prefix="bench-vision-gpu-"))
    data = {"image_size": args.image_size}
    if args.study_data:  # a bigger class-per-folder tree than the quickstart's (train/validation/test)
        data.update({split: str(args.study_data / split) for split in ("train", "validation", "test")})
    search = {"space": {"strategy": ["full"], "epochs": args.study_epochs, "batch_size": [args.batch_size],
                        "learning_rate": {"low": 3e-4, "high": 3e-3, "log": True}},
              "pruner": "none"}
    if args.backbones:
        search["backbones"] = args.backbones.split(",")
    overrides = {"study": {"name": "bench-vision-gpu", "trials": 4, "timeout": 3600,
                           "plugins": ["automl_pt_vision"]},
                 "data": data, "search": search,
                 "resources": {"devices": "cuda"}, "storage": {"dir": str(run_dir)}}
    t0 = time.time()
    with GpuSampler() as sampler:
        results = automl_pt.run(str(study_file), progress=False, **overrides)
    wall = time.time() - t0
    trials = results.trials()
    import pandas as pd

    busy = [u for _, u, _ in sampler.samples]
    # utilisation while a trial was running (the study's wall time also holds start-up and the
    # one-off decode of every image)
    windows = [(a.timestamp(), b.timestamp()) for a, b in
               zip(trials["datetime_start"], trials["datetime_complete"]) if pd.notna(a) and pd.notna(b)]
    in_trials = [u for t, u, _ in sampler.samples if any(a <= t <= b for a, b in windows)]
    out = {"trials": len(trials), "wall_s": wall,
           "train_images_per_s": [float(v) for v in trials["samples_per_s"].dropna()],
           "peak_memory_mb": [float(v) for v in trials["peak_memory_mb"].dropna()],
           "gpu_util_mean": statistics.mean(busy) if busy else None,
           "gpu_util_median": statistics.median(busy) if busy else None,
           "gpu_util_mean_during_trials": statistics.mean(in_trials) if in_trials else None,
           "trial_seconds": [round(b - a, 1) for a, b in windows],
           "gpu_memory_used_max_mb": max((m for *_, m in sampler.samples), default=None),
           "test_accuracy": (results.test_metrics or {}).get("accuracy"),
           "device": torch.cuda.get_device_name(0)}
    print(json.dumps(out, indent=2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--image-size", type=int, default=None,
                        help="default: 64 on the CPU, 224 on CUDA")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 CPU, 128 CUDA")
    parser.add_argument("--images", type=int, default=None, help="default: 256 CPU, 4096 CUDA")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode-images", type=int, default=500)
    parser.add_argument("--decode-image-size", type=int, default=None,
                        help="decode-cache benchmark target size (default: --image-size)")
    parser.add_argument("--skip-loops", action="store_true", help="decode-cache benchmark only")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--gpu-study", action="store_true")
    parser.add_argument("--study-data", type=Path, default=None,
                        help="--gpu-study: class-per-folder data with train/validation/test "
                             "(default: the quickstart's)")
    parser.add_argument("--study-epochs", type=int, default=3, help="--gpu-study: epochs per trial")
    parser.add_argument("--backbones", default=None,
                        help="--gpu-study: comma-separated backbones (default: the quickstart's)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.image_size = args.image_size or (224 if cuda else 64)
    args.batch_size = args.batch_size or (128 if cuda else 32)
    args.images = args.images or (4096 if cuda else 256)
    args.decode_image_size = args.decode_image_size or args.image_size
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.gpu_study:
        out = {"gpu_study": gpu_study(args)}
    else:
        out = {} if args.skip_loops else {"loops": bench_loops(args, device)}
        out["decode_cache"] = bench_decode_cache(args, device)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
