from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field

from mtsearch.updates.base import UPDATES, Optim, UpdateRule, backward_per_task, check_weighted_tasks

if TYPE_CHECKING:
    from mtsearch.config import RunConfig


class CombinedArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    weights: dict[str, Annotated[float, Field(ge=0.0, allow_inf_nan=False)]] = Field(default_factory=dict)
    """Loss weight lambda per task (missing tasks weigh 1.0); finite and >= 0."""


@UPDATES.register("combined")
class Combined(UpdateRule):
    """Sum of lambda_t * L_t over the step's tasks, one optimizer step."""

    Args = CombinedArgs

    @classmethod
    def check_config(cls, args: CombinedArgs, config: RunConfig) -> None:
        check_weighted_tasks(cls.name, "update_args.weights", args.weights, config.tasks)

    def step(
        self, tasks: list[str], loss_of: Callable[[str], torch.Tensor], optim: Optim
    ) -> dict[str, torch.Tensor]:
        losses = backward_per_task(tasks, loss_of, lambda task, loss: self.args.weights.get(task, 1.0) * loss)
        optim.step()
        return losses
