"""Task heads: from a pooled feature vector to a task's logits or score."""

from mtsearch.heads import linear, mlp  # noqa: F401  (registers)
from mtsearch.heads.base import HEADS, Head
from mtsearch.heads.pair import STS_SCALE, CosineHead, SharedPairLayer, pair_features

__all__ = ["HEADS", "STS_SCALE", "CosineHead", "Head", "SharedPairLayer", "pair_features"]
