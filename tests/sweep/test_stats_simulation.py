"""The verdicts' error rates, checked by simulation against a known truth.

Every simulated sweep goes through the same code as ``mtsearch results`` (the design that
:func:`stats.analyse` fits, least squares, :func:`stats.judge`), vectorised over thousands of
sweeps. Rates are compared with their targets within Monte-Carlo error: 3 standard errors of
a binomial proportion over the simulated sweeps.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mtsearch.sweep import racing, stats
from mtsearch.sweep.racing import RaceSpec

SWEEPS = 2000
SIGMA = 0.01  # seed noise of one run (about the sampling sweep's)


def mc_margin(p: float, n: int = SWEEPS) -> float:
    return 3 * math.sqrt(p * (1 - p) / n)


def grid_runs(k: int, seeds: list[int] | dict[int, int]) -> pd.DataFrame:
    """k configurations (one level each) with the given seeds: a list for all, or per configuration a count."""
    rows = []
    for c in range(k):
        for s in range(seeds[c] if isinstance(seeds, dict) else len(seeds)):
            rows.append({"config": f"c{c}", "level": f"l{c}", "seed_index": s, "score": 0.0})
    return pd.DataFrame(rows)


def simulate(runs: pd.DataFrame, truth: np.ndarray, rng, seed_sd: float, shared: bool, n: int = SWEEPS):
    """Scores (n, N): truth of the run's level + seed effect (shared by every configuration, or not) + noise."""
    level = runs["level"].str[1:].astype(int).to_numpy()
    seed = runs["seed_index"].to_numpy()
    if shared:
        blocks = rng.normal(0, seed_sd, (n, seed.max() + 1))[:, seed]
    else:
        blocks = rng.normal(0, seed_sd, (n, len(runs)))
    return truth[level][None] + blocks + rng.normal(0, SIGMA, (n, len(runs)))


def verdicts(runs: pd.DataFrame, Y: np.ndarray, delta: float = stats.DELTA, spread_check: bool = True):
    design = stats.build_design(runs, "level")
    mean, s2, resid = design.fit_batch(Y)
    judged = stats.judge(design, mean, s2, resid, delta, spread_check=spread_check)
    order = [int(lvl[1:]) for lvl in design.levels]
    return judged.code[:, np.argsort(order)], judged  # columns in level order l0, l1, ...


@pytest.mark.parametrize("spread_check", [True, False], ids=["spread-check", "no-spread-check"])
@pytest.mark.parametrize("shared", [True, False], ids=["seed-shared", "seed-not-shared"])
@pytest.mark.parametrize("seeds", [2, 3, 5])
def test_eight_equal_levels_are_called_worse_in_at_most_5_percent_of_sweeps(seeds, shared, spread_check):
    rng = np.random.default_rng(100 + seeds + 10 * shared)
    runs = grid_runs(8, list(range(seeds)))
    Y = simulate(runs, np.zeros(8), rng, seed_sd=2 * SIGMA, shared=shared)
    code, judged = verdicts(runs, Y, spread_check=spread_check)
    false_calls = (code == 1).any(axis=1).mean()
    assert false_calls <= stats.ALPHA + mc_margin(stats.ALPHA), false_calls
    if spread_check:  # the check only widens intervals: never a worse call the pooled variance would not make
        plain, _ = verdicts(runs, Y, spread_check=False)
        assert not ((code == 1) & (plain != 1)).any()
        assert (judged.flagged.any(axis=1).mean() > 0) == (seeds >= stats.SPREAD_MIN_RUNS)


def race_null(k: int, spec: RaceSpec, sims: int, rng, spread_check: bool = True):
    """Races of k equal levels (seed blocks shared), vectorised: see :func:`race`."""
    runs = grid_runs(k, list(range(spec.max)))
    return race(
        simulate(runs, np.zeros(k), rng, seed_sd=SIGMA, shared=True, n=sims), runs, spec, spread_check
    )


