from __future__ import annotations

import torch

from mtsearch.pooling.base import POOLING, Pooling, masked_mean


@POOLING.register("mean")
class MeanPooling(Pooling):
    """Mean of the token states over real tokens (the attention mask), as in Sentence-BERT."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(hidden, mask)
