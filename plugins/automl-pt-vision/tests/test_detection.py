"""Object detection: COCO / YOLO data checks, the mAP metrics, and a tiny study that trains,
exports, reloads and predicts boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from automl_pt.errors import DataError, DataWarning
from automl_pt.testing import write_study
from automl_pt_vision.coco import read_coco, read_yolo
from automl_pt_vision.detection import DETECTIONS, DetectionTask, mean_ap, per_class_ap
from automl_pt_vision.testing import make_tiny_timm, write_coco


def _doc(path):
    return json.loads(path.read_text())


@pytest.fixture
def coco(tmp_path):
    return write_coco(tmp_path / "train.json", 6, size=64, seed=0)


def test_coco_reader_gives_relative_boxes_and_keeps_images_without_boxes(coco):
    frame = read_coco(coco, {"input_column": "image", "label_column": "label"})
    doc = _doc(coco)
    assert len(frame) == len(doc["images"])
    assert all(p.startswith(str(coco.parent)) for p in frame["image"])
    a = doc["annotations"][0]
    row = frame["label"][a["image_id"] - 1]
    x, y, w, h = a["bbox"]
    name = {1: "square", 2: "disc"}[a["category_id"]]
    assert [x / 64, y / 64, (x + w) / 64, (y + h) / 64, name] in row
    counts = {i["id"]: 0 for i in doc["images"]}
    for ann in doc["annotations"]:
        counts[ann["image_id"]] += 1
    assert [len(r) for r in frame["label"]] == [counts[i["id"]] for i in doc["images"]]


@pytest.mark.parametrize("change, words", [
    (lambda d: d["annotations"][0].update(bbox=[50, 50, 30, 30]), ["outside the 64 x 64 image"]),
    (lambda d: d["annotations"][0].update(bbox=[5, 5, 0, 10]), ["zero-area box"]),
    (lambda d: d["annotations"][0].update(category_id=7), ["unknown category_id 7"]),
    (lambda d: d["annotations"][0].update(image_id=999), ["image_id 999 is not in 'images'"]),
])
def test_coco_bad_annotations_name_file_and_annotation(coco, change, words):
    doc = _doc(coco)
    change(doc)
    coco.write_text(json.dumps(doc))
    with pytest.raises(DataError) as err:
        read_coco(coco, {})
    text = str(err.value)
    assert str(coco) in text and "annotations[0] (id 1" in text and "on_bad_file" in text
    for w in words:
        assert w in text
    # skip mode: the annotation is left out and counted
    with pytest.warns(DataWarning, match="skipped 1 bad annotation"):
        frame = read_coco(coco, {"on_bad_file": "skip", "label_column": "label"})
    assert sum(len(r) for r in frame["label"]) == len(doc["annotations"]) - 1


def test_missing_image_file_is_a_bad_file_of_the_study(tmp_path, tiny_timm):
    from automl_pt import Study

    train = write_coco(tmp_path / "train.json", 8, size=64)
    (tmp_path / "images" / "0003.png").unlink()
    path = write_study(tmp_path, "object-detection", tiny_timm, {"train": "train.json", "image_size": 64},
                       {"epochs": [1]})
    with pytest.raises(DataError, match=r"0003.png: file not found"):
        Study.from_config(path).prepare()
    assert train.is_file()


def test_yolo_folder(tmp_path):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    from PIL import Image

    for name in ("a", "b"):
        Image.new("RGB", (40, 20)).save(root / "images" / f"{name}.png")
    (root / "classes.txt").write_text("cat\ndog\n")
    (root / "labels" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    frame = read_yolo(root, {"label_column": "label"})
    assert [len(r) for r in frame["label"]] == [1, 0]
    assert frame["label"][0][0] == pytest.approx([0.4, 0.3, 0.6, 0.7, "dog"])
    (root / "labels" / "b.txt").write_text("5 0.5 0.5 0.2 0.4\n")
    with pytest.raises(DataError, match=r"b.txt: line 1: unknown class 5"):
        read_yolo(root, {})


def test_task_encodes_nan_padded_boxes_and_rejects_unseen_categories():
    task = DetectionTask()
    values = [[[0.1, 0.1, 0.5, 0.5, "a"], [0.2, 0.2, 0.3, 0.4, "b"]], []]
    targets = task.read_targets(values, np.array([1, 2]), "t.json", "train")
    names = task.label_names(targets, "t.json", "label")
    enc = task.encode_targets(targets, names, np.array([1, 2]), "t.json", "train")
    assert enc.shape == (2, 2, 5) and np.isnan(enc[1]).all()
    assert enc[0, 1, 4] == 1.0
    other = task.read_targets([[[0.1, 0.1, 0.2, 0.2, "zebra"]]], np.array([1]), "v.json", "validation")
    with pytest.raises(DataError, match="never seen in train.*'zebra'"):
        task.encode_targets(other, names, np.array([1]), "v.json", "validation")
    with pytest.raises(DataError, match="row 1: box 0"):
        task.read_targets([[[0.5, 0.1, 0.2, 0.3, "a"]]], np.array([1]), "t.json", "train")


def _preds(boxes_per_image):
    out = np.full((len(boxes_per_image), DETECTIONS, 6), np.nan, dtype=np.float32)
    for i, rows in enumerate(boxes_per_image):
        for j, r in enumerate(rows):
            out[i, j] = r
    return out


def test_map_metrics():
    labels = np.full((2, 2, 5), np.nan, dtype=np.float32)
    labels[0, 0] = [0.1, 0.1, 0.4, 0.4, 0]
    labels[1, 0] = [0.5, 0.5, 0.9, 0.9, 1]
    perfect = _preds([[[0.1, 0.1, 0.4, 0.4, 0.9, 0]], [[0.5, 0.5, 0.9, 0.9, 0.8, 1]]])
    assert mean_ap(labels, perfect)["map_50"] == pytest.approx(1.0)
    shifted = _preds([[[0.1, 0.1, 0.4, 0.4, 0.9, 0]], [[0.55, 0.55, 0.95, 0.95, 0.8, 1]]])  # IoU 0.62
    value = mean_ap(labels, shifted)
    assert value["map_50"] == pytest.approx(1.0) and value["map_75"] == pytest.approx(0.5)
    wrong_class = _preds([[[0.1, 0.1, 0.4, 0.4, 0.9, 1]], []])
    assert mean_ap(labels, wrong_class)["map_50"] == pytest.approx(0.0)
    # the cached result follows the contents, not the array object (validation reuses memory)
    moving = perfect.copy()
    assert mean_ap(labels, moving)["map_50"] == pytest.approx(1.0)
    moving[1, 0, 5] = 0
    assert mean_ap(labels, moving)["map_50"] == pytest.approx(0.5)
    per = per_class_ap(labels, perfect, ["a", "b"])
    assert per == pytest.approx({"a": 1.0, "b": 1.0})


def test_box_augmentation_keeps_boxes_on_the_objects():
    import torch

    from automl_pt_vision.detection import make_box_augment

    assert make_box_augment(0.0) is None
    pixels = torch.zeros(4, 3, 64, 64, dtype=torch.uint8)
    pixels[:, :, 16:32, 8:40] = 255
    targets = torch.full((4, 2, 5), float("nan"))
    targets[:, 0] = torch.tensor([8 / 64, 16 / 64, 40 / 64, 32 / 64, 1.0])
    out = make_box_augment(1.0)({"pixel_values": pixels, "targets": targets},
                                torch.Generator().manual_seed(0))
    assert out["pixel_values"].shape == pixels.shape and out["targets"].shape == targets.shape
    for img, t in zip(out["pixel_values"], out["targets"]):
        real = torch.isfinite(t[:, 4])
        for x1, y1, x2, y2, _ in t[real].tolist():
            inside = img[0, int(y1 * 64):int(y2 * 64), int(x1 * 64):int(x2 * 64)].float()
            assert inside.numel() and inside.mean() > 100   # the box covers the bright object


@pytest.mark.parametrize("detector", ["fcos", "retinanet"])
def test_head_trains_on_levels_and_outputs_fixed_width_detections(tmp_path, detector):
    """torchvision's head on the backbone's three levels: a loss with gradients for the pyramid,
    head and backbone in training; ``(images, DETECTIONS, 6)`` relative boxes in eval."""
    import torch

    from automl_pt.model import TrialModel, head_input_dim
    from automl_pt_vision.backbone import load_local_dir

    backbone = load_local_dir(make_tiny_timm(tmp_path / "tiny", image_size=64), "tiny", {})
    task = DetectionTask()
    levels = head_input_dim(backbone, task)
    assert [s for _, s in levels] == [8, 16, 32]
    model = TrialModel(backbone, task.build_head(levels, 2, {"detector": detector}))
    batch = {"pixel_values": torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)}
    targets = torch.full((2, 1, 5), float("nan"))
    targets[0, 0] = torch.tensor([0.1, 0.2, 0.5, 0.6, 1.0])   # the second image has no boxes
    model.train()
    loss = task.loss(model(batch), targets, {})
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.head.parameters())
    assert any(p.grad is not None for p in model.backbone.parameters())
    model.eval()
    model.head.detector.score_thresh = 0.0
    with torch.no_grad():
        out = model(batch)
    assert out.shape == (2, DETECTIONS, 6)
    real = out[torch.isfinite(out[..., 4])]
    assert len(real) and (real[:, :4] >= 0).all() and (real[:, :4] <= 1).all()
    assert set(real[:, 5].long().tolist()) <= {0, 1}


def test_tiny_study_trains_exports_reloads_and_predicts(tmp_path):
    """A random tiny EfficientNet, stem and first stage frozen: the whole path (the metric is
    not expected to be high, only computed); then the exported model predicts pixel boxes."""
    import duckdb
    import torch

    from automl_pt import Study, load

    backbone = make_tiny_timm(tmp_path / "tiny", image_size=64)
    write_coco(tmp_path / "train.json", 12, size=64, seed=1, folder="train")
    write_coco(tmp_path / "validation.json", 4, size=64, seed=2, folder="validation")
    write_coco(tmp_path / "test.json", 4, size=96, seed=3, folder="test")
    space = {"strategy": ["full"], "learning_rate": [0.003], "epochs": [1], "batch_size": [8],
             "detector": ["fcos"], "frozen_stages": [1], "augmentation_strength": [0.5]}
    path = write_study(tmp_path, "object-detection", backbone,
                       {"train": "train.json", "validation": "validation.json", "test": "test.json",
                        "image_size": 64}, space, resources={"workers": "inline"})
    Study.from_config(path).run()
    with duckdb.connect(str(tmp_path / "run" / "results.duckdb"), read_only=True) as con:
        rows = con.execute("select state from trials").fetchall()
    assert [r[0] for r in rows] == ["COMPLETE"]
    metrics = json.loads((tmp_path / "run" / "best" / "metrics.json").read_text())
    assert set(metrics["test"]) == {"map_50", "map", "map_75"}
    assert all(0.0 <= v <= 1.0 for v in metrics["test"].values())
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "run" / "best" / "test_predictions.parquet")
    assert list(frame.columns) == ["input", "true_items", "pred_items"] and len(frame) == 4
    assert [p.rsplit("/", 2)[-2:] for p in frame["input"]] == [["test", f"{i:04d}.png"] for i in range(4)]

    # training speed: images per second of every epoch and of the trial (the core's samples_per_s)
    from automl_pt.storage.store import load_results

    res = load_results(tmp_path / "run")
    assert res.trials()["samples_per_s"].tolist() == [pytest.approx(12 / res.curves()["epoch_seconds"][0])]
    assert res.curves()["samples_per_s"].tolist() == res.trials()["samples_per_s"].tolist()

    # the report: per-category AP under the test scores, and the test images with their boxes
    from automl_pt.report.html import build_report

    report = build_report(tmp_path / "run")
    page = report.html.read_text()
    assert 'data-plot="task_test"' in page and "Average precision per category" in page
    assert "<td>square</td>" in page and "<td>disc</td>" in page and "<th>samples_per_s</th>" in page
    assert report.pngs["task_test"].is_file() and "confusion" not in report.pngs
    section = page[page.index('<section id="test">'):]
    assert section.index('data-plot="task_test"') < section.index("</section>")
    table = json.loads((tmp_path / "run" / "best" / "test_table.json").read_text())
    assert [r[0] for r in table["rows"]] == ["disc", "square"]   # label order
    true_boxes = sum(len(json.loads(t)) for t in frame["true_items"])
    assert sum(r[1] for r in table["rows"]) == true_boxes

    model = load(tmp_path / "run" / "best")
    assert model.model.backbone.data_config["crop_mode"] == "squash"   # whole images, as trained
    model.model.head.detector.score_thresh = 0.0
    model.task.score_threshold = 0.0
    pred = model.predict(str(tmp_path / "test" / "0000.png"))
    (out,) = pred.labels
    assert set(out) == {"boxes", "labels", "scores"} and out["boxes"]
    boxes = np.array(out["boxes"])
    assert boxes.max() <= 96.0 + 1e-6 and (boxes[:, 2] >= boxes[:, 0]).all()
    assert boxes.max() > 64.0 or len(boxes) < 3      # pixels of the 96-px image, not the 64-px input
    assert set(out["labels"]) <= {"square", "disc"}
    assert out["scores"] == sorted(out["scores"], reverse=True)
    assert list(pred.to_frame().columns) == ["input", "boxes", "labels", "scores"]
    drawn = model.task.draw(pred.inputs, pred.labels, tmp_path / "drawn")
    assert [p.name for p in drawn] == ["0000.png"] and drawn[0].is_file()
    model.task.score_threshold = 1.0
    assert model.predict(str(tmp_path / "test" / "0000.png")).labels[0]["boxes"] == []

    # onnx: the pyramid and head convolutions' raw outputs, checked against onnxruntime on export
    import onnxruntime

    from automl_pt.export.formats import export_model

    out_dir = export_model(tmp_path / "run" / "best", "onnx", tmp_path / "onnx", predictor=model)
    config = json.loads((out_dir / "automl_pt_export.json").read_text())
    assert config["outputs"][0]["name"] == "head_outputs"
    enc = model.preprocessor.encode([str(tmp_path / "test" / "0000.png")])
    session = onnxruntime.InferenceSession(str(out_dir / "model.onnx"))
    (raw,) = session.run(None, {k: v.numpy() for k, v in enc.items()})
    anchors = 8 * 8 + 4 * 4 + 2 * 2 + 1 + 1           # strides 8 ... 128 on a 64-px input
    assert raw.shape == (1, anchors, 2 + 4 + 1)          # classes, box, centerness (fcos)
    with torch.no_grad():
        want = model.task.export_head(model.model.head)(model.model.backbone.encode_levels(enc))
    assert np.abs(raw - want.numpy()).max() < 1e-3


def test_a_backbone_without_feature_levels_is_refused_by_name_and_still_traces(tmp_path):
    """A ViT has no maps at several resolutions: a detection head on it is refused naming the
    backbone, while its ``level_dims`` stays an empty tuple (TorchScript reads every attribute
    when it traces a classifier on the same backbone)."""
    import torch

    from automl_pt.errors import BackboneError
    from automl_pt.model import TrialModel
    from automl_pt.tasks import ClassificationTask
    from automl_pt_vision.backbone import load_local_dir

    backbone = load_local_dir(make_tiny_timm(tmp_path / "vit", architecture="test_vit", image_size=32),
                              "tiny-vit", {})
    assert backbone.level_dims == ()
    with pytest.raises(BackboneError, match="tiny-vit.*convolutional backbone"):
        DetectionTask().make_head(backbone, 2, {})
    model = TrialModel(backbone, ClassificationTask().make_head(backbone, 2, {})).eval()
    pixels = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        traced = torch.jit.trace(Pixels(model), pixels, check_trace=False)
        assert torch.allclose(traced(pixels), model({"pixel_values": pixels}), atol=1e-5)


class Pixels(torch.nn.Module):
    """A model called with a tensor of pixels, as tracing needs."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixels):
        return self.model({"pixel_values": pixels})


