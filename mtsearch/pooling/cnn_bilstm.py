from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from mtsearch.pooling.base import POOLING, Pooling, lengths_of, masked_mean


class CnnBiLstmArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    kernel_sizes: tuple[int, ...] = (2, 3, 4)
    """N-gram widths of the convolutions (one bank of filters per width, each 1..16)."""
    filters: int = Field(64, ge=1, le=4096)
    """Convolution filters per kernel width."""
    lstm_hidden: int = Field(64, ge=1, le=4096)
    """Hidden size of each direction of the BiLSTM."""

    @field_validator("kernel_sizes")
    @classmethod
    def _kernels(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("at least one kernel size is needed")
        if any(k < 1 or k > 16 for k in value):
            raise ValueError("each kernel size must be between 1 and 16")
        if len(set(value)) != len(value):
            raise ValueError("a kernel size is listed twice")
        return value


@POOLING.register("cnn_bilstm")
class CnnBiLstmPooling(Pooling):
    """[mean; n-gram CNN max-over-time; BiLSTM final states] over the token states.

    CNN (Kim 2014): one Conv1d bank per kernel width k, ReLU, then the max over the
    windows that start on a real token (tokens past the end read as zeros), so padding
    never enters a window's maximum. BiLSTM: packed by the real lengths, the final
    forward and backward hidden states. Needs right padding (every BERT tokenizer here).
    out_dim = H + len(kernel_sizes) * filters + 2 * lstm_hidden.
    """

    Args = CnnBiLstmArgs

    def __init__(self, args: CnnBiLstmArgs, *, hidden_size: int):
        super().__init__(args, hidden_size=hidden_size)
        self.convs = nn.ModuleList(nn.Conv1d(hidden_size, args.filters, k) for k in args.kernel_sizes)
        self.lstm = nn.LSTM(hidden_size, args.lstm_hidden, batch_first=True, bidirectional=True)

    @property
    def out_dim(self) -> int:
        a = self.args
        return self.hidden_size + len(a.kernel_sizes) * a.filters + 2 * a.lstm_hidden

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = lengths_of(mask)
        real = mask.unsqueeze(-1).to(hidden.dtype)
        x = (hidden * real).transpose(1, 2)  # [B, H, L], padded positions zeroed
        width = hidden.shape[1]
        starts_on_real = torch.arange(width, device=hidden.device)[None, :] < lengths[:, None]
        parts = [masked_mean(hidden, mask)]
        for conv in self.convs:
            k = conv.kernel_size[0]
            # Right-pad with k-1 zeros: a window starting on the last real token exists
            # whatever the batch's width, so results do not depend on how much padding follows.
            feat = torch.relu(conv(nn.functional.pad(x, (0, k - 1))))  # [B, F, L]
            feat = feat.masked_fill(~starts_on_real[:, None, :], torch.finfo(feat.dtype).min)
            parts.append(feat.max(dim=-1).values)
        packed = pack_padded_sequence(hidden, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # h_n [2, B, lstm_hidden]: forward, backward
        parts.append(torch.cat([h_n[0], h_n[1]], dim=-1).to(hidden.dtype))
        return torch.cat(parts, dim=-1)
