"""The one core: ``train(config, report) -> TrainResult``."""

from mtsearch.train.trainer import NonFiniteLoss, Pruned, TrainResult, train

__all__ = ["NonFiniteLoss", "Pruned", "TrainResult", "train"]