def test_report_figure_draws_true_and_confident_predicted_boxes(tmp_path):
    """The report's figure of test images: a dashed true box per object, predicted boxes from
    the task's score threshold up, a grey square where the image file is gone."""
    import pandas as pd
    from PIL import Image

    Image.new("RGB", (40, 20), "white").save(tmp_path / "a.png")
    frame = pd.DataFrame({
        "input": [str(tmp_path / "a.png"), str(tmp_path / "gone.png")],
        "true_items": [json.dumps([[0.1, 0.1, 0.5, 0.5, 0], [0.5, 0.5, 0.9, 0.9, 1]]), "[]"],
        "pred_items": [json.dumps([[0.1, 0.1, 0.5, 0.5, 0.9, 0], [0.2, 0.2, 0.3, 0.3, 0.1, 1]]),
                       json.dumps([[0.1, 0.1, 0.2, 0.2, 0.6, 1]])]})
    task = DetectionTask()
    fig = task.test_figure(frame, ["cat", "dog"])
    first, second = fig.axes[:2]
    assert first.get_xlim() == (0, 40) and first.get_ylim() == (20, 0)   # image pixels
    styles = [p.get_linestyle() for p in first.patches]
    assert styles.count("--") == 2 and styles.count("solid") == 1   # the 0.1 box is below 0.3
    pred = [p for p in first.patches if p.get_linestyle() == "solid"][0]
    assert pred.get_xy() == pytest.approx((4.0, 2.0)) and pred.get_width() == pytest.approx(16.0)
    assert [t.get_text() for t in first.texts] == ["cat 0.90"]
    assert "image not found" in second.get_title() and len(second.patches) == 2   # grey + 1 box
    assert [t.get_text() for t in second.texts] == ["dog 0.60"]
    task.score_threshold = 0.95
    assert not [t for ax in task.test_figure(frame, ["cat", "dog"]).axes for t in ax.texts]


def test_per_class_table_counts_boxes_and_scores_each_category():
    labels = np.full((2, 2, 5), np.nan, dtype=np.float32)
    labels[0, 0] = [0.1, 0.1, 0.4, 0.4, 0]
    labels[1, 0] = [0.5, 0.5, 0.9, 0.9, 1]
    labels[1, 1] = [0.1, 0.1, 0.3, 0.3, 1]
    preds = _preds([[[0.1, 0.1, 0.4, 0.4, 0.9, 0]], [[0.55, 0.55, 0.95, 0.95, 0.8, 1]]])
    task = DetectionTask()
    task.fit(labels, ["a", "b", "c"])
    table = task.test_table(labels, preds)
    assert list(table["category"]) == ["a", "b", "c"]
    assert list(table["true boxes"]) == [1, 2, 0] and list(table["predicted boxes"]) == [1, 1, 0]
    assert table["AP@0.5"].tolist()[:2] == pytest.approx([1.0, 0.5], abs=0.01)   # COCO: 101 recall points
    assert table["AP@0.5:0.95"][0] == pytest.approx(1.0) and table["AP@0.5:0.95"][1] < 0.5
    assert np.isnan(table["AP@0.5"][2])
