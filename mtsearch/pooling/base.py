from __future__ import annotations

import torch
from pydantic import BaseModel
from torch import nn

from mtsearch.registry import NoArgs, Registry


class Pooling(nn.Module):
    """``forward(hidden [B, L, H], mask [B, L]) -> [B, out_dim]``; one instance per task."""

    Args: type[BaseModel] = NoArgs
    name: str

    def __init__(self, args: BaseModel, *, hidden_size: int):
        super().__init__()
        self.args = args
        self.hidden_size = hidden_size

    @property
    def out_dim(self) -> int:
        return self.hidden_size

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


POOLING: Registry[Pooling] = Registry("pooling", "pooling")
