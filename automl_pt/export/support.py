"""What an export format needs from the backbone's plugin (:class:`ExportSupport`, returned by the
hook ``automl_pt_export_support``), the error a format raises, and the export folder's config
file name; shared by :mod:`automl_pt.export.formats` and :mod:`automl_pt.export.model_card`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


from ..errors import ModelLoadError

EXPORT_CONFIG = "automl_pt_export.json"


def answer_snippet(config: dict[str, Any], logits: str, names: str, torch: bool = True) -> str:
    """Python (for a card's snippet) that turns the head's outputs ``logits`` (an expression of
    shape ``(batch, outputs)``; a torch tensor, or a numpy array when not ``torch``) into what
    the task predicts and prints it; ``names`` is an expression of the label names in output
    order. Classification: ``probabilities`` (softmax) and ``labels``; regression: ``values``
    (the exported head is already in the target's units); multi-label: ``probabilities``
    (sigmoid) and ``labels``, each label whose probability reaches its threshold."""
    kind = config.get("task_kind", "classification")
    if kind == "regression":
        column = (config.get("target") or {}).get("column", "the target")
        return (f"values = {logits}[:, 0]  # {column}, in its own units (the head is scaled back)\n"
                "print(values.tolist())\n")
    if kind == "multilabel":
        sigmoid = f"{logits}.sigmoid()" if torch else f"1 / (1 + np.exp(-{logits}))"
        return (f"probabilities = {sigmoid}  # one probability per label\n"
                f"thresholds = {config.get('thresholds')!r}  # tuned on validation\n"
                f"labels = [[n for n, p in zip({names}, row) if p >= thresholds[n]]\n"
                "          for row in probabilities.tolist()]\n"
                "print(labels)\n")
    if torch:
        return (f"probabilities = {logits}.softmax(-1)\n"
                f"labels = [{names}[i] for i in probabilities.argmax(-1).tolist()]\nprint(labels)\n")
    return (f"probabilities = np.exp({logits} - {logits}.max(1, keepdims=True))\n"
            "probabilities /= probabilities.sum(1, keepdims=True)\n"
            f"labels = [{names}[i] for i in probabilities.argmax(1)]\nprint(labels)\n")


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

    def finish_library_folder(self, fmt: str, directory: Path, label_names: list[str],
                              task_kind: str = "classification") -> None:
        """Adjust the library folder :meth:`~automl_pt.model.Backbone.export_as` wrote (e.g. the
        label names into a transformers config's ``id2label`` and ``task_kind`` into its
        ``problem_type``)."""

    def library_snippet(self, fmt: str, config: dict[str, Any], where: str) -> str | None:
        """Python that loads the library folder ``fmt`` (at ``where``, a quoted path) and
        predicts, running as written; ``None`` when this plugin has none for ``fmt``."""
        return None

    def export_tensors(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The tensors of a preprocessed batch that an ``onnx`` / ``torchscript`` file takes
        (default: all of them). A plugin leaves out those that only the native model's own
        post-processing reads (its card then says how to do that step by hand)."""
        return batch

    def predicts(self, config: dict[str, Any]) -> str | None:
        """The card's first sentence (what the model predicts per input) for a task kind the
        core does not describe; ``None``: the core's sentence."""
        return None

    def output_text(self, config: dict[str, Any]) -> str | None:
        """What an ``onnx`` / ``torchscript`` file's output is, for a task kind the core does not
        describe (Markdown); ``None``: the core's text."""
        return None

    def card_notes(self, config: dict[str, Any]) -> list[str]:
        """Extra Markdown lines of the card, before "How to load" (e.g. how a model's outputs line
        up with the input's units); none by default."""
        return []

    def tensor_answer(self, config: dict[str, Any]) -> str | None:
        """The end of an ``onnx`` / ``torchscript`` snippet for a task kind the core does not
        know: Python that turns the file's output (a numpy array named as ``config["outputs"]``)
        into the answer and prints it; ``None``: the core's."""
        return None

    def tensor_snippet(self, config: dict[str, Any]) -> str:
        """Python that turns :attr:`example` into ``inputs``, a dict of numpy arrays named as
        ``config["inputs"]`` (the ``onnx`` / ``torchscript`` card; ``folder``, ``config`` and
        ``np`` are defined before it runs)."""
        raise ExportFormatError("no preprocessing snippet for this modality's onnx / torchscript card")
