"""Update rules: how per-task losses become parameter updates (combined loss, gradient surgery, ...)."""

from mtsearch.updates import cagrad, combined, pcgrad, separate, uncertainty  # noqa: F401  (registers)
from mtsearch.updates.base import UPDATES, Optim, UpdateRule
from mtsearch.updates.conflict import gradient_cosines, pair_key

__all__ = ["UPDATES", "Optim", "UpdateRule", "gradient_cosines", "pair_key"]
