"""Reading image data: class-per-folder trees and tables, decoding (EXIF, grayscale, RGBA,
16-bit), and bad input reported with the offending paths or skipped and counted."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from automl_pt import Study
from automl_pt.spec.config import config_from_dict
from automl_pt.spec.data import load_study_data
from automl_pt.errors import DataError
from automl_pt_vision.preprocess import ImagePreprocessor, check_image
from automl_pt_vision.testing import make_image_tree, write_table


def prep(size=16, crop_pct=1.0, interpolation="bilinear"):
    return ImagePreprocessor({"input_size": (3, size, size), "crop_pct": crop_pct,
                              "interpolation": interpolation})


def config(train, **data):
    return config_from_dict({"study": {"name": "d"}, "task": {"type": "image-classification"},
                             "data": {"train": str(train), **data},
                             "search": {"backbones": ["mobilenetv2-100"]}})


def make_bad_tree(root):
    """A tree with every kind of bad input next to good images."""
    make_image_tree(root, n_per_class=4, size=20)
    good = root / "disc" / "0000.png"
    (root / "disc" / "truncated.png").write_bytes(good.read_bytes()[:60])
    (root / "stripes" / "notes.txt").write_text("not an image")
    (root / "stripes" / "zero.jpg").write_bytes(b"")
    (root / "empty_class").mkdir()
    (root / "columns" / ".DS_Store").write_bytes(b"\0\1")          # hidden: ignored
    return {"truncated.png", "notes.txt", "zero.jpg", "empty_class"}


def test_folder_tree_reads_every_class(vision_host, tmp_path):
    root = make_image_tree(tmp_path / "train", n_per_class=5, classes=("b", "a", "c"), size=20)
    (root / "a" / "nested").mkdir()
    Image.new("RGB", (20, 20)).save(root / "a" / "nested" / "x.png")
    data = load_study_data(config(root, validation_fraction=0.2),
                           vision_host.registry.tasks["image-classification"], vision_host.registry)
    assert data.label_names == ["a", "b", "c"]
    assert len(data.train) + len(data.validation) == 16
    every = data.train.inputs + data.validation.inputs
    assert str((root / "a" / "nested" / "x.png").resolve()) in every
    for path, label in zip(data.train.inputs, data.train.labels):
        assert f"/{data.label_names[label]}/" in path


def test_table_paths_are_relative_to_the_table(vision_host, tmp_path):
    make_image_tree(tmp_path / "tables" / "imgs", n_per_class=3, size=20)
    table = write_table(tmp_path / "tables" / "train.csv", tmp_path / "tables" / "imgs",
                        image_column="file", label_column="kind")
    data = load_study_data(config(table, image_column="file", label_column="kind"),
                           vision_host.registry.tasks["image-classification"], vision_host.registry)
    assert all(p.startswith(str(tmp_path / "tables" / "imgs")) for p in data.train.inputs)
    assert data.label_names == ["columns", "disc", "stripes"]


def test_bad_files_are_listed_by_path(vision_host, tmp_path):
    bad = make_bad_tree(tmp_path / "train")
    with pytest.raises(DataError) as err:
        load_study_data(config(tmp_path / "train"),
                        vision_host.registry.tasks["image-classification"], vision_host.registry)
    message = str(err.value)
    assert "4 bad file(s)" in message
    for name in bad:
        assert name in message
    assert "empty class folder" in message and "not an image" in message
    assert "empty file" in message and "truncated" in message
    assert ".DS_Store" not in message
    assert 'on_bad_file = "skip"' in message


def test_bad_files_skipped_and_counted_with_the_study(vision_host, tmp_path, tiny_timm):
    make_bad_tree(tmp_path / "data" / "train")
    study = Study.from_config({
        "study": {"name": "skip", "trials": 1},
        "task": {"type": "image-classification"},
        "data": {"train": "data/train", "on_bad_file": "skip", "image_size": 32},
        "search": {"backbones": [str(tiny_timm)], "pruner": "none",
                   "space": {"strategy": "linear_probe", "epochs": 1, "batch_size": 8}},
        "resources": {"devices": "cpu", "workers": "inline", "num_threads": 1},
        "storage": {"dir": "run"}}, host=vision_host, base_dir=tmp_path)
    results = study.run(progress=False)
    meta = json.loads((tmp_path / "run" / "study.json").read_text())
    assert meta["data"]["skipped_total"] == 4
    assert meta["data"]["labels"] == ["columns", "disc", "stripes"]   # the empty class is gone
    assert meta["data"]["train"] + meta["data"]["validation"] == 12   # every good image kept
    import duckdb

    con = duckdb.connect(str(tmp_path / "run" / "results.duckdb"), read_only=True)
    stored = json.loads(con.execute("SELECT data FROM studies").fetchone()[0])
    con.close()
    assert stored["skipped_bad_files"] == {"train": 4}
    assert len(results.trials()) == 1


def test_files_outside_class_folders_are_an_error(vision_host, tmp_path):
    root = make_image_tree(tmp_path / "train", n_per_class=2, size=20)
    Image.new("RGB", (8, 8)).save(root / "stray.png")
    with pytest.raises(DataError, match="outside the class folders.*stray.png"):
        load_study_data(config(root), vision_host.registry.tasks["image-classification"],
                        vision_host.registry)


def test_check_image_reasons(tmp_path):
    good = tmp_path / "ok.jpg"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(good, quality=90)
    assert check_image(good) is None
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert "truncated" in check_image(tmp_path / "cut.jpg")
    assert check_image(tmp_path / "missing.png") == "file not found"


# -- decoding -----------------------------------------------------------------------------------
def test_grayscale_rgba_palette_and_16bit_become_rgb(tmp_path):
    p = prep(size=8)
    gray = Image.fromarray(np.full((8, 8), 77, np.uint8))
    rgba = Image.fromarray(np.dstack([np.full((8, 8), 200, np.uint8)] * 3 +
                                     [np.zeros((8, 8), np.uint8)]))   # fully transparent
    palette = Image.fromarray(np.full((8, 8), 120, np.uint8)).convert("P")
    deep = Image.fromarray(np.full((8, 8), 65535, np.uint16))
    assert [i.mode for i in (gray, rgba, palette, deep)] == ["L", "RGBA", "P", "I;16"]
    for i, img in enumerate((gray, rgba, palette, deep)):
        img.save(tmp_path / f"{i}.png")
    out = p.encode([str(tmp_path / f"{i}.png") for i in range(4)])["pixel_values"]
    assert out.shape == (4, 3, 8, 8) and out.dtype.is_floating_point is False
    assert (out[0] == 77).all()
    assert (out[1] == 255).all()            # transparent pixels composite onto white
    assert (out[2] == 120).all()
    assert (out[3] == 255).all()            # 16-bit white is 8-bit white


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)                    # left half red, right half blue
    arr[:, 20:] = (0, 0, 255)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6                             # "rotate 90 CW to display"
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    p = ImagePreprocessor({"input_size": (3, 40, 20), "crop_pct": 1.0, "crop_mode": "squash"})
    out = p.encode([str(tmp_path / "rot.jpg")])["pixel_values"][0]
    assert out.shape == (3, 40, 20)              # displayed upright: 20 wide, 40 tall
    top, bottom = out[:, :15].float().mean(dim=(1, 2)), out[:, 25:].float().mean(dim=(1, 2))
    assert top[0] > 200 and top[2] < 60          # red on top after the rotation
    assert bottom[2] > 200 and bottom[0] < 60


def test_resize_and_centre_crop_follow_the_data_config(tmp_path):
    arr = np.zeros((100, 200, 3), np.uint8)
    arr[:, 50:150] = 255                         # the centre square is white
    Image.fromarray(arr).save(tmp_path / "wide.png")
    out = prep(size=32, crop_pct=1.0).encode([str(tmp_path / "wide.png")])["pixel_values"][0]
    assert out.shape == (3, 32, 32)
    assert out[:, :, 2:30].float().mean() > 250  # shorter side to 32, centre 32x32 kept
    loose = prep(size=32, crop_pct=0.5).encode([str(tmp_path / "wide.png")])["pixel_values"][0]
    assert loose[:, :, :4].float().mean() > 250  # resized to 64 first: a smaller centre crop


def test_encode_lists_every_undecodable_input(tmp_path):
    ok = tmp_path / "ok.png"
    Image.new("RGB", (10, 10)).save(ok)
    (tmp_path / "bad.png").write_text("nope")
    with pytest.raises(DataError, match=r"1 image\(s\) cannot be decoded:\n  .*bad.png"):
        prep().encode([str(ok), str(tmp_path / "bad.png")])


def test_fingerprint_changes_with_the_output():
    base = prep(size=16).fingerprint
    assert prep(size=16).fingerprint == base
    assert prep(size=24).fingerprint != base
    assert prep(size=16, crop_pct=0.9).fingerprint != base
    assert prep(size=16, interpolation="bicubic").fingerprint != base
