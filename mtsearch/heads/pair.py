"""Pair-task building blocks that are not registry heads: the shared pair layer, the cosine head.

Both are chosen by plain config fields (``shared_pair_layer``, ``sts_head``) rather than
the ``head`` registry because they are not "features -> outputs" heads of one task: the
first is one module used by two tasks, the second reads two sentence vectors.
"""

from __future__ import annotations

import torch
from torch import nn

#: STS gold scores run 0..5; the cosine head predicts 5 * cos(u, v) so that its target
#: is cos = label / 5, Sentence-BERT's STS regression objective (Reimers & Gurevych 2019).
STS_SCALE = 5.0


def pair_features(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Sentence-BERT's classification features [u; v; |u - v|] (Reimers & Gurevych 2019, 3)."""
    return torch.cat([u, v, (u - v).abs()], dim=-1)


class SharedPairLayer(nn.Module):
    """Dropout, linear (width kept), ReLU: one instance is used by both para and sts."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, dim), nn.ReLU())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class CosineHead(nn.Module):
    """STS score 5 * cos(u, v) of two separately pooled sentences, in [-5, 5].

    Dropout (the task's rate, like every head) is applied to u and v first. No
    parameters: the similarity is learned entirely by the encoder and the pooling.
    """

    def __init__(self, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        cos = nn.functional.cosine_similarity(self.dropout(u).float(), self.dropout(v).float(), dim=-1)
        return STS_SCALE * cos