def race(Y: np.ndarray, runs: pd.DataFrame, spec: RaceSpec, spread_check: bool = True):
    """For each sweep (row of Y: every level's scores at every seed), until its first exclusion: (excluded or
    called worse at the end, the round it stopped or first excluded a level at).

    Under equal levels every exclusion is false, so a sweep is done at its first one; until then
    every level races and each round is the balanced grid of the seeds so far. The rules are
    racing.decide's (:func:`test_the_vectorised_race_is_decide` checks it): exclusion at
    ``drop_alpha``; then the stops (every rival equivalent, futility: each only while no racing
    level is worse at ``final_alpha``; max seeds); the final verdicts at ``final_alpha`` on the
    runs of the round it stops at.
    """
    sims, k = len(Y), runs["level"].nunique()
    false = np.zeros(sims, dtype=bool)
    stopped_at = np.zeros(sims, dtype=int)
    active = np.ones(sims, dtype=bool)
    for r in range(spec.min, spec.max + 1):
        seen = (runs["seed_index"] < r).to_numpy()
        design = stats.build_design(runs[seen], "level")
        mean, s2, resid = design.fit_batch(Y[:, seen])

        if r < spec.max:
            out = (
                stats.judge(design, mean, s2, resid, spec.delta, spec.drop_alpha, spread_check).code == 1
            ).any(axis=1) & active
            false |= out
            stopped_at[out] = r
            active &= ~out
        code = stats.judge(design, mean, s2, resid, spec.delta, spec.final_alpha, spread_check).code
        worse = (code == 1).any(axis=1)
        rival = np.ones(code.shape, dtype=bool)
        np.put_along_axis(rival, np.argmax(mean, axis=1)[:, None], False, axis=1)
        if r == spec.max:
            stop = np.ones(sims, dtype=bool)
        else:
            within = ~worse & np.where(rival, code == 2, True).all(axis=1)
            diff = mean - mean.max(axis=1, keepdims=True)
            power = racing.predictive_power_batch(diff, np.sqrt(s2)[:, None], np.full(k, r), k, spec)
            open_ = rival & (code == 3)
            futile = ~worse & open_.any(axis=1) & (np.where(open_, power, 0.0).sum(axis=1) < spec.futility)
            stop = within | (futile & (spec.futility > 0))
        stop &= active
        false |= stop & worse
        stopped_at[stop] = r
        active &= ~stop
    return false, stopped_at


#: the racing defaults of the sampling and surgery sweeps (seeds 2..10, delta 0.005, the futility stop)
SAMPLING_RACE = RaceSpec(min=2, max=10, delta=0.005)
RACE_SWEEPS = 1000  # the report's figures come from many more (see the README)


def test_unbalanced_seeds_after_racing_keep_the_false_call_rate():
    """Four configurations raced on to 6 seeds, four stopped at 2 (Tukey-Kramer's approximation)."""
    rng = np.random.default_rng(7)
    runs = grid_runs(8, {c: (6 if c < 4 else 2) for c in range(8)})
    code, _ = verdicts(runs, simulate(runs, np.zeros(8), rng, seed_sd=2 * SIGMA, shared=True))
    false_calls = (code == 1).any(axis=1).mean()
    assert false_calls <= stats.ALPHA + mc_margin(stats.ALPHA), false_calls


def test_hsus_constrained_mcb_would_call_equal_levels_worse_too_often():
    """Why the verdicts use the unconstrained intervals: Dunnett's one-sided value excludes a tied level often."""
    rng = np.random.default_rng(3)
    runs = grid_runs(8, [0, 1, 2])
    design = stats.build_design(runs, "level")
    mean, s2, _ = design.fit_batch(simulate(runs, np.zeros(8), rng, seed_sd=0.0, shared=True, n=400))
    excluded = [
        (stats.constrained_mcb(m, s * design.W, design.df)[1] <= 0).any()
        for m, s in zip(mean, s2, strict=True)
    ]
    assert np.mean(excluded) > 0.12  # about 0.24 in theory; unconstrained: 0.05


