"""Racing: spend further seeds only on the configurations whose verdict is still open.

A space may say ``seeds: {min: 2, max: 10}``. Every configuration first gets seed indices
0 .. min-1. Then, round by round, the configurations still in the race (not yet ``worse`` at
the race's level :attr:`RaceSpec.drop_alpha`, in :mod:`mtsearch.sweep.stats` fitted on every
finished run so far, the eliminated configurations' runs included) get the next seed index,
all of them the same one, so the seed blocks stay balanced among the contenders. A
configuration that leaves the race leaves it for good. The race stops when

- one configuration is left in the race (``one set member``),
- every other one is within delta of the best at ``final_alpha`` (``all members within delta``),
- the contenders have ``max`` seeds (``max seeds``),
- further seeds would very probably leave every verdict as it is (``further seeds cannot decide
  by max``, futility), or
- the next round would exceed the run budget (``budget``).

Futility. Every member but the observed best is ``undecided`` (or ``equivalent``) against the
best (the analysis' ``decided`` column), and the chance that racing on to ``max`` seeds would
decide any of the undecided ones is below
``futility`` (default :data:`FUTILITY`). A member's chance is its predictive power
(Spiegelhalter, Freedman & Blackburn 1986): with n seeds, a difference d from the best and a
residual sd s, the difference's estimate at ``max`` seeds is normal around d with variance
2 s^2 (max - n) / (max n) (the true difference unknown around d, flat prior), and it is decided
when that estimate is below -h (worse) or above h - delta (equivalent), h = q s sqrt(2 / max)
the half-width of the verdict intervals on a balanced ``max``-seed grid (q the Tukey-Kramer
value of :mod:`mtsearch.sweep.stats` at (k - 1)(max - 1) df). The race's chance is the sum of
its members' (a bound on the chance that any one is decided). Near-ties that no affordable
number of seeds separates are where a race spends most; stopping them leaves them ``in best
set`` and ``undecided``, which is what ``max`` seeds would almost surely say too. The whole race stops
at once, so the seed blocks stay balanced; ``futility: 0`` switches the rule off.

:func:`decide` is a pure function of the runs table (one row per run directory): it replays
the rounds from the seed indices already run (round r's contenders are the decision on the
runs with seed index < r), so any worker, after a crash or alongside others, computes the
same decision and finds the runs a round still lacks. Pruned configurations leave the race
(they never enter level means); a failed run counts as done (it is not repeated here).

Error over the looks. Each round is a look at the data, and a configuration that leaves the
race at some round by bad luck stays out: judged every round at 5%, 8 equal levels raced from
2 to 10 seeds were called ``worse`` in 10.3% of sweeps. So the 5% is spent over the planned
looks (Bonferroni; the looks are rounds min .. max): a share :data:`RACE_SHARE` of alpha goes
to leaving the race, equally over the max - min interim looks (:attr:`RaceSpec.drop_alpha`
each), the rest to the final verdicts (:attr:`RaceSpec.final_alpha`, which ``mtsearch
results`` uses for a raced sweep; a fixed number of seeds keeps the whole alpha). A
configuration leaves the race only when it is ``worse`` at ``drop_alpha``; the other stops
judge the configurations still racing at ``final_alpha`` and stop only when none of them is
``worse`` there (or at ``max``, or at the budget, looks whose time does not depend on the
verdicts while no configuration has left). So with equal levels a false ``worse`` needs a
false exclusion at one interim look (at most drop_alpha each) or a false ``worse`` in the final
analysis at a look fixed in advance (at most final_alpha): at most alpha in all. The
simulation tests check it with the defaults of ``sampling`` and ``surgery``.
benchmarks/bench_decision.py measures how often the raced verdicts agree with a fixed grid.

Every decision replays the rounds, so the analyses of the rounds before are memoised (a pure
function of the runs they saw).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtsearch.sweep import stats

FINAL = ("finished", "stopped_early", "pruned", "failed")  # a run with one of these is done
USABLE = ("finished", "stopped_early")

FIRST_SEEDS = "first seeds"
EXTEND = "extend"
WAITING = "waiting"
ONE_MEMBER = "one set member"
WITHIN_DELTA = "all members within delta"
MAX_SEEDS = "max seeds"
BUDGET = "budget"
FUTILE = "further seeds cannot decide by max"
FUTILITY = 0.1  # the race stops when racing on to max would decide a member with less than this chance
# the share of alpha spent on leaving the race (equally over the interim looks); the rest: final verdicts
RACE_SHARE = 0.2


@dataclass(frozen=True)
class RaceSpec:
    """How a sweep races: seeds per configuration between ``min`` and ``max``, the margin, the budget."""

    min: int = 2
    max: int = 10
    delta: float = stats.DELTA
    budget: int | None = None  # most runs the sweep may spend in all (None: no limit)
    alpha: float = stats.ALPHA
    futility: float = FUTILITY  # 0: no futility stop (members race on until decided, or to max)

    @property
    def interim_looks(self) -> int:
        """Rounds at which a configuration can leave the race: seeds min .. max - 1."""
        return self.max - self.min

    @property
    def drop_alpha(self) -> float:
        """The level at which one interim look drops a configuration from the race."""
        return self.alpha * RACE_SHARE / self.interim_looks if self.interim_looks else 0.0

    @property
    def final_alpha(self) -> float:
        """The level of the final verdicts: alpha less what the interim looks may spend."""
        return self.alpha * (1 - RACE_SHARE) if self.interim_looks else self.alpha

    def __post_init__(self):
        if not (1 <= self.min <= self.max):
            raise ValueError(f"racing needs 1 <= min <= max seeds (got min {self.min}, max {self.max})")
        if not (0 <= self.futility < 1):
            raise ValueError(f"racing needs 0 <= futility < 1 (got {self.futility})")

    @classmethod
    def of(cls, spec: Any) -> RaceSpec:
        """A RaceSpec from what a caller holds: a RaceSpec, the sweep's ``Space`` (``seeds`` is the
        minimum, ``max_seeds`` the maximum; the runner passes it) or a space description (dict)."""
        if isinstance(spec, RaceSpec):
            return spec
        if isinstance(spec, dict):
            return cls.from_space(spec)
        lo = int(spec.seeds)
        hi = max(lo, int(getattr(spec, "max_seeds", 0) or lo))
        return cls(lo, hi, float(getattr(spec, "delta", None) or stats.DELTA))

    @classmethod
    def from_space(cls, space: dict[str, Any], budget: int | None = None) -> RaceSpec:
        """From a space's description: ``seeds`` ``{min, max}`` (a space file), or a number with ``max_seeds``
        beside it (sweep.json's ``space``, :meth:`Space.describe`: without reading it a raced sweep's
        results were judged at the whole alpha), ``delta``."""
        seeds = space.get("seeds", 1)
        if isinstance(seeds, dict):
            lo, hi = seeds.get("min", 2), seeds.get("max", 10)
        else:
            lo = seeds
            hi = max(int(lo), int(space.get("max_seeds") or lo))
        return cls(int(lo), int(hi), float(space.get("delta", stats.DELTA)), budget)


def verdict_alpha(space: dict[str, Any]) -> float:
    """The level of a sweep's final verdicts: :attr:`RaceSpec.final_alpha` when it races, else alpha."""
    try:
        return RaceSpec.from_space(space).final_alpha
    except (TypeError, ValueError, AttributeError):  # a space that cannot race judges at the whole alpha
        return stats.ALPHA


