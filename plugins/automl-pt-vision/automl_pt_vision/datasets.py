"""Deterministic class-per-folder image sets built from Debian's ``dataset-fashion-mnist``.

The package ships Fashion-MNIST as gzipped IDX files in ``/usr/share/datasets/fashion-mnist``
(``apt-get install dataset-fashion-mnist``). :func:`build_fashion_mnist` writes a stratified
subset as 28x28 grayscale PNGs::

    OUT/train/<class>/<index>.png        from the 60 000 training images
    OUT/validation/<class>/<index>.png   from the training images too (disjoint)
    OUT/test/<class>/<index>.png         from the 10 000 test images

``<index>`` is the image's position in its IDX file, so every file can be traced back.
"""

from __future__ import annotations

import argparse
import gzip
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES: tuple[str, ...] = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal",
                                "shirt", "sneaker", "bag", "ankle_boot")
_INSTALL_HINT = "install it with `apt-get install dataset-fashion-mnist`"


def read_idx(path: Path | str) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array. Raises ``ValueError`` on a bad header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file")
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
             0x0E: ">f8"}.get(raw[2])
    if dtype is None:
        raise ValueError(f"{path}: unknown IDX element type {raw[2]:#x}")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} values for shape {dims}")
    return data.reshape(dims)


def load_split(kind: str, data_dir: Path | str = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 28, 28) uint8, labels (N,) uint8)`` for ``kind`` ``train`` or ``t10k``."""
    data_dir = Path(data_dir)
    images = data_dir / f"{kind}-images-idx3-ubyte.gz"
    labels = data_dir / f"{kind}-labels-idx1-ubyte.gz"
    for path in (images, labels):
        if not path.is_file():
            raise FileNotFoundError(f"Fashion-MNIST file {path} not found; {_INSTALL_HINT}")
    x, y = read_idx(images), read_idx(labels)
    if len(x) != len(y):
        raise ValueError(f"{data_dir}: {len(x)} images but {len(y)} labels in {kind}")
    return x, y


def _pick(labels: np.ndarray, per_class: int, rng: np.random.Generator,
          exclude: set[int] = frozenset()) -> dict[int, list[int]]:
    out = {}
    for c in range(len(CLASS_NAMES)):
        idx = [int(i) for i in np.flatnonzero(labels == c) if int(i) not in exclude]
        if len(idx) < per_class:
            raise ValueError(f"class {CLASS_NAMES[c]} has {len(idx)} images, {per_class} requested")
        out[c] = sorted(rng.choice(idx, size=per_class, replace=False).tolist())
    return out


def _write_pngs(images: np.ndarray, picks: dict[int, list[int]], folder: Path) -> int:
    from PIL import Image

    count = 0
    for c, indices in picks.items():
        class_dir = folder / CLASS_NAMES[c]
        class_dir.mkdir(parents=True, exist_ok=True)
        for i in indices:
            path = class_dir / f"{i:05d}.png"
            tmp = path.with_name(f".{path.name}.tmp")
            Image.fromarray(images[i]).save(tmp, format="PNG")
            os.replace(tmp, path)
            count += 1
    return count


def build_fashion_mnist(out_dir: Path | str, train_per_class: int = 150,
                        validation_per_class: int = 50, test_per_class: int = 100, seed: int = 0,
                        data_dir: Path | str = FASHION_MNIST_DIR,
                        unlabeled: int = 3000) -> dict[str, Path]:
    """Write ``train`` / ``validation`` / ``test`` class-per-folder trees under ``out_dir``,
    with the given number of images per class, drawn with ``numpy.random.default_rng(seed)``;
    validation images are disjoint from training images. Existing split folders are replaced.
    Output is fully determined by the arguments and the installed data.
    ``unlabeled`` further training images (disjoint from train and validation, drawn after
    them) go, without their classes, into the flat folder ``unlabeled/``: the in-domain pool for
    continued pre-training (``[pretrain] data``); 0 writes none.
    Returns ``{"train": path, "validation": path, "test": path[, "unlabeled": path]}``."""
    import shutil

    for n in (train_per_class, validation_per_class, test_per_class):
        if n < 1:
            raise ValueError("every split needs at least one image per class")
    x_train, y_train = load_split("train", data_dir)
    x_test, y_test = load_split("t10k", data_dir)
    rng = np.random.default_rng(seed)
    train = _pick(y_train, train_per_class, rng)
    taken = {i for idx in train.values() for i in idx}
    validation = _pick(y_train, validation_per_class, rng, exclude=taken)
    test = _pick(y_test, test_per_class, rng)
    out = Path(out_dir)
    paths = {}
    for name, images, picks in (("train", x_train, train), ("validation", x_train, validation),
                                ("test", x_test, test)):
        folder = out / name
        tmp = out / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _write_pngs(images, picks, tmp)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        paths[name] = folder
    if unlabeled > 0:
        taken |= {i for idx in validation.values() for i in idx}
        rest = np.array([i for i in range(len(y_train)) if i not in taken])
        pick = np.sort(rng.choice(rest, size=min(unlabeled, len(rest)), replace=False))
        folder, tmp = out / "unlabeled", out / ".unlabeled.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        from PIL import Image

        for i in pick:
            Image.fromarray(x_train[i]).save(tmp / f"{int(i):05d}.png", format="PNG")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        paths["unlabeled"] = folder
    return paths


def main(argv: Sequence[str] | None = None,
         default_out: Path | str = Path("studies/data/fashion-mnist")) -> int:
    """Command-line entry point; prints one line per split."""
    parser = argparse.ArgumentParser(description="Build a Fashion-MNIST class-per-folder subset.")
    parser.add_argument("--out", type=Path, default=Path(default_out), help="output dir (default: %(default)s)")
    parser.add_argument("--train-per-class", type=int, default=150, help="(default: %(default)s)")
    parser.add_argument("--validation-per-class", type=int, default=50, help="(default: %(default)s)")
    parser.add_argument("--test-per-class", type=int, default=100, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path, default=FASHION_MNIST_DIR, help="IDX files (default: %(default)s)")
    parser.add_argument("--unlabeled", type=int, default=3000,
                        help="images for the unlabeled pool (flat folder), 0: none (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        paths = build_fashion_mnist(args.out, args.train_per_class, args.validation_per_class,
                                    args.test_per_class, args.seed, args.data_dir, args.unlabeled)
    except (FileNotFoundError, ValueError) as exc:
        parser.exit(1, f"error: {exc}\n")
    for name, path in paths.items():
        n = sum(1 for _ in path.rglob("*.png"))
        what = "without classes" if name == "unlabeled" else f"in {len(CLASS_NAMES)} classes"
        print(f"{name}: {n} images {what} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
