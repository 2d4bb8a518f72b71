"""Update rules: how per-task losses become parameter updates (combined loss, gradient surgery, ...)."""

from mtsearch.updates import combined  # noqa: F401  (registers)
from mtsearch.updates.base import UPDATES, Optim, UpdateRule

__all__ = ["UPDATES", "Optim", "UpdateRule"]
