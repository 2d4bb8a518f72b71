"""Poolings: how a sequence of token states becomes one vector per input."""

from mtsearch.pooling.base import POOLING, PooledOutput, Pooling, encoder_pooler, masked_mean
from mtsearch.registry import discover

# Importing every module of this folder registers what it defines: there is no list to keep.
discover(__name__, __path__)

__all__ = ["POOLING", "PooledOutput", "Pooling", "encoder_pooler", "masked_mean"]
