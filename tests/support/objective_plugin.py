"""A third-party plugin that adds its own continued pre-training objective.

``bag-of-words``: from the backbone's pooled embedding, predict which vocabulary tokens the text
contains (multi-label logistic regression over the vocabulary): a simple self-supervised
objective that needs no views and no masked-LM head. Loaded by tests with
``[study] plugins = ["objective_plugin"]`` (tests/support on ``sys.path``).
"""

from __future__ import annotations

from automl_pt import hookimpl
from automl_pt.registry import Objective


def _create(backbone, context):
    import torch
    from torch import nn

    from automl_pt.engine.pretrain import PretrainObjective

    vocab = int(backbone.model.config.vocab_size)

    class BagOfWords(PretrainObjective):
        def __init__(self):
            super().__init__(backbone)
            self.head = nn.Linear(backbone.feature_dim, vocab)

        def loss(self, batch, generator):
            ids, mask = batch["input_ids"], batch["attention_mask"]
            present = torch.zeros(ids.shape[0], vocab, device=ids.device)
            present.scatter_(1, ids * mask, 1.0)        # padding maps to id 0 ([PAD])
            present[:, 0] = 0.0
            logits = self.head(self.backbone.encode(batch).float())
            return nn.functional.binary_cross_entropy_with_logits(logits, present)

    return BagOfWords()


@hookimpl
def automl_pt_register_objectives(register):
    register.objective(Objective(
        name="bag-of-words", create=_create, modalities=("text",),
        description="predict the set of tokens of each text from its pooled embedding"))
