from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mtsearch.pooling.base import POOLING, PooledOutput, Pooling, masked_mean


class AttentionDecoderArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    query: Literal["pooler", "cls", "mean"] = "pooler"
    """Each input's own query: 'pooler' = BERT's pooled output tanh(W h_[CLS] + b) (002: "Query input is from the BERT pooling output"); 'cls' = the raw [CLS] state; 'mean' = the mean of the token states."""
    heads: int | None = Field(None, ge=1, le=64)
    """Attention heads; None: the encoder's own number of heads (12 for BERT-base and MiniLM; 1 without an encoder). Must divide the hidden size."""
    projection: bool = True
    """A linear layer (hidden -> hidden) after the attention's output projection (002: "then a linear projection and the prediction head")."""


@POOLING.register("attention_decoder")
class AttentionDecoder(Pooling):
    """002's task decoder: multi-head attention whose query is each input's pooled output and whose keys and values are the token states.

    q = W_q query(x), k_i = W_k h_i, v_i = W_v h_i, per head d = H / heads:
    weights = softmax_i(q . k_i / sqrt(d)) over real tokens only (padding gets weight
    exactly 0), output = W_o [heads' weighted sums of v_i], then (``projection``) one more
    linear layer. Unlike 'attention' (one learned query for every input), the query here
    depends on the input. Each task has its own instance: decoders share no weights (the
    pooled output they read is the encoder's pooler, shared as in BERT).
    """

    Args = AttentionDecoderArgs

    def __init__(self, args: AttentionDecoderArgs, *, hidden_size: int, **context):
        super().__init__(args, hidden_size=hidden_size, **context)
        encoder = context.get("encoder")
        heads = args.heads or getattr(getattr(encoder, "config", None), "num_attention_heads", None) or 1
        if hidden_size % heads:
            raise ValueError(
                f"pooling_args.heads: {heads} heads do not divide the hidden size {hidden_size}; "
                "pick a divisor of it"
            )
        self.heads = heads
        self.pooled = (
            PooledOutput(hidden_size, encoder, "pooling 'attention_decoder' (query 'pooler')")
            if (args.query == "pooler")
            else None
        )
        self.q = nn.Linear(hidden_size, hidden_size)
        self.k = nn.Linear(hidden_size, hidden_size)
        self.v = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size) if args.projection else None

    @classmethod
    def needs_pooler(cls, args: AttentionDecoderArgs) -> bool:
        return args.query == "pooler"

    def queries(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Each input's query vector [B, H], before the query projection."""
        if self.pooled is not None:
            return self.pooled(hidden)
        if self.args.query == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, mask)

    def weights(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention weights [B, heads, L]: each row sums to 1 over real tokens, 0 on padding."""
        b, length, h = hidden.shape
        d = h // self.heads
        q = self.q(self.queries(hidden, mask)).view(b, self.heads, 1, d)
        k = self.k(hidden).view(b, length, self.heads, d).transpose(1, 2)  # [B, heads, L, d]
        scores = (q @ k.transpose(-1, -2)).squeeze(2) / math.sqrt(d)  # [B, heads, L]
        # A very negative finite fill (not -inf) cannot make NaNs; exp() of it is exactly 0.
        scores = scores.float().masked_fill(mask[:, None, :] == 0, torch.finfo(torch.float32).min)
        return torch.softmax(scores, dim=-1)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length, h = hidden.shape
        d = h // self.heads
        w = self.weights(hidden, mask).to(hidden.dtype)  # [B, heads, L]
        v = self.v(hidden).view(b, length, self.heads, d).transpose(1, 2)  # [B, heads, L, d]
        attended = (w.unsqueeze(2) @ v).squeeze(2).reshape(b, h)  # heads concatenated
        out = self.out(attended)
        return self.proj(out) if self.proj is not None else out
