"""Tiny random-weight timm backbones and synthetic image data for tests and examples
(no download needed)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from automl_pt.testing import require  # noqa: F401  (moved to the core; kept importable here)

PATTERNS = ("stripes", "columns", "disc", "checker", "ring", "diagonal")


def make_tiny_timm(directory: str | Path, architecture: str = "test_efficientnet",
                   image_size: int = 32, seed: int = 0) -> Path:
    """Write a randomly initialised timm ``architecture`` (``test_efficientnet``: ~0.1M
    parameters; ``test_vit``, ``test_mambaout``...) in timm's folder format with ``image_size``
    as its input size (a model with a fixed input size, such as a ViT, is built for it); the
    folder resolves like any local image backbone."""
    import timm
    import torch

    from .backbone import TimmImageBackbone

    torch.manual_seed(seed)
    fixed = bool(timm.models.get_pretrained_cfg(architecture).fixed_input_size)
    model_args = {"img_size": image_size} if fixed else {}
    model = timm.create_model(architecture, pretrained=False, num_classes=0, **model_args)
    model.pretrained_cfg = {**dict(model.pretrained_cfg),
                            "input_size": (3, image_size, image_size), "crop_pct": 1.0}
    backbone = TimmImageBackbone(model, f"tiny-{architecture}", architecture, model_args)
    backbone.export(directory)
    return Path(directory)


def pattern_image(pattern: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB uint8 image of ``pattern`` with a random colour, phase and noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    phase = rng.uniform(0, 1)
    if pattern == "stripes":
        mask = np.sin((yy + phase) * 2 * np.pi * 4) > 0
    elif pattern == "columns":
        mask = np.sin((xx + phase) * 2 * np.pi * 4) > 0
    elif pattern == "disc":
        mask = (xx - 0.5 - 0.1 * (phase - 0.5)) ** 2 + (yy - 0.5) ** 2 < 0.09
    elif pattern == "checker":
        mask = (np.floor((xx + phase) * 4) + np.floor(yy * 4)) % 2 == 0
    elif pattern == "ring":
        r2 = (xx - 0.5) ** 2 + (yy - 0.5) ** 2
        mask = (r2 > 0.06) & (r2 < 0.16)
    else:
        mask = np.sin((xx + yy + phase) * 2 * np.pi * 3) > 0
    fg = rng.uniform(150, 255, size=3)
    bg = rng.uniform(0, 90, size=3)
    img = np.where(mask[..., None], fg, bg) + rng.normal(0, 12, size=(size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_image_tree(root: str | Path, n_per_class: int, classes: Sequence[str] = PATTERNS[:3],
                    size: int = 32, seed: int = 0, suffix: str = ".png") -> Path:
    """A class-per-folder tree ``root/<pattern>/<i>.png`` of synthetic pattern images."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(pattern_image(name, size, rng)).save(root / name / f"{i:04d}{suffix}")
    return root


def write_table(path: str | Path, tree: str | Path, image_column: str = "image",
                label_column: str = "label") -> Path:
    """A CSV listing every image of ``tree`` (which lies under the CSV's folder) with paths
    relative to the CSV's folder."""
    path, tree = Path(path), Path(tree)
    rows = []
    for f in sorted(tree.rglob("*")):
        if f.is_file():
            rel = f.resolve().relative_to(path.parent.resolve())
            rows.append({image_column: str(rel), label_column: f.parent.name})
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[image_column, label_column])
        writer.writeheader()
        writer.writerows(rows)
    return path
