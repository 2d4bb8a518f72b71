"""Verdicts per level of a sweep: a linear model of the runs, multiple comparisons with the best.

Pure functions on a pandas DataFrame of runs (one row per finished run); no file is read here.

The model
---------
A run is a (configuration, seed index) pair. Its score is modelled as

    score = configuration effect + seed effect + error

and fitted by ordinary least squares (statsmodels OLS). The seed effect is a *block*: seed
index k of every configuration shares the training subset, the batch order, the head
initialisation and the evaluation examples, so what seed k does to one configuration it is
assumed to do to all (additively). Blocking removes that shared part from the error; when
seeds are not shared it only costs S - 1 degrees of freedom.

Which model a dimension gets (:func:`analyse`):

- ``configuration``: the dimension is the only thing that varies where it applies (each level
  one configuration), or the sweep is a full grid with nested conditional knobs:
  ``score ~ C(config) + C(seed_index)``; a level's mean is the estimated marginal mean of its
  configurations, averaged equally over the other dimensions' cells and over the seeds.
- ``factorial``: a full grid over several dimensions, one configuration per cell:
  ``score ~ C(d1) + C(d2) + ... + C(seed_index)``, plus every two-way interaction when the
  residual degrees of freedom allow (at least :data:`MIN_DF` left); a level's mean is the
  estimated marginal mean averaged equally over the other dimensions' levels and the seeds.
- ``observational``: configurations chosen by a sampler (TPE, random) or an incomplete grid.
  The configuration is the unit: its mean over seeds is one observation of its level,
  ``config_mean ~ C(level)``. Such a comparison is observational: a level's mean also carries
  whatever else the sampler picked with it, and its interval treats those configurations as
  a random sample of them.

Assumptions, said once and relied on everywhere below: errors are independent and normal;
seed effects add to configuration effects (no configuration-by-seed interaction beyond the
error); one error variance for every level (the spread check below can only widen a flagged level's
intervals). Degrees of freedom are OLS's residual ones.

Verdicts
--------
The observed best level is picked after the fact, so a level is compared with the best of
the *others*: simultaneous 1 - alpha intervals (95%; 96% for a raced sweep's final
verdicts, see below) for mu_i - max_{j != i} mu_j (Hsu's multiple
comparison with the best, MCB). They are the *unconstrained* MCB intervals
(Edwards & Hsu 1983; Hsu 1996, ch. 4), deduced from simultaneous intervals on every pairwise
difference:

    lower_i = min_{j != i} (m_i - m_j - q * se_ij),   upper_i = min_{j != i} (m_i - m_j + q * se_ij)

with q the all-pairwise critical value of the model (Tukey-Kramer: the studentized range
quantile / sqrt(2), from scipy.stats.studentized_range; exact for balanced designs,
conservative for unequal replication (Hayter 1984), the usual approximation for blocked
unbalanced ones). Hsu's *constrained* MCB uses the smaller one-sided Dunnett value
(:func:`dunnett_critical_values`, multivariate t from the model's covariance), but its upper
bound is max(0, .): excluding a level then only says "not strictly better than all others",
and with 8 equal levels it excludes some level in 20-25% of sweeps. A verdict of *worse*
must be a strict statement, so the verdicts use the unconstrained intervals: under all-equal
levels the chance of calling any level worse is 5% (the simulation tests check it).

Each level with at least two finished runs gets exactly one verdict, Hsu's MCB and nothing else:

- ``in best set``: its upper bound is > 0 (Hsu's best set: it may be the best; the
  ``in_best_set`` column, :attr:`Analysis.best_set`);
- ``worse``: its upper bound is <= 0, so it is below some other level (simultaneous);
- ``untested (n=1)``: fewer than two finished runs; it is never compared.

Beside it, a separate fact for every member of the best set (the ``decided`` column): whether
it is decided against the best yet.

- ``observed best``: the member with the highest mean, the one the others are measured from;
- ``equivalent``: its lower bound is >= -delta: within delta of the best of the others;
- ``undecided``: its interval reaches below -delta; the seeds per configuration that would
  decide it (worse or equivalent) with 80% power are estimated from the fitted means and
  residual sd as the truth (``seeds_needed``, noncentral t, :func:`seeds_needed`; a planning
  figure: it is as good as those estimates);
- ``-``: not a member (``worse``, untested): nothing left to decide.

A member that is ``undecided`` is still ``in best set``: undecided says only that the data
cannot yet tell it from the best, nor place it within delta of it.

Beside the verdict: the difference from the observed best; the MCB p-value (``p_mcb``,
:func:`mcb_pvalues`), the smallest alpha at which the level's interval would lie below 0, so
that it is at most alpha exactly when the verdict is ``worse``; the difference in units of the
residual seed sd; P(best), the share of draws from the fitted sampling distribution of the
level means (multivariate t, seeded generator) in which the level is the maximum (a
flat-prior posterior probability, not a frequentist one).

A raced sweep looks at its data once per round; :mod:`mtsearch.sweep.racing` spends the 5%
over those looks and passes the final verdicts' share as ``alpha``.

The spread check: for each level with at least :data:`SPREAD_MIN_RUNS` runs, its residual
variance (the sum of its squared residuals over the sum of their 1 - leverage) is compared
with the pooled residual variance of the other levels by an F ratio (two-sided, Holm over
the levels, 5%). A flagged level is shown as such (``flagged``, ``spread``). Its intervals
only ever widen: when its own variance is larger than the pooled one it gets its own for its
mean and every comparison it is in, with Welch-Satterthwaite degrees of freedom (never more
than the pooled ones) and their critical value (Games-Howell); when it is smaller, the pooled
variance stays. Every other level keeps the pooled variance of all runs, as without the check.
So under equal levels the check cannot raise the 5% (the simulation tests check it); judging
a flagged level on its own 2-5-seed variance both ways gave 13-26% false ``worse`` where a flag
fired. With two seeds a level's variance has less than one degree of freedom, so the check
needs three.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALPHA = 0.05
DELTA = 0.005  # default equivalence margin on the score's scale (a space's `delta`)
POWER = 0.8  # of the seeds-needed figure
MIN_DF = 2  # residual degrees of freedom two-way interactions must leave
SPREAD_MIN_RUNS = 3  # runs a level needs before its own spread is checked
PBEST_DRAWS = 4000
MAX_SEEDS = 100  # seeds-needed search stops here
STATS_SEED = 20240  # default seed of every generator below (P(best))

# The verdict: Hsu's best set or not (the module docstring).
IN_SET, WORSE = "in best set", "worse"
# Beside it (the ``decided`` column): where a best-set member stands against the best.
OBSERVED_BEST, EQUIVALENT, UNDECIDED, NOT_A_MEMBER = "observed best", "equivalent", "undecided", "-"
# judge()'s code per tested level indexes both: the observed best, worse, equivalent, undecided.
CODE_BEST, CODE_WORSE, CODE_EQUIVALENT, CODE_UNDECIDED = 0, 1, 2, 3
VERDICT_CODES = (IN_SET, WORSE, IN_SET, IN_SET)
DECIDED_CODES = (OBSERVED_BEST, NOT_A_MEMBER, EQUIVALENT, UNDECIDED)


def untested(n: int) -> str:
    return f"untested (n={n})"


def is_untested(verdict: str) -> bool:
    return str(verdict).startswith("untested")


def confidence(alpha: float) -> str:
    """The simultaneous level of intervals at ``alpha``, as printed: "95%", or "96%" for a raced sweep's."""
    return f"{100 * (1 - alpha):.3g}%"


