"""Continued pre-training for text backbones: contrastive views and masked language modelling.

* Views (:func:`text_views`), SimCSE-style: the backbone runs in training mode, so each view
  gets its own dropout noise; on top, every ordinary token of a view is dropped (removed from
  the attention mask, hence from the mean pooling) with probability ``token_drop``
  (``[pretrain.options]``, default 0.1). Special tokens and padding are never touched.
* :class:`MaskedLMObjective`: BERT-style masking (``mask_probability`` of the ordinary tokens;
  of those 80 % become ``[MASK]``, 10 % a random token, 10 % stay) and the cross-entropy of the
  original tokens. The head is the checkpoint's own masked-LM head where it has one (e.g. a
  ``BertForMaskedLM`` checkpoint), otherwise a fresh one (transformers'
  ``AutoModelForMaskedLM`` head for the architecture); the encoder is the backbone's own
  module, so its weights are what is kept.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from automl_pt.errors import BackboneError
from automl_pt.engine.pretrain import ObjectiveContext, PretrainObjective

DEFAULT_TOKEN_DROP = 0.1


def _ordinary(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer: Any) -> torch.Tensor:
    """Attended positions that are not special tokens ([CLS], [SEP], [PAD]...)."""
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=input_ids.device)
    return attention_mask.bool() & ~torch.isin(input_ids, special)


def make_text_views(tokenizer: Any, token_drop: float = DEFAULT_TOKEN_DROP) -> Callable:
    """``views(batch, generator) -> (a, b)`` over ``input_ids`` / ``attention_mask`` batches."""

    def drop(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        mask = batch["attention_mask"]
        ordinary = _ordinary(batch["input_ids"], mask, tokenizer)
        dropped = (torch.rand(mask.shape, generator=generator) < token_drop).to(mask.device) & ordinary
        # never drop every ordinary token of a text
        keep_all = (ordinary & ~dropped).sum(dim=1, keepdim=True) == 0
        dropped = dropped & ~keep_all
        return {**batch, "attention_mask": mask * (~dropped).to(mask.dtype)}

    def views(batch: dict[str, torch.Tensor], generator: torch.Generator):
        return drop(batch, generator), drop(batch, generator)

    return views


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer: Any,
                probability: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: ``(masked input ids, labels)``; labels are ``-100`` where not masked. At
    least one token of the batch is masked."""
    if tokenizer.mask_token_id is None:
        raise BackboneError(f"tokenizer {type(tokenizer).__name__} has no mask token: the 'mlm' "
                            "objective needs one")
    device = input_ids.device
    ordinary = _ordinary(input_ids, attention_mask, tokenizer)
    shape = input_ids.shape
    masked = (torch.rand(shape, generator=generator) < probability).to(device) & ordinary
    if not masked.any() and ordinary.any():
        first = ordinary.flatten().nonzero()[0]
        masked = masked.flatten().index_fill(0, first, True).view(shape)
    labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
    r = torch.rand(shape, generator=generator).to(device)
    ids = input_ids.clone()
    ids[masked & (r < 0.8)] = tokenizer.mask_token_id
    swap = masked & (r >= 0.8) & (r < 0.9)
    random_ids = torch.randint(len(tokenizer), shape, generator=generator).to(device)
    ids[swap] = random_ids[swap]
    return ids, labels


class MaskedLMObjective(PretrainObjective):
    """Masked language modelling through transformers' masked-LM model for the backbone's
    architecture, sharing the backbone's encoder."""

    def __init__(self, backbone: Any, probability: float):
        super().__init__(backbone)
        from transformers import AutoModelForMaskedLM

        self.probability = float(probability)
        self.tokenizer = backbone.tokenizer
        config = backbone.model.config
        try:
            if backbone.source:
                mlm, info = AutoModelForMaskedLM.from_pretrained(backbone.source, output_loading_info=True)
                self.fresh_head = bool(info.get("missing_keys"))
            else:
                mlm, self.fresh_head = AutoModelForMaskedLM.from_config(config), True
        except (ValueError, KeyError) as exc:
            raise BackboneError(f"backbone {backbone.name!r}: the 'mlm' objective needs a "
                                f"transformers architecture with a masked-LM head "
                                f"({config.model_type!r} has none: {exc})") from exc
        prefix = mlm.base_model_prefix
        if not hasattr(mlm, prefix):
            raise BackboneError(f"backbone {backbone.name!r}: cannot find the encoder "
                                f"({prefix!r}) inside {type(mlm).__name__}")
        setattr(mlm, prefix, backbone.model)  # train the backbone's own encoder
        out = mlm.get_output_embeddings()
        if out is not None and getattr(config, "tie_word_embeddings", True):
            out.weight = backbone.model.get_input_embeddings().weight
        self.mlm = mlm

    def loss(self, batch, generator):
        ids, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], self.tokenizer,
                                  self.probability, generator)
        return self.mlm(input_ids=ids, attention_mask=batch["attention_mask"], labels=labels).loss


def create_mlm(backbone: Any, context: ObjectiveContext) -> MaskedLMObjective:
    from .backbone import TransformersTextBackbone

    if not isinstance(backbone, TransformersTextBackbone):
        raise BackboneError(f"backbone {getattr(backbone, 'name', '?')!r}: the 'mlm' objective "
                            "needs a transformers text backbone")
    return MaskedLMObjective(backbone, context.settings.mask_probability)
