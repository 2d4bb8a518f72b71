"""Resampling every task to the same size, then round robin over the resampled pools."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mtsearch.samplers.base import SAMPLERS, Sampler
from mtsearch.tasks import TASKS

if TYPE_CHECKING:
    from mtsearch.config import RunConfig


def discrete_label_tasks(tasks) -> list[str]:
    """Tasks whose labels are classes (balance_labels applies to them, not to regression)."""
    return [t for t in tasks if t in TASKS and TASKS[t].kind in ("class", "binary")]


def _or(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


class ResampleEqualArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    n: int | None = Field(None, ge=1)
    """Examples per task per epoch (drawn with replacement from a smaller task, without from a larger one); None: the mean task size, so an epoch keeps the data's total size."""
    balance_labels: bool = False
    """Give every label of a classification task (sst, para, cfimdb) an equal share of its n examples (para: as many duplicates as non-duplicates); sts is resampled as is."""


@SAMPLERS.register("resample_equal")
class ResampleEqual(Sampler):
    """Every task resampled once to n examples, then one batch of every task per step until each pool is used once per epoch."""

    Args = ResampleEqualArgs

    def __init__(self, args: BaseModel, **context):
        super().__init__(args, **context)
        n = self.args.n
        # The mean size keeps sum_t n = sum_t n_t: an epoch is as long, in examples, as one
        # pass over the unresampled data.
        self.n = n if n is not None else max(1, round(np.mean(list(self.sizes.values()))))
        self.balanced = discrete_label_tasks(self.tasks) if self.args.balance_labels else []
        for t in self.balanced:
            if t not in self.labels or self.labels[t] is None or len(self.labels[t]) != self.sizes[t]:
                raise ValueError(f"sampler_args.balance_labels needs the training labels of {t}")
        # Pools are drawn once, in task order, from the sampler's generator: a seed fixes them.
        self.pools = {t: self._pool(t) for t in self.tasks}

    @classmethod
    def check_config(cls, args: ResampleEqualArgs, config: RunConfig) -> None:
        if args.balance_labels and not discrete_label_tasks(config.tasks):
            raise ValueError(
                "sampler_args.balance_labels needs a classification task "
                f"({_or(discrete_label_tasks(TASKS))}) in tasks; tasks is {', '.join(config.tasks)}"
            )

    def _draw(self, indices: np.ndarray, k: int) -> np.ndarray:
        # With replacement only when the source is too small to give k distinct examples.
        return self.rng.choice(indices, size=k, replace=len(indices) < k)

    def _pool(self, task: str) -> np.ndarray:
        everything = np.arange(self.sizes[task])
        if task not in self.balanced:
            return self._draw(everything, self.n)
        labels = self.labels[task]
        classes = np.unique(labels)  # labels absent from the data cannot be balanced in
        share, extra = divmod(self.n, len(classes))
        counts = np.full(len(classes), share)
        # The remainder goes to randomly chosen labels rather than always the first ones.
        counts[self.rng.choice(len(classes), size=extra, replace=False)] += 1
        parts = [self._draw(everything[labels == c], int(k)) for c, k in zip(classes, counts, strict=True)]
        return np.concatenate(parts)

    def index_pool(self, task: str) -> np.ndarray:
        return self.pools[task]

    def steps_per_epoch(self) -> int:
        return max(self.batches_per_epoch(t) for t in self.tasks)

    def schedule(self) -> Iterator[list[str]]:
        # With per-task batch sizes the pools take different numbers of batches: a task
        # sits out the rest of the epoch once its pool is used, so each epoch gives
        # exactly n examples of every task and every stream's epochs line up.
        batches = {t: self.batches_per_epoch(t) for t in self.tasks}
        while True:
            self.epoch += 1
            for i in range(self.steps_per_epoch()):
                yield [t for t in self.tasks if i < batches[t]]

    def expected_examples_per_step(self) -> float:
        return len(self.tasks) * self.n / self.steps_per_epoch()
