"""Search algorithms and pruners: the one list that space validation and both backends read.

An algorithm proposes configurations; a pruner stops a weak run early. Each entry says
what a space may combine it with and builds its Optuna sampler or pruner; both backends
use them through the sweep's Optuna study (Ray Tune only places the runs, see
:mod:`mtsearch.backends.ray_tune`). Optuna is imported only when one is built, so a space
can be checked without it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

#: The search itself is reproducible; the runs' seeds come from the space.
SEARCH_SEED = 0


class Algorithm(ABC):
    name: ClassVar[str]
    #: every point of the space's grid is run, in order (the sampler is never asked); needs no trial budget
    grid: ClassVar[bool] = False
    #: optimises one objective only
    single_objective: ClassVar[bool] = False

    @abstractmethod
    def optuna_sampler(self, seed: int = SEARCH_SEED) -> Any:
        """The Optuna sampler that proposes this algorithm's configurations."""


class Pruner(ABC):
    name: ClassVar[str]
    #: stops runs early (needs a single objective: Optuna cannot prune multi-objective studies)
    prunes: ClassVar[bool] = True

    @abstractmethod
    def optuna_pruner(self) -> Any:
        """The Optuna pruner."""


#: In the order error messages list them.
ALGORITHMS: dict[str, Algorithm] = {}
PRUNERS: dict[str, Pruner] = {}


def _algorithm(cls: type[Algorithm]) -> type[Algorithm]:
    ALGORITHMS[cls.name] = cls()
    return cls


def _pruner(cls: type[Pruner]) -> type[Pruner]:
    PRUNERS[cls.name] = cls()
    return cls


@_algorithm
class Grid(Algorithm):
    """Every configuration of the space's tree."""

    name = "grid"
    grid = True

    def optuna_sampler(self, seed: int = SEARCH_SEED) -> Any:
        import optuna

        # Each point becomes a trial with its parameters; the sampler is never asked.
        return optuna.samplers.RandomSampler(seed=seed)


@_algorithm
class Random(Algorithm):
    """Independent uniform (or log-uniform) draws."""

    name = "random"

    def optuna_sampler(self, seed: int = SEARCH_SEED) -> Any:
        import optuna

        return optuna.samplers.RandomSampler(seed=seed)


@_algorithm
class TPE(Algorithm):
    """Tree-structured Parzen estimator over the conditional space."""

    name = "tpe"

    def optuna_sampler(self, seed: int = SEARCH_SEED) -> Any:
        import optuna

        # group=True keeps conditional (tree) dimensions apart instead of imputing them.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=4)


@_algorithm
class CmaEs(Algorithm):
    """CMA-ES over the numeric dimensions (categorical ones drawn independently)."""

    name = "cmaes"
    single_objective = True

    def optuna_sampler(self, seed: int = SEARCH_SEED) -> Any:
        import optuna

        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


@_algorithm
class NSGA2(Algorithm):
    """NSGA-II, a genetic algorithm for several objectives (a Pareto front)."""

    name = "nsga2"

    def optuna_sampler(self, seed: int = SEARCH_SEED) -> Any:
        import optuna

        return optuna.samplers.NSGAIISampler(seed=seed)


@_pruner
class NoPruning(Pruner):
    """Every trial runs its whole budget."""

    name = "none"
    prunes = False

    def optuna_pruner(self) -> Any:
        import optuna

        return optuna.pruners.NopPruner()


@_pruner
class Median(Pruner):
    """Stop a trial below the median of earlier trials at the same step."""

    name = "median"

    def optuna_pruner(self) -> Any:
        import optuna

        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


@_pruner
class Asha(Pruner):
    """Asynchronous successive halving."""

    name = "asha"

    def optuna_pruner(self) -> Any:
        import optuna

        return optuna.pruners.SuccessiveHalvingPruner()


@_pruner
class Hyperband(Pruner):
    """Hyperband: successive halving over several budgets."""

    name = "hyperband"

    def optuna_pruner(self) -> Any:
        import optuna

        return optuna.pruners.HyperbandPruner()
