from __future__ import annotations

import torch
from pydantic import BaseModel

from mtsearch.pooling.base import POOLING, PooledOutput, Pooling


@POOLING.register("pooler")
class PoolerPooling(Pooling):
    """BERT's pooled output: tanh(W h_[CLS] + b), the encoder's own pretrained pooler (shared by every task).

    What the CS224N starter's BERT returns as ``pooler_output`` and the reports call the
    pooled output (000, 002, 004) or [CLS] (001's concatenated path). The layer is the
    encoder's, loaded with its checkpoint (all-MiniLM-L6-v2 and BERT-base both carry
    pooler weights; MiniLM's come from its base model, which sentence-transformers'
    training did not use): it trains at the encoder's learning rate, and heads-only
    phases and frozen_encoder freeze it with the rest of the encoder. 'cls' is the raw
    [CLS] state, without this layer.
    """

    def __init__(self, args: BaseModel, *, hidden_size: int, **context):
        super().__init__(args, hidden_size=hidden_size, **context)
        self.pooled = PooledOutput(hidden_size, context.get("encoder"), "pooling 'pooler'")

    @classmethod
    def needs_pooler(cls, args: BaseModel) -> bool:
        return True

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pooled(hidden)