# --------------------------------------------------------------------------- critical values


@functools.lru_cache(maxsize=4096)
def _tukey(k: int, df: float, alpha: float) -> float:
    from scipy import stats

    if k < 2:
        return float("nan")
    df = max(1.0, df)
    if df > 1e5:
        df = math.inf
    return float(stats.studentized_range.ppf(1 - alpha, k, df) / math.sqrt(2))


def tukey_critical_value(k: int, df: float, alpha: float = ALPHA) -> float:
    """All-pairwise two-sided critical value for k means (Tukey-Kramer): q_{1-alpha}(k, df) / sqrt(2).

    Degrees of freedom are rounded down to a whole number, at least 1 (fewer df, a larger
    value: conservative; Welch-Satterthwaite df are fractional), so that repeated calls share
    a cache entry; beyond 10^5 they are infinite.
    """
    df = float(math.floor(max(1.0, df))) if math.isfinite(df) else df
    return _tukey(int(k), df, float(alpha))


def dunnett_critical_values(cov: np.ndarray, df: float, alpha: float = ALPHA) -> np.ndarray:
    """One-sided Dunnett critical value d_i for each level i as the control, from the estimates' covariance.

    d_i solves P(max_{j != i} T_ij <= d_i) = 1 - alpha, with T_ij = (m_j - m_i - (mu_j - mu_i)) / se_ij
    multivariate t (df) with the correlations the covariance implies (scipy.stats.multivariate_t
    cdf, seeded quasi-Monte Carlo, and a root finder). What Hsu's constrained MCB uses.
    """
    cov = np.asarray(cov, dtype=float)
    k = len(cov)
    out = np.empty(k)
    for i in range(k):
        others = [j for j in range(k) if j != i]
        a = np.zeros((k - 1, k))
        a[np.arange(k - 1), others] = 1.0
        a[:, i] = -1.0
        c = a @ cov @ a.T
        sd = np.sqrt(np.diag(c))
        corr = c / np.outer(sd, sd)
        key = tuple(np.round(_canonical(corr), 6).ravel())
        out[i] = _dunnett(key, k - 1, float(max(1.0, df)), float(alpha))
    return out


def _canonical(corr: np.ndarray) -> np.ndarray:
    """The correlation matrix with rows and columns in a fixed order (the cdf at equal limits ignores order)."""
    order = np.lexsort(np.round(np.sort(corr, axis=1), 6).T[::-1])
    return corr[np.ix_(order, order)]


@functools.lru_cache(maxsize=1024)
def _dunnett(key: tuple, m: int, df: float, alpha: float) -> float:
    from scipy import optimize, stats

    corr = np.array(key).reshape(m, m)
    if m == 1:
        return float(stats.t.ppf(1 - alpha, df))

    def gap(d: float) -> float:
        mvt = stats.multivariate_t(shape=corr, df=df, seed=np.random.default_rng(STATS_SEED))
        return float(mvt.cdf(np.full(m, d))) - (1 - alpha)

    return float(optimize.brentq(gap, 0.0, 60.0, xtol=1e-4))


# --------------------------------------------------------------------------- the comparison core


def pairwise_se(cov: np.ndarray) -> np.ndarray:
    """se of m_i - m_j for every pair, from the covariance of the estimates (..., k, k)."""
    d = np.diagonal(cov, axis1=-2, axis2=-1)
    return np.sqrt(np.maximum(d[..., :, None] + d[..., None, :] - 2 * cov, 0.0))


def mcb_bounds(mean: np.ndarray, se: np.ndarray, crit) -> tuple[np.ndarray, np.ndarray]:
    """Unconstrained MCB: simultaneous bounds on mu_i - max_{j != i} mu_j, for a batch of sweeps.

    ``mean`` (B, k), ``se`` (B, k, k) pairwise standard errors, ``crit`` a number or per pair
    (k, k) / (B, k, k). Returns (lower, upper), each (B, k).
    """
    k = mean.shape[-1]
    diff = mean[..., :, None] - mean[..., None, :]
    half = np.asarray(crit) * se
    eye = np.eye(k, dtype=bool)
    upper = np.where(eye, np.inf, diff + half).min(axis=-1)
    lower = np.where(eye, np.inf, diff - half).min(axis=-1)
    return lower, upper