@dataclass
class RaceDecision:
    """What the sweep does next.

    ``extend``: the configurations (config_hash) that get seed index ``next_seed_index`` now
    (only those still lacking it); ``stop``: the race is over, for ``reason``; ``why``: per
    configuration, in words; ``seeds``: finished runs per configuration; ``best_set``: the
    current best set.
    """

    extend: list[str]
    stop: bool
    reason: str
    why: dict[str, str] = field(default_factory=dict)
    next_seed_index: int | None = None
    seeds: dict[str, int] = field(default_factory=dict)
    best_set: list[str] = field(default_factory=list)


def decide(runs, spec) -> RaceDecision:
    """The racing decision for a runs table (columns config_hash, seed_index, status, score[, pruned_config]).

    ``spec``: a :class:`RaceSpec`, or the sweep's ``Space`` as the runner passes it (see :meth:`RaceSpec.of`).
    """
    import pandas as pd

    spec = RaceSpec.of(spec)

    t = pd.DataFrame(runs).copy()
    if t.empty:  # the configurations are the space's: the sweep starts each at seed index 0
        return RaceDecision([], False, FIRST_SEEDS, {}, 0)
    t["seed_index"] = t["seed_index"].astype(int)
    pruned = set(t.loc[t["status"] == "pruned", "config_hash"])
    if "pruned_config" in t:
        pruned |= set(t.loc[t["pruned_config"].fillna(False).astype(bool), "config_hash"])
    configs = sorted(t["config_hash"].unique())
    done = t[t["status"].isin(FINAL)]
    have = {c: set(done.loc[done["config_hash"] == c, "seed_index"]) for c in configs}
    seeds = {c: int(((done["config_hash"] == c) & done["status"].isin(USABLE)).sum()) for c in configs}
    why = {c: "pruned: out of the race (pruned configurations never enter level means)" for c in pruned}
    pending = t[~t["status"].isin(FINAL)]
    if len(pending):
        return RaceDecision([], False, WAITING, why | {c: "a run is not finished yet" for c in pending["config_hash"]},
                            None, seeds)  # fmt: skip

    racing = [c for c in configs if c not in pruned]
    for k in range(spec.min):
        lacking = [c for c in racing if k not in have[c]]
        if lacking:
            why |= {c: f"seed index {k} of the first {spec.min}" for c in lacking}
            return RaceDecision(lacking, False, FIRST_SEEDS, why, k, seeds)

    usable = done[done["status"].isin(USABLE) & ~done["config_hash"].isin(pruned)].copy()
    usable = usable[np.isfinite(usable["score"].astype(float))]
    usable["config"] = usable["config_hash"]
    alive = list(racing)
    out_at: dict[str, str] = {}
    r = spec.min
    while True:
        seen = usable[usable["seed_index"] < r]
        drop = _analyse(seen, spec.delta, spec.drop_alpha) if r < spec.max else None
        a = _analyse(seen, spec.delta, spec.final_alpha)
        verdict = dict(zip(a.table["level"], a.table["verdict"], strict=True)) if len(a.table) else {}
        decided = dict(zip(a.table["level"], a.table["decided"], strict=True)) if len(a.table) else {}
        rows = a.table.set_index("level") if len(a.table) else None
        dropped = (dict(zip(drop.table["level"], drop.table["verdict"], strict=True))
                   if drop is not None and len(drop.table) else {})  # fmt: skip
        for c in alive:
            v = verdict.get(c, stats.untested(0))
            if dropped.get(c) == stats.WORSE:
                high = drop.table.set_index("level").loc[c, "high"]
                out_at[c] = (f"out after {r} seeds: below another configuration at the race's level "
                             f"{spec.drop_alpha:.4g} (upper bound {high:+.4f} <= 0)")  # fmt: skip
            elif stats.is_untested(v):
                out_at[c] = f"out after {r} seeds: fewer than two finished runs ({v})"
        alive = [c for c in alive if c not in out_at]
        members = [c for c in alive if c in verdict]
        why |= out_at | {c: _member_text(c, rows, verdict, decided, spec) for c in members}
        n_seen = seen.groupby("config_hash").size().to_dict()
        decision = _stop(
            a,
            members,
            verdict,
            decided,
            rows,
            n_seen,
            r,
            spec,
            int((done["seed_index"] < r).sum()),
            why,
            seeds,
        )
        if decision is not None:
            return decision
        lacking = [c for c in members if r not in have[c]]
        if lacking:
            why |= {c: why[c] + f"; seed index {r} next" for c in lacking}
            return RaceDecision(lacking, False, EXTEND, why, r, seeds, list(a.best_set))
        alive = members
        r += 1


