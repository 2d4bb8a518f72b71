from __future__ import annotations

from abc import abstractmethod

import torch
from pydantic import BaseModel
from torch import nn

from mtsearch.registry import Registry, Strategy


class Head(nn.Module, Strategy):
    """``forward(features [B, in_dim]) -> [B, out_dim]`` with dropout on the features first."""

    def __init__(self, args: BaseModel, *, in_dim: int, out_dim: int, dropout: float):
        super().__init__()
        self.args = args
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.dropout = nn.Dropout(dropout)

    @abstractmethod
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The task's logits or score: [B, out_dim]."""


HEADS: Registry[Head] = Registry("heads", "head")