def constrained_mcb(mean: np.ndarray, cov: np.ndarray, df: float, alpha: float = ALPHA):
    """Hsu's constrained MCB (one sweep): bounds on mu_i - max_{j != i} mu_j with Dunnett's d_i.

    upper_i = max(0, min_{j != i}(m_i - m_j + d_i se_ij)); G = {upper > 0};
    lower_i = min(0, min_{j in G, j != i}(m_i - m_j - d_j se_ij)) (0 when G = {i}).
    Returns (lower, upper, d).
    """
    mean = np.asarray(mean, dtype=float)
    k = len(mean)
    d = dunnett_critical_values(cov, df, alpha)
    se = pairwise_se(cov)
    diff = mean[:, None] - mean[None, :]
    eye = np.eye(k, dtype=bool)
    upper = np.maximum(0.0, np.where(eye, np.inf, diff + d[:, None] * se).min(axis=1))
    members = upper > 0
    cand = np.where(eye | ~members[None, :], np.inf, diff - d[None, :] * se)
    lower = np.minimum(0.0, cand.min(axis=1))
    lower[np.isinf(lower)] = 0.0
    return lower, upper, d


def classify(mean: np.ndarray, lower: np.ndarray, upper: np.ndarray, delta: float) -> np.ndarray:
    """Codes (indices into :data:`VERDICT_CODES` and :data:`DECIDED_CODES`) for a batch (B, k) of tested levels.

    Every code but :data:`CODE_WORSE` is a member of the best set (upper bound > 0; the observed
    best's always is: m_best - m_j >= 0).
    """
    best = np.argmax(mean, axis=-1)
    is_best = np.zeros(mean.shape, dtype=bool)
    np.put_along_axis(is_best, best[..., None], True, axis=-1)
    code = np.full(mean.shape, CODE_UNDECIDED)
    code[lower >= -delta] = CODE_EQUIVALENT
    code[upper <= 0] = CODE_WORSE
    code[is_best] = CODE_BEST
    return code


@dataclass
class Design:
    """A model's design: what the batch path (simulations, planning) needs besides the scores.

    ``X`` the design matrix (N, p); ``L`` the rows that make each level's estimated marginal
    mean from the parameters (k, p); ``group`` each observation's level (N,); ``df`` residual
    degrees of freedom; ``wsq[i]`` the sum of squared weights of the configurations averaged in
    level i's mean (1 / the number of configurations it averages equally); ``configs`` the
    configurations in the model; ``units`` the observations of an observational model.
    """

    X: np.ndarray
    L: np.ndarray
    group: np.ndarray
    df: float
    kind: str
    formula: str
    levels: list[str]
    wsq: np.ndarray
    configs: int
    seed_columns: int = 0  # columns of X that are seed blocks
    units: Any = None

    def __post_init__(self):
        self.pinv = np.linalg.pinv(self.X)
        self.hat = np.einsum("ij,ji->i", self.X, self.pinv)  # leverage of each observation
        self.W = self.L @ self.pinv @ self.pinv.T @ self.L.T  # cov of the level means / sigma^2
        self.k = self.L.shape[0]
        self.df = float(self.df)

    def fit_batch(self, Y: np.ndarray):
        """Least squares for a batch of score vectors (B, N): level means (B, k), s^2 (B,), residuals."""
        beta = Y @ self.pinv.T
        resid = Y - beta @ self.X.T
        s2 = (resid**2).sum(axis=1) / max(self.df, 1e-12)
        return beta @ self.L.T, s2, resid

    def estimable(self) -> bool:
        """Every level mean is a combination of rows of X (no level confounded with seed blocks)."""
        return bool(np.allclose(self.L @ self.pinv @ self.X, self.L, atol=1e-8))

    @property
    def seeds_now(self) -> int:
        """Seeds per configuration now (observations per configuration, rounded)."""
        return max(1, int(round(len(self.group) / max(1, self.configs))))


@dataclass
class Judged:
    """The comparison of a batch of sweeps: bounds, verdict codes and the spread check's result."""

    lower: np.ndarray
    upper: np.ndarray
    code: np.ndarray
    flagged: np.ndarray  # (B, k) the spread check flagged the level
    spread_p: np.ndarray  # (B, k) Holm-adjusted p of the spread check (nan: not checked, or nothing
    # could be flagged in that sweep)
    checked: np.ndarray  # (k,) the level has enough runs for the spread check
    cov: np.ndarray  # (B, k, k) covariance used
    crit: np.ndarray  # (B, k, k) critical value per pair
    df_pair: np.ndarray  # (B, k, k) degrees of freedom per pair
    widened: np.ndarray  # (B, k) flagged and its own variance (larger than the pooled) used


def judge(
    design: Design,
    mean: np.ndarray,
    s2: np.ndarray,
    resid: np.ndarray,
    delta: float = DELTA,
    alpha: float = ALPHA,
    spread_check: bool = True,
) -> Judged:
    """Verdicts for a batch of sweeps sharing one design (the same code for one sweep: B = 1)."""
    B, k = mean.shape
    df = float(design.df)
    cov = s2[:, None, None] * design.W[None]
    crit = np.full((B, k, k), tukey_critical_value(k, df, alpha))
    df_pair = np.full((B, k, k), df)
    flagged = np.zeros((B, k), dtype=bool)
    spread_p = np.full((B, k), np.nan)
    checked = np.zeros(k, dtype=bool)
    widened = np.zeros((B, k), dtype=bool)
    if spread_check:
        flagged, spread_p, own, checked = _spread(design, resid, ALPHA)  # at 5% whatever the verdicts' level
        for b in np.flatnonzero(flagged.any(axis=1)):
            cov[b], crit[b], df_pair[b], flagged_wide = _heteroscedastic(
                design, s2[b], flagged[b], own[b], alpha
            )
            widened[b] = flagged_wide
    lower, upper = mcb_bounds(mean, pairwise_se(cov), crit)
    code = classify(mean, lower, upper, delta)
    return Judged(lower, upper, code, flagged, spread_p, checked, cov, crit, df_pair, widened)


