"""The one core: ``train(config, report) -> TrainResult``."""

from mtsearch.errors import NonFiniteLoss, Pruned
from mtsearch.train.trainer import TrainResult, train

__all__ = ["NonFiniteLoss", "Pruned", "TrainResult", "train"]
