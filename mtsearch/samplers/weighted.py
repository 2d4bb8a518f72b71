"""Weighted samplers: each step trains one task, drawn at random with a task distribution.

Following jiant's task samplers, a task's weight is a power of its number of training
examples: ``p_t ~ n_t ** alpha`` with ``alpha = 1 / T``. ``alpha = 1`` is proportional
sampling (every example equally likely to be seen), ``alpha = 0`` uniform over tasks.
Each step draws one uniform number from the sampler's generator and inverts the
cumulative distribution, so a seed fixes the schedule.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mtsearch.samplers.base import SAMPLERS, Sampler, normalise

#: uniform numbers drawn from the generator at a time (the stream is the same either way)
_DRAWS = 1024


def power_weights(sizes: np.ndarray, alpha: float, cap: int | None = None) -> np.ndarray:
    """Task probabilities ``min(n, cap) ** alpha``, normalised."""
    n = np.asarray(sizes, dtype=np.float64)
    if cap is not None:
        n = np.minimum(n, cap)
    return normalise(n**alpha)


class _Weighted(Sampler):
    """One task per step, drawn with :meth:`probabilities` of the step."""

    def sizes_array(self) -> np.ndarray:
        return np.array([self.pool_size(t) for t in self.tasks], dtype=np.float64)

    @abstractmethod
    def probabilities(self, step: int) -> np.ndarray:
        """Probability of each task (in ``self.tasks`` order) at 0-based ``step``."""

    def schedule(self) -> Iterator[list[str]]:
        last = len(self.tasks) - 1
        step = 0
        while True:
            for u in self.rng.random(_DRAWS):
                cdf = np.cumsum(self.probabilities(step))
                # min(): rounding may leave cdf[-1] a hair under 1.
                yield [self.tasks[min(int(np.searchsorted(cdf, u, side="right")), last)]]
                step += 1

    def expected_examples_per_step(self) -> float:
        b = np.array([self.batch_sizes[t] for t in self.tasks], dtype=np.float64)
        return float(self.probabilities(0) @ b)

    def steps_per_epoch(self) -> int:
        # No epochs of its own: as many steps as it takes, on average, to draw as many
        # examples as one pass over every task holds.
        return max(1, math.ceil(float(self.sizes_array().sum()) / self.expected_examples_per_step()))


@SAMPLERS.register("proportional")
class Proportional(_Weighted):
    """One task per step, drawn with probability proportional to its number of training examples."""

    def __init__(self, args: BaseModel, **context):
        super().__init__(args, **context)
        self._p = power_weights(self.sizes_array(), 1.0)

    def probabilities(self, step: int) -> np.ndarray:
        return self._p


class TemperatureArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    temperature: float = Field(2.0, gt=0.0)
    """T in p_t ~ n_t^(1/T): 1 is proportional, larger flattens towards uniform; 2 is square-root sampling."""
    size_cap: int | None = Field(None, ge=1)
    """Count a task as at most this many examples before the power (jiant's examples_cap); None: no cap."""


@SAMPLERS.register("temperature")
class Temperature(_Weighted):
    """One task per step, drawn with probability proportional to min(n, size_cap)^(1/temperature)."""

    Args = TemperatureArgs

    def __init__(self, args: BaseModel, **context):
        super().__init__(args, **context)
        self._p = power_weights(self.sizes_array(), 1.0 / self.args.temperature, self.args.size_cap)

    def probabilities(self, step: int) -> np.ndarray:
        return self._p


class AnnealedArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    final_alpha: float = Field(0.0, ge=0.0, le=1.0)
    """Exponent alpha of p_t ~ n_t^alpha at the last step (it falls linearly from 1): 0 ends uniform, 0.2 is Stickland & Murray's end point."""


@SAMPLERS.register("annealed")
class Annealed(_Weighted):
    """One task per step, drawn with p_t ~ n_t^alpha, alpha falling linearly from 1 (proportional) to final_alpha over the run."""

    Args = AnnealedArgs

    # Stickland & Murray (2019, "BERT and PALs") anneal per epoch,
    # alpha = 1 - 0.8 (e - 1) / (E - 1); a run here is budgeted in steps, so the same line
    # is drawn per step: alpha(s) = 1 - (1 - final_alpha) * s / (S - 1) for the 0-based
    # step s of S = total_steps (alpha = 1 when S = 1).

    def __init__(self, args: BaseModel, **context):
        super().__init__(args, **context)
        self._sizes = self.sizes_array()

    def alpha(self, step: int) -> float:
        if self.total_steps is None:
            raise ValueError("the annealed sampler needs total_steps (the run's step budget)")
        if self.total_steps <= 1:
            return 1.0
        frac = min(step, self.total_steps - 1) / (self.total_steps - 1)
        return 1.0 - (1.0 - self.args.final_alpha) * frac

    def probabilities(self, step: int) -> np.ndarray:
        return power_weights(self._sizes, self.alpha(step))

    def schedule(self) -> Iterator[list[str]]:
        self.alpha(0)  # refuse a missing step budget before the first step, not inside it
        return super().schedule()

    def expected_examples_per_step(self) -> float:
        # The mean over the annealing path. alpha is linear in the step, so this is the
        # step average up to the grid; it does not need total_steps, which the trainer
        # derives from this very number when the budget is max_examples.
        b = np.array([self.batch_sizes[t] for t in self.tasks], dtype=np.float64)
        alphas = np.linspace(1.0, self.args.final_alpha, 1001)
        return float(np.mean([power_weights(self._sizes, a) @ b for a in alphas]))
