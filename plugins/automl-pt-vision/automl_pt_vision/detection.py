"""Object detection on timm backbones with torchvision's detection heads.

* **Targets**: per image a list of ``[x1, y1, x2, y2, category]`` boxes relative to the image
  (0..1; see :mod:`automl_pt_vision.coco`), encoded as a float array ``(images, most boxes, 5)``
  ``[x1, y1, x2, y2, class index]`` padded with NaN rows (an image without boxes is all NaN).
  Images are resized whole to a square (``crop_mode = "squash"``), so relative boxes stay put.
* **Model**: the backbone's last three feature stages (:meth:`TimmImageBackbone.encode_levels`,
  strides 8 / 16 / 32) → torchvision's :class:`~torchvision.ops.FeaturePyramidNetwork` with
  P6 / P7 → torchvision's FCOS or RetinaNet head, anchors, loss, box decoding and NMS
  (``detector`` trial parameter). The backbone keeps its ImageNet weights; the pyramid and head
  start fresh.
* **Outputs**: in training the head returns :class:`~automl_pt_vision.detection_head.DetectorOutputs` (the loss needs the
  targets: :meth:`DetectionTask.loss`); in eval mode a float tensor ``(images,
  DETECTIONS, 6)`` ``[x1, y1, x2, y2, score, class index]`` with relative coordinates, NaN rows
  after the last detection (a fixed width, so batches and windows concatenate).
* **Metrics**: torchmetrics ``MeanAveragePrecision`` (COCO evaluation through pycocotools):
  ``map_50`` (default), ``map``, ``map_75``; :func:`per_class_ap`.
* **Predict**: per image ``{"boxes": [[x1, y1, x2, y2] in pixels of the original image],
  "labels": [...], "scores": [...]}``, detections scoring at least the task's
  ``score_threshold`` (``task_state``), after the head's NMS.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from automl_pt.errors import DataError, ModelLoadError
from automl_pt.tasks import ROWS_LISTED, Task, natural_key, random_subset

KIND = "detection"
TASK = "object-detection"
DETECTORS = ("fcos", "retinanet")
#: detections kept per image after NMS (the eval output's fixed width)
DETECTIONS = 100
#: scores below this are dropped before NMS when scoring (mAP wants low-confidence boxes too)
EVAL_SCORE_THRESHOLD = 0.05
#: what ``predict`` keeps by default
SCORE_THRESHOLD = 0.3
FPN_CHANNELS = 64
METRICS = ("map_50", "map", "map_75")


# -- the task -----------------------------------------------------------------------------------
class DetectionTask(Task):
    """Boxes with a category per image (see the module docstring)."""

    kind = KIND
    features = "levels"
    budget_unit = "examples"
    report = "none"
    single_label = False
    decode_reads_inputs = True

    def __init__(self, name: str = TASK):
        self.name = name
        self.score_threshold = SCORE_THRESHOLD

    # data
    def read_targets(self, values, rows, source, split, options=None):
        out, bad = [], []
        for v, row in zip(values, rows):
            if v is None:
                out.append(None)
                continue
            if isinstance(v, np.ndarray):
                v = v.tolist()
            if isinstance(v, str):
                import json

                try:
                    v = json.loads(v)
                except ValueError:
                    bad.append((int(row), "not a list of boxes"))
                    out.append(())
                    continue
            boxes = []
            for i, b in enumerate(v if isinstance(v, (list, tuple)) else [None]):
                if isinstance(b, np.ndarray):
                    b = b.tolist()
                ok = isinstance(b, (list, tuple)) and len(b) == 5 and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                    for x in b[:4])
                if not ok:
                    bad.append((int(row), f"box {i}: {b!r} is not [x1, y1, x2, y2, category]"))
                    continue
                x1, y1, x2, y2 = (float(x) for x in b[:4])
                if not (0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0):
                    bad.append((int(row), f"box {i}: {b!r} is empty or outside the image "
                                          "(relative coordinates 0..1, x1 < x2, y1 < y2)"))
                    continue
                boxes.append((x1, y1, x2, y2, str(b[4]).strip()))
            out.append(tuple(boxes))
        if bad:
            listed = ", ".join(f"row {r}: {why}" for r, why in bad[:ROWS_LISTED])
            raise DataError(f"{source}: {len(bad)} bad box(es) in {split} ({listed}"
                            f"{' ...' if len(bad) > ROWS_LISTED else ''})")
        return out

    def label_names(self, targets, source, label_column):
        names = sorted({b[4] for t in targets if t for b in t}, key=natural_key)
        if not names:
            raise DataError(f"{source}: the training images have no boxes (column {label_column!r}); "
                            "object detection needs annotated images")
        return names

    def encode_targets(self, targets, label_names, rows, source, split):
        index = {n: i for i, n in enumerate(label_names)}
        unseen = sorted({b[4] for t in targets if t for b in t if b[4] not in index})
        if unseen:
            bad_rows = [int(r) for r, t in zip(rows, targets) if t and any(b[4] not in index for b in t)]
            raise DataError(f"{source}: {len(bad_rows)} image(s) in {split} have categories never seen in "
                            f"train ({', '.join(map(repr, unseen[:10]))}), data rows "
                            f"{', '.join(map(str, bad_rows[:ROWS_LISTED]))}")
        width = max([1, *(len(t) for t in targets if t)])
        out = np.full((len(targets), width, 5), np.nan, dtype=np.float32)
        for i, t in enumerate(targets):
            for j, b in enumerate(t or ()):
                out[i, j] = (*b[:4], index[b[4]])
        return out

    def stratify(self, encoded):
        return None

    def class_counts(self, encoded, label_names):
        labels = np.asarray(encoded)[..., 4]
        labels = labels[np.isfinite(labels)].astype(np.int64)
        return np.bincount(labels, minlength=len(label_names))

    def imbalanced(self, encoded, label_names):
        return False

    def fit(self, train_targets, label_names):
        self._label_names = list(label_names)   # for test_table

    def state(self):
        return {"score_threshold": float(self.score_threshold)}

    def load_state(self, state, where):
        t = state.get("score_threshold", SCORE_THRESHOLD)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
            raise ModelLoadError(f"{where}: task_state.score_threshold must be a number in [0, 1], "
                                 f"got {t!r}; re-export the model")
        self.score_threshold = float(t)

    # model
    def build_head(self, feature_dim, num_labels, params):
        if not isinstance(feature_dim, tuple):
            raise ModelLoadError(f"task {self.name!r} needs a backbone with feature maps at several "
                                 f"resolutions (Backbone.level_dims), got a feature width {feature_dim!r}")
        from .detection_head import DetectionHead

        return DetectionHead(feature_dim, num_labels, str(params.get("detector", "fcos")),
                             int(params.get("fpn_channels") or FPN_CHANNELS))

    def target_tensor(self, targets):
        import torch

        return torch.as_tensor(np.asarray(targets, dtype=np.float32))

    def loss(self, logits, targets, params):
        losses = logits.losses(targets)
        return sum(losses.values())

    def predict(self, logits):
        return logits.detach().float().cpu().numpy(), None

    def decode(self, predictions, probabilities, label_names, inputs=None):
        from .preprocess import open_image

        out = []
        for i, dets in enumerate(np.asarray(predictions)):
            keep = np.isfinite(dets[:, 4]) & (dets[:, 4] >= self.score_threshold)
            w = h = 1.0
            if inputs is not None:
                image = open_image(inputs[i])
                try:
                    w, h = image.size
                finally:
                    if image is not inputs[i]:
                        image.close()
            d = dets[keep]
            out.append({"boxes": [[round(float(x) * s, 2) for x, s in zip(b[:4], (w, h, w, h))] for b in d],
                        "labels": [label_names[int(b[5])] for b in d],
                        "scores": [round(float(b[4]), 4) for b in d]})
        return out

    # export (onnx / torchscript): the head's raw outputs; anchors, decoding and NMS are not in
    # the file (see RawDetectionHead)
    export_output = "head_outputs"

    def export_head(self, head):
        from .detection_head import DetectionHead, RawDetectionHead

        if not isinstance(head, DetectionHead):
            raise ModelLoadError(f"task {self.name!r}: the head {type(head).__name__} is not a "
                                 "DetectionHead; export 'native' instead")
        return RawDetectionHead(head).eval()

    def export_shape(self, label_names):
        return ["batch", "anchors", f"{len(label_names)} class logits + 4 box values "
                                    "(+ 1 centerness logit for fcos)"]

    #: ``automl-pt predict --draw DIR`` draws the boxes (:meth:`draw`)
    draws = True

    def draw(self, inputs, decoded, directory) -> list:
        """Write each input image with its boxes, labels and scores drawn into ``directory``
        (PNG, named after the input); returns the paths."""
        from pathlib import Path

        from PIL import ImageDraw

        from .preprocess import open_image, to_rgb

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        colours = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"]
        names = sorted({n for d in decoded for n in d["labels"]})
        written, used = [], set()
        for item, d in zip(inputs, decoded):
            source = open_image(item)
            image = to_rgb(source).copy()
            if source is not item:
                source.close()
            pen = ImageDraw.Draw(image)
            for box, name, score in zip(d["boxes"], d["labels"], d["scores"]):
                colour = colours[names.index(name) % len(colours)]
                pen.rectangle(box, outline=colour, width=max(1, round(min(image.size) / 150)))
                pen.text((box[0] + 2, box[1] + 1), f"{name} {score:.2f}", fill=colour)
            stem = Path(str(item)).stem
            name, k = f"{stem}.png", 1
            while name in used:
                k += 1
                name = f"{stem}-{k}.png"
            used.add(name)
            image.save(directory / name)
            written.append(directory / name)
        return written

    # report: per-category AP under the test scores, and test images with their boxes
    report_inputs = True

    def test_table(self, labels, predictions):
        """Per category: true boxes in the test images, predicted boxes (scoring at least
        :attr:`score_threshold`), AP at IoU 0.5 and AP at IoU 0.5:0.95 (COCO; empty where
        neither truth nor prediction has the category)."""
        return per_class_table(labels, predictions, getattr(self, "_label_names", None),
                               self.score_threshold)

    #: test images the report shows (:meth:`test_figure`)
    FIGURE_IMAGES = 8

    def test_figure(self, frame, label_names):
        """Up to :attr:`FIGURE_IMAGES` test images (the first ones) in a grid, true boxes in
        green (dashed) and the boxes predicted with a score of at least :attr:`score_threshold`
        in a colour per category, labelled with category and score. An image file that is no
        longer where the study read it is drawn as a grey square (the boxes are relative)."""
        return detection_figure(frame, label_names, self.score_threshold, self.FIGURE_IMAGES)

    def subset_indices(self, targets, budget, seed):
        return random_subset(len(targets), budget, seed)


# -- metrics ------------------------------------------------------------------------------------
_LAST: dict = {}


def _as_lists(labels, predictions):
    import torch

    preds, target = [], []
    for t, p in zip(np.asarray(labels, dtype=np.float32), np.asarray(predictions, dtype=np.float32)):
        real = np.isfinite(t[:, 4])
        target.append({"boxes": torch.as_tensor(t[real, :4]), "labels": torch.as_tensor(t[real, 4]).long()})
        real = np.isfinite(p[:, 4])
        preds.append({"boxes": torch.as_tensor(p[real, :4]), "scores": torch.as_tensor(p[real, 4]),
                      "labels": torch.as_tensor(p[real, 5]).long()})
    return preds, target


def mean_ap(labels, predictions, class_metrics: bool = False) -> dict:
    """torchmetrics ``MeanAveragePrecision`` (COCO, boxes ``xyxy``) of ``predictions`` (the
    task's ``(images, DETECTIONS, 6)``) against ``labels`` (``(images, boxes, 5)``). The last
    result is reused when the arrays' contents are the same: the study's three metrics score
    the same predictions."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for a in (labels, predictions):
        a = np.ascontiguousarray(a, dtype=np.float32)
        digest.update(str(a.shape).encode())
        digest.update(a.tobytes())
    key = (digest.hexdigest(), class_metrics)
    if _LAST.get("key") == key:
        return _LAST["value"]
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=class_metrics)
    metric.update(*_as_lists(labels, predictions))
    value = {k: (v.tolist() if v.numel() > 1 else float(v)) for k, v in metric.compute().items()}
    _LAST.update(key=key, value=value)
    return value