def _spread(design: Design, resid: np.ndarray, alpha: float):
    """Per level: its residual variance against the others' pooled, F ratio, two-sided, Holm over levels."""
    from scipy import stats

    B, k = resid.shape[0], design.k
    g = design.group
    free = 1.0 - design.hat  # E[resid^2] = sigma^2 (1 - h)
    ss = np.stack([(resid[:, g == i] ** 2).sum(axis=1) for i in range(k)], axis=1)  # (B, k)
    e = np.array([free[g == i].sum() for i in range(k)])
    runs = np.array([(g == i).sum() for i in range(k)])
    check = (runs >= SPREAD_MIN_RUNS) & (e > 0.5) & (design.df - e > 0.5)
    own = ss / np.where(e > 0, e, np.nan)
    rest = (ss.sum(axis=1, keepdims=True) - ss) / np.where(check, design.df - e, np.nan)
    p = np.full((B, k), np.nan)
    flagged = np.zeros((B, k), dtype=bool)
    if not check.any():
        return flagged, p, own, check
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = own / rest
    cdf = stats.f.cdf(ratio[:, check], e[check], design.df - e[check])
    raw = np.clip(2 * np.minimum(cdf, 1 - cdf), 0, 1)
    raw = np.where(np.isfinite(raw), raw, 1.0)
    adj = holm_batch(raw)
    p[:, check] = adj
    flagged[:, check] = adj < alpha
    return flagged, p, own, check


