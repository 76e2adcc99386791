"""The detection head (torchvision's FCOS / RetinaNet heads over a feature pyramid on the
backbone's levels) and its raw form for onnx / torchscript exports: a module of its own, so
that registering the task (:mod:`automl_pt_vision.detection`) imports no torch."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .detection import DETECTIONS, EVAL_SCORE_THRESHOLD, FPN_CHANNELS, DETECTORS


class DetectorOutputs:
    """What the head returns in training: its raw outputs and anchors, for :meth:`losses`."""

    def __init__(self, head: "DetectionHead", outputs: dict, anchors: list, per_level: list,
                 size: tuple[int, int]):
        self.head, self.outputs, self.anchors, self.per_level, self.size = head, outputs, anchors, per_level, size

    def losses(self, targets) -> dict:
        """torchvision's losses against ``targets`` (the task's ``(B, boxes, 5)`` relative
        boxes, NaN rows for none)."""
        import torch

        h, w = self.size
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=targets.device)
        listed = []
        for t in targets.float():
            real = torch.isfinite(t[:, 4])
            listed.append({"boxes": t[real, :4] * scale, "labels": t[real, 4].long()})
        det = self.head.detector
        if self.head.kind == "fcos":
            return det.compute_loss(listed, self.outputs, self.anchors, self.per_level)
        return det.compute_loss(listed, self.outputs, self.anchors)


def _make_detector(kind: str, channels: int, num_classes: int, strides: list[int]):
    """torchvision's FCOS / RetinaNet with anchors sized to the pyramid's strides; its backbone
    slot is emptied (the trial's backbone and pyramid feed it)."""
    from torch import nn
    from torchvision.models.detection import FCOS, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead
    from torchvision.models.detection.retinanet import RetinaNetHead

    holder = nn.Identity()
    holder.out_channels = channels
    common = dict(min_size=1, max_size=1, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
                  score_thresh=EVAL_SCORE_THRESHOLD, detections_per_img=DETECTIONS)
    if kind == "fcos":
        anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
        det = FCOS(holder, num_classes, anchor_generator=anchors,
                   head=FCOSHead(channels, 1, num_classes, num_convs=2), **common)
    elif kind == "retinanet":
        sizes = tuple((4 * s, int(4 * s * 2 ** (1 / 3)), int(4 * s * 2 ** (2 / 3))) for s in strides)
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(strides))
        det = RetinaNet(holder, num_classes, anchor_generator=anchors,
                        head=RetinaNetHead(channels, anchors.num_anchors_per_location()[0], num_classes),
                        **common)
    else:
        raise ModelLoadError(f"unknown detector {kind!r}; one of {', '.join(DETECTORS)}")
    det.backbone = None
    return det


class DetectionHead(nn.Module):
    """Feature pyramid (P3-P5 from the backbone's levels, P6 / P7 extra) + a torchvision
    detector's head (see the module docstring)."""

    features = "levels"

    def __init__(self, levels: tuple[tuple[int, int], ...], num_classes: int, kind: str = "fcos",
                 channels: int = FPN_CHANNELS):
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

        self.kind = kind
        self.stride = int(levels[0][1])
        self.fpn = FeaturePyramidNetwork([int(c) for c, _ in levels], channels,
                                         extra_blocks=LastLevelP6P7(channels, channels))
        strides = [int(s) for _, s in levels] + [int(levels[-1][1]) * 2, int(levels[-1][1]) * 4]
        self.detector = _make_detector(kind, channels, num_classes, strides)

    def forward(self, levels: list):
        import torch
        from torchvision.models.detection.image_list import ImageList

        feats = list(self.fpn(OrderedDict((str(i), x.float()) for i, x in enumerate(levels))).values())
        b = feats[0].shape[0]
        size = (int(levels[0].shape[-2]) * self.stride, int(levels[0].shape[-1]) * self.stride)
        images = ImageList(feats[0].new_empty((b, 0, *size)), [size] * b)
        outputs = self.detector.head(feats)
        anchors = self.detector.anchor_generator(images, feats)
        per_level = [x.size(2) * x.size(3) for x in feats]
        if self.training:
            return DetectorOutputs(self, outputs, anchors, per_level, size)
        if self.kind == "retinanet":
            hw = sum(per_level)
            a = outputs["cls_logits"].size(1) // hw
            per_level = [n * a for n in per_level]
        split_out = {k: list(v.split(per_level, dim=1)) for k, v in outputs.items()}
        split_anchors = [list(x.split(per_level)) for x in anchors]
        dets = self.detector.postprocess_detections(split_out, split_anchors, images.image_sizes)
        out = torch.full((b, DETECTIONS, 6), float("nan"), device=feats[0].device)
        scale = torch.tensor([size[1], size[0], size[1], size[0]], dtype=torch.float32,
                             device=feats[0].device)
        for i, d in enumerate(dets):
            n = min(DETECTIONS, len(d["scores"]))
            out[i, :n, :4] = (d["boxes"][:n].float() / scale).clamp(0, 1)
            out[i, :n, 4] = d["scores"][:n].float()
            out[i, :n, 5] = d["labels"][:n].float()
        return out


class RawDetectionHead(nn.Module):
    """The pyramid and the detector's convolutions of a :class:`DetectionHead`, returning their
    raw outputs per anchor, all levels concatenated (finest first, row-major cells, anchors
    within a cell): ``(images, anchors, classes + 4 [+ 1])`` = class logits (sigmoid: scores),
    box regression (FCOS: left / top / right / bottom distances in units of the level's stride;
    RetinaNet: deltas against its anchors) and, for FCOS, the centerness logit. What ``onnx`` /
    ``torchscript`` exports carry: traceable, without the data-dependent NMS."""

    features = "levels"

    def __init__(self, head: DetectionHead):
        super().__init__()
        self.fpn, self.det_head = head.fpn, head.detector.head

    def forward(self, levels: list):
        import torch

        feats = list(self.fpn(OrderedDict((str(i), x.float()) for i, x in enumerate(levels))).values())
        out = self.det_head(feats)
        parts = [out["cls_logits"], out["bbox_regression"]]
        if "bbox_ctrness" in out:
            parts.append(out["bbox_ctrness"])
        return torch.cat(parts, dim=-1)
