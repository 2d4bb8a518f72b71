from __future__ import annotations

import torch

from mtsearch.pooling.base import POOLING, Pooling


@POOLING.register("cls")
class ClsPooling(Pooling):
    """The final hidden state of the [CLS] token."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return hidden[:, 0]
