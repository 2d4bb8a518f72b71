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

from mtsearch.sweep import stats

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


def verdicts(runs: pd.DataFrame, Y: np.ndarray, delta: float = stats.DELTA):
    design = stats.build_design(runs, "level")
    mean, s2, resid = design.fit_batch(Y)
    judged = stats.judge(design, mean, s2, resid, delta)
    order = [int(lvl[1:]) for lvl in design.levels]
    return judged.code[:, np.argsort(order)], judged  # columns in level order l0, l1, ...


@pytest.mark.parametrize("shared", [True, False], ids=["seed-shared", "seed-not-shared"])
@pytest.mark.parametrize("seeds", [2, 3, 5])
def test_eight_equal_levels_are_called_worse_in_at_most_5_percent_of_sweeps(seeds, shared):
    rng = np.random.default_rng(100 + seeds + 10 * shared)
    runs = grid_runs(8, list(range(seeds)))
    code, _ = verdicts(runs, simulate(runs, np.zeros(8), rng, seed_sd=2 * SIGMA, shared=shared))
    false_calls = (code == 1).any(axis=1).mean()
    assert false_calls <= stats.ALPHA + mc_margin(stats.ALPHA), false_calls


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


def test_a_level_with_a_far_larger_seed_spread_is_flagged_and_gets_its_own_variance():
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
    assert judged.cov[b, i, i] > 4 * judged.cov[b, others[0], others[0]]
    assert judged.df_pair[b, i, others[0]] < judged.df_pair[b, others[0], others[1]]
    # equal means are still not called worse, the wild level included
    assert (code == 1).any(axis=1).mean() <= stats.ALPHA + mc_margin(stats.ALPHA, n)


def test_equal_spread_is_rarely_flagged():
    rng = np.random.default_rng(9)
    runs = grid_runs(8, list(range(4)))
    _, judged = verdicts(runs, simulate(runs, np.zeros(8), rng, seed_sd=SIGMA, shared=True))
    assert judged.flagged.any(axis=1).mean() <= stats.ALPHA + mc_margin(stats.ALPHA)
