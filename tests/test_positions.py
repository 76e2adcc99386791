"""Per-position features through the task contract: a test-only token-tagging task whose head
reads ``Backbone.encode_positions`` (``features = "positions"``) trains on a tiny text backbone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from automl_pt.errors import BackboneError
from automl_pt.model import Backbone, TrialModel, head_input_dim
from automl_pt.tasks import Task

TEXTS = ["the court heard the appeal", "a rocket reached orbit", "bake the bread at dawn",
         "the rocket heard the bread", "a court at dawn"]


class TokenHead(nn.Module):
    """A linear tagger per position; padding positions get zero logits (the loss ignores
    them through their -100 targets)."""

    features = "positions"

    def __init__(self, dim: int, tags: int):
        super().__init__()
        self.linear = nn.Linear(dim, tags)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.linear(features) * mask.unsqueeze(-1)


class TokenTagging(Task):
    """Toy task: tag each real token with its id's parity; padding is ignored (-100)."""

    name = "toy-token-tagging"
    features = "positions"

    def build_head(self, feature_dim: int, num_labels: int, params: dict) -> nn.Module:
        return TokenHead(feature_dim, num_labels)

    def loss(self, logits, targets, params):
        return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


def test_a_per_position_head_trains_on_a_text_backbone(tmp_path, text_host):
    from automl_pt_text.testing import make_tiny_bert

    folder = make_tiny_bert(tmp_path / "bert", TEXTS)
    torch.manual_seed(0)
    backbone = text_host.hook.automl_pt_resolve_backbone(name=str(folder), modality="text").load({})
    task = TokenTagging()
    assert head_input_dim(backbone, task) == backbone.position_dim == 32
    prep = backbone.preprocessor({})
    prep.fit(TEXTS)
    batch = prep.collate(prep.encode(TEXTS))
    mask = batch["attention_mask"].bool()
    assert not mask.all()                     # texts of different lengths: the batch is padded
    targets = torch.where(mask, batch["input_ids"] % 2, torch.full_like(batch["input_ids"], -100))
    model = TrialModel(backbone, task.build_head(head_input_dim(backbone, task), 2, {}))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(12):
        optimizer.zero_grad()
        logits = model(batch)                 # routed to encode_positions by the head's features
        assert logits.shape == (*batch["input_ids"].shape, 2)
        loss = task.loss(logits, targets, {})
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    model.eval()
    with torch.no_grad():
        tags = model(batch).argmax(-1)
    assert bool((tags[mask] == targets[mask]).float().mean() > 0.9)


def test_a_backbone_without_positions_refuses_a_positions_head():
    class Pooled(Backbone):
        feature_dim = 4
        modality = "text"
        name = "pooled-only"

        def encode(self, batch):
            return batch["x"]

    model = TrialModel(Pooled(), TokenHead(4, 2))
    with pytest.raises(BackboneError, match="'pooled-only'.*no per-position features"):
        model({"x": torch.zeros(2, 4)})
    assert Pooled().position_dim == 4 and Pooled().position_pooling is None
    assert head_input_dim(Pooled(), Task()) == 4
