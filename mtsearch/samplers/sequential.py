"""Sequential sampling: one task at a time, all of its batches, then the next task."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, field_validator

from mtsearch.samplers.base import SAMPLERS, Sampler

if TYPE_CHECKING:
    from mtsearch.config import RunConfig


class SequentialArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    order: list[str] | None = None
    """Order in which the tasks are visited each epoch, naming every task once; None: the order of tasks."""

    @field_validator("order", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # From the command line a list comes as "para,sst,sts".
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return value


def _order_problem(order: list[str], tasks: list[str]) -> str | None:
    missing = [t for t in tasks if t not in order]
    unknown = [t for t in order if t not in tasks]
    twice = sorted({t for t in order if order.count(t) > 1})
    if unknown:
        return f"names {', '.join(unknown)}, not among the run's tasks"
    if twice:
        return f"lists {', '.join(twice)} twice"
    if missing:
        return f"leaves out {', '.join(missing)}"
    return None


@SAMPLERS.register("sequential")
class Sequential(Sampler):
    """Every batch of one task, then every batch of the next: one epoch is one pass over each task in turn."""

    Args = SequentialArgs

    def __init__(self, args: BaseModel, **context):
        super().__init__(args, **context)
        self.order = list(self.args.order) if self.args.order is not None else list(self.tasks)
        problem = _order_problem(self.order, self.tasks)
        if problem:
            raise ValueError(f"sampler_args.order {problem} (tasks: {', '.join(self.tasks)})")

    @classmethod
    def check_config(cls, args: SequentialArgs, config: RunConfig) -> None:
        if args.order is not None:
            problem = _order_problem(list(args.order), list(config.tasks))
            if problem:
                raise ValueError(
                    f"sampler_args.order {problem}: it must name every task in tasks "
                    f"({', '.join(config.tasks)}) exactly once"
                )

    def schedule(self) -> Iterator[list[str]]:
        # ceil(n_t / b_t) batches per task per epoch: exactly one pass of the task's
        # stream, so each stream's epochs line up with the sampler's.
        while True:
            self.epoch += 1
            for task in self.order:
                for _ in range(self.batches_per_epoch(task)):
                    yield [task]

    def steps_per_epoch(self) -> int:
        return sum(self.batches_per_epoch(t) for t in self.tasks)

    def expected_examples_per_step(self) -> float:
        # One step is one batch of one task: over an epoch, every example once.
        return sum(self.pool_size(t) for t in self.tasks) / self.steps_per_epoch()
