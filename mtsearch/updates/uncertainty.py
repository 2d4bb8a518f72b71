"""Uncertainty weighting (Kendall, Gal & Cipolla 2018, "Multi-Task Learning Using Uncertainty
to Weigh Losses for Scene Geometry and Semantics").

Each task t has a learned log-variance ``s_t = log sigma_t^2``. With the paper's
likelihoods, the loss of task t is

* regression (Gaussian, eq. 7):                     ``0.5 * exp(-s_t) * L_t + 0.5 * s_t``
  (``1 / (2 sigma^2) L + log sigma``)
* classification (softmax with temperature, eq. 10): ``exp(-s_t) * L_t + 0.5 * s_t``
  (``1 / sigma^2 L + log sigma``); the binary task ``para`` counts as classification.

Learning ``s`` instead of ``sigma`` keeps the weights positive and the loss smooth. The
minimiser over ``s_t`` is ``log L_t`` (regression) or ``log 2 L_t`` (classification): a task
with a larger loss gets a smaller weight. The ``s_t`` are parameters of the rule, not of
the model: the trainer adds them to the optimizer in their own group (no weight decay,
the same learning-rate schedule, left out of the model's gradient-norm clipping so the
encoder's norm does not shrink their steps), and they are logged at every evaluation
(``update_state``, flat ``update_log_var_<task>``) but not saved in the checkpoint, since
predictions do not depend on them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from mtsearch.tasks import TASKS
from mtsearch.updates.base import UPDATES, Optim, UpdateRule, backward_per_task


def uncertainty_loss(loss: torch.Tensor, log_var: torch.Tensor, kind: str) -> torch.Tensor:
    """One task's weighted loss for its log-variance ``log_var`` and task kind."""
    if kind == "regression":
        return 0.5 * torch.exp(-log_var) * loss + 0.5 * log_var
    return torch.exp(-log_var) * loss + 0.5 * log_var


class UncertaintyArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    lr: float | None = Field(None, gt=0.0, le=1.0)
    """Peak learning rate of the log-variances (scheduled like the rest); None: head_lr."""
    init: float = Field(0.0, ge=-10.0, le=10.0)
    """Initial log-variance s of every task (0: every loss starts with its plain Kendall weight)."""


@UPDATES.register("uncertainty")
class Uncertainty(UpdateRule):
    """Uncertainty weighting (Kendall et al. 2018): learned per-task log-variances weigh the losses."""

    Args = UncertaintyArgs

    def __init__(self, args, *, tasks: list[str], rng: np.random.Generator | None = None):
        super().__init__(args, tasks=tasks, rng=rng)
        self.log_vars = torch.nn.ParameterDict(
            {t: torch.nn.Parameter(torch.tensor(float(args.init))) for t in self.tasks}
        )

    def step(
        self, tasks: list[str], loss_of: Callable[[str], torch.Tensor], optim: Optim
    ) -> dict[str, torch.Tensor]:
        losses = backward_per_task(
            tasks, loss_of, lambda task, loss: uncertainty_loss(loss, self.log_vars[task], TASKS[task].kind)
        )
        optim.step()
        return losses

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.log_vars.values())

    def extra_lr(self) -> float | None:
        return self.args.lr

    def to(self, device: torch.device) -> Uncertainty:
        self.log_vars.to(device)  # in place: the Parameter objects stay the same
        return self

    def state(self) -> dict[str, float]:
        return {f"log_var_{t}": float(s.detach()) for t, s in self.log_vars.items()}