def _member_text(c: str, rows, verdict: dict[str, str], decided: dict[str, str], spec: RaceSpec) -> str:
    if verdict[c] == stats.WORSE:
        return (f"racing on: below another configuration at the final level {spec.final_alpha:.4g} "
                f"(upper bound {rows.loc[c, 'high']:+.4f}), not yet at the race's")  # fmt: skip
    if decided[c] == stats.EQUIVALENT:
        return f"in the best set, within delta {spec.delta:g} of the best (lower bound {rows.loc[c, 'low']:+.4f})"
    if (
        decided[c] == stats.OBSERVED_BEST
        and len([x for x in verdict.values() if not stats.is_untested(x)]) > 1
    ):
        return f"in the best set: the observed best (mean {rows.loc[c, 'mean']:.4f})"
    if decided[c] == stats.UNDECIDED:
        return (f"in the best set, undecided against the best (interval [{rows.loc[c, 'low']:+.4f}, "
                f"{rows.loc[c, 'high']:+.4f}] reaches below -delta and above 0)")  # fmt: skip
    return f"in the best set (upper bound {rows.loc[c, 'high']:+.4f} > 0)"


def _analyse(seen, delta: float, alpha: float):
    """The analysis of the runs seen so far (memoised: each decision replays the rounds before it)."""
    key = tuple(
        sorted(
            zip(seen["config_hash"], seen["seed_index"].astype(int), seen["score"].astype(float), strict=True)
        )
    )
    return _analyse_rows(key, float(delta), float(alpha))


