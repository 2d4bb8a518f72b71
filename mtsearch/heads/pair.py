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


#: pair_features -> how many vectors of the sentences' width it concatenates
PAIR_FEATURE_WIDTH = {"u_v_absdiff": 3, "u_v": 2, "u_v_absdiff_prod": 4}


def pair_features(u: torch.Tensor, v: torch.Tensor, kind: str = "u_v_absdiff") -> torch.Tensor:
    """The head's input for a separately encoded pair, as ``pair_features`` says.

    'u_v_absdiff': Sentence-BERT's classification features [u; v; |u - v|] (Reimers &
    Gurevych 2019, 3; 001); 'u_v': [u; v] (the baselines of 000, 002 and 004);
    'u_v_absdiff_prod': [u; v; |u - v|; u * v] (InferSent, Conneau et al. 2017).
    """
    if kind == "u_v_absdiff":
        return torch.cat([u, v, (u - v).abs()], dim=-1)
    if kind == "u_v":
        return torch.cat([u, v], dim=-1)
    if kind == "u_v_absdiff_prod":
        return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)
    raise ValueError(f"unknown pair_features '{kind}'; choose one of {', '.join(PAIR_FEATURE_WIDTH)}")


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

    Dropout (the task's rate, like every head) is applied to u and v first. Without
    ``weight`` there are no parameters: the similarity is learned entirely by the encoder
    and the pooling. With ``weight`` (004's "learned weight matrix") one matrix W of
    ``dim x dim``, no bias, PyTorch's default Linear init, maps both sentences before the
    cosine: 5 * cos(W u, W v).
    """

    def __init__(self, dropout: float, dim: int | None = None, weight: bool = False):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        if weight and dim is None:
            raise ValueError("a weighted cosine head needs the sentence vectors' width (dim)")
        self.weight = nn.Linear(dim, dim, bias=False) if weight else None

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        u, v = self.dropout(u), self.dropout(v)
        if self.weight is not None:
            u, v = self.weight(u), self.weight(v)
        cos = nn.functional.cosine_similarity(u.float(), v.float(), dim=-1)
        return STS_SCALE * cos
