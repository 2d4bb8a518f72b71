from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mtsearch.heads.base import HEADS, Head

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MlpArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    hidden_size: int = Field(256, ge=1, le=8192)
    """Width of each hidden layer."""
    activation: Literal["relu", "gelu", "tanh"] = "relu"
    """Non-linearity after each hidden layer."""
    layers: int = Field(1, ge=1, le=4)
    """Hidden layers before the output layer."""


@HEADS.register("mlp")
class MlpHead(Head):
    """Dropout, then `layers` x (linear, activation, dropout), then a linear output layer."""

    Args = MlpArgs

    def __init__(self, args: MlpArgs, *, in_dim: int, out_dim: int, dropout: float):
        super().__init__(args, in_dim=in_dim, out_dim=out_dim, dropout=dropout)
        blocks: list[nn.Module] = []
        width = in_dim
        for _ in range(args.layers):
            # The same dropout rate between layers as on the input features.
            blocks += [
                nn.Linear(width, args.hidden_size),
                ACTIVATIONS[args.activation](),
                nn.Dropout(dropout),
            ]
            width = args.hidden_size
        self.hidden = nn.Sequential(*blocks)
        self.out = nn.Linear(width, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(self.dropout(features)))