def holm_batch(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values of every row of ``p`` (B sweeps x m tests) at once.

    The same step-down as statsmodels' ``multipletests(method="holm")`` (tests cross-check
    them), vectorised over sweeps: that function takes one row and calls gc.collect() on
    every call, seconds per thousand simulated sweeps in a large process.
    """
    p = np.asarray(p, dtype=float)
    m = p.shape[1]
    order = np.argsort(p, axis=1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=1) * np.arange(m, 0, -1)
    adjusted = np.minimum(np.maximum.accumulate(ranked, axis=1), 1.0)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=1)
    return out


def _heteroscedastic(design: Design, s2: float, flagged: np.ndarray, own: np.ndarray, alpha: float):
    """Covariance, per-pair critical values and df when flagged levels may only widen their intervals.

    A flagged level whose own residual variance s_i^2 exceeds the pooled s^2 (every run, as
    without the check) gets s_i^2 for its mean (covariances scale with the two levels' sds), and
    a pair with it takes Welch-Satterthwaite df, never more than the pooled df, and the
    Tukey-Kramer value at those df (Games-Howell). Every other level and pair keeps the pooled
    variance and df. So the check can only widen an interval: its false-``worse`` rate is at
    most the rate without it (5%). Judging a flagged level on its own 2-5-seed variance in both
    directions gave 13-26% false ``worse`` where a flag fired under equal levels: a small own
    variance from so few seeds is mostly luck. Returns (cov, crit, df_pair, widened).
    """
    k, W, g = design.k, design.W, design.group
    free = 1.0 - design.hat
    e = np.array([free[g == i].sum() for i in range(k)])
    df = float(design.df)
    widened = flagged & (own > s2)
    var = np.where(widened, own, s2)
    nu = np.where(widened, np.maximum(e, 1.0), df)
    sd = np.sqrt(var)
    cov = np.outer(sd, sd) * W
    a = var * np.diag(W)  # variance of each level mean
    with np.errstate(divide="ignore", invalid="ignore"):
        welch = (a[:, None] + a[None, :]) ** 2 / (
            a[:, None] ** 2 / nu[:, None] + a[None, :] ** 2 / nu[None, :]
        )
    involves = widened[:, None] | widened[None, :]
    df_pair = np.where(involves, np.minimum(welch, df), df)
    crit = np.vectorize(lambda d: tukey_critical_value(k, d, alpha))(df_pair)
    return cov, crit, df_pair, widened


# --------------------------------------------------------------------------- building the model


@dataclass
class Analysis:
    """One dimension (or the configurations) on one metric: the model, the table, the best set."""

    kind: str  # configuration | factorial | observational | single level | none
    formula: str
    table: Any  # pandas DataFrame, one row per level (tested and untested), sorted by mean
    best_set: list[str]
    runs: int  # runs in the model
    configs: int
    df: float
    sigma: float  # residual (seed) sd of one run
    notes: list[str] = field(default_factory=list)
    design: Design | None = None
    alpha: float = ALPHA  # of the verdicts' simultaneous intervals

    @property
    def confidence(self) -> str:
        """The level of the verdicts' intervals, as printed (:func:`confidence`)."""
        return confidence(self.alpha)

    @property
    def observational(self) -> bool:
        return self.kind == "observational"

    def describe(self) -> str:
        """One line on what was fitted."""
        if self.kind in ("single level", "none"):
            return self.notes[0] if self.notes else self.kind
        sd = f"{self.sigma:.4f}" if np.isfinite(self.sigma) else "-"
        what = f"{self.formula}, OLS; {self.runs} runs, {self.configs} configurations, residual df {self.df:g}, seed sd {sd}"
        if self.kind == "observational":
            what += " (observational: configurations are the units)"
        return what


def analyse(
    runs,
    level: str,
    *,
    metric: str = "score",
    factors: list[str] | None = None,
    grid: bool = True,
    delta: float = DELTA,
    alpha: float = ALPHA,
    rng: np.random.Generator | None = None,
    details: bool = True,
):
    """Compare the levels of column ``level`` on ``metric``.

    ``runs``: one row per finished, usable run with columns ``config``, ``seed_index``,
    ``metric`` and one level column per dimension (None where it does not apply).
    ``factors``: the other dimensions' level columns (to recognise a full grid); ``grid``:
    the configurations were enumerated (a grid), not chosen by a sampler. ``rng`` seeds
    P(best) (default: a generator seeded with :data:`STATS_SEED`);
    ``details=False`` leaves P(best), the seeds needed and the MCB p-values out (NaN / None),
    for callers that need only the verdicts (racing, simulations).
    """
    import pandas as pd

    rng = rng if rng is not None else np.random.default_rng(STATS_SEED)
    frame = runs[runs[level].notna() & np.isfinite(runs[metric].astype(float))].copy()
    frame[metric] = frame[metric].astype(float)
    frame["_level"] = frame[level].map(str)
    counts = frame.groupby("_level").size()
    all_levels = list(counts.index)
    tested = [lvl for lvl in all_levels if counts[lvl] >= 2]
    if not all_levels:
        return Analysis("none", "", pd.DataFrame(), [], 0, 0, 0.0, float("nan"), ["no finished run"])
    if len(all_levels) == 1:
        return _no_comparison(
            frame,
            all_levels,
            metric,
            "single level",
            f"one level ({all_levels[0]}): nothing to compare",
            alpha,
        )
    if len(tested) < 2:
        return _no_comparison(
            frame,
            all_levels,
            metric,
            "none",
            "fewer than two levels have two finished runs: nothing to compare",
            alpha,
        )
    sub = frame[frame["_level"].isin(tested)]
    design, notes = _design(sub, metric, [f for f in (factors or []) if f != level], grid)
    if design.df < 1:
        why = "no residual degrees of freedom: " + (
            "more configurations per level are needed"
            if design.kind == "observational"
            else "more seeds are needed"
        )
        return _no_comparison(
            frame, all_levels, metric, "none", why, alpha, untested_label="untested (no df)"
        )
    mean, s2, resid = _fit(design, sub, metric)
    sigma = _seed_sd(sub, metric) if design.kind == "observational" else math.sqrt(s2)
    judged = judge(design, mean[None], np.array([s2]), resid[None], delta, alpha)
    table = _table(frame, design, mean, s2, judged, sigma, delta, alpha, rng, details, all_levels, metric)
    best_set = [lvl for lvl, c in zip(design.levels, judged.code[0], strict=True) if c != CODE_WORSE]
    best_set.sort(key=lambda lvl: -float(mean[design.levels.index(lvl)]))
    return Analysis(design.kind, design.formula, table, best_set, len(sub), sub["config"].nunique(), design.df,
                    sigma, notes, design, alpha)  # fmt: skip


def _no_comparison(
    frame, all_levels, metric, kind: str, note: str, alpha: float = ALPHA, untested_label: str | None = None
):
    """Levels without a comparison: their means; levels with fewer than two runs untested, the others in
    the best set (the only candidate, so its observed best) or, without residual df, ``untested_label``."""
    import pandas as pd

    rows = []
    for lvl in all_levels:
        mine = frame[frame["_level"] == lvl]
        n = len(mine)
        if n < 2:
            verdict = untested(n)
        else:  # the only level with two runs is the best there is; without residual df nothing is
            verdict = untested_label or IN_SET
        rows.append({"level": lvl, "n": n, "configs": mine["config"].nunique(), "seeds": _seeds_text(mine),
                     "mean": float(mine[metric].mean()), "verdict": verdict,
                     "decided": OBSERVED_BEST if verdict == IN_SET else NOT_A_MEMBER,
                     "sd": float(mine[metric].std(ddof=1)) if n > 1 else np.nan})  # fmt: skip
    table = pd.DataFrame(rows).sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)
    best = [lvl for lvl, v in zip(table["level"], table["verdict"], strict=True) if v == IN_SET]
    return Analysis(kind, "", _fill(table), best, int(len(frame)), frame["config"].nunique(), 0.0,
                    float("nan"), [note], alpha=alpha)  # fmt: skip


def _fill(table):
    for col in ("se", "diff", "low", "high", "diff_best", "p_mcb", "p_best", "effect_sd", "spread_p"):
        if col not in table:
            table[col] = np.nan
    for col, default in (
        ("seeds_needed", None),
        ("decided", NOT_A_MEMBER),
        ("spread", "-"),
        ("flagged", False),
        ("own_variance", False),
    ):
        if col not in table:
            table[col] = default
    if "in_best_set" not in table:
        table["in_best_set"] = table["verdict"] == IN_SET
    table["in_best_set"] = table["in_best_set"].fillna(False).astype(bool)
    return table


def build_design(
    runs, level: str, *, metric: str = "score", factors: list[str] | None = None, grid: bool = True
):
    """The model :func:`analyse` fits to ``runs`` (every level already tested), for the batch path.

    Its observations are the rows of ``runs`` in order (observational: the configurations,
    in ``design.units`` order).
    """
    sub = runs.copy()
    sub["_level"] = sub[level].map(str)
    return _design(sub, metric, [f for f in (factors or []) if f != level], grid)[0]


def _design(sub, metric: str, factors: list[str], grid: bool):
    """The model for the runs of the tested levels (see the module docstring); (Design, notes)."""
    notes: list[str] = []
    vary = [f for f in factors if sub[f].notna().all() and sub[f].astype(str).nunique() > 1]
    partial = [f for f in factors if sub[f].notna().any() and not sub[f].notna().all()]
    facs = ["_level", *vary]
    cells = sub.groupby([sub[f].astype(str) for f in facs])["config"].nunique()
    full = len(cells) == int(np.prod([sub[f].astype(str).nunique() for f in facs]))
    one_per_cell = bool((cells == 1).all()) and not partial
    seeds = sorted(sub["seed_index"].unique())
    if full and one_per_cell and len(facs) > 1:
        return _factorial(sub, facs, seeds), notes
    if full and (one_per_cell or grid):
        d = _configuration_design(sub, facs, seeds)
        if d is None:
            notes.append("seed blocks are confounded with configurations here: seeds left out of the model")
            d = _configuration_design(sub, facs, seeds[:1])
        return d, notes
    return _observational(sub, metric), notes


