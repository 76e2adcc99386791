"""The Fashion-MNIST subset builder, on a small synthetic IDX set and on the Debian data."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from automl_pt_vision.datasets import (CLASS_NAMES, FASHION_MNIST_DIR, build_fashion_mnist, main,
                                       read_idx)
from automl_pt.testing import require


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    for kind, n in (("train", 60), ("t10k", 30)):
        labels = np.arange(n) % 10
        images = np.broadcast_to(labels[:, None, None] * 25, (n, 28, 28))  # pixel = label * 25
        write_idx(folder / f"{kind}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{kind}-labels-idx1-ubyte.gz", labels)
    return folder


def test_builds_disjoint_stratified_trees(tmp_path, fake_fashion):
    paths = build_fashion_mnist(tmp_path / "out", 3, 2, 2, seed=1, data_dir=fake_fashion)
    for name, per_class in (("train", 3), ("validation", 2), ("test", 2)):
        assert sorted(p.name for p in paths[name].iterdir()) == sorted(CLASS_NAMES)
        for c, class_name in enumerate(CLASS_NAMES):
            files = sorted((paths[name] / class_name).glob("*.png"))
            assert len(files) == per_class
            for f in files:   # the pixel value encodes the label in the fake data
                assert int(np.asarray(Image.open(f))[0, 0]) == c * 25
    train = {p.name for p in paths["train"].rglob("*.png")}
    validation = {p.name for p in paths["validation"].rglob("*.png")}
    assert not train & validation
    # the unlabeled pool: a flat folder of the remaining training images (10 of the fake 60)
    unlabeled = sorted(paths["unlabeled"].iterdir())
    assert len(unlabeled) == 60 - 10 * (3 + 2) and all(f.suffix == ".png" for f in unlabeled)
    assert not {f.name for f in unlabeled} & (train | validation)
    again = build_fashion_mnist(tmp_path / "again", 3, 2, 2, seed=1, data_dir=fake_fashion)
    assert {p.name for p in again["train"].rglob("*.png")} == train      # deterministic


def test_too_few_images_and_missing_data_are_clear_errors(tmp_path, fake_fashion, capsys):
    with pytest.raises(ValueError, match="has 6 images, 7 requested"):
        build_fashion_mnist(tmp_path / "out", 7, 1, 1, data_dir=fake_fashion)
    with pytest.raises(SystemExit):
        main(["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


def test_read_idx_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as fh:
        fh.write(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)


def test_debian_data_matches_its_documented_size():
    require(FASHION_MNIST_DIR.is_dir(), "Debian package dataset-fashion-mnist")
    from automl_pt_vision.datasets import load_split

    x, y = load_split("t10k")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [1000] * 10