@pytest.mark.parametrize("seeds", [2, 5])
def test_the_best_set_contains_the_true_best_at_least_95_percent_of_the_time(seeds):
    rng = np.random.default_rng(200 + seeds)
    runs = grid_runs(8, list(range(seeds)))
    truth = -SIGMA * np.array([0.0, 0.3, 0.6, 1.0, 1.5, 2.0, 3.0, 4.0])  # a unique best, close rivals
    code, _ = verdicts(runs, simulate(runs, truth, rng, seed_sd=SIGMA, shared=True))
    kept = (code[:, 0] != 1).mean()
    assert kept >= 0.95 - mc_margin(0.95), kept


@pytest.mark.parametrize("gap", [2.0, 3.0])
def test_a_known_difference_is_detected_at_the_power_the_seeds_needed_figure_promises(gap):
    """Plan at 2 seeds with the truth, then simulate sweeps with the promised seeds: >= 80% decide."""
    truth = np.array([0.0, *([-gap * SIGMA] * 7)])
    plan_runs = grid_runs(8, [0, 1])
    design = stats.build_design(plan_runs, "level")
    order = [int(lvl[1:]) for lvl in design.levels]
    needed = stats.seeds_needed(design, truth[order], SIGMA)[order.index(1)]  # for level l1
    assert isinstance(needed, int) and 2 < needed < stats.MAX_SEEDS
    rng = np.random.default_rng(300 + int(gap))
    runs = grid_runs(8, list(range(needed)))
    code, _ = verdicts(runs, simulate(runs, truth, rng, seed_sd=SIGMA, shared=True))
    power = (code[:, 1] == 1).mean()
    assert power >= stats.POWER - mc_margin(stats.POWER), (needed, power)
    if needed > 3:  # a seed fewer does not have the power: the figure is not padded
        runs = grid_runs(8, list(range(needed - 1)))
        code, _ = verdicts(runs, simulate(runs, truth, rng, seed_sd=SIGMA, shared=True))
        assert (code[:, 1] == 1).mean() < stats.POWER + mc_margin(stats.POWER)


def test_equivalence_is_shown_when_levels_are_equal_and_the_seeds_suffice():
    truth = np.zeros(2)
    runs = grid_runs(2, list(range(40)))
    rng = np.random.default_rng(11)
    code, _ = verdicts(runs, simulate(runs, truth, rng, seed_sd=SIGMA, shared=True), delta=0.01)
    # with 40 seeds the interval on the difference is about +-0.0045: equal levels come out equivalent
    assert (code.max(axis=1) == 2).mean() > 0.9 and not (code == 1).any(axis=1).mean() > 0.05 + mc_margin(
        0.05
    )


def test_a_level_with_a_far_larger_seed_spread_is_flagged_and_gets_its_own_larger_variance():
    n = 300  # nearly every sweep is flagged here, and each flagged sweep is adjusted on its own
    rng = np.random.default_rng(5)
    runs = grid_runs(6, list(range(5)))
    Y = simulate(runs, np.zeros(6), rng, seed_sd=0.0, shared=True, n=n)
    noisy = (runs["level"] == "l5").to_numpy()
    Y[:, noisy] += rng.normal(0, 6 * SIGMA, (n, noisy.sum()))
    code, judged = verdicts(runs, Y)
    i = stats.build_design(runs, "level").levels.index("l5")
    assert judged.flagged[:, i].mean() > 0.8
    others = [j for j in range(6) if j != i]
    assert judged.flagged[:, others].any(axis=1).mean() < 0.05 + mc_margin(0.05, n)
    # flagged: its mean's variance is its own (larger), and its comparisons take fewer df
    b = int(np.flatnonzero(judged.flagged[:, i])[0])
    assert judged.widened[b, i] and judged.cov[b, i, i] > 2 * judged.cov[b, others[0], others[0]]
    assert judged.df_pair[b, i, others[0]] < judged.df_pair[b, others[0], others[1]]
    # equal means are still not called worse, the wild level included
    assert (code == 1).any(axis=1).mean() <= stats.ALPHA + mc_margin(stats.ALPHA, n)


