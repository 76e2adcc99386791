"""Strategy ``partial`` on the timm families beyond the contract's tiny EfficientNet: the split
reproduces ``encode`` for every k, the top modules hold what runs after the split, and a family
the split does not know is refused by name."""

from __future__ import annotations

import pytest
import torch

from automl_pt.errors import BackboneError


def _backbone(architecture: str):
    import timm

    from automl_pt_vision.backbone import TimmImageBackbone

    torch.manual_seed(0)
    model = timm.create_model(architecture, pretrained=False, num_classes=0)
    return TimmImageBackbone(model, f"tiny-{architecture}", architecture).eval()


@pytest.mark.parametrize("architecture", ["test_vit", "test_convnext", "mobilenetv3_small_050"])
def test_split_matches_encode_for_every_k(architecture):
    backbone = _backbone(architecture)
    size = backbone.data_config["input_size"][1]
    batch = {"pixel_values": torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)}
    with torch.no_grad():
        full = backbone.encode(batch)
        for k in range(1, backbone.num_blocks() + 1):
            split = backbone.encode_top(backbone.encode_bottom(batch, k), k)
            torch.testing.assert_close(split, full, rtol=1e-4, atol=1e-5)
    top = {id(p) for m in backbone.top_modules(1) for p in m.parameters()}
    below = [n for n, p in backbone.named_parameters() if id(p) not in top]
    assert below and len(top) < len(list(backbone.parameters()))
    if architecture == "test_vit":  # position embeddings and class token stay below
        assert {"model.pos_embed", "model.cls_token"} <= set(below)


def test_an_unknown_timm_family_is_refused_by_name():
    backbone = _backbone("test_resnet")
    with pytest.raises(BackboneError, match="'tiny-test_resnet'.*ResNet.*partial"):
        backbone.num_blocks()
