"""Round-robin samplers: every step takes one batch of every task.

They differ in what an epoch is. ``round_robin`` has none: each task's stream carries on
and is reshuffled when it runs out. ``rr_under`` and ``rr_over`` follow a loop that zips
freshly shuffled per-task loaders each epoch: the epoch ends with the smallest task
(larger tasks see a new random subset each epoch, i.e. they are undersampled) or after
``sigma`` steps (smaller tasks are cycled, i.e. oversampled), and every task's stream
starts a fresh permutation when the next epoch begins.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field

from mtsearch.samplers.base import SAMPLERS, Sampler


@SAMPLERS.register("round_robin")
class RoundRobin(Sampler):
    """One batch of every task per step, forever; a task that runs out is reshuffled."""

    def schedule(self) -> Iterator[list[str]]:
        while True:
            yield list(self.tasks)


class _EpochRoundRobin(Sampler):
    """Round robin in epochs of ``steps_per_epoch()`` steps, streams restarted each epoch."""

    restart_streams = True

    @abstractmethod
    def steps_per_epoch(self) -> int:
        """Steps in one epoch (each one batch of every task)."""

    def schedule(self) -> Iterator[list[str]]:
        steps = self.steps_per_epoch()
        while True:
            self.epoch += 1
            for _ in range(steps):
                yield list(self.tasks)

    def expected_examples_per_step(self) -> float:
        # Exact average over an epoch: the streams restart, so every epoch is alike.
        steps = self.steps_per_epoch()
        return sum(self.examples_in_batches(t, steps) for t in self.tasks) / steps


@SAMPLERS.register("rr_under")
class RoundRobinUnder(_EpochRoundRobin):
    """Round robin until the task with the fewest batches runs out (larger tasks undersampled), then a new epoch."""

    def steps_per_epoch(self) -> int:
        # min_t ceil(n_t / b_t): the task with the fewest batches sees each of its
        # examples exactly once per epoch, its short last batch included.
        return min(self.batches_per_epoch(t) for t in self.tasks)


class RROverArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    sigma: int | None = Field(None, ge=1)
    """Steps per epoch, each one batch of every task; None: enough for one pass over the largest task, max_t ceil(n_t / b_t)."""


@SAMPLERS.register("rr_over")
class RoundRobinOver(_EpochRoundRobin):
    """Round robin for sigma steps per epoch; a task that runs out is reshuffled and reused (smaller tasks oversampled)."""

    Args = RROverArgs

    def steps_per_epoch(self) -> int:
        if self.args.sigma is not None:
            return self.args.sigma
        return max(self.batches_per_epoch(t) for t in self.tasks)
