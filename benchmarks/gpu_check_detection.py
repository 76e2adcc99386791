"""GPU check for object detection (run on a machine with a CUDA GPU; ``--tiny`` runs it small on
the CPU, a logic check).

1. **Steps**: the detection model of a study (backbone → ``encode_levels`` → feature pyramid →
   torchvision FCOS / RetinaNet head) on synthetic images with boxes, trained the way a trial
   trains it: inputs ``channels_last`` (the vision backbone's own format) and bf16 autocast on
   CUDA (:func:`automl_pt.train.training.device_autocast`), loss outside autocast. Reports
   training and inference (decoding + NMS) images/s, peak GPU memory, and the first step's
   loss in bf16 against float32 on the same weights and batch (both must be finite, close).
2. **Study** (``--study``): a one-trial detection study on generated COCO data on the device;
   reports the trial's training images/s (``samples_per_s``) and the test ``map_50``.

    python benchmarks/gpu_check_detection.py                    # on the GPU machine
    python benchmarks/gpu_check_detection.py --tiny [--study]   # the logic, on the CPU
    options: --backbone mobilenetv2-100 --detector fcos --image-size 512 --batch-size 16
             --steps 20 --json OUT.json

Prints one JSON object (also written to ``--json``). Exits 1 when a loss is not finite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins" / "automl-pt-vision")]


def synthetic_batch(n: int, size: int, classes: int, device: Any, seed: int = 0) -> tuple[dict, Any]:
    """``n`` uint8 images with 1-3 bright boxes each on noise, and the task's ``(n, 3, 5)``
    relative targets (NaN rows where an image has fewer boxes)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 80, (n, 3, size, size), dtype=torch.uint8, generator=g)
    targets = torch.full((n, 3, 5), float("nan"))
    for i in range(n):
        for j in range(int(torch.randint(1, 4, (1,), generator=g))):
            w, h = (torch.rand(2, generator=g) * 0.3 + 0.1).tolist()
            x, y = (torch.rand(2, generator=g) * torch.tensor([1 - w, 1 - h])).tolist()
            c = int(torch.randint(0, classes, (1,), generator=g))
            x1, y1, x2, y2 = (int(v * size) for v in (x, y, x + w, y + h))
            pixels[i, :, y1:y2, x1:x2] = min(255, 130 + 30 * c)
            targets[i, j] = torch.tensor([x1 / size, y1 / size, x2 / size, y2 / size, float(c)])
    return {"pixel_values": pixels.to(device)}, targets.to(device)


def load_backbone(args: argparse.Namespace, work: Path):
    if args.tiny:
        from automl_pt_vision.backbone import load_local_dir
        from automl_pt_vision.testing import make_tiny_timm

        return load_local_dir(make_tiny_timm(work / "tiny", image_size=args.image_size), "tiny", {})
    from automl_pt.plugins import create_plugin_host, resolve_backbone

    info = resolve_backbone(args.backbone, "vision", create_plugin_host())
    if info is None:
        raise SystemExit(f"backbone {args.backbone!r} cannot be resolved offline")
    return info.load({"params": {}})


