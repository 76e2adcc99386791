"""A synthetic detection set from Fashion-MNIST (Debian's ``dataset-fashion-mnist``): items
pasted at random scales and places on larger canvases with noisy, textured backgrounds, written
as COCO JSON (``OUT/<split>.json`` + ``OUT/<split>/<n>.png``; ``file_name`` relative to the JSON).

Each canvas holds 0-4 items of up to ``classes`` classes, scaled 20-60 px (28 px originals),
overlapping at most lightly; the box is the item's non-background pixels. Deterministic for a
seed. Train and validation come from the 60 000 training images, test from the 10 000 test ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .datasets import CLASS_NAMES, FASHION_MNIST_DIR, load_split


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour gradient + blurred blobs + pixel noise, uint8 ``(size, size, 3)``."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(40, 200, 3)
    slope = rng.uniform(-60, 60, (2, 3))
    img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    coarse = rng.normal(0, 25, (size // 16 + 2, size // 16 + 2, 3))
    from PIL import Image

    blobs = np.stack([np.asarray(Image.fromarray(coarse[..., c].astype(np.float32), mode="F")
                                 .resize((size, size), Image.BICUBIC)) for c in range(3)], -1)
    img = img + blobs + rng.normal(0, 12, (size, size, 3))
    return np.clip(img, 0, 255)


def make_canvas(items: np.ndarray, labels: np.ndarray, rng: np.random.Generator, size: int,
                max_items: int = 4) -> tuple[np.ndarray, list[tuple[int, list[float]]]]:
    """One canvas and its ``(class, [x, y, w, h])`` boxes."""
    from PIL import Image

    canvas = _background(rng, size)
    boxes: list[tuple[int, list[float]]] = []
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(0, max_items + 1))):
        k = int(rng.integers(len(items)))
        side = int(rng.integers(20, 61))
        for _attempt in range(10):
            x, y = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
            if all(x + side <= a or a + c <= x or y + side <= b or b + d <= y for a, b, c, d in taken):
                break
        else:
            continue
        item = np.asarray(Image.fromarray(items[k]).resize((side, side), Image.BILINEAR), np.float32) / 255
        mask = item > 0.08
        if not mask.any():
            continue
        colour = rng.uniform(0, 255, 3) if rng.random() < 0.5 else np.full(3, rng.uniform(200, 255))
        region = canvas[y:y + side, x:x + side]
        region[:] = region * (1 - item[..., None]) + colour * item[..., None]
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        bx, by = x + int(cols[0]), y + int(rows[0])
        bw, bh = int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)
        taken.append((x, y, side, side))
        boxes.append((int(labels[k]), [float(bx), float(by), float(bw), float(bh)]))
    return canvas.astype(np.uint8), boxes


def write_split(out: Path, name: str, items: np.ndarray, labels: np.ndarray, count: int,
                rng: np.random.Generator, size: int, classes: int) -> Path:
    from PIL import Image

    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    keep = labels < classes
    items, labels = items[keep], labels[keep]
    images, annotations = [], []
    for i in range(count):
        canvas, boxes = make_canvas(items, labels, rng, size)
        file = f"{name}/{i:05d}.png"
        Image.fromarray(canvas).save(out / file)
        images.append({"id": i + 1, "file_name": file, "width": size, "height": size})
        for c, bbox in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1,
                                "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
    doc = {"images": images, "annotations": annotations,
           "categories": [{"id": c + 1, "name": CLASS_NAMES[c]} for c in range(classes)]}
    path = out / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def build(out: Path, train: int = 400, validation: int = 100, test: int = 100, size: int = 128,
          classes: int = 4, seed: int = 0, data_dir: Path = FASHION_MNIST_DIR) -> list[Path]:
    rng = np.random.default_rng(seed)
    x, y = load_split("train", data_dir)
    xt, yt = load_split("t10k", data_dir)
    half = len(x) // 2   # train and validation items come from disjoint halves
    return [write_split(out, "train", x[:half], y[:half], train, rng, size, classes),
            write_split(out, "validation", x[half:], y[half:], validation, rng, size, classes),
            write_split(out, "test", xt, yt, test, rng, size, classes)]


def main(argv=None, default_out: Path | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_out or Path("data/detection"))
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--validation", type=int, default=100)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--classes", type=int, default=4, help="first N Fashion-MNIST classes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for p in build(args.out, args.train, args.validation, args.test, args.size, args.classes, args.seed):
        print(p)
    return 0
