from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from pydantic import BaseModel

from mtsearch.registry import NoArgs, Registry


class Sampler:
    """Yields, step after step, the list of tasks that contribute one batch each.

    ``sizes`` and ``batch_sizes`` are per task; ``rng`` is derived from the run's seed and
    is the only source of randomness a sampler may use. A finite schedule ends training
    when it runs out; an infinite one leaves stopping to the step/example budget.
    """

    Args: type[BaseModel] = NoArgs
    name: str

    def __init__(
        self,
        args: BaseModel,
        *,
        sizes: dict[str, int],
        batch_sizes: dict[str, int],
        rng: np.random.Generator,
    ):
        self.args = args
        self.sizes = dict(sizes)
        self.batch_sizes = dict(batch_sizes)
        self.rng = rng
        self.tasks = list(sizes)

    def schedule(self) -> Iterator[list[str]]:
        raise NotImplementedError


SAMPLERS: Registry[Sampler] = Registry("samplers", "sampler")


class BatchStream:
    """Endless batches of example indices for one task, epoch after epoch.

    Each epoch is a fresh permutation. With ``lengths`` given, the permutation is cut into
    chunks of ``chunk_batches`` batches, each chunk sorted by length and split into
    batches, and the batches shuffled: nearly the same randomness, far less padding.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        rng: np.random.Generator,
        lengths: np.ndarray | None = None,
        chunk_batches: int = 50,
    ):
        if n <= 0:
            raise ValueError("a batch stream needs at least one example")
        self.n = n
        self.batch_size = batch_size
        self.rng = rng
        self.lengths = lengths
        self.chunk = chunk_batches * batch_size
        self.epoch = 0
        self._batches: list[np.ndarray] = []

    def _new_epoch(self) -> None:
        perm = self.rng.permutation(self.n)
        if self.lengths is None:
            batches = [perm[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        else:
            batches = []
            for start in range(0, self.n, self.chunk):
                part = perm[start : start + self.chunk]
                part = part[np.argsort(self.lengths[part], kind="stable")]
                batches.extend(part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size))
            order = self.rng.permutation(len(batches))
            batches = [batches[i] for i in order]
        self._batches = batches[::-1]  # pop() from the end
        self.epoch += 1

    def next(self) -> np.ndarray:
        if not self._batches:
            self._new_epoch()
        return self._batches.pop()

    def batches_per_epoch(self) -> int:
        return -(-self.n // self.batch_size)
