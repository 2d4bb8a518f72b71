"""Separate updates: one backward and one optimizer step per task batch.

Within a trainer step the tasks are visited in the sampler's order; each task's forward
runs on the weights its predecessors just updated. Each task may have its own learning
rate and weight decay (missing tasks use the config's ``lr`` / ``weight_decay``).

Two ways to step (``optimizers``):

- ``shared`` (default, mtsearch before issue 11): one AdamW for the whole run. A task's
  step uses its own encoder learning rate and weight decay for that one application;
  the heads keep ``head_lr`` (each head only moves in its own task's step anyway).
  Adam's moment estimates and step count are shared by the tasks' steps, so the
  encoder's moments see T gradients per trainer step.
- ``per_task`` (002: "optimizer_t <- optimizer(args.optimizer_config_t)"): every task
  has its own AdamW over the whole model, with its own state: its moments and step count
  see only its own gradients. Its learning rate (``lr[task]``) applies to everything it
  updates, heads included (layer-wise decay still scales the encoder's layers); a task
  without one uses the config's ``lr`` for the encoder and ``head_lr`` / ``task_head_lr``
  for the heads. Parameters without a gradient in a task's step (other tasks' heads)
  are left alone by its optimizer, as AdamW does.

The default stays ``shared`` because the strategy's point is one step per task; the
per-task optimizer is 002's refinement of it, and earlier runs keep their meaning.

Schedule: the learning-rate schedule advances once per TRAINER step, after the last task
(``advance``; with per-task optimizers every task's schedule moves), so warm-up and decay
are measured in the same steps as for every other rule; a task's learning rate is its
peak rate times the schedule's current factor. Clipping (``max_grad_norm``) applies to
each task's step on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Literal

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
    optimizers: Literal["shared", "per_task"] = "shared"
    """'shared' = one AdamW whose state every task's step shares, a task's lr reaching the encoder only; 'per_task' = one AdamW per task with its own state, its lr reaching the heads too (002)."""


@UPDATES.register("separate")
class Separate(UpdateRule):
    """One backward and one optimizer step per task batch, each task with its own lr and weight decay (optionally its own optimizer)."""

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

    def task_optimizers(self) -> dict[str, dict[str, float | None]] | None:
        if self.args.optimizers == "shared":
            return None
        return {
            t: {"lr": self.args.lr.get(t), "weight_decay": self.args.weight_decay.get(t)} for t in self.tasks
        }

    def step(
        self, tasks: list[str], loss_of: Callable[[str], torch.Tensor], optim: Optim
    ) -> dict[str, torch.Tensor]:
        def apply(task: str) -> None:
            if self.args.optimizers == "per_task":
                optim.for_task(task).apply()  # its own optimizer holds its own lr and decay
            else:
                optim.apply(lr=self.args.lr.get(task), weight_decay=self.args.weight_decay.get(task))

        # Each task's step lands before the next task's forward.
        losses = backward_per_task(tasks, loss_of, after_each=apply)
        optim.advance()
        return losses
