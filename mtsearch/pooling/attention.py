from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from mtsearch.pooling.base import POOLING, Pooling


class AttentionArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    projection: bool = False
    """Score tokens as q . tanh(W h_i + b) (additive attention, Bahdanau-style) instead of q . h_i."""


@POOLING.register("attention")
class AttentionPooling(Pooling):
    """A learned query attends over the token states: softmax over real tokens, weighted sum.

    score_i = q . k_i / sqrt(H) with k_i = h_i, or k_i = tanh(W h_i + b) when
    ``projection`` is on; weights = softmax of the scores over real tokens only (padding
    gets weight exactly 0); output = sum_i weight_i h_i (the unprojected states, so the
    output width stays H). The query starts at zero, so an untrained pooling is exactly
    the mean pooling; the 1/sqrt(H) keeps the scores' scale independent of the width.
    Each task has its own instance, hence its own query.

    The query is one learned vector, the same for every input. 002's decoder, whose query
    is each input's own pooled output and which projects queries, keys and values with
    several heads, is the pooling 'attention_decoder'; this one stays as it was.
    """

    Args = AttentionArgs

    def __init__(self, args: AttentionArgs, *, hidden_size: int, **context):
        super().__init__(args, hidden_size=hidden_size, **context)
        self.query = nn.Parameter(torch.zeros(hidden_size))
        self.proj = nn.Linear(hidden_size, hidden_size) if args.projection else None

    def weights(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention weights [B, L]: each row sums to 1 over real tokens, 0 on padding."""
        keys = torch.tanh(self.proj(hidden)) if self.proj is not None else hidden
        scores = (keys @ self.query.to(keys.dtype)) / math.sqrt(self.hidden_size)
        # A very negative finite fill (not -inf) cannot make NaNs; exp() of it is exactly 0.
        scores = scores.float().masked_fill(mask == 0, torch.finfo(torch.float32).min)
        return torch.softmax(scores, dim=-1)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = self.weights(hidden, mask).to(hidden.dtype)
        return torch.einsum("bl,blh->bh", w, hidden)
