from __future__ import annotations

import torch
from pydantic import BaseModel
from torch import nn

from mtsearch.registry import NoArgs, Registry


class Head(nn.Module):
    """``forward(features [B, in_dim]) -> [B, out_dim]`` with dropout on the features first."""

    Args: type[BaseModel] = NoArgs
    name: str

    def __init__(self, args: BaseModel, *, in_dim: int, out_dim: int, dropout: float):
        super().__init__()
        self.args = args
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


HEADS: Registry[Head] = Registry("heads", "head")
