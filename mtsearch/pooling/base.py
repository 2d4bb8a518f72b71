from __future__ import annotations

from abc import abstractmethod

import torch
from pydantic import BaseModel
from torch import nn

from mtsearch.registry import Registry, Strategy


class Pooling(nn.Module, Strategy):
    """``forward(hidden [B, L, H], mask [B, L]) -> [B, out_dim]``; one instance per task.

    ``encoder`` (optional) is the shared encoder the token states come from, for poolings
    that read something of it (its pretrained pooler, its number of attention heads);
    such a pooling keeps only a reference, never registers the encoder's modules as its
    own (they stay the encoder's: one copy, the encoder's learning rate, its freezing).
    Built without an encoder (on its own, in tests), a pooling that would read the
    pooler gets a fresh one of its own.
    """

    def __init__(self, args: BaseModel, *, hidden_size: int, encoder: nn.Module | None = None):
        super().__init__()
        self.args = args
        self.hidden_size = hidden_size

    @classmethod
    def needs_pooler(cls, args: BaseModel) -> bool:
        """Whether this pooling reads the encoder's pooler (the trainer then loads it with the encoder)."""
        return False

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


def encoder_pooler(encoder: nn.Module | None) -> nn.Module | None:
    """The encoder's pooler (BERT's tanh dense layer on [CLS]), or None when it has none."""
    pooler = getattr(encoder, "pooler", None) if encoder is not None else None
    return pooler if isinstance(pooler, nn.Module) else None


class PooledOutput(nn.Module):
    """BERT's pooled output of token states: ``tanh(W h_[CLS] + b)``.

    With an encoder that has a pooler, its pretrained layer (held by reference, so it
    stays one module of the encoder); without an encoder, a fresh layer of its own.
    ``owner`` names the pooling in the error when the encoder has no pooler.
    """

    def __init__(self, hidden_size: int, encoder: nn.Module | None, owner: str):
        super().__init__()
        pooler = encoder_pooler(encoder)
        if encoder is not None and pooler is None:
            raise ValueError(
                f"{owner} reads the encoder's pooled output (BERT's pooler), and this "
                f"{type(encoder).__name__} was loaded without one: the model has no pooler, or it was "
                "loaded with pooler=False; use pooling 'cls' for the raw [CLS] state"
            )
        self._shared = [pooler] if pooler is not None else []  # a list: not registered here
        self.own = (
            None if pooler is not None else nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh())
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.own is not None:
            return self.own(hidden[:, 0])
        return self._shared[0](hidden)  # BertPooler reads position 0 itself
