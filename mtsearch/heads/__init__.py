"""Task heads: from a pooled feature vector to a task's logits or score."""

from mtsearch.heads.base import HEADS, Head
from mtsearch.heads.pair import PAIR_FEATURE_WIDTH, STS_SCALE, CosineHead, SharedPairLayer, pair_features
from mtsearch.registry import discover

# Importing every module of this folder registers what it defines: there is no list to keep.
discover(__name__, __path__)

__all__ = [
    "HEADS",
    "PAIR_FEATURE_WIDTH",
    "STS_SCALE",
    "CosineHead",
    "Head",
    "SharedPairLayer",
    "pair_features",
]
