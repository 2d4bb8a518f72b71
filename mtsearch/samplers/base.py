from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from mtsearch.registry import Registry, Strategy


class Sampler(Strategy):
    """Yields, step after step, the list of tasks that contribute one batch each.

    A task appears at most once in a step, unless the sampler sets ``repeats_tasks``
    (partial batches: several small batches of one task in a step); the trainer then
    hands the update rule one entry per batch, in the sampler's order.

    ``sizes`` and ``batch_sizes`` are per task, in the config's task order; ``rng`` is
    derived from the run's seed and is the only source of randomness a sampler may use.
    ``labels`` holds the training labels of the tasks that have them (for samplers that
    pick examples by label); ``total_steps`` is the run's step budget when known (for
    samplers whose distribution changes over training).

    A sampler may also decide which examples a task trains on (:meth:`index_pool`) and
    when an epoch starts (``epoch``, counted by :meth:`schedule`). A finite schedule ends
    training when it runs out; an infinite one leaves stopping to the step/example budget.
    """

    #: Start every task's batch stream afresh when the schedule starts a new epoch, as a
    #: training loop that rebuilds its shuffled per-task loaders each epoch would; off,
    #: a stream carries on where it stopped and sees all its examples before repeating.
    restart_streams: ClassVar[bool] = False
    #: A step may name a task more than once (each time one more batch of it).
    repeats_tasks: ClassVar[bool] = False
    #: The sampler draws new pools (:meth:`index_pool`) when an epoch starts: every
    #: task's stream then moves to the new pool at the epoch's first batch.
    redraw_pools: ClassVar[bool] = False

    def __init__(
        self,
        args: BaseModel,
        *,
        sizes: dict[str, int],
        batch_sizes: dict[str, int],
        rng: np.random.Generator,
        labels: dict[str, np.ndarray] | None = None,
        total_steps: int | None = None,
    ):
        missing = [t for t in sizes if t not in batch_sizes]
        if missing:
            raise ValueError(f"no batch size for task(s) {', '.join(missing)}")
        if any(n < 1 for n in sizes.values()):
            raise ValueError(f"every task needs at least one example, got sizes {sizes}")
        self.args = args
        self.sizes = dict(sizes)
        self.batch_sizes = {t: batch_sizes[t] for t in sizes}
        self.rng = rng
        self.labels = dict(labels or {})
        self.total_steps = total_steps
        self.tasks = list(sizes)
        #: epochs the schedule has started so far (0: none yet, or a sampler without epochs)
        self.epoch = 0

    @abstractmethod
    def schedule(self) -> Iterator[list[str]]:
        """The task lists of the steps, in order; a finite schedule ends training when it runs out."""

    def index_pool(self, task: str) -> np.ndarray | None:
        """The example indices ``task`` trains on, repeats allowed; None: every example once.

        The trainer builds the task's :class:`BatchStream` over this pool, so one epoch of
        the stream is one pass over the pool.
        """
        return None

    def pool_size(self, task: str) -> int:
        pool = self.index_pool(task)
        return self.sizes[task] if pool is None else len(pool)

    def batches_per_epoch(self, task: str) -> int:
        """ceil(pool size / batch size): the batches one pass over the task's pool takes."""
        return -(-self.pool_size(task) // self.batch_sizes[task])

    def steps_per_epoch(self) -> int:
        """Steps in one epoch as the sampler counts them; the trainer turns max_epochs (and the
        other settings counted in epochs) into steps with it.

        Default: one pass over the task with the most batches, one batch of every task per
        step (round robin's epoch, as a loop over the largest task's loader counts it).
        """
        return max(self.batches_per_epoch(t) for t in self.tasks)

    def expected_examples_per_step(self) -> float:
        """Training examples one step takes on average; the trainer turns max_examples into steps with it.

        Default: one full batch of every task, which is what a round-robin step takes.
        """
        return float(sum(self.batch_sizes.values()))

    def examples_in_batches(self, task: str, k: int) -> int:
        """Examples in the first ``k`` batches of a stream of ``task`` that starts a fresh epoch.

        Full passes over the pool count its size; the rest count full batches (the one
        short batch of a pass is taken to come last, as it does without bucketing).
        """
        passes, rest = divmod(k, self.batches_per_epoch(task))
        return passes * self.pool_size(task) + rest * self.batch_sizes[task]


SAMPLERS: Registry[Sampler] = Registry("samplers", "sampler")


class BatchStream:
    """Endless batches of example indices for one task, epoch after epoch.

    Each epoch is a fresh permutation. With ``lengths`` given, the permutation is cut into
    chunks of ``chunk_batches`` batches, each chunk sorted by length and split into
    batches, and the batches shuffled: nearly the same randomness, far less padding.

    With ``pool`` given (indices into the task's ``n`` examples, repeats allowed), an
    epoch is one pass over the pool instead and the batches hold the pool's original
    example indices; ``lengths`` stays indexed by example.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        rng: np.random.Generator,
        lengths: np.ndarray | None = None,
        chunk_batches: int = 50,
        pool: np.ndarray | None = None,
    ):
        if pool is not None:
            pool = np.asarray(pool, dtype=np.int64)
            if pool.ndim != 1 or (len(pool) and (pool.min() < 0 or pool.max() >= n)):
                raise ValueError(f"a pool holds indices of the {n} examples, got {pool!r}")
            n_items = len(pool)
        else:
            n_items = n
        if n_items <= 0:
            raise ValueError("a batch stream needs at least one example")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.n = n_items
        self.pool = pool
        self.batch_size = batch_size
        self.rng = rng
        self._n_examples = n
        self._all_lengths = lengths
        # Lengths per pool entry, so the epoch logic below works on positions 0..n-1.
        self.lengths = None if lengths is None else (lengths if pool is None else np.asarray(lengths)[pool])
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
        if self.pool is not None:
            batches = [self.pool[b] for b in batches]
        self._batches = batches[::-1]  # pop() from the end
        self.epoch += 1

    def next(self) -> np.ndarray:
        if not self._batches:
            self._new_epoch()
        return self._batches.pop()

    def restart(self) -> None:
        """Drop what is left of the current epoch: the next batch opens a fresh one."""
        self._batches = []

    def set_pool(self, pool: np.ndarray) -> None:
        """Draw from ``pool`` (indices of the task's examples) from the next batch on: a fresh epoch."""
        pool = np.asarray(pool, dtype=np.int64)
        if pool.ndim != 1 or not len(pool) or pool.min() < 0 or pool.max() >= self._n_examples:
            raise ValueError(f"a pool holds indices of the {self._n_examples} examples, got {pool!r}")
        self.pool = pool
        self.n = len(pool)
        self.lengths = None if self._all_lengths is None else np.asarray(self._all_lengths)[pool]
        self.restart()

    def batches_per_epoch(self) -> int:
        return -(-self.n // self.batch_size)


class TaskBatches:
    """A sampler's schedule turned into batches: ``next()`` gives ``{task: example indices}``.

    One :class:`BatchStream` per task, built over the sampler's :meth:`~Sampler.index_pool`;
    when the sampler starts a new epoch and asks for it (``restart_streams``), every
    stream starts a fresh epoch too, and a sampler that redraws its pools each epoch
    (``redraw_pools``) has every stream move to its new pool.

    :meth:`next_batches` is the trainer's feed: one ``(task, indices)`` entry per batch, so
    a task may come several times in a step (``repeats_tasks``). :meth:`next` is the same
    step as ``{task: indices}``, for samplers that name a task at most once per step.
    """

    def __init__(self, sampler: Sampler, streams: dict[str, BatchStream]):
        self.sampler = sampler
        self.streams = streams
        self._schedule = sampler.schedule()
        self._epoch = sampler.epoch

    def next_batches(self) -> list[tuple[str, np.ndarray]] | None:
        """The next step's batches, one entry per task the sampler named, in its order; None when it ran out."""
        tasks = next(self._schedule, None)
        if tasks is None:
            return None
        if self.sampler.epoch != self._epoch:
            self._epoch = self.sampler.epoch
            if self.sampler.redraw_pools:
                for t, stream in self.streams.items():
                    stream.set_pool(self.sampler.index_pool(t))
            elif self.sampler.restart_streams:
                for stream in self.streams.values():
                    stream.restart()
        return [(t, self.streams[t].next()) for t in tasks]

    def next(self) -> dict[str, np.ndarray] | None:
        """The next step's batches as ``{task: indices}`` in the sampler's order; None when it ran out."""
        drawn = self.next_batches()
        if drawn is None:
            return None
        out = dict(drawn)
        if len(out) != len(drawn):
            raise ValueError(
                f"sampler '{self.sampler.name}' named a task twice in one step: read it with next_batches()"
            )
        return out


def build_streams(
    sampler: Sampler,
    rng_for,
    seed: int,
    lengths: dict[str, np.ndarray] | None = None,
) -> dict[str, BatchStream]:
    """One stream per task over the sampler's pool, each with its own generator from the run's seed."""
    return {
        t: BatchStream(
            sampler.sizes[t],
            sampler.batch_sizes[t],
            rng_for(seed, f"stream:{t}"),
            lengths=None if lengths is None else lengths[t],
            pool=sampler.index_pool(t),
        )
        for t in sampler.tasks
    }


def normalise(weights: np.ndarray) -> np.ndarray:
    """Probabilities from non-negative weights (all zero is refused)."""
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum()
    if not math.isfinite(total) or total <= 0:
        raise ValueError(f"task weights must be positive, got {w}")
    return w / total
