from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from pydantic import BaseModel

from mtsearch.registry import NoArgs, Registry


class Optim(Protocol):
    """What the trainer hands an update rule: the parameters and one way to take a step."""

    shared_params: list[torch.nn.Parameter]  # the encoder: where tasks can conflict
    head_params: dict[str, list[torch.nn.Parameter]]

    def step(self) -> None:
        """Clip, apply the optimizer and the schedule, and zero the gradients."""


class UpdateRule:
    """Turns one step's task losses into parameter updates.

    ``loss_of(task)`` runs the forward pass of that task's batch and returns its loss; a
    rule decides when to call it, how to combine the gradients, and when to step.
    It returns the loss value per task, for logging.
    """

    Args: type[BaseModel] = NoArgs
    name: str

    def __init__(self, args: BaseModel, *, tasks: list[str]):
        self.args = args
        self.tasks = tasks

    def step(
        self, tasks: list[str], loss_of: Callable[[str], torch.Tensor], optim: Optim
    ) -> dict[str, float]:
        raise NotImplementedError


UPDATES: Registry[UpdateRule] = Registry("updates", "update")
