"""Racing: spend further seeds only on the configurations whose verdict is still open.

A space may say ``seeds: {min: 2, max: 10}``. Every configuration first gets seed indices
0 .. min-1. Then, round by round, the configurations still in the race and still in the 95%
best set (:mod:`mtsearch.sweep.stats`, fitted on every finished run so far, the eliminated
configurations' runs included) get the next seed index, all of them the same one, so the
seed blocks stay balanced among the contenders. A configuration that leaves the best set
leaves the race for good. The race stops when

- the best set has one member left (``one set member``),
- every member is within delta of the best with 95% confidence (``all members within delta``),
- the contenders have ``max`` seeds (``max seeds``), or
- the next round would exceed the run budget (``budget``).

:func:`decide` is a pure function of the runs table (one row per run directory): it replays
the rounds from the seed indices already run (round r's contenders are the decision on the
runs with seed index < r), so any worker, after a crash or alongside others, computes the
same decision and finds the runs a round still lacks. Pruned configurations leave the race
(they never enter level means); a failed run counts as done (it is not repeated here).

Each round is a look at the data: a configuration excluded at some round by bad luck stays
out, so the race's chance of losing a truly tied best is larger than one look's 5%.
benchmarks/bench_decision.py measures how often the raced verdicts agree with a fixed grid.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class RaceSpec:
    """How a sweep races: seeds per configuration between ``min`` and ``max``, the margin, the budget."""

    min: int = 2
    max: int = 10
    delta: float = stats.DELTA
    budget: int | None = None  # most runs the sweep may spend in all (None: no limit)
    alpha: float = stats.ALPHA

    def __post_init__(self):
        if not (1 <= self.min <= self.max):
            raise ValueError(f"racing needs 1 <= min <= max seeds (got min {self.min}, max {self.max})")

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
        """From a space's description (sweep.json ``space``): ``seeds`` a number or ``{min, max}``, ``delta``."""
        seeds = space.get("seeds", 1)
        lo, hi = (seeds.get("min", 2), seeds.get("max", 10)) if isinstance(seeds, dict) else (seeds, seeds)
        return cls(int(lo), int(hi), float(space.get("delta", stats.DELTA)), budget)


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
        a = stats.analyse(seen, "config", metric="score", delta=spec.delta, alpha=spec.alpha, details=False)
        verdict = dict(zip(a.table["level"], a.table["verdict"], strict=True)) if len(a.table) else {}
        rows = a.table.set_index("level") if len(a.table) else None
        for c in alive:
            v = verdict.get(c, stats.untested(0))
            if v == stats.WORSE:
                out_at[c] = (
                    f"out after {r} seeds: below another configuration (upper bound {rows.loc[c, 'high']:+.4f} <= 0)"
                )
            elif stats.is_untested(v):
                out_at[c] = f"out after {r} seeds: fewer than two finished runs ({v})"
        alive = [c for c in alive if c not in out_at]
        members = [c for c in a.best_set if c in alive]
        why |= out_at | {c: _member_text(c, rows, verdict, spec) for c in members}
        decision = _stop(a, members, verdict, r, spec, int((done["seed_index"] < r).sum()), why, seeds)
        if decision is not None:
            return decision
        lacking = [c for c in members if r not in have[c]]
        if lacking:
            why |= {c: why[c] + f"; seed index {r} next" for c in lacking}
            return RaceDecision(lacking, False, EXTEND, why, r, seeds, list(a.best_set))
        alive = members
        r += 1


def _member_text(c: str, rows, verdict: dict[str, str], spec: RaceSpec) -> str:
    v = verdict[c]
    if v == stats.EQUIVALENT:
        return f"in the best set, within delta {spec.delta:g} of the best (lower bound {rows.loc[c, 'low']:+.4f})"
    if v == stats.IN_SET and len([x for x in verdict.values() if not stats.is_untested(x)]) > 1:
        return f"in the best set: the observed best (mean {rows.loc[c, 'mean']:.4f})"
    return f"in the best set (upper bound {rows.loc[c, 'high']:+.4f} > 0)"


def _stop(a, members, verdict, r, spec, runs_done, why, seeds) -> RaceDecision | None:
    best_set = list(a.best_set)
    if len(members) <= 1:
        return RaceDecision([], True, ONE_MEMBER, why, None, seeds, best_set)
    rivals = [c for c in members if verdict[c] != stats.IN_SET]
    if rivals and all(verdict[c] == stats.EQUIVALENT for c in rivals):
        return RaceDecision([], True, WITHIN_DELTA, why, None, seeds, best_set)
    if r >= spec.max:
        return RaceDecision([], True, MAX_SEEDS, why, None, seeds, best_set)
    if spec.budget is not None and runs_done + len(members) > spec.budget:  # the runs before round r
        return RaceDecision([], True, BUDGET, why, None, seeds, best_set)
    return None
