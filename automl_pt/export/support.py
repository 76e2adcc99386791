"""What an export format needs from the backbone's plugin (:class:`ExportSupport`, returned by the
hook ``automl_pt_export_support``), the error a format raises, and the export folder's config
file name; shared by :mod:`automl_pt.export.formats` and :mod:`automl_pt.export.model_card`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


from ..errors import ModelLoadError

EXPORT_CONFIG = "automl_pt_export.json"


class ExportFormatError(ModelLoadError):
    """A model cannot be written in the requested format (unsupported, or the result does not
    reproduce PyTorch's outputs)."""


class ExportSupport:
    """What the export formats need to know about a backbone's modality, supplied by the plugin
    that owns the backbone (hook ``automl_pt_export_support``). The core's export code names no
    modality: this base class is what an unknown one gets (``native`` and library formats export
    with a generic card; ``onnx`` / ``torchscript`` need :meth:`sample_inputs`)."""

    #: Python source of the raw inputs the card's snippets predict on (an expression, optionally
    #: followed by two spaces and a comment: ``'["photo.png"]  # image paths'``)
    example: str = "inputs  # a list of raw inputs, as the study read them"
    #: what the preprocessing outside the model does, for the card and ``automl_pt_export.json``
    preprocessing_steps: str = "see the plugin's documentation"

    def sample_inputs(self, n: int, seed: int) -> list[Any]:
        """``n`` raw inputs to trace and check an export with, different for each ``seed`` and of
        varied sizes, so that dynamic axes show (texts of varied lengths, images, waveforms)."""
        raise NotImplementedError

    def axis_name(self, input_name: str, dim: int) -> str | None:
        """The name of dynamic axis ``dim`` of the preprocessed input ``input_name`` (inputs that
        share an axis share its name, e.g. ``"sequence"``); ``None``: ``<input>_<dim>``."""
        return None

    def describe_head(self, backbone: Any) -> dict[str, Any]:
        """For a library export that ships the head separately: ``applied_to`` (what the head
        sees, e.g. "attention-masked mean of the last hidden state"), plus anything the card's
        snippet needs to reproduce the features."""
        return {"applied_to": "the backbone's pooled features"}

    def finish_library_folder(self, fmt: str, directory: Path, label_names: list[str]) -> None:
        """Adjust the library folder :meth:`~automl_pt.model.Backbone.export_as` wrote (e.g. the
        label names into a transformers config's ``id2label``)."""

    def library_snippet(self, fmt: str, config: dict[str, Any], where: str) -> str | None:
        """Python that loads the library folder ``fmt`` (at ``where``, a quoted path) and
        predicts, running as written; ``None`` when this plugin has none for ``fmt``."""
        return None

    def tensor_snippet(self, config: dict[str, Any]) -> str:
        """Python that turns :attr:`example` into ``inputs``, a dict of numpy arrays named as
        ``config["inputs"]`` (the ``onnx`` / ``torchscript`` card; ``folder``, ``config`` and
        ``np`` are defined before it runs)."""
        raise ExportFormatError("no preprocessing snippet for this modality's onnx / torchscript card")
