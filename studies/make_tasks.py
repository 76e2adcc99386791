"""Build the data of the regression and multi-label example studies (``studies/tasks/``) into
``studies/data/tasks``, from the Debian data sets the quickstarts use:

* ``fortunes-topics``: one or two fortunes of different topics per text; the labels are their
  topics (``text-multilabel``, labels joined by ``|``);
* ``fortunes-share``: four fortunes per text; the target is how many of them are about
  ``science`` (``text-regression``);
* ``fashion-ink``: Fashion-MNIST images; the target is the share of the image the garment covers
  (``image-regression``);
* ``fashion-pairs``: two 28x28 slots holding one or two garments of three classes; the labels are
  the garments (``image-multilabel``).

Usage: ``python studies/make_tasks.py [--out DIR] [--seed S]`` (``apt-get install fortunes
dataset-fashion-mnist``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
for plugin in ("automl-pt-text", "automl-pt-vision"):
    sys.path.insert(0, str(HERE.parent / "plugins" / plugin))

TOPICS = ("computers", "food", "law", "science")
GARMENTS = {1: "trouser", 7: "sneaker", 8: "bag"}
SPLITS = (("train", 0.6), ("validation", 0.2), ("test", 0.2))


def _write_splits(rows: list[dict], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    start = 0
    for name, fraction in SPLITS:
        end = len(rows) if name == "test" else start + int(len(rows) * fraction)
        pd.DataFrame(rows[start:end]).to_csv(folder / f"{name}.csv", index=False)
        start = end


def fortunes(out: Path, rng: np.random.Generator, n: int = 1200) -> None:
    from automl_pt_text.datasets import read_fortunes

    texts = {t: read_fortunes(t) for t in TOPICS}
    rows = []
    for _ in range(n):
        topics = sorted(rng.choice(TOPICS, size=int(rng.integers(1, 3)), replace=False))
        rows.append({"text": " ".join(str(rng.choice(texts[t])) for t in topics),
                     "topics": "|".join(topics)})
    _write_splits(rows, out / "fortunes-topics")
    rows = []
    for _ in range(n):
        k = int(rng.integers(0, 5))
        parts = [str(rng.choice(texts["science"])) for _ in range(k)] + [
            str(rng.choice(texts[str(rng.choice(TOPICS[:3]))])) for _ in range(4 - k)]
        rng.shuffle(parts)
        rows.append({"text": " ".join(parts), "science": k})
    _write_splits(rows, out / "fortunes-share")


def fashion(out: Path, rng: np.random.Generator, n: int = 1500) -> None:
    from PIL import Image

    from automl_pt_vision.datasets import load_split

    x, y = load_split("train")
    folder = out / "fashion-ink" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in rng.choice(len(x), n, replace=False):
        Image.fromarray(x[i]).save(folder / f"{i}.png")
        rows.append({"image": f"images/{i}.png", "ink": round(float((x[i] > 64).mean()), 4)})
    _write_splits(rows, out / "fashion-ink")
    folder = out / "fashion-pairs" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    pools = {c: np.flatnonzero(y == c) for c in GARMENTS}
    rows = []
    for i in range(n):
        classes = sorted(rng.choice(list(GARMENTS), size=int(rng.integers(1, 3)), replace=False))
        canvas = np.zeros((28, 56), dtype=np.uint8)
        for slot, c in zip(rng.permutation(2), classes):
            canvas[:, 28 * slot:28 * slot + 28] = x[rng.choice(pools[c])]
        Image.fromarray(canvas).save(folder / f"{i}.png")
        rows.append({"image": f"images/{i}.png", "garments": "|".join(GARMENTS[c] for c in classes)})
    _write_splits(rows, out / "fashion-pairs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "data" / "tasks"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    rng = np.random.default_rng(args.seed)
    fortunes(out, rng)
    fashion(out, rng)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
