"""The input size comes from the data when ``[data] image_size`` is not set: 28-pixel images
are not upsampled to the backbone's 224; ``image_size`` is a searchable parameter."""

from __future__ import annotations

import json

import pytest

from automl_pt import Study
from automl_pt.testing import write_study
from automl_pt_vision.backbone import MIN_AUTO_IMAGE_SIZE, auto_image_size
from automl_pt_vision.testing import make_image_tree, make_tiny_timm


@pytest.fixture(scope="module")
def tiny_224(tmp_path_factory):
    """A tiny random CNN whose pretrained config says 224 pixels, like ImageNet backbones."""
    return make_tiny_timm(tmp_path_factory.mktemp("models") / "tiny-224", image_size=224)


@pytest.fixture(scope="module")
def mnist_like(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    make_image_tree(root / "data" / "train", n_per_class=8, size=28, seed=1)
    return root


def test_auto_size_rounds_up_the_native_size_within_floor_and_pretrained_size():
    assert auto_image_size(28, 224) == MIN_AUTO_IMAGE_SIZE == 96
    assert auto_image_size(150, 224) == 160
    assert auto_image_size(500, 224) == 224      # large photos keep the pretrained size
    assert auto_image_size(28, 64) == 64         # never above what the backbone was trained at


def test_28_pixel_images_are_encoded_at_96_not_224(vision_host, tiny_224, mnist_like):
    task = vision_host.registry.tasks["image-classification"]
    inputs = sorted(str(p) for p in (mnist_like / "data" / "train").rglob("*.png"))
    [options] = [o for o in vision_host.hook.automl_pt_data_options(task=task, inputs=inputs) if o]
    assert options == {"native_image_size": 28}
    info = vision_host.hook.automl_pt_resolve_backbone(name=str(tiny_224), modality="image")
    backbone = info.load(dict(options))
    prep = backbone.preprocessor(dict(options))
    assert prep.data_config["input_size"] == (3, 96, 96)
    assert prep.encode(inputs[:2])["pixel_values"].shape == (2, 3, 96, 96)
    assert "image_size 96 px" in prep.summary() and "28 px" in prep.summary()
    chosen = info.load({**options, "image_size": 64})           # [data] image_size wins
    assert chosen.preprocessor({**options, "image_size": 64}).data_config["input_size"] == (3, 64, 64)
    assert chosen.preprocessor({**options, "image_size": 64}).summary() == ""
    assert info.load({}).preprocessor({}).data_config["input_size"] == (3, 224, 224)


def _study(tmp_path, root, backbone, space: str) -> object:
    return write_study(tmp_path, "image-classification", backbone,
                       {"train": root / "data" / "train"},
                       'strategy = ["full"]\nepochs = 1\nbatch_size = [16]\n' + space, name="sizes",
                       search={"sampler": "tpe"},
                       resources={"workers": "inline", "num_threads": 1})


def test_a_study_reports_the_chosen_size_and_exports_it(tmp_path, tiny_224, mnist_like):
    Study.from_config(_study(tmp_path, mnist_like, tiny_224, "")).run(progress=False)
    meta = json.loads((tmp_path / "run" / "study.json").read_text())
    assert meta["input_sizes"][str(tiny_224)].startswith("image_size 96 px")
    exported = json.loads((tmp_path / "run" / "best" / "backbone" / "config.json").read_text())
    assert exported["pretrained_cfg"]["input_size"] == [3, 96, 96]


def test_image_size_is_searchable(tmp_path, tiny_224, mnist_like):
    results = Study.from_config(_study(tmp_path, mnist_like, tiny_224, "image_size = [64]")).run(progress=False)
    assert results.trials()["params"].map(lambda p: json.loads(p)["image_size"]).tolist() == [64]
    exported = json.loads((tmp_path / "run" / "best" / "backbone" / "config.json").read_text())
    assert exported["pretrained_cfg"]["input_size"] == [3, 64, 64]
