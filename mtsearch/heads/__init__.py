"""Task heads: from a pooled feature vector to a task's logits or score."""

from mtsearch.heads import linear  # noqa: F401  (registers)
from mtsearch.heads.base import HEADS, Head

__all__ = ["HEADS", "Head"]