def test_equal_spread_is_rarely_flagged():
    rng = np.random.default_rng(9)
    runs = grid_runs(8, list(range(4)))
    _, judged = verdicts(runs, simulate(runs, np.zeros(8), rng, seed_sd=SIGMA, shared=True))
    assert judged.flagged.any(axis=1).mean() <= stats.ALPHA + mc_margin(stats.ALPHA)


@pytest.mark.parametrize("spread_check", [True, False], ids=["spread-check", "no-spread-check"])
@pytest.mark.parametrize("spec", [SAMPLING_RACE, RaceSpec(min=2, max=5, delta=0.005)], ids=["2-10", "2-5"])
def test_racing_equal_levels_calls_worse_in_at_most_5_percent_of_sweeps(spec, spread_check):
    """Exclusions during the race and the final verdicts together: 5% family-wise over the looks."""
    rng = np.random.default_rng(400 + spec.max + spread_check)
    false, stopped_at = race_null(8, spec, RACE_SWEEPS, rng, spread_check)
    assert false.mean() <= stats.ALPHA + mc_margin(stats.ALPHA, RACE_SWEEPS), false.mean()
    assert (stopped_at >= spec.min).all() and (stopped_at <= spec.max).all()
    assert spec.drop_alpha * spec.interim_looks + spec.final_alpha == pytest.approx(stats.ALPHA)


def test_the_vectorised_race_is_decide():
    """race() replays racing.decide: the same round, the same exclusions and final worse calls on the same scores."""
    import re

    spec = SAMPLING_RACE
    rng = np.random.default_rng(41)
    runs = grid_runs(8, list(range(spec.max)))
    Y = simulate(runs, np.zeros(8), rng, seed_sd=SIGMA, shared=True, n=6)
    Y[:3] += np.where(runs["level"] == "l7", -0.06, 0.0)[None]  # a level far below: excluded during the race
    false, stopped_at = race(Y, runs, spec)
    assert false[:3].all() and (stopped_at[:3] < spec.max).all()
    for b in range(len(Y)):
        table = runs.assign(config_hash=runs["config"], status="finished", score=Y[b])
        done = table[table["seed_index"] < spec.min]
        while not (d := racing.decide(done, spec)).stop:
            asked = table["config_hash"].isin(d.extend) & (table["seed_index"] == d.next_seed_index)
            done = pd.concat([done, table[asked]])
        out = [int(m.group(1)) for w in d.why.values() if (m := re.match(r"out after (\d+) seeds", w))]
        if out:  # the vectorised race ends a sweep at its first exclusion
            assert false[b] and min(out) == stopped_at[b], (b, d.reason, out)
            continue
        a = stats.analyse(done, "level", alpha=spec.final_alpha, details=False)
        assert int(done["seed_index"].max()) + 1 == stopped_at[b], (b, d.reason)
        assert (a.table["verdict"] == stats.WORSE).any() == false[b], (b, d.reason)


def test_a_level_with_a_far_smaller_seed_spread_is_only_flagged():
    """Its own variance from 5 seeds would narrow its intervals on luck: the pooled variance stays."""
    n = 300
    rng = np.random.default_rng(6)
    runs = grid_runs(6, list(range(5)))
    Y = simulate(runs, np.zeros(6), rng, seed_sd=0.0, shared=True, n=n)
    quiet = (runs["level"] == "l5").to_numpy()
    Y[:, quiet] = rng.normal(0, SIGMA / 20, (n, quiet.sum()))
    code, judged = verdicts(runs, Y)
    plain, unchecked = verdicts(runs, Y, spread_check=False)
    i = stats.build_design(runs, "level").levels.index("l5")
    assert (
        judged.flagged[:, i].sum() >= 3 and not judged.widened[:, i].any()
    )  # seed blocks blur a small spread
    fired = judged.flagged[:, i]
    assert np.allclose(judged.cov[fired], unchecked.cov[fired]) and (code == plain).all()
