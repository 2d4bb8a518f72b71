"""The update-rule family: what a rule sees of the optimizer and what it may ask of the trainer.

A rule turns one step's task losses into parameter updates. The trainer hands it
``loss_of(task)`` (runs that task's forward pass on its batch and returns the loss) and
an :class:`Optim` handle; the rule decides when to call backward, how to combine the
gradients and when to step. Rules that need extra learnable parameters (e.g. the learned
task uncertainties) return them from :meth:`UpdateRule.extra_parameters`; the trainer
puts them in their own optimizer param group before training.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from pydantic import BaseModel

from mtsearch.registry import Registry, Strategy
from mtsearch.tasks import check_task_keys


class Optim(Protocol):
    """What the trainer hands an update rule: the parameters and ways to take a step."""

    shared_params: list[torch.nn.Parameter]  # the encoder: where tasks can conflict
    head_params: dict[str, list[torch.nn.Parameter]]

    def step(self) -> None:
        """Clip, apply the optimizer, advance the schedule once, and zero the gradients."""

    def apply(self, *, lr: float | None = None, weight_decay: float | None = None) -> None:
        """Clip, apply the optimizer and zero the gradients, without advancing the schedule.

        ``lr`` replaces the encoder's peak learning rate for this one application (the
        schedule's current factor still applies); ``weight_decay`` replaces the decay of
        the param groups that decay. Both are restored afterwards.
        """

    def advance(self) -> None:
        """Advance the learning-rate schedule by one trainer step."""

    def for_task(self, task: str) -> Optim:
        """The handle of ``task``'s own optimizer when the rule asked for one per task
        (:meth:`UpdateRule.task_optimizers`); otherwise this handle."""


class UpdateRule(Strategy):
    """Turns one step's task losses into parameter updates.

    ``loss_of(task)`` runs the forward pass of that task's next batch and returns its loss;
    a rule decides when to call it, how to combine the gradients, and when to step. A
    step's ``tasks`` may name a task more than once (partial batches: several small
    batches of one task in a step): each call of ``loss_of(task)`` takes that task's next
    batch, so a rule calls it once per entry of ``tasks``, in order. It returns the raw
    loss value per task (the mean over a task's entries) as a detached 0-dim tensor, for
    logging: left on the device, so the step needs no host-device synchronisation.

    ``rng`` is the rule's own generator, derived from the run's seed (PCGrad's projection
    order uses it); it defaults to a fixed seed so a rule built in a test is deterministic.
    """

    def __init__(self, args: BaseModel, *, tasks: list[str], rng: np.random.Generator | None = None):
        self.args = args
        self.tasks = list(tasks)
        self.rng = rng if rng is not None else np.random.default_rng(0)

    @abstractmethod
    def step(
        self, tasks: list[str], loss_of: Callable[[str], torch.Tensor], optim: Optim
    ) -> dict[str, torch.Tensor]:
        """Update the parameters from this step's task losses; the raw loss value per task
        (detached 0-dim tensors, :class:`TaskLosses`: the trainer reads them on its cadence)."""

    # ------------------------------------------------------------- trainer hooks
    def extra_parameters(self) -> list[torch.nn.Parameter]:
        """Learnable parameters the rule owns; the trainer adds them to the optimizer."""
        return []

    def extra_lr(self) -> float | None:
        """Peak learning rate of :meth:`extra_parameters`; None: the heads' learning rate."""
        return None

    def task_optimizers(self) -> dict[str, dict[str, float | None]] | None:
        """One optimizer per task, each with these overrides of the run's settings.

        None (the default): one optimizer for the whole model. Otherwise ``{task: {"lr":
        ..., "weight_decay": ...}}`` for every task (a None value keeps the run's setting):
        the trainer builds each task its own optimizer over the whole model, with its own
        state and schedule, and :meth:`Optim.for_task` hands it to the rule.
        """
        return None

    def to(self, device: torch.device) -> UpdateRule:
        """Move the rule's own tensors next to the model (before the optimizer is built)."""
        return self

    def state(self) -> dict[str, float]:
        """Scalars worth logging at each evaluation (e.g. learned task weights); may be empty."""
        return {}


def check_weighted_tasks(rule: str, args_field: str, per_task: dict[str, object], tasks) -> None:
    """A per-task argument of an update rule may only name tasks that are trained."""
    check_task_keys(args_field, per_task, tasks, f"update '{rule}' can only weigh tasks that are trained")


UPDATES: Registry[UpdateRule] = Registry("updates", "update")


def backward(loss: torch.Tensor) -> None:
    """Backward, unless nothing trainable lies under this loss.

    During a heads-only phase (or with a frozen encoder) a task whose head has no
    parameters of its own, e.g. the cosine STS head over [CLS] pooling, has a loss with no
    trainable path: it contributes no gradient this step instead of crashing the run.
    """
    if loss.requires_grad:
        loss.backward()


def backward_per_task(
    tasks: list[str],
    loss_of: Callable[[str], torch.Tensor],
    objective: Callable[[str, torch.Tensor], torch.Tensor] = lambda task, loss: loss,
    after_each: Callable[[str], None] | None = None,
) -> dict[str, torch.Tensor]:
    """One forward and backward per task, in order; returns each task's raw loss value.

    Backward right after each task's forward: gradients of a sum are the sum of the
    gradients, and only one task's activations are alive at a time. ``objective`` turns a
    task's loss into what is differentiated (a weight, a learned scale); ``after_each``
    runs once that task's gradient is in (e.g. its own optimizer step).
    """
    losses = TaskLosses()
    for task in tasks:
        loss = loss_of(task)
        backward(objective(task, loss))
        losses.add(task, loss)
        if after_each is not None:
            after_each(task)
    return losses.means()


class TaskLosses:
    """Raw loss values per task over a step's entries; a task that came several times gets their mean.

    The values stay detached 0-dim tensors on the loss's device: turning each into a float
    would make the host wait for the GPU on every batch. The trainer sums them on the
    device and reads them once per evaluation (``float(value)`` works on either).
    """

    def __init__(self):
        self._values: dict[str, list[torch.Tensor]] = {}

    def add(self, task: str, loss: torch.Tensor) -> None:
        self._values.setdefault(task, []).append(loss.detach())

    def means(self) -> dict[str, torch.Tensor]:
        # One entry (every sampler but partial batches): the value itself, no rounding.
        return {t: v[0] if len(v) == 1 else torch.stack(v).float().mean() for t, v in self._values.items()}
