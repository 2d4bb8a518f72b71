"""Partial batches (001): a step is several small batches, each of a task drawn uniformly with replacement."""

from __future__ import annotations

import math
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field

from mtsearch.samplers.base import SAMPLERS, Sampler

#: steps drawn from the generator at a time (the stream is the same either way)
_DRAWS = 1024


class PartialBatchesArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    parts: int = Field(4, ge=1, le=1024)
    """Partial batches per step; a task's partial batch holds ceil(its batch size / parts) examples (001: batch 16 in partial batches of 4)."""


@SAMPLERS.register("partial_batches")
class PartialBatches(Sampler):
    """Each step: `parts` partial batches, each of a task drawn uniformly with replacement, so a task may come several times in a step.

    001 trains with "a partial batch size of 4" so that tasks drawn by "uniform random
    sampling (with replacement)" can appear several times in one step of batch 16. Each
    partial batch is one entry of the step: the update rule sees one loss (and, for
    gradient surgery, one gradient) per partial batch, in the order they were drawn.
    Every task's stream serves partial batches (its batch size divided by ``parts``) and
    carries on across steps; an epoch is as many steps as it takes, on average, to draw
    as many examples as the tasks hold.
    """

    Args = PartialBatchesArgs
    repeats_tasks = True

    def __init__(self, args: BaseModel, **context):
        super().__init__(args, **context)
        #: each task's full batch size, before it is cut into parts
        self.full_batch_sizes = dict(self.batch_sizes)
        # The streams are built over these: every batch a stream gives is a partial one.
        self.batch_sizes = {t: -(-b // self.args.parts) for t, b in self.full_batch_sizes.items()}

    def schedule(self) -> Iterator[list[str]]:
        parts = self.args.parts
        while True:
            for row in self.rng.integers(len(self.tasks), size=(_DRAWS, parts)):
                yield [self.tasks[int(i)] for i in row]

    def expected_examples_per_step(self) -> float:
        # Each part is a uniformly drawn task's partial batch.
        return self.args.parts * sum(self.batch_sizes.values()) / len(self.tasks)

    def steps_per_epoch(self) -> int:
        return max(
            1, math.ceil(sum(self.pool_size(t) for t in self.tasks) / self.expected_examples_per_step())
        )