def check_steps(args: argparse.Namespace, device: Any, work: Path) -> dict[str, Any]:
    import torch

    from automl_pt.model import TrialModel, head_input_dim
    from automl_pt.train.training import device_autocast
    from automl_pt_vision.detection import DETECTIONS, DetectionTask

    torch.manual_seed(0)
    backbone = load_backbone(args, work)
    task = DetectionTask()
    model = TrialModel(backbone, task.build_head(head_input_dim(backbone, task), args.classes,
                                                 {"detector": args.detector})).to(device)
    batch, targets = synthetic_batch(args.batch_size, args.image_size, args.classes, device)
    assert batch["pixel_values"].dtype == torch.uint8
    normalised = backbone.normalize(batch["pixel_values"])
    channels_last = bool(normalised.is_contiguous(memory_format=torch.channels_last))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # the first step's loss, float32 vs the trial's autocast, on the same weights and batch
    model.train()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        loss_fp32 = float(task.loss(model(batch), targets, {}))
        with device_autocast(device):
            out = model(batch)
        loss_amp = float(task.loss(out, targets, {}))
    model.load_state_dict(state)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with device_autocast(device):
            out = model(batch)
        loss = task.loss(out, targets, {})
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    for _ in range(args.warmup):
        train_step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync()
    t0 = time.perf_counter()
    losses = [train_step() for _ in range(args.steps)]
    sync()
    train_s = time.perf_counter() - t0
    peak_train = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None

    model.eval()
    with torch.no_grad():
        with device_autocast(device):
            dets = model(batch)
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            with device_autocast(device):
                dets = model(batch)
        sync()
        eval_s = time.perf_counter() - t0
    finite = [torch.isfinite(torch.tensor(v)).item() for v in (loss_fp32, loss_amp, *losses)]
    return {
        "backbone": "tiny random timm" if args.tiny else args.backbone, "detector": args.detector,
        "image_size": args.image_size, "batch_size": args.batch_size, "steps": args.steps,
        "autocast": "bf16" if device.type == "cuda" else "off (CPU)", "channels_last": channels_last,
        "train_images_per_s": round(args.steps * args.batch_size / train_s, 2),
        "eval_images_per_s": round(args.steps * args.batch_size / eval_s, 2),
        "peak_train_memory_mb": None if peak_train is None else round(peak_train, 1),
        "first_loss_fp32": loss_fp32, "first_loss_autocast": loss_amp,
        "loss_rel_diff": abs(loss_amp - loss_fp32) / max(abs(loss_fp32), 1e-9),
        "last_loss": losses[-1], "losses_finite": all(finite),
        "eval_output_shape": list(dets.shape), "eval_output_ok": tuple(dets.shape[1:]) == (DETECTIONS, 6),
    }


def check_study(args: argparse.Namespace, device: Any, work: Path) -> dict[str, Any]:
    """A one-trial study on generated COCO data (``write_coco``: squares and discs)."""
    from automl_pt import Study, results
    from automl_pt.testing import write_study
    from automl_pt_vision.testing import make_tiny_timm, write_coco

    size = args.image_size
    n = (24, 8, 8) if args.tiny else (512, 128, 128)
    for name, count, seed in zip(("train", "validation", "test"), n, (1, 2, 3)):
        write_coco(work / f"{name}.json", count, size=size, seed=seed, folder=name)
    backbone = make_tiny_timm(work / "tiny-study", image_size=size) if args.tiny else args.backbone
    space = {"strategy": ["full"], "learning_rate": [2e-3], "epochs": [1 if args.tiny else 3],
             "batch_size": [args.batch_size], "detector": [args.detector], "frozen_stages": [0]}
    path = write_study(work, "object-detection", backbone,
                       {"train": "train.json", "validation": "validation.json", "test": "test.json",
                        "image_size": size}, space,
                       resources={"workers": "inline", "devices": "cuda" if device.type == "cuda" else "cpu"})
    t0 = time.perf_counter()
    Study.from_config(path).run(progress=False)
    wall = time.perf_counter() - t0
    res = results(str(work / "run"))
    trials = res.trials()
    return {"study_wall_s": round(wall, 1), "trial_state": str(trials["state"].iloc[0]),
            "study_images_per_s": float(trials["samples_per_s"].iloc[0]),
            "study_device": str(trials["device"].iloc[0]), "test": res.test_metrics}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny random backbone, small inputs (CPU)")
    parser.add_argument("--study", action="store_true", help="also run a one-trial detection study")
    parser.add_argument("--backbone", default="mobilenetv2-100")
    parser.add_argument("--detector", default="fcos", choices=("fcos", "retinanet"))
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.image_size = args.image_size or (64 if args.tiny else 512)
    args.batch_size = args.batch_size or (4 if args.tiny else 16)
    args.steps = args.steps or (3 if args.tiny else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                           "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        out.update(check_steps(args, device, Path(tmp)))
        if args.study:
            out.update(check_study(args, device, Path(tmp)))
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0 if out["losses_finite"] and out["eval_output_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