def _metric(name: str):
    def fn(labels, predictions, probabilities) -> float:
        value = float(mean_ap(labels, predictions)[name])
        return max(value, 0.0)  # -1: no boxes anywhere
    fn.__name__ = name
    return fn


def per_class_ap(labels, predictions, label_names: list[str]) -> dict[str, float]:
    """AP (IoU 0.5:0.95, COCO) per category: ``{name: ap}`` (-1 where neither truth nor
    prediction has the category)."""
    value = mean_ap(labels, predictions, class_metrics=True)
    classes = value.get("classes")
    classes = [classes] if isinstance(classes, (int, float)) else list(classes or [])
    per = value.get("map_per_class")
    per = [per] if isinstance(per, (int, float)) else list(per or [])
    return {label_names[int(c)]: float(v) for c, v in zip(classes, per)}


def per_class_table(labels, predictions, label_names: list[str] | None = None,
                    score_threshold: float = SCORE_THRESHOLD):
    """A DataFrame with a row per category (see :meth:`DetectionTask.test_table`)."""
    import pandas as pd

    labels, predictions = np.asarray(labels, dtype=np.float32), np.asarray(predictions, dtype=np.float32)
    true_cls = labels[..., 4][np.isfinite(labels[..., 4])].astype(np.int64)
    kept = np.isfinite(predictions[..., 4]) & (predictions[..., 4] >= score_threshold)
    pred_cls = predictions[..., 5][kept].astype(np.int64)
    n = max([len(label_names or []), *(true_cls + 1), *(pred_cls + 1), 0])
    names = list(label_names or []) + [str(i) for i in range(len(label_names or []), n)]
    ap = per_class_ap(labels, predictions, names)
    ap50 = _per_class(labels, predictions, names, iou_thresholds=[0.5])
    frame = pd.DataFrame({"category": names,
                          "true boxes": np.bincount(true_cls, minlength=n)[:n].astype(np.int64),
                          "predicted boxes": np.bincount(pred_cls, minlength=n)[:n].astype(np.int64),
                          "AP@0.5": [ap50.get(c, math.nan) for c in names],
                          "AP@0.5:0.95": [ap.get(c, math.nan) for c in names]})
    for col in ("AP@0.5", "AP@0.5:0.95"):   # -1: neither truth nor prediction of the category
        frame[col] = frame[col].where(frame[col] >= 0)
    frame.attrs["title"] = (f"Average precision per category (COCO; predicted boxes: score ≥ "
                            f"{score_threshold:g})")
    return frame


