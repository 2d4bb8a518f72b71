"""Update rules: how per-task losses become parameter updates (combined loss, gradient surgery, ...)."""

from mtsearch.registry import discover
from mtsearch.updates.base import UPDATES, Optim, UpdateRule
from mtsearch.updates.conflict import gradient_cosines, pair_key

# Importing every module of this folder registers what it defines: there is no list to keep.
discover(__name__, __path__)

__all__ = ["UPDATES", "Optim", "UpdateRule", "gradient_cosines", "pair_key"]
