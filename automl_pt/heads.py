"""The head every built-in task puts on a backbone's pooled features. A module of its own,
below :mod:`automl_pt.tasks` (which builds it) and :mod:`automl_pt.model` (which re-exports the
tasks), so neither imports the other."""

from __future__ import annotations

import torch
from torch import nn


class ClassificationHead(nn.Module):
    """A linear layer (after dropout) on pooled features: the head of every built-in task
    (class logits, label logits, one standardised number)."""

    features = "pooled"

    def __init__(self, feature_dim: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(feature_dim, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(features))