def _per_class(labels, predictions, names, iou_thresholds) -> dict[str, float]:
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True,
                                  iou_thresholds=iou_thresholds)
    metric.update(*_as_lists(labels, predictions))
    value = metric.compute()
    classes = value["classes"].reshape(-1).tolist()
    per = value["map_per_class"].reshape(-1).tolist()
    return {names[int(c)]: float(v) for c, v in zip(classes, per)}


# -- the report's figure --------------------------------------------------------------------------
TRUE_COLOUR = "#2ca02c"
BOX_COLOURS = ("#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def detection_figure(frame, label_names: list[str], score_threshold: float = SCORE_THRESHOLD,
                     images: int = 8):
    """Test images with true and predicted boxes (see :meth:`DetectionTask.test_figure`), from
    ``frame`` (``best/test_predictions.parquet``: ``true_items``, ``pred_items`` as JSON rows
    ``[x1, y1, x2, y2, class]`` / ``[x1, y1, x2, y2, score, class]`` relative to the image, and
    the image's path in ``input``)."""
    import json
    from pathlib import Path

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    rows = frame.head(images)
    n = len(rows)
    cols = min(4, max(1, n))
    grid_rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(3.0 * cols, 3.0 * grid_rows + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(grid_rows, cols, squeeze=False)).reshape(-1)
    for ax in axes:
        ax.set_axis_off()
    if n == 0:
        axes[0].text(0.5, 0.5, "no test images", ha="center", va="center")
        return fig

    def name(c: float) -> str:
        c = int(c)
        return label_names[c] if 0 <= c < len(label_names) else str(c)

    for ax, (_, row) in zip(axes, rows.iterrows()):
        path = row.get("input") if "input" in rows.columns else None
        image, title = _image_array(path), Path(str(path)).name if path else ""
        if image is None:
            h = w = 1
            ax.add_patch(Rectangle((0, 0), 1, 1, color="#d9d9d9"))
            title += " (image not found)" if path else ""
        else:
            h, w = image.shape[:2]
            ax.imshow(image)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(title, fontsize="small")
        for x1, y1, x2, y2, _c in json.loads(row["true_items"]):
            ax.add_patch(Rectangle((x1 * w, y1 * h), (x2 - x1) * w, (y2 - y1) * h, fill=False,
                                   edgecolor=TRUE_COLOUR, linewidth=1.5, linestyle="--"))
        for x1, y1, x2, y2, score, c in json.loads(row["pred_items"]):
            if score < score_threshold:
                continue
            colour = BOX_COLOURS[int(c) % len(BOX_COLOURS)]
            ax.add_patch(Rectangle((x1 * w, y1 * h), (x2 - x1) * w, (y2 - y1) * h, fill=False,
                                   edgecolor=colour, linewidth=1.5))
            ax.text(x1 * w, y1 * h, f"{name(c)} {score:.2f}", color="white", fontsize="x-small",
                    va="bottom", bbox={"facecolor": colour, "edgecolor": "none", "pad": 1, "alpha": 0.8})
    handles = [Line2D([], [], color=TRUE_COLOUR, linestyle="--", label="true box")]
    used = sorted({int(c) for items in rows["pred_items"] for *_, s, c in json.loads(items)
                   if s >= score_threshold})
    handles += [Line2D([], [], color=BOX_COLOURS[c % len(BOX_COLOURS)], label=f"predicted: {name(c)}")
                for c in used]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(5, len(handles)), fontsize="small")
    fig.suptitle(f"Test images: true boxes and predictions scoring ≥ {score_threshold:g} "
                 f"({n} of {len(frame)})")
    return fig