@functools.lru_cache(maxsize=512)
def _analyse_rows(key: tuple, delta: float, alpha: float):
    import pandas as pd

    seen = pd.DataFrame(list(key), columns=["config", "seed_index", "score"])
    return stats.analyse(seen, "config", metric="score", delta=delta, alpha=alpha, details=False)


def predictive_power(a, rows, rivals: list[str], seeds: dict[str, int], spec: RaceSpec) -> dict[str, float]:
    """Per undecided rival: the predictive probability that its verdict is decided at ``max`` seeds.

    See the module docstring. ``a`` the analysis, ``rows`` its table by level, ``seeds`` the
    finished runs per configuration so far. A rival with ``max`` seeds already has 0.
    """
    k = int((~a.table["verdict"].map(stats.is_untested)).sum())
    s = float(a.sigma)
    if k < 2 or not np.isfinite(s) or s <= 0:
        return {c: 1.0 for c in rivals}  # no noise estimate: nothing can be said, race on
    diff = np.array([float(rows.loc[c, "diff"]) for c in rivals])
    n = np.array([int(seeds.get(c, 0)) for c in rivals])
    return dict(zip(rivals, predictive_power_batch(diff, s, n, k, spec).tolist(), strict=True))


def predictive_power_batch(diff: np.ndarray, sigma, n: np.ndarray, k: int, spec: RaceSpec) -> np.ndarray:
    """The module docstring's predictive power, element-wise: ``diff`` from the best, residual sd
    ``sigma``, ``n`` seeds now, ``k`` levels compared (shared by :func:`predictive_power` and the
    simulation tests). At ``max`` seeds already: 0."""
    from scipy.stats import norm

    half = (
        stats.tukey_critical_value(k, (k - 1) * (spec.max - 1), spec.final_alpha)
        * sigma
        * np.sqrt(2 / spec.max)
    )
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = sigma * np.sqrt(2 * (spec.max - n) / (spec.max * n))
        p = norm.cdf((-half - diff) / spread) + norm.sf((half - spec.delta - diff) / spread)
    return np.where(n >= spec.max, 0.0, p)


def _stop(a, members, verdict, decided, rows, n_seen, r, spec, runs_done, why, seeds) -> RaceDecision | None:
    best_set = list(a.best_set)
    if len(members) <= 1:
        return RaceDecision([], True, ONE_MEMBER, why, None, seeds, best_set)
    rivals = [c for c in members if decided[c] != stats.OBSERVED_BEST]  # the worse at final_alpha too
    # A configuration still racing that is worse at the final level (not yet at the race's)
    # keeps the race going: stopping now would call it worse at a look chosen by the data.
    settled = not any(verdict[c] == stats.WORSE for c in rivals)
    if settled and rivals and all(decided[c] == stats.EQUIVALENT for c in rivals):
        return RaceDecision([], True, WITHIN_DELTA, why, None, seeds, best_set)
    if r >= spec.max:
        return RaceDecision([], True, MAX_SEEDS, why, None, seeds, best_set)
    open_ = [c for c in rivals if decided[c] == stats.UNDECIDED]
    if settled and spec.futility > 0 and open_:
        power = predictive_power(a, rows, open_, n_seen, spec)
        if sum(power.values()) < spec.futility:
            why |= {c: f"undecided after {r} seeds; {spec.max} seeds would decide it with predictive "
                       f"probability {p:.3f}" for c, p in power.items()}  # fmt: skip
            reason = f"{FUTILE} (predictive power {sum(power.values()):.3f} < {spec.futility:g})"
            return RaceDecision([], True, reason, why, None, seeds, best_set)
    if spec.budget is not None and runs_done + len(members) > spec.budget:  # the runs before round r
        return RaceDecision([], True, BUDGET, why, None, seeds, best_set)
    return None
