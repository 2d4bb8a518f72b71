from __future__ import annotations

from typing import Literal

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
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the n-gram features (after the ReLU, before the max and before a BiLSTM reads them; 001: "with dropout")."""
    lstm_input: Literal["tokens", "ngrams"] = "tokens"
    """What the BiLSTM reads: 'tokens' = one BiLSTM over the token states; 'ngrams' = one BiLSTM per kernel width over that width's n-gram features (001: the n-grams are "fed to our BiLSTMs")."""

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

    CNN (Kim 2014): one Conv1d bank per kernel width k, ReLU (then ``dropout``), then the
    max over the windows that start on a real token (tokens past the end read as zeros),
    so padding never enters a window's maximum. BiLSTM: packed by the real lengths, the
    final forward and backward hidden states; it reads the token states
    (``lstm_input: tokens``) or, one BiLSTM per width, the n-gram features of the windows
    that start on real tokens (``ngrams``). Needs right padding (every BERT tokenizer here).
    out_dim = H + K * filters + 2 * lstm_hidden (tokens) or H + K * (filters + 2 *
    lstm_hidden) (ngrams), K = len(kernel_sizes).

    001's "SBERT + CNN-BiLSTM" is ``kernel_sizes: [1, 2, 3, 4], dropout: 0.1,
    lstm_input: ngrams`` (uni- to fourgrams, dropout on them, the n-grams fed to the
    BiLSTMs; 001 states dropout 0.1 for its model). The defaults stay the pooling mtsearch
    had before issue 11 (widths 2-4, no dropout, one BiLSTM over the tokens), a sensible
    variant on its own, so that runs recorded with them keep their meaning.
    """

    Args = CnnBiLstmArgs

    def __init__(self, args: CnnBiLstmArgs, *, hidden_size: int, **context):
        super().__init__(args, hidden_size=hidden_size, **context)
        self.convs = nn.ModuleList(nn.Conv1d(hidden_size, args.filters, k) for k in args.kernel_sizes)
        self.drop = nn.Dropout(args.dropout)
        if args.lstm_input == "tokens":
            self.lstm = nn.LSTM(hidden_size, args.lstm_hidden, batch_first=True, bidirectional=True)
        else:
            self.lstms = nn.ModuleList(
                nn.LSTM(args.filters, args.lstm_hidden, batch_first=True, bidirectional=True)
                for _ in args.kernel_sizes
            )

    @property
    def out_dim(self) -> int:
        a = self.args
        lstms = 1 if a.lstm_input == "tokens" else len(a.kernel_sizes)
        return self.hidden_size + len(a.kernel_sizes) * a.filters + lstms * 2 * a.lstm_hidden

    @staticmethod
    def _final_states(lstm: nn.LSTM, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = lstm(packed)  # h_n [2, B, lstm_hidden]: forward, backward
        return torch.cat([h_n[0], h_n[1]], dim=-1).to(seq.dtype)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = lengths_of(mask)
        real = mask.unsqueeze(-1).to(hidden.dtype)
        x = (hidden * real).transpose(1, 2)  # [B, H, L], padded positions zeroed
        width = hidden.shape[1]
        starts_on_real = torch.arange(width, device=hidden.device)[None, :] < lengths[:, None]
        parts = [masked_mean(hidden, mask)]
        ngrams = []
        for conv in self.convs:
            k = conv.kernel_size[0]
            # Right-pad with k-1 zeros: a window starting on the last real token exists
            # whatever the batch's width, so results do not depend on how much padding follows.
            feat = self.drop(torch.relu(conv(nn.functional.pad(x, (0, k - 1)))))  # [B, F, L]
            ngrams.append(feat)
            pooled = feat.masked_fill(~starts_on_real[:, None, :], torch.finfo(feat.dtype).min)
            parts.append(pooled.max(dim=-1).values)
        if self.args.lstm_input == "tokens":
            parts.append(self._final_states(self.lstm, hidden, lengths))
        else:
            # window i (starting on token i) for i < length: the packing drops the rest
            for lstm, feat in zip(self.lstms, ngrams, strict=True):
                parts.append(self._final_states(lstm, feat.transpose(1, 2), lengths))
        return torch.cat(parts, dim=-1)