def _dummies(values: np.ndarray, levels: list) -> np.ndarray:
    """Treatment coding: one indicator column per level but the first."""
    return (values[:, None] == np.array(levels, dtype=object)[None, 1:]).astype(float)


def _configuration_design(sub, facs, seeds):
    """score ~ C(config) + C(seed_index); a level = equal average over its cells, each over its configs."""
    configs = sorted(sub["config"].unique())
    C = len(configs)
    cols = [np.ones((len(sub), 1)), _dummies(sub["config"].to_numpy(dtype=object), configs)]
    if len(seeds) > 1:
        cols.append(_dummies(sub["seed_index"].to_numpy(dtype=object), seeds))
    X = np.hstack(cols)
    # A configuration's mean: its design row averaged over the seed levels.
    conf_rows = np.zeros((C, X.shape[1]))
    conf_rows[:, 0] = 1.0
    conf_rows[np.arange(1, C), np.arange(1, C)] = 1.0
    if len(seeds) > 1:
        conf_rows[:, C:] = 1.0 / len(seeds)
    firsts = sub.drop_duplicates("config").set_index("config")
    levels = sorted(sub["_level"].unique())
    L = np.zeros((len(levels), X.shape[1]))
    wsq = np.zeros(len(levels))
    for i, lvl in enumerate(levels):
        mine = firsts[firsts["_level"] == lvl]
        cells = mine.groupby([mine[f].astype(str) for f in facs]).groups
        for members in cells.values():
            for c in members:
                w = 1.0 / (len(cells) * len(members))
                L[i] += w * conf_rows[configs.index(c)]
                wsq[i] += w * w
    group = np.array([levels.index(v) for v in sub["_level"]])
    formula = "score ~ C(config)" + (" + C(seed_index)" if len(seeds) > 1 else "")
    d = Design(X, L, group, len(sub) - np.linalg.matrix_rank(X), "configuration", formula, levels, wsq, C,
               len(seeds) - 1)  # fmt: skip
    return d if d.estimable() else None


def _factorial(sub, facs, seeds):
    """Main effects of every varying dimension (+ two-way interactions when df allow) + C(seed_index)."""
    import itertools

    import pandas as pd

    levels = {f: sorted(sub[f].astype(str).unique()) for f in facs}

    def rows(frame, with_inter: bool) -> np.ndarray:
        main = {f: _dummies(frame[f].astype(str).to_numpy(dtype=object), levels[f]) for f in facs}
        blocks = [np.ones((len(frame), 1)), *main.values()]
        if with_inter:
            for a, b in itertools.combinations(facs, 2):
                blocks.append(np.einsum("ni,nj->nij", main[a], main[b]).reshape(len(frame), -1))
        return np.hstack(blocks)

    n, s = len(sub), len(seeds)
    with_inter = n - (rows(sub.iloc[:1], True).shape[1] + s - 1) >= MIN_DF
    seed_cols = _dummies(sub["seed_index"].to_numpy(dtype=object), seeds) if s > 1 else np.zeros((n, 0))
    X = np.hstack([rows(sub, with_inter), seed_cols])
    # Reference grid: every combination of the factors' levels, seeds averaged; a level's mean
    # is the average of the grid rows that have it (equal weight to the other levels).
    combos = pd.DataFrame(list(itertools.product(*[levels[f] for f in facs])), columns=facs)
    G = np.hstack([rows(combos, with_inter), np.full((len(combos), s - 1), 1.0 / s)])
    lv = levels["_level"]
    L = np.stack([G[(combos["_level"] == lvl).to_numpy()].mean(axis=0) for lvl in lv])
    wsq = np.array([1.0 / (combos["_level"] == lvl).sum() for lvl in lv])
    name = {f: ("level" if f == "_level" else f) for f in facs}
    terms = [f"C({name[f]})" for f in facs]
    if with_inter:
        terms += [f"C({name[a]}):C({name[b]})" for a, b in itertools.combinations(facs, 2)]
    if s > 1:
        terms.append("C(seed_index)")
    group = np.array([lv.index(v) for v in sub["_level"]])
    return Design(X, L, group, n - np.linalg.matrix_rank(X), "factorial", "score ~ " + " + ".join(terms), lv,
                  wsq, sub["config"].nunique(), s - 1)  # fmt: skip


def _observational(sub, metric):
    """The configuration is the unit: config_mean ~ C(level)."""
    confs = sub.groupby("config").agg(y=(metric, "mean"), lvl=("_level", "first"))
    levels = sorted(confs["lvl"].unique())
    X = np.hstack([np.ones((len(confs), 1)), _dummies(confs["lvl"].to_numpy(dtype=object), levels)])
    L = np.hstack([np.ones((len(levels), 1)), np.eye(len(levels))[:, 1:]])
    group = np.array([levels.index(v) for v in confs["lvl"]])
    wsq = np.array([1.0 / (group == i).sum() for i in range(len(levels))])
    return Design(X, L, group, len(confs) - np.linalg.matrix_rank(X), "observational", "config_mean ~ C(level)",
                  levels, wsq, len(confs), 0, confs)  # fmt: skip


