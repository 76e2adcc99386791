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


def write_coco(path: str | Path, n_images: int, size: int = 64, seed: int = 0,
               folder: str = "images", max_items: int = 2) -> Path:
    """A COCO detection file ``path`` and its images (``<path's folder>/<folder>/<i>.png``,
    ``file_name`` relative to the JSON): up to ``max_items`` bright squares or discs
    (categories ``square`` and ``disc``) on a noisy dark background; some images have none."""
    import json

    from PIL import Image

    path = Path(path)
    (path.parent / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n_images):
        img = rng.normal(40, 15, (size, size, 3))
        for _ in range(int(rng.integers(0, max_items + 1))):
            side = int(rng.integers(size // 5, size // 2))
            x, y = int(rng.integers(0, size - side)), int(rng.integers(0, size - side))
            cat = int(rng.integers(1, 3))
            if cat == 1:
                mask = (xx >= x) & (xx < x + side) & (yy >= y) & (yy < y + side)
            else:
                r = side / 2
                mask = (xx - x - r + 0.5) ** 2 + (yy - y - r + 0.5) ** 2 <= r * r
            img[mask] = rng.uniform(160, 255, 3)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cat,
                                "bbox": [x, y, side, side], "area": side * side, "iscrowd": 0})
        file = f"{folder}/{i:04d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path.parent / file)
        images.append({"id": i + 1, "file_name": file, "width": size, "height": size})
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}]}))
    return path
