"""The plugin contract every automl_pt plugin passes, run against the vision plugin."""

from __future__ import annotations

import automl_pt_vision
from automl_pt.testing import BackboneContract, PluginContract
from automl_pt_vision.testing import make_image_tree, make_tiny_timm


class TestVisionContract(PluginContract):
    plugin = automl_pt_vision


class TestVisionBackboneContract(BackboneContract):
    """A CNN (EfficientNet family, mean pooling of its last feature map)."""

    plugin = automl_pt_vision
    architecture = "test_efficientnet"
    image_size = 64

    def tiny_backbone(self, tmp_path):
        return str(make_tiny_timm(tmp_path / "tiny", self.architecture, image_size=self.image_size))

    def sample_inputs(self, tmp_path):
        tree = make_image_tree(tmp_path / "images", n_per_class=1, size=40)
        return sorted(str(p) for p in tree.rglob("*.png"))


class TestViTBackboneContract(TestVisionBackboneContract):
    """A vision transformer: positions are the patch tokens, the class token pools."""

    architecture = "test_vit"
    catalog_checks = ()


class TestMambaOutBackboneContract(TestVisionBackboneContract):
    """A CNN whose head widens the pooled map (64 channels per cell, 256 pooled features) and
    whose ``forward_features`` is channels-last (NHWC)."""

    architecture = "test_mambaout"
    catalog_checks = ()


def test_positions_of_each_timm_layout(tmp_path):
    """The positions are the grid cells, row-major, with every cell real; ViT-like models
    leave the class token out; ``position_dim`` is the cell width where pooling widens it."""
    import torch

    from automl_pt_vision.backbone import load_local_dir

    expected = {"test_efficientnet": (4, 256, 256, "mean"), "test_vit": (4, 64, 64, None),
                "test_mambaout": (4, 64, 256, None)}
    for architecture, (cells, position_dim, feature_dim, pooling) in expected.items():
        folder = make_tiny_timm(tmp_path / architecture, architecture, image_size=64 if architecture
                                != "test_vit" else 32)
        backbone = load_local_dir(folder, architecture, {}).eval()
        size = backbone.data_config["input_size"][-1]
        pixels = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
        with torch.no_grad():
            feats, mask = backbone.encode_positions({"pixel_values": pixels})
            raw = backbone.model.forward_features(backbone.normalize(pixels))
        assert feats.shape == (2, cells, position_dim) and bool(mask.all()), architecture
        assert (backbone.feature_dim, backbone.position_pooling) == (feature_dim, pooling), architecture
        if architecture == "test_efficientnet":   # (B, C, H, W): cell (h, w) is position h * W + w
            torch.testing.assert_close(feats[:, 1], raw[:, :, 0, 1])
            torch.testing.assert_close(feats[:, 2], raw[:, :, 1, 0])
        elif architecture == "test_vit":          # (B, 1 + cells, D): class token first
            torch.testing.assert_close(feats, raw[:, 1:])
        else:                                     # (B, H, W, C)
            torch.testing.assert_close(feats[:, 1], raw[:, 0, 1])


def test_entry_point_is_declared():
    from importlib import metadata

    eps = {ep.name: ep.value for ep in metadata.entry_points(group="automl_pt")}
    assert eps.get("vision") == "automl_pt_vision"


def test_registrations(vision_host):
    registry = vision_host.registry
    task = registry.tasks["image-classification"]
    assert task.modality == "image" and task.input_is_path and task.check_input is not None
    assert set(task.metrics) == {"accuracy", "macro_f1", "top5_accuracy"}
    names = [b.name for b in registry.list_backbones(modality="image")]
    assert names == ["efficientnet-lite0", "mobilenetv2-100"]
    assert "image-folder" in registry.readers


def test_catalog_parameter_counts_match_the_models(vision_host):
    """``automl-pt backbones`` shows these numbers: they must be the real backbone sizes."""
    import timm

    from automl_pt_vision.weights import CATALOG

    for entry in CATALOG.values():
        model = timm.create_model(entry.architecture, pretrained=False, num_classes=0)
        assert vision_host.registry.backbones[entry.name].parameters == \
            sum(p.numel() for p in model.parameters())


