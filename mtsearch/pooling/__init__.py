"""Poolings: how a sequence of token states becomes one vector per input."""

from mtsearch.pooling import cls  # noqa: F401  (registers)
from mtsearch.pooling.base import POOLING, Pooling

__all__ = ["POOLING", "Pooling"]
