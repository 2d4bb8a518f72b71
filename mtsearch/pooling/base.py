from __future__ import annotations

from abc import abstractmethod

import torch
from pydantic import BaseModel
from torch import nn

from mtsearch.registry import Registry, Strategy


class Pooling(nn.Module, Strategy):
    """``forward(hidden [B, L, H], mask [B, L]) -> [B, out_dim]``; one instance per task."""

    def __init__(self, args: BaseModel, *, hidden_size: int):
        super().__init__()
        self.args = args
        self.hidden_size = hidden_size

    @property
    def out_dim(self) -> int:
        return self.hidden_size

    @abstractmethod
    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One vector per input: [B, out_dim]."""


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [B, L, H] over the positions where ``mask`` [B, L] is 1."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    # Every input has at least [CLS]; the clamp only guards a hand-made all-padding row.
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def lengths_of(mask: torch.Tensor) -> torch.Tensor:
    """Real tokens per row of a right-padded mask [B, L]; refuses any other padding layout."""
    lengths = mask.sum(dim=1).long()
    prefix = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]
    if not torch.equal(prefix, mask.bool()):
        raise ValueError("this pooling needs right-padded inputs (real tokens first, then padding)")
    return lengths.clamp(min=1)


POOLING: Registry[Pooling] = Registry("pooling", "pooling")
