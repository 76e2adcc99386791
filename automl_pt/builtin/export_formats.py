"""Built-in export formats: ``native``, ``safetensors`` (the backbone library's own folder),
``onnx`` and ``torchscript``. Library formats (``hf``, ``timm``) are registered by the plugins
whose backbones write them; the writers live in :mod:`automl_pt.export.formats`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..plugins import hookimpl
from ..registry import ExportFormat


def _native(predictor: Any, directory: Path) -> dict[str, Any]:
    from ..export.formats import write_native

    return write_native(predictor, directory)


def _safetensors(predictor: Any, directory: Path) -> dict[str, Any]:
    from ..export.formats import write_backbone_library

    return write_backbone_library(predictor, directory)


def _onnx(predictor: Any, directory: Path) -> dict[str, Any]:
    from ..export.formats import write_onnx

    return write_onnx(predictor, directory)


def _torchscript(predictor: Any, directory: Path) -> dict[str, Any]:
    from ..export.formats import write_torchscript

    return write_torchscript(predictor, directory)


@hookimpl
def automl_pt_register_export_formats(register):
    register.export_format(ExportFormat(
        "native", _native, with_preprocessing=False,
        description="a copy of best/ (automl_pt.load reads it)"))
    register.export_format(ExportFormat(
        "safetensors", _safetensors,
        description="the backbone library's own safetensors folder (the first of its library "
                    "formats)"))
    register.export_format(ExportFormat(
        "onnx", _onnx, description="model.onnx: preprocessed tensors in, logits out (onnxruntime)"))
    register.export_format(ExportFormat(
        "torchscript", _torchscript, description="model.pt traced with torch.jit.trace"))
