"""Separate updates: one backward and one optimizer step per task batch.

Within a trainer step the tasks are visited in the sampler's order; each task's forward
runs on the weights its predecessors just updated. Each task may have its own encoder
learning rate and weight decay (missing tasks use the config's ``lr`` / ``weight_decay``).

Schedule: the learning-rate schedule advances once per TRAINER step, after the last task
(the optimizer handle's ``apply`` then ``advance``), so warm-up and decay are measured in
the same steps as for every other rule; a task's learning rate is its peak ``lr`` times
the schedule's current factor. The heads keep ``head_lr`` (each head only moves in its own
task's step anyway). Adam's moment estimates are shared by the tasks' steps, so the
encoder's moments see T gradients per trainer step. Clipping (``max_grad_norm``) applies to
each task's step on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field

from mtsearch.updates.base import UPDATES, Optim, UpdateRule, backward_per_task, check_weighted_tasks

if TYPE_CHECKING:
    from mtsearch.config import RunConfig


class SeparateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    lr: dict[str, Annotated[float, Field(gt=0.0, le=1.0)]] = Field(default_factory=dict)
    """Peak encoder learning rate per task (missing tasks: the config's lr)."""
    weight_decay: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict)
    """AdamW weight decay per task (missing tasks: the config's weight_decay)."""


@UPDATES.register("separate")
class Separate(UpdateRule):
    """One backward and one optimizer step per task batch, each task with its own lr and weight decay."""

    Args = SeparateArgs

    @classmethod
    def check_config(cls, args: SeparateArgs, config: RunConfig) -> None:
        check_weighted_tasks(cls.name, "update_args.lr", args.lr, config.tasks)
        check_weighted_tasks(cls.name, "update_args.weight_decay", args.weight_decay, config.tasks)
        if config.grad_accum > 1:
            raise ValueError(
                f"grad_accum accumulates one gradient per step, but update '{cls.name}' steps once per task "
                "with its own learning rate: use grad_accum 1 or another update"
            )

    def step(
        self, tasks: list[str], loss_of: Callable[[str], torch.Tensor], optim: Optim
    ) -> dict[str, float]:
        # Each task's step lands before the next task's forward.
        losses = backward_per_task(
            tasks,
            loss_of,
            after_each=lambda task: optim.apply(
                lr=self.args.lr.get(task), weight_decay=self.args.weight_decay.get(task)
            ),
        )
        optim.advance()
        return losses