def _fit(design: Design, sub, metric: str):
    """statsmodels OLS on the design: level means, residual variance, residuals."""
    from statsmodels.regression.linear_model import OLS

    y = design.units["y"].to_numpy() if design.kind == "observational" else sub[metric].to_numpy()
    res = OLS(y, design.X).fit()
    return design.L @ res.params, float(res.scale), np.asarray(res.resid)


def _seed_sd(sub, metric: str) -> float:
    """Residual sd of score ~ C(config) + C(seed_index) over the same runs (the seed noise of one run)."""
    from statsmodels.regression.linear_model import OLS

    configs = sorted(sub["config"].unique())
    seeds = sorted(sub["seed_index"].unique())
    X = np.hstack([np.ones((len(sub), 1)), _dummies(sub["config"].to_numpy(dtype=object), configs),
                   _dummies(sub["seed_index"].to_numpy(dtype=object), seeds)])  # fmt: skip
    df = len(sub) - np.linalg.matrix_rank(X)
    if df < 1:
        return float("nan")
    return float(math.sqrt(OLS(sub[metric].to_numpy(), X).fit().scale))


def _seeds_text(rows) -> str:
    per = rows.groupby("config").size()
    lo, hi = int(per.min()), int(per.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _table(frame, design, mean, s2, judged, sigma, delta, alpha, rng, details, all_levels, metric):
    import pandas as pd

    order = design.levels
    k = len(order)
    cov = judged.cov[0]
    best = int(np.argmax(mean))
    diff_best = mean - mean[best]
    p_mcb = mcb_pvalues(mean, pairwise_se(cov), judged.df_pair[0]) if details else np.full(k, np.nan)
    pb = p_best(mean, cov, float(np.min(judged.df_pair[0])), rng) if details else np.full(k, np.nan)
    needed = seeds_needed(design, mean, sigma, delta, alpha, judged.code[0]) if details else [None] * k
    rows = []
    for i, lvl in enumerate(order):
        mine = frame[frame["_level"] == lvl]
        flagged, wide = bool(judged.flagged[0, i]), bool(judged.widened[0, i])
        sp = judged.spread_p[0, i]
        if wide:
            spread = f"own variance (sd {math.sqrt(cov[i, i] / design.W[i, i]):.4f} vs {math.sqrt(s2):.4f})"
        elif flagged:
            spread = "smaller than the others' (flagged; pooled variance kept)"
        else:
            spread = "ok" if judged.checked[i] else f"< {SPREAD_MIN_RUNS} runs: not checked"
        rows.append({
            "level": lvl, "n": len(mine), "configs": mine["config"].nunique(), "seeds": _seeds_text(mine),
            "mean": float(mean[i]), "se": float(math.sqrt(cov[i, i])),
            "diff": float(diff_best[i]), "low": float(judged.lower[0, i]), "high": float(judged.upper[0, i]),
            "diff_best": float(diff_best[i]), "p_mcb": float(p_mcb[i]),
            "p_best": float(pb[i]), "effect_sd": float(diff_best[i] / sigma) if sigma > 0 else np.nan,
            "in_best_set": bool(judged.code[0, i] != CODE_WORSE), "verdict": VERDICT_CODES[judged.code[0, i]],
            "decided": DECIDED_CODES[judged.code[0, i]], "seeds_needed": needed[i], "spread": spread, "spread_p": float(sp), "flagged": flagged,
            "own_variance": wide,
        })  # fmt: skip
    for lvl in all_levels:
        if lvl in order:
            continue
        mine = frame[frame["_level"] == lvl]
        rows.append({"level": lvl, "n": len(mine), "configs": mine["config"].nunique(), "seeds": _seeds_text(mine),
                     "mean": float(mine[metric].mean()), "verdict": untested(len(mine)), "decided": NOT_A_MEMBER, "in_best_set": False})  # fmt: skip
    table = _fill(pd.DataFrame(rows))
    needed = [None if _missing(v) else (int(v) if isinstance(v, float) else v) for v in table["seeds_needed"]]
    table["seeds_needed"] = pd.Series(needed, index=table.index, dtype=object)  # whole numbers or "> 100"
    return table.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# --------------------------------------------------------------------------- beside the verdicts


def mcb_pvalues(mean: np.ndarray, se: np.ndarray, df_pair: np.ndarray) -> np.ndarray:
    """Per level, the smallest alpha at which its MCB interval would lie below 0 (a ``worse`` verdict).

    The verdict's own test, adjusted as the intervals are: upper_i <= 0 exactly when some j has
    (m_j - m_i) / se_ij >= q(alpha), q the Tukey-Kramer value at the pair's df, so the p-value is
    min_j P(Q > sqrt(2) (m_j - m_i) / se_ij) with Q studentized range (scipy), k means, the pair's
    df (rounded down, as the critical values). p <= alpha if and only if the verdict is ``worse``;
    the observed best gets 1. Not a test against the observed best: that one picks the best after
    looking and makes no allowance for it.
    """
    from scipy import stats

    k = len(mean)
    out = np.ones(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mean[None, :] - mean[:, None]) / se  # t[i, j]: how far j lies above i
    t[np.eye(k, dtype=bool) | ~np.isfinite(t)] = -np.inf
    df = np.where(np.isfinite(df_pair), np.floor(np.maximum(df_pair, 1.0)), np.inf)
    for i in range(k):
        for d in np.unique(df[i][t[i] > 0]):  # one scipy call per distinct df: the largest t there
            top = float(t[i][(df[i] == d) & (t[i] > 0)].max())
            out[i] = min(out[i], float(stats.studentized_range.sf(math.sqrt(2) * top, k, min(d, 1e5))))
    return out


def p_best(mean: np.ndarray, cov: np.ndarray, df: float, rng: np.random.Generator, draws: int = PBEST_DRAWS):
    """Share of draws from the fitted sampling distribution (multivariate t) in which each level is the max."""
    from scipy import stats

    k = len(mean)
    if k == 1:
        return np.ones(1)
    jitter = 1e-15 * np.eye(k) * max(1e-300, float(np.trace(cov)))
    sample = stats.multivariate_t(loc=mean, shape=cov + jitter, df=max(1.0, df), allow_singular=True).rvs(
        size=draws, random_state=rng
    )
    wins = np.bincount(np.argmax(sample.reshape(draws, k), axis=1), minlength=k)
    return wins / draws


def seeds_needed(
    design: Design,
    mean: np.ndarray,
    sigma: float,
    delta: float = DELTA,
    alpha: float = ALPHA,
    code: np.ndarray | None = None,
    power: float = POWER,
) -> list[int | str | None]:
    """Seeds per configuration that would decide each undecided best-set member (worse or equivalent) at ``power``.

    The planning truth is the fitted means with the fitted residual sd; the design is the
    current one with every configuration at n seeds (balanced and seed-blocked: a level's
    mean has variance sigma^2 * wsq / n, the residual df are n * configurations - the
    model's other parameters - (n - 1)). Level i is decided against its strongest rival j
    (the largest other mean): ``worse`` when (m_j - m_i) / se >= q, ``equivalent`` when
    (m_i - m_j + delta) / se >= q, q the Tukey-Kramer value at those df. With the residual sd
    estimated, each is a noncentral t probability (scipy.stats.nct), exact for that pair: the
    normal approximation, or a simulation's noise in the search, gave figures short of the
    promised power (78.5% measured). The other rivals can only add ways to be called worse, so
    the figure errs towards more seeds. The spread check is left out (the plan assumes one
    variance). None for levels that are decided, ``"> 100"`` when :data:`MAX_SEEDS` seeds are
    not enough, and None throughout for an observational comparison (there more
    configurations, not seeds, would help).
    """
    from scipy import stats

    k = len(mean)
    code = np.full(k, CODE_UNDECIDED) if code is None else np.asarray(code)
    out: list[int | str | None] = [None] * k
    open_levels = [i for i in range(k) if code[i] == CODE_UNDECIDED]
    if not open_levels or design.kind == "observational" or not (sigma > 0):
        return out
    other_params = len(design.group) - design.df - design.seed_columns

    def chance(i: int, n: int) -> float:
        j = max((x for x in range(k) if x != i), key=lambda x: mean[x])
        df = max(1.0, n * design.configs - other_params - (n - 1))
        q = tukey_critical_value(k, df, alpha)
        se = sigma * math.sqrt((design.wsq[i] + design.wsq[j]) / n)
        worse = stats.nct.sf(q, df, (mean[j] - mean[i]) / se)
        equivalent = stats.nct.sf(q, df, (mean[i] - mean[j] + delta) / se)
        return float(min(1.0, worse + equivalent))

    for i in open_levels:
        if chance(i, MAX_SEEDS) < power:
            out[i] = f"> {MAX_SEEDS}"
            continue
        lo, hi = design.seeds_now, MAX_SEEDS  # the smallest n in (lo, hi] with the power
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if chance(i, mid) >= power:
                hi = mid
            else:
                lo = mid
        out[i] = hi
    return out


# --------------------------------------------------------------------------- evaluation-set noise


def bootstrap_scores(
    preds: dict[str, np.ndarray],
    golds: dict[str, np.ndarray],
    draws: int = 200,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Paired bootstrap over evaluation examples: each task's score of every run on resampled examples.

    ``preds[task]`` (R, n): run r's prediction for each example (every run on the same
    examples, in the same order); ``golds[task]`` (n,). The same resampled examples are used
    for every run (paired), drawn as multinomial counts from ``rng``. Returns, per task,
    a (draws, R) array of scores (accuracy or Pearson r, as the task's metric).
    """
    from mtsearch.tasks import TASKS

    rng = rng if rng is not None else np.random.default_rng(STATS_SEED)
    out = {}
    for task, P in preds.items():
        P = np.asarray(P, dtype=float)
        g = np.asarray(golds[task], dtype=float)
        n = len(g)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(float)  # (draws, n)
        if TASKS[task].metric == "accuracy":
            out[task] = (w @ (P == g[None]).T.astype(float)) / n
            continue
        sw = w.sum(axis=1, keepdims=True)
        mx = (w @ P.T) / sw
        my = (w @ g) / sw[:, 0]
        cxx = (w @ (P**2).T) / sw - mx**2
        cyy = (w @ g**2) / sw[:, 0] - my**2
        cxy = (w @ (P * g[None]).T) / sw - mx * my[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = cxy / np.sqrt(cxx * cyy[:, None])
        out[task] = np.where(np.isfinite(r), r, 0.0)  # a constant predictor scores 0, as tasks.pearson
    return out


def combine_overall(per_task: dict[str, np.ndarray]) -> np.ndarray:
    """The overall score of :func:`mtsearch.tasks.overall_score`, element-wise over arrays."""
    from mtsearch.tasks import TASKS

    parts = [
        (v + 1) / 2 if TASKS[t].metric == "pearson" else v for t, v in per_task.items() if TASKS[t].in_overall
    ]
    return np.mean(parts, axis=0)


def eval_noise(boot: np.ndarray, level_of_run: np.ndarray, levels: list[str], best: str) -> dict[str, Any]:
    """Evaluation-set sd of each level's mean score and of its difference from ``best`` (paired).

    ``boot`` (draws, R) scores of the runs on resampled examples; ``level_of_run`` (R,) the
    level of each run.
    """
    means = np.stack([boot[:, level_of_run == lvl].mean(axis=1) for lvl in levels], axis=1)
    b = levels.index(best)
    return {
        "level_sd": dict(zip(levels, means.std(axis=0, ddof=1).tolist(), strict=True)),
        "diff_sd": dict(zip(levels, (means - means[:, [b]]).std(axis=0, ddof=1).tolist(), strict=True)),
    }
