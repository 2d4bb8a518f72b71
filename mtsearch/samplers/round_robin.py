from __future__ import annotations

from collections.abc import Iterator

from mtsearch.samplers.base import SAMPLERS, Sampler


@SAMPLERS.register("round_robin")
class RoundRobin(Sampler):
    """One batch of every task per step, forever; a task that runs out is reshuffled."""

    def schedule(self) -> Iterator[list[str]]:
        while True:
            yield list(self.tasks)
