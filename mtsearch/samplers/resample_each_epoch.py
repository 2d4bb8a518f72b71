"""Per-task samples redrawn every epoch, aligned so every task has the same number of batches (002)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mtsearch.samplers.base import SAMPLERS, Sampler


class ResampleEachEpochArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    steps: int | None = Field(None, ge=1)
    """Batches of every task per epoch: a task's sample is steps x its batch size (task_batch_size), drawn afresh each epoch; None: the fewest full batches any task has, min_t floor(n_t / b_t) (at least 1), so no task repeats an example within an epoch."""


@SAMPLERS.register("resample_each_epoch")
class ResampleEachEpoch(Sampler):
    """Each epoch every task draws a fresh sample of steps x its own batch size (all tasks then have the same number of batches); one batch of every task per step.

    002 gives each task "its own sample size and batch size per epoch, redrawn each
    epoch, aligned so every task has the same number of batches" (batch 30 for SST and
    STS, 150 for QQP: ``task_batch_size``). A sample is drawn without replacement when the
    task has enough examples, with replacement otherwise; every epoch draws a new one,
    so over the epochs a large task shows more of its examples than one sample holds.
    """

    Args = ResampleEachEpochArgs
    redraw_pools = True

    def __init__(self, args: BaseModel, **context):
        super().__init__(args, **context)
        fewest = min(self.sizes[t] // self.batch_sizes[t] for t in self.tasks)
        self.steps = self.args.steps if self.args.steps is not None else max(1, fewest)
        # The first epoch's samples, drawn now so the streams are built over them; each
        # later epoch draws its own when it starts (schedule).
        self.pools = self._draw()

    def _draw(self) -> dict[str, np.ndarray]:
        out = {}
        for t in self.tasks:
            k = self.steps * self.batch_sizes[t]
            out[t] = self.rng.choice(self.sizes[t], size=k, replace=self.sizes[t] < k)
        return out

    def index_pool(self, task: str) -> np.ndarray:
        return self.pools[task]

    def steps_per_epoch(self) -> int:
        return self.steps

    def schedule(self) -> Iterator[list[str]]:
        while True:
            self.epoch += 1
            if self.epoch > 1:
                self.pools = self._draw()
            for _ in range(self.steps):
                yield list(self.tasks)

    def expected_examples_per_step(self) -> float:
        return float(sum(self.batch_sizes.values()))
