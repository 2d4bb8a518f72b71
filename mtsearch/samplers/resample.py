"""Resampling every task to the same size, then round robin over the resampled pools."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mtsearch.samplers.base import SAMPLERS, Sampler
from mtsearch.tasks import TASKS, check_task_keys

if TYPE_CHECKING:
    from mtsearch.config import RunConfig


def discrete_label_tasks(tasks) -> list[str]:
    """Tasks whose labels are classes (balance_labels applies to them, not to regression)."""
    return [t for t in tasks if t in TASKS and TASKS[t].kind in ("class", "binary")]


def balanced_tasks(balance_labels: bool | list[str], tasks) -> list[str]:
    """The tasks whose labels are balanced: every classification task (True), the listed ones, or none."""
    if balance_labels is True:
        return discrete_label_tasks(tasks)
    if not balance_labels:
        return []
    return [t for t in tasks if t in balance_labels]


def _or(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


class ResampleEqualArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    n: int | None = Field(None, ge=1)
    """Examples per task per epoch (drawn with replacement from a smaller task, without from a larger one); None: the mean task size, so an epoch keeps the data's total size."""
    balance_labels: bool | list[str] = False
    """Give every label of a classification task an equal share of its examples (para: as many duplicates as non-duplicates): true = every classification task (sst, para, cfimdb); a list = only these (000 balanced QQP only: [para]); sts is resampled as is."""
    task_n: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    """Examples per epoch of one task, overriding n for it (e.g. {para: 20000})."""

    @field_validator("balance_labels", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # From the command line a list comes as "para,sst".
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return value


@SAMPLERS.register("resample_equal")
class ResampleEqual(Sampler):
    """Every task resampled once to n examples, then one batch of every task per step until each pool is used once per epoch.

    000 resampled every task to 20,000 examples and balanced QQP's labels only (10,000 of
    each): ``n: 20000, balance_labels: [para]``. ``balance_labels: true`` (balance every
    classification task, which heavily oversamples SST's rarest class) and one ``n`` for
    every task stay the defaults, so earlier runs keep their meaning.
    """

    Args = ResampleEqualArgs

    def __init__(self, args: BaseModel, **context):
        super().__init__(args, **context)
        n = self.args.n
        # The mean size keeps sum_t n = sum_t n_t: an epoch is as long, in examples, as one
        # pass over the unresampled data.
        self.n = n if n is not None else max(1, round(np.mean(list(self.sizes.values()))))
        self.task_n = {t: self.args.task_n.get(t, self.n) for t in self.tasks}
        self.balanced = balanced_tasks(self.args.balance_labels, self.tasks)
        for t in self.balanced:
            if t not in self.labels or self.labels[t] is None or len(self.labels[t]) != self.sizes[t]:
                raise ValueError(f"sampler_args.balance_labels needs the training labels of {t}")
        # Pools are drawn once, in task order, from the sampler's generator: a seed fixes them.
        self.pools = {t: self._pool(t) for t in self.tasks}

    @classmethod
    def check_config(cls, args: ResampleEqualArgs, config: RunConfig) -> None:
        if args.balance_labels is True and not discrete_label_tasks(config.tasks):
            raise ValueError(
                "sampler_args.balance_labels needs a classification task "
                f"({_or(discrete_label_tasks(TASKS))}) in tasks; tasks is {', '.join(config.tasks)}"
            )
        if isinstance(args.balance_labels, list):
            check_task_keys("sampler_args.balance_labels", args.balance_labels, config.tasks)
            for t in args.balance_labels:
                if t not in discrete_label_tasks([t]):
                    raise ValueError(
                        f"sampler_args.balance_labels names {t}, whose labels are not classes: "
                        f"balance one of {_or(discrete_label_tasks(config.tasks)) or 'no task of this run'}"
                    )
        check_task_keys("sampler_args.task_n", args.task_n, config.tasks)

    def _draw(self, indices: np.ndarray, k: int) -> np.ndarray:
        # With replacement only when the source is too small to give k distinct examples.
        return self.rng.choice(indices, size=k, replace=len(indices) < k)

    def _pool(self, task: str) -> np.ndarray:
        everything = np.arange(self.sizes[task])
        n = self.task_n[task]
        if task not in self.balanced:
            return self._draw(everything, n)
        labels = self.labels[task]
        classes = np.unique(labels)  # labels absent from the data cannot be balanced in
        share, extra = divmod(n, len(classes))
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
        return sum(self.task_n.values()) / self.steps_per_epoch()
