from __future__ import annotations

import torch
from torch import nn

from mtsearch.heads.base import HEADS, Head


@HEADS.register("linear")
class LinearHead(Head):
    """Dropout then one linear layer."""

    def __init__(self, args, *, in_dim: int, out_dim: int, dropout: float):
        super().__init__(args, in_dim=in_dim, out_dim=out_dim, dropout=dropout)
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(features))
