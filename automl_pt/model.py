"""The torch-side contracts a plugin implements: :class:`Backbone` and :class:`Preprocessor`;
the task contract (:class:`Task`, :class:`ClassificationTask`, :class:`RegressionTask`,
:class:`MultilabelTask`) lives in :mod:`automl_pt.tasks` and is re-exported here; the built-in
tasks' head, :class:`~automl_pt.heads.ClassificationHead`, in :mod:`automl_pt.heads`.

A trial's model is ``head(backbone.encode(batch))``: the backbone turns a batch of preprocessed
tensors into pooled features ``(batch, feature_dim)``, the task's head turns features into
outputs (logits, standardised numbers). A head whose ``features`` attribute is ``"positions"``
reads :meth:`Backbone.encode_positions` instead (per token / patch / frame, ``(batch,
positions, position_dim)`` and a mask of the real positions); :func:`head_input_dim` is the
width such a head is built for.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .tasks import ClassificationTask, MultilabelTask, RegressionTask, Task, head_width  # noqa: F401  (re-exported)


def state_mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
                   optional: tuple[str, ...] = ()) -> str | None:
    """Why ``state`` does not fit a module whose ``state_dict()`` is ``own`` ("missing: ...;
    unexpected: ...; wrong shape: ..."), or ``None`` when it fits. Keys starting with one of
    ``optional`` may be missing or extra."""
    missing = [k for k in own if k not in state and not (optional and k.startswith(optional))]
    unexpected = [k for k in state if k not in own and not (optional and k.startswith(optional))]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = [f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
             for label, items in (("missing", missing), ("unexpected", unexpected),
                                  ("wrong shape", shapes)) if items]
    return "; ".join(parts) or None


class Preprocessor:
    """Turns raw inputs (texts, image paths, audio paths) into tensors, once per dataset.

    Contract:

    * ``fit(train_inputs)`` is called once with the training inputs before any ``encode`` (e.g.
      to derive a maximum audio duration from the data); the default does nothing.
    * ``fingerprint`` identifies the transformation (tokenizer + settings, fitted values
      included); together with the data's fingerprint it keys the on-disk cache, so it must
      change when the output would.
    * ``encode(inputs)`` returns a dict of tensors whose first dimension is ``len(inputs)``.
    * ``collate(batch)`` may trim a batch (e.g. padding to the longest sequence) before the model.
    * ``lengths(tensors)`` (optional) returns each example's length in the units ``collate``
      trims to (tokens, audio samples), a 1-d tensor of ``len(tensors)`` values, or ``None``
      (the default) when batch composition does not change the work (images: fixed size).
      With lengths, training draws length-bucketed batches (examples of similar lengths
      together, shuffled differently every epoch) and validation / prediction run sorted by
      length, results returned in the original order; see :mod:`automl_pt.train.batching`. Only
      offer lengths where a batch's outputs do not depend on its padding (masked attention,
      masked pooling), so each example's prediction is the same whatever its batch.
    * ``summary()`` (optional) says in one line which input sizes ``fit`` chose from the data
      (e.g. ``max_length 48 tokens (99th percentile of 430 training texts)``); the study
      reports it when a backbone is first used. Default: ``""`` (nothing to report).
    * ``save(directory)`` writes what is needed to rebuild it for prediction (tokenizer files,
      fitted sizes...).
    """

    fingerprint: str = "identity"

    def fit(self, train_inputs: Sequence[Any]) -> None:
        return None

    def encode(self, inputs: Sequence[Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def collate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return batch

    def lengths(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return None

    def summary(self) -> str:
        return ""

    def save(self, directory: Any) -> None:
        return None


class Backbone(nn.Module):
    """A pretrained network producing pooled features and, where it has them, per-position
    features (tokens, patches or feature-map cells, frames), so one backbone serves tasks of
    both kinds.

    Subclasses set ``feature_dim`` and ``modality``, and implement :meth:`encode`,
    :meth:`preprocessor` and :meth:`export`; :meth:`encode_positions` (with
    :attr:`position_dim` and :attr:`position_pooling`) where the network has positions.
    ``layer_ids`` (optional) maps parameter names to a depth index for layer-wise learning-rate
    decay; the default guesses from names such as ``layer.3`` / ``layers.3`` / ``blocks.3``
    (embeddings are layer 0).
    """

    feature_dim: int
    modality: str = ""
    name: str = ""
    #: how :meth:`encode` relates to :meth:`encode_positions`: ``"mean"`` when the pooled
    #: features are the masked mean of the per-position ones (eval mode); ``None`` for any
    #: other pooling (a class token, attention pooling, a projection or norm after pooling,
    #: positions that leave out tokens the pooling reads)
    position_pooling: str | None = None
    #: a backbone whose features (and preprocessing) differ from another one's with the same
    #: name and weights names it here (the text plugin's bi-encoder for sentence pairs:
    #: ``"pair-bi"``): the trial runner keeps its own preprocessor and cached features for it
    variant: str = ""

    @property
    def position_dim(self) -> int:
        """Width of :meth:`encode_positions`' features; :attr:`feature_dim` unless the pooled
        features are built differently (e.g. a CNN whose head convolution widens the pooled
        feature map: MobileNetV3 pools 960 channels into 1280 features)."""
        return int(self.feature_dim)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def encode_positions(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position features for heads that need them (a tag per token, boxes on feature
        maps, frames): ``(features (batch, positions, position_dim) float, mask (batch,
        positions) bool)``, ``mask`` true where a position is real (not padding; every example
        has at least one). Tokens for text, patches or feature-map cells (row-major) for
        images, frames for audio. An example's real positions and their features do not depend
        on the batch it is in, as for :meth:`encode`. The default refuses, naming the
        backbone: only pooled features are available then."""
        from .errors import BackboneError

        raise BackboneError(f"the {self.modality} backbone {self.name!r} ({type(self).__name__}) "
                            "has no per-position features (encode_positions); this task needs them")

    @property
    def level_dims(self) -> tuple[tuple[int, int], ...]:
        """``(channels, stride)`` of each map :meth:`encode_levels` returns, finest first. The
        default is empty: no levels (a property must not raise, since tracing reads every
        attribute; :func:`automl_pt.tasks.head_width` turns it into the refusal)."""
        return ()

    def encode_levels(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per-position features at several resolutions, for heads that combine scales (a
        feature pyramid): a list of ``(batch, channels_i, *grid_i)`` maps, finest first, map
        ``i`` one cell per ``stride_i`` input positions (:attr:`level_dims`). The default
        refuses, naming the backbone."""
        from .errors import BackboneError

        raise BackboneError(f"the {self.modality} backbone {self.name!r} ({type(self).__name__}) "
                            "has no multi-resolution features (encode_levels); this task needs them")

    def preprocessor(self, options: dict) -> Preprocessor:
        raise NotImplementedError

    def export(self, directory: Any) -> None:
        """Write the backbone (weights + config) so that the same plugin can resolve the
        directory again as a local backbone."""
        raise NotImplementedError

    #: library formats :meth:`export_as` writes ("hf": transformers ``save_pretrained``, "timm")
    library_formats: tuple[str, ...] = ()

    def export_as(self, fmt: str, directory: Any, head: nn.Module, label_names: list[str]) -> bool:
        """Write the backbone in a library's own format ``fmt`` (one of :attr:`library_formats`)
        to ``directory``, for use without automl_pt. Returns ``True`` when the task ``head`` is
        folded into the written model (its output is then the logits), ``False`` when the caller
        must ship the head separately. Raises :class:`~automl_pt.errors.ModelLoadError` for a
        format this backbone cannot write."""
        from .errors import ModelLoadError

        offered = ", ".join(self.library_formats) or "none"
        raise ModelLoadError(f"export format {fmt!r} is not available for the {self.modality} backbone "
                             f"{self.name!r} ({type(self).__name__}; its library formats: {offered}); "
                             "'onnx', 'torchscript' and 'native' work for every backbone")

    def peft_targets(self) -> dict[str, list[str]]:
        """Where parameter-efficient adapters go (strategies ``lora`` / ``ia3``, see
        :mod:`automl_pt.train.adapters`): module names inside this backbone, exact or as a
        ``.``-separated suffix, as ``peft``'s ``target_modules`` matches them, per key:
        ``default`` and ``all`` (the ``lora_targets`` choices: the recommended modules, e.g.
        attention queries and values, and every adaptable layer), ``ia3`` and
        ``ia3_feedforward`` (the (IA)^3 targets and the feed-forward subset of them, scaled on
        their input). The default offers none: such a backbone rejects ``lora`` / ``ia3``
        with an error naming it. :func:`automl_pt.train.adapters.find_targets` computes this from
        module names."""
        return {}

    def set_dropout(self, p: float) -> None:
        """Set dropout inside the backbone, where it has any (default: every nn.Dropout)."""
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = p

    # -- cached partial fine-tuning (strategy "partial", see automl_pt.train.partial) ---------------
    # A backbone that splits into a stack of blocks implements these methods; the trial
    # then trains only the top ``k`` blocks (and the head) on activations of block ``L - k``
    # computed once. The defaults refuse, naming the backbone.

    def num_blocks(self) -> int:
        """``L``, the number of blocks ``encode_bottom`` / ``encode_top`` split between.
        Raises :class:`~automl_pt.errors.BackboneError` when this backbone cannot be split."""
        from .errors import BackboneError

        raise BackboneError(f"strategy 'partial' is not available for the {self.modality} backbone "
                            f"{self.name!r} ({type(self).__name__}): it does not implement "
                            "num_blocks / encode_bottom / encode_top; leave 'partial' out of "
                            "[search.space] strategy")

    def encode_bottom(self, batch: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        """Run everything below the top ``k`` blocks on a (collated) preprocessed batch; return
        the activations and whatever :meth:`encode_top` needs (e.g. an attention mask), all
        tensors whose first dimension is the batch. Called in eval mode without gradients; the
        results are cached, concatenated over batches and zero-padded in every other dimension
        to the largest batch's size, so padding must be harmless to :meth:`encode_top`."""
        raise NotImplementedError

    def encode_top(self, batch: dict[str, torch.Tensor], k: int) -> torch.Tensor:
        """Pooled features ``(batch, feature_dim)`` from a batch of :meth:`encode_bottom`'s
        output: the top ``k`` blocks, the final norm and the pooling. For every batch,
        ``encode_top(encode_bottom(b, k), k) == encode(b)`` in eval mode."""
        raise NotImplementedError

    def top_modules(self, k: int) -> list[nn.Module]:
        """The modules :meth:`encode_top` runs (their parameters train; all others stay
        frozen)."""
        raise NotImplementedError

    def collate_bottom(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Trim a batch of cached activations before :meth:`encode_top` (e.g. to its longest
        sequence); the default keeps it as is."""
        return batch

    def num_layers_and_ids(self) -> tuple[int, dict[str, int]]:
        ids: dict[str, int] = {}
        pattern = re.compile(r"(?:^|\.)(?:layer|layers|blocks|block|h|stages)\.(\d+)\.")
        max_id = 0
        for name, _ in self.named_parameters():
            match = pattern.search(name)
            if match:
                ids[name] = int(match.group(1)) + 1
                max_id = max(max_id, ids[name])
            elif "embed" in name or "stem" in name or "patch" in name:
                ids[name] = 0
        top = max_id + 1
        for name, _ in self.named_parameters():
            ids.setdefault(name, top)
        return top, ids


def head_input_dim(backbone: Backbone, task: Any) -> int:
    """The feature width a ``task``'s head is built for on ``backbone``: :attr:`Backbone.
    position_dim` when the task reads positions (``task.features == "positions"``),
    :attr:`Backbone.level_dims` (a tuple of ``(channels, stride)``) when it reads several
    resolutions (``"levels"``), else :attr:`Backbone.feature_dim`."""
    return head_width(backbone, getattr(task, "features", "pooled"))


class TrialModel(nn.Module):
    """``head(backbone.encode(batch))``. ``features`` bypasses the backbone (linear probe on
    cached frozen features); a head reading ``"positions"`` gets
    ``backbone.encode_positions(batch)``; one reading ``"backbone"`` is called as
    ``head(backbone, batch)`` (a sequence decoder that runs the backbone's encoder, reads
    ``batch["targets"]`` in training and generates otherwise)."""

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "features" in batch:
            return self.head(batch["features"])
        if getattr(self.head, "features", "pooled") == "backbone":  # e.g. a decoder + generation
            return self.head(self.backbone, batch)
        if getattr(self.head, "features", "pooled") == "positions":
            return self.head(*self.backbone.encode_positions(batch))
        if getattr(self.head, "features", "pooled") == "levels":
            return self.head(self.backbone.encode_levels(batch))
        return self.head(self.backbone.encode(batch))