def test_resolve_names_without_loading(vision_host, tmp_path, tiny_timm):
    resolve = vision_host.hook.automl_pt_resolve_backbone
    hub = resolve(name="timm:convnext_tiny.fb_in22k", modality="image")
    assert hub is not None and "hub" in hub.source      # resolution itself downloads nothing
    assert resolve(name="timm:hf-hub:timm/resnet18.a1_in1k", modality="image") is not None
    assert resolve(name="timm:convnext_tiny.fb_in22k", modality="text") is None
    assert resolve(name="timm:bad name/x", modality="image") is None
    assert resolve(name=str(tiny_timm), modality="image").source.startswith("local ")
    assert resolve(name=str(tmp_path / "missing"), modality="image") is None
    # a folder with a config.json that is not timm's (a transformers folder) is not ours
    other = tmp_path / "hf"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    assert resolve(name=str(other), modality="image") is None


def test_checkpoint_file_with_architecture(vision_host, tmp_path, tiny_timm):
    """``timm:ARCH=PATH`` loads a plain checkpoint (torch pickle, weights_only) strictly; a file
    for another architecture is refused with the mismatching keys named."""
    import pytest
    import torch
    from safetensors.torch import load_file

    from automl_pt.errors import BackboneError

    state = load_file(str(tiny_timm / "model.safetensors"))
    ckpt = tmp_path / "tiny.pth"
    torch.save({"state_dict": state}, ckpt)
    info = vision_host.hook.automl_pt_resolve_backbone(name=f"timm:test_efficientnet={ckpt}",
                                                       modality="image")
    backbone = info.load({})
    for k, v in backbone.model.state_dict().items():
        torch.testing.assert_close(v, state[k])
    wrong = vision_host.hook.automl_pt_resolve_backbone(name=f"timm:test_resnet={ckpt}",
                                                        modality="image")
    with pytest.raises(BackboneError, match="does not fit timm model 'test_resnet'"):
        wrong.load({})


def test_image_size_option_sets_the_preprocessing(vision_host, tiny_timm):
    info = vision_host.hook.automl_pt_resolve_backbone(name=str(tiny_timm), modality="image")
    default = info.load({})
    assert default.preprocessor({}).data_config["input_size"] == (3, 32, 32)
    bigger = info.load({"image_size": 48})
    prep = bigger.preprocessor({"image_size": 48})
    assert prep.data_config["input_size"] == (3, 48, 48)
    assert prep.fingerprint != default.preprocessor({}).fingerprint


def test_layer_ids_follow_timm_stages():
    """Layer-wise learning-rate decay sees the stem at depth 0 and one depth per stage."""
    from automl_pt_vision.backbone import load_catalog

    backbone = load_catalog("mobilenetv2-100", {}, pretrained=False)
    top, ids = backbone.num_layers_and_ids()
    assert set(ids) == {n for n, _ in backbone.named_parameters()}
    assert ids["model.conv_stem.weight"] == 0
    stage = [ids[f"model.blocks.{i}.0.conv_pw.weight" if i else "model.blocks.0.0.conv_dw.weight"]
             for i in range(7)]
    assert stage == sorted(stage) and len(set(stage)) == 7
    assert 0 < max(ids.values()) <= top <= 10


def test_hub_names_ask_timm_for_pretrained_weights(vision_host, monkeypatch):
    """``timm:NAME`` loads through ``timm.create_model(NAME, pretrained=True)``; timm itself is
    stubbed here (no network in tests), standing in a tiny model for the real one."""
    import timm

    real = timm.create_model
    calls = []

    def fake_create(name, pretrained=False, **kwargs):
        calls.append((name, pretrained, kwargs))
        return real("test_efficientnet", pretrained=False, num_classes=kwargs["num_classes"])

    monkeypatch.setattr(timm, "create_model", fake_create)
    info = vision_host.hook.automl_pt_resolve_backbone(name="timm:convnext_tiny.fb_in22k",
                                                       modality="image")
    backbone = info.load({"image_size": 48})
    [(name, pretrained, kwargs)] = calls
    assert (name, pretrained, kwargs["num_classes"]) == ("convnext_tiny.fb_in22k", True, 0)
    assert kwargs["pretrained_cfg_overlay"]["input_size"] == (3, 48, 48)
    assert backbone.preprocessor({}).data_config["input_size"] == (3, 48, 48)