def _image_array(path) -> np.ndarray | None:
    """The image at ``path`` as an RGB array, ``None`` where there is none."""
    from pathlib import Path

    if not path or not Path(str(path)).is_file():
        return None
    from PIL import Image

    with Image.open(str(path)) as image:
        return np.asarray(image.convert("RGB"))


# -- box-aware augmentation -----------------------------------------------------------------------
def make_box_augment(strength: float):
    """``augment(batch, generator)`` for detection batches (``pixel_values`` uint8 and the
    ``targets`` boxes): horizontal flip, scale jitter (``1 ± 0.5 s``) with a crop / pad back to
    the input size (boxes clipped, boxes left with no area dropped), colour jitter, through
    torchvision.transforms.v2 and ``tv_tensors.BoundingBoxes``. ``None`` at strength 0."""
    if strength <= 0:
        return None

    def augment(batch: dict, generator) -> dict:
        import torch
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        pixels, targets = batch["pixel_values"], batch["targets"]
        _, _, h, w = pixels.shape
        transform = v2.Compose([
            v2.RandomHorizontalFlip(0.5),
            v2.ScaleJitter((h, w), scale_range=(1 - 0.5 * strength, 1 + 0.5 * strength), antialias=True),
            v2.RandomCrop((h, w), pad_if_needed=True),
            v2.ColorJitter(0.4 * strength, 0.4 * strength, 0.4 * strength),
            v2.SanitizeBoundingBoxes(min_size=1.0),
        ])
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=targets.device)
        seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
        out_pixels, out_targets = [], torch.full_like(targets, float("nan"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for i in range(len(pixels)):
                real = torch.isfinite(targets[i, :, 4])
                boxes = tv_tensors.BoundingBoxes(targets[i, real, :4] * scale, format="XYXY",
                                                 canvas_size=(h, w))
                image, sample = transform(tv_tensors.Image(pixels[i]),
                                          {"boxes": boxes, "labels": targets[i, real, 4]})
                out_pixels.append(image.as_subclass(torch.Tensor))
                n = len(sample["labels"])
                out_targets[i, :n, :4] = sample["boxes"].as_subclass(torch.Tensor).float() / scale
                out_targets[i, :n, 4] = sample["labels"]
        return {**batch, "pixel_values": torch.stack(out_pixels), "targets": out_targets}

    return augment
