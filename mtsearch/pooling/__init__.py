"""Poolings: how a sequence of token states becomes one vector per input."""

from mtsearch.pooling import attention, cls, cnn_bilstm, mean  # noqa: F401  (registers)
from mtsearch.pooling.base import POOLING, Pooling, masked_mean

__all__ = ["POOLING", "Pooling", "masked_mean"]
