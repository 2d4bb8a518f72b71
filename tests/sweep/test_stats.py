"""sweep/stats.py on fixtures: the fit against independent ones, the intervals by hand, each verdict's rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps

from mtsearch.sweep import stats
from mtsearch.tasks import pearson


def runs_frame(scores: dict[str, list[float]], **extra) -> pd.DataFrame:
    """One configuration per level; seed index = position in the list (None: that run is missing)."""
    rows = []
    for lvl, vals in scores.items():
        for s, v in enumerate(vals):
            if v is not None:
                rows.append({"config": f"cfg-{lvl}", "dim": lvl, "seed_index": s, "score": v, **extra})
    return pd.DataFrame(rows)


#: unbalanced: 'c' raced on to 4 seeds, 'd' lost seed 1; seed 0 is a good seed for everyone
UNBALANCED = {
    "a": [0.61, 0.57, 0.59],
    "b": [0.60, 0.55, 0.58],
    "c": [0.64, 0.60, 0.62, 0.615],
    "d": [0.55, None, 0.52],
    "e": [0.50, 0.47, 0.49],
}


def emm_from_formula(frame: pd.DataFrame, formula: str, factor: str, other: list[str]) -> tuple[dict, float]:
    """Independent fit: statsmodels' formula interface, predictions on the full reference grid averaged per level."""
    import itertools

    fit = smf.ols(formula, data=frame).fit()
    levels = {c: sorted(frame[c].unique()) for c in [factor, *other]}
    grid = pd.DataFrame(list(itertools.product(*levels.values())), columns=list(levels))
    grid["pred"] = fit.predict(grid)
    return grid.groupby(factor)["pred"].mean().to_dict(), math.sqrt(fit.scale)


def test_fitted_means_and_seed_sd_match_the_formula_fit_on_an_unbalanced_blocked_fixture():
    frame = runs_frame(UNBALANCED)
    a = stats.analyse(frame, "dim", details=False)
    assert a.kind == "configuration" and a.formula == "score ~ C(config) + C(seed_index)"
    emm, sd = emm_from_formula(frame.assign(seed_index=frame["seed_index"].astype(str)),
                               "score ~ C(config) + C(seed_index)", "config", ["seed_index"])  # fmt: skip
    got = dict(zip(a.table["level"], a.table["mean"], strict=True))
    assert got == pytest.approx({k.removeprefix("cfg-"): v for k, v in emm.items()}, abs=1e-12)
    assert a.sigma == pytest.approx(sd, rel=1e-12)
    assert a.df == 15 - 5 - 3  # 15 runs, 5 configurations, 4 seed indices
    # the blocked mean of 'd' is not its raw mean: seed 1 (a bad seed) is missing, and the model knows it
    d = a.table.set_index("level").loc["d"]
    assert d["mean"] < np.mean([0.55, 0.52])


def test_factorial_means_average_the_other_dimension_equally_and_match_the_formula_fit():
    rng = np.random.default_rng(0)
    rows = []
    for pool in ("cls", "mean"):
        for head in ("linear", "mlp", "deep"):
            for s in range(2):
                score = (
                    0.5 + 0.02 * (pool == "mean") + 0.01 * (head == "mlp") + 0.01 * s + rng.normal(0, 0.003)
                )
                rows.append(
                    {"config": f"{pool}-{head}", "pool": pool, "head": head, "seed_index": s, "score": score}
                )
    frame = pd.DataFrame(rows)
    a = stats.analyse(frame, "pool", factors=["pool", "head"], details=False)
    assert a.kind == "factorial"
    assert a.formula == "score ~ C(level) + C(head) + C(level):C(head) + C(seed_index)"
    f = frame.assign(seed_index=frame["seed_index"].astype(str))
    emm, sd = emm_from_formula(f, "score ~ C(pool) * C(head) + C(seed_index)", "pool", ["head", "seed_index"])
    assert dict(zip(a.table["level"], a.table["mean"], strict=True)) == pytest.approx(emm, abs=1e-12)
    assert a.sigma == pytest.approx(sd, rel=1e-12)
    # balanced: a level's mean is the plain mean of its runs
    assert emm["mean"] == pytest.approx(frame.loc[frame["pool"] == "mean", "score"].mean(), abs=1e-12)
    heads = stats.analyse(frame, "head", factors=["pool", "head"], details=False)
    assert heads.table.iloc[0]["level"] == "mlp"


def balanced(k: int = 5, seeds: int = 4, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    effects = np.linspace(0, -0.03, k)
    blocks = rng.normal(0, 0.01, seeds)
    return runs_frame(
        {f"l{i}": list(0.6 + effects[i] + blocks + rng.normal(0, 0.006, seeds)) for i in range(k)}
    )


def test_intervals_by_hand_from_the_ols_residual_variance():
    frame = balanced()
    a = stats.analyse(frame, "dim", details=False)
    k, S = 5, 4
    df = (k - 1) * (S - 1)
    # residual variance of the two-way additive model, by hand
    y = frame.pivot(index="dim", columns="seed_index", values="score").to_numpy()
    r = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    s = math.sqrt((r**2).sum() / df)
    assert a.sigma == pytest.approx(s, rel=1e-10)
    q = sps.studentized_range.ppf(0.95, k, df) / math.sqrt(2)
    half = q * s * math.sqrt(2 / S)
    m = dict(zip(frame["dim"].unique(), y.mean(1), strict=True))
    for _, row in a.table.iterrows():
        others = [v for lvl, v in m.items() if lvl != row["level"]]
        assert row["mean"] == pytest.approx(m[row["level"]], abs=1e-12)
        assert row["high"] == pytest.approx(m[row["level"]] - max(others) + half, abs=1e-10)
        assert row["low"] == pytest.approx(m[row["level"]] - max(others) - half, abs=1e-10)
        assert row["verdict"] == ("worse" if row["high"] <= 0 else row["verdict"])


def test_the_all_pairwise_critical_value_is_scipys_tukey_hsd():
    rng = np.random.default_rng(4)
    groups = [rng.normal(m, 1.0, 6) for m in (0.0, 0.3, 0.5, 1.4)]
    ci = sps.tukey_hsd(*groups).confidence_interval(0.95)
    s = math.sqrt(np.mean([g.var(ddof=1) for g in groups]))
    half = (ci.high[0, 1] - ci.low[0, 1]) / 2
    assert stats.tukey_critical_value(4, 20) * s * math.sqrt(2 / 6) == pytest.approx(half, rel=1e-6)


def test_hsus_constrained_critical_value_is_scipys_dunnett_on_a_balanced_case():
    rng = np.random.default_rng(2)
    n, k = 5, 6
    groups = [rng.normal(0, 1, n) for _ in range(k)]
    res = sps.dunnett(*groups[1:], control=groups[0], alternative="greater", rng=np.random.default_rng(3))
    low = res.confidence_interval(0.95).low
    diff = np.array([g.mean() for g in groups[1:]]) - groups[0].mean()
    s = math.sqrt(np.mean([g.var(ddof=1) for g in groups]))
    scipy_d = (diff - low) / (s * math.sqrt(2 / n))
    cov = np.eye(k) * s**2 / n
    ours = stats.dunnett_critical_values(cov, k * (n - 1))
    assert ours == pytest.approx(np.full(k, scipy_d[0]), rel=2e-3)
    assert scipy_d == pytest.approx(scipy_d[0])
    # constrained MCB by hand: upper_i = max(0, m_i - max_{j != i} m_j + d se)
    m = np.array([g.mean() for g in groups])
    lower, upper, d = stats.constrained_mcb(m, cov, k * (n - 1))
    se = s * math.sqrt(2 / n)
    for i in range(k):
        assert upper[i] == pytest.approx(max(0.0, m[i] - np.delete(m, i).max() + d[i] * se))
    assert (lower <= 0).all() and (upper >= 0).all()


def test_the_mcb_pvalue_is_the_smallest_alpha_at_which_the_interval_lies_below_zero():
    frame = balanced(k=4, seeds=3, seed=5)
    a = stats.analyse(frame, "dim")  # the p-values are details
    t = a.table.set_index("level")
    best = t.index[0]
    assert t.loc[best, "p_mcb"] == 1.0 and t.loc[best, "diff"] == 0.0
    # by hand: the largest gap to a level above, in se units, on the studentized range
    se = t["se"].iloc[0] * math.sqrt(2)  # balanced, uncorrelated means
    for lvl in t.index[1:]:
        gap = (t["mean"].max() - t.loc[lvl, "mean"]) / se
        assert t.loc[lvl, "p_mcb"] == pytest.approx(sps.studentized_range.sf(math.sqrt(2) * gap, 4, a.df))
        # re-judged at that level (a hair either side), the interval's upper bound crosses 0 there
        for alpha, worse in ((t.loc[lvl, "p_mcb"] * 1.001, True), (t.loc[lvl, "p_mcb"] * 0.999, False)):
            again = stats.analyse(frame, "dim", alpha=alpha, details=False).table.set_index("level")
            assert (again.loc[lvl, "verdict"] == stats.WORSE) == worse, (lvl, alpha)
    # p <= 5% exactly where the verdict is worse
    assert ((t["p_mcb"] <= 0.05) == (t["verdict"] == stats.WORSE)).all()
    # without details (racing, simulations) the verdicts are the same and the p-values left out
    lean = stats.analyse(frame, "dim", details=False).table
    assert lean["verdict"].tolist() == a.table["verdict"].tolist() and lean["p_mcb"].isna().all()


def test_the_batched_holm_adjustment_is_statsmodels_holm_row_by_row(monkeypatch):
    import gc

    from statsmodels.stats.multitest import multipletests

    # statsmodels' Holm ends with gc.collect(), up to a second per call in a process that holds torch
    # and the suite's objects; it changes no value, so the reference skips it.
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, (40, 6)) ** 3  # many small p-values: some rows reject, some not
    p[0] = [0.01, 0.01, 0.5, 1.0, 0.02, 0.01]  # ties and a 1
    got = stats.holm_batch(p)
    want = np.stack([multipletests(row, method="holm")[1] for row in p])
    assert np.allclose(got, want, rtol=0, atol=1e-15)


def test_each_verdict_has_its_rule():
    # residual sd 0.002 over 6 shared seeds: MCB half-width 0.0033, against delta 0.005
    noise = np.array([0.002, -0.002, 0.001, -0.001, 0.0015, -0.0015])
    blocks = np.array([0.004, 0, -0.002, 0.001, 0.003, -0.001])

    def seeds(mean: float, phase: int) -> list[float]:
        return list(mean + np.roll(noise, phase) + blocks)

    frame = runs_frame({
        "best": seeds(0.700, 0),
        "twin": seeds(0.6995, 1),  # 0.0005 below: within delta with 95% confidence
        "close": seeds(0.6975, 2),  # 0.0025 below: maybe the best, maybe more than delta below
        "bad": seeds(0.600, 3),
        "once": [0.99],  # one run: the highest mean, and never compared
    })  # fmt: skip
    a = stats.analyse(frame, "dim", delta=0.005)
    v = dict(zip(a.table["level"], a.table["verdict"], strict=True))
    assert v == {"best": "in best set", "twin": "in best set", "close": "in best set", "bad": "worse",
                 "once": "untested (n=1)"}  # fmt: skip
    decided = dict(zip(a.table["level"], a.table["decided"], strict=True))
    assert decided == {
        "best": "observed best",
        "twin": "equivalent",
        "close": "undecided",
        "bad": "-",
        "once": "-",
    }
    t = a.table.set_index("level")
    assert t.loc["twin", "low"] >= -0.005 and t.loc["close", "low"] < -0.005 and t.loc["bad", "high"] <= 0
    assert a.best_set == ["best", "twin", "close"]
    # an untested level is shown, first by mean here, with no interval and never compared
    assert (
        a.table.iloc[0]["level"] == "once"
        and np.isnan(t.loc["once", "low"])
        and not t.loc["once", "in_best_set"]
    )
    assert isinstance(t.loc["close", "seeds_needed"], int | str) and t.loc["bad", "seeds_needed"] is None
    assert t.loc["best", "p_best"] + t.loc["twin", "p_best"] + t.loc["close", "p_best"] == pytest.approx(1.0)
    assert t.loc["bad", "p_best"] == 0.0
    assert t.loc["bad", "effect_sd"] == pytest.approx(t.loc["bad", "diff"] / a.sigma)


def test_every_mcb_best_set_member_is_in_best_set_and_the_undecided_ones_say_so():
    """The verdict is Hsu's best set (upper bound > 0), nothing else; ``decided`` is a separate column."""
    rng = np.random.default_rng(21)
    seen: set[str] = set()
    for _ in range(30):  # 6 levels x 3 shared seeds, truths from ties to far apart: every standing shows up
        truth = -np.sort(rng.exponential(rng.choice([0.001, 0.004, 0.02]), 6))
        blocks = rng.normal(0, 0.003, 3)
        frame = runs_frame({f"l{i}": list(m + blocks + rng.normal(0, 0.002, 3)) for i, m in enumerate(truth)})
        a = stats.analyse(frame, "dim", delta=0.005, details=False)
        t = a.table.set_index("level")
        member = t["high"] > 0
        assert (t["verdict"] == np.where(member, stats.IN_SET, stats.WORSE)).all()
        assert t["in_best_set"].tolist() == member.tolist() and set(a.best_set) == set(t.index[member])
        best = t["mean"].idxmax()
        rivals = member & (t.index != best)
        assert t.loc[best, "decided"] == stats.OBSERVED_BEST
        assert (t.loc[rivals, "decided"] == np.where(t.loc[rivals, "low"] >= -0.005, stats.EQUIVALENT,
                                                     stats.UNDECIDED)).all()  # fmt: skip
        assert (t.loc[~member, "decided"] == stats.NOT_A_MEMBER).all()
        seen |= set(t["decided"])
    assert seen == {stats.OBSERVED_BEST, stats.EQUIVALENT, stats.UNDECIDED, stats.NOT_A_MEMBER}


def test_the_printed_level_is_the_alpha_used():
    assert stats.confidence(0.05) == "95%" and stats.confidence(0.04) == "96%"
    a = stats.analyse(runs_frame({"a": [0.5, 0.52], "b": [0.49, 0.5]}), "dim", alpha=0.04, details=False)
    one = stats.analyse(runs_frame({"a": [0.5, 0.52]}), "dim", alpha=0.04)
    assert a.confidence == one.confidence == "96%"


def test_p_best_is_reproducible_with_its_generator():
    frame = balanced(k=3, seeds=3)
    one = stats.analyse(frame, "dim", rng=np.random.default_rng(9)).table["p_best"]
    two = stats.analyse(frame, "dim", rng=np.random.default_rng(9)).table["p_best"]
    assert one.tolist() == two.tolist() and one.sum() == pytest.approx(1.0)


def test_a_single_level_and_levels_without_two_runs():
    one = stats.analyse(runs_frame({"30": [0.5, 0.52]}), "dim")
    assert one.kind == "single level" and one.notes == ["one level (30): nothing to compare"]
    assert one.table["verdict"].tolist() == ["in best set"]
    thin = stats.analyse(runs_frame({"a": [0.5], "b": [0.6, 0.61]}), "dim")
    assert thin.kind == "none" and set(thin.table["verdict"]) == {"untested (n=1)", "in best set"}


def test_sampled_configurations_are_compared_as_units_and_said_to_be_observational():
    rng = np.random.default_rng(3)
    rows = []
    for c in range(12):
        pool = ["cls", "mean"][c % 2]
        lr = float(10 ** rng.uniform(-5, -3))
        for s in range(2):
            rows.append({"config": f"t{c}", "pool": pool, "lr": lr, "seed_index": s,
                         "score": 0.5 + 0.03 * (pool == "mean") + rng.normal(0, 0.01)})  # fmt: skip
    frame = pd.DataFrame(rows)
    a = stats.analyse(frame, "pool", factors=["pool", "lr"], grid=False)
    assert a.kind == "observational" and a.observational and "observational" in a.describe()
    assert a.formula == "config_mean ~ C(level)" and a.df == 12 - 2 and a.configs == 12
    means = (
        frame.groupby("config").agg(y=("score", "mean"), pool=("pool", "first")).groupby("pool")["y"].mean()
    )
    assert dict(zip(a.table["level"], a.table["mean"], strict=True)) == pytest.approx(means.to_dict())
    assert a.table["seeds_needed"].isna().all()  # more configurations would help, not seeds


def test_paired_bootstrap_scores_are_the_tasks_metrics_on_resampled_examples():
    rng = np.random.default_rng(0)
    golds = {"sst": rng.integers(0, 5, 60).astype(float), "sts": rng.uniform(0, 5, 60)}
    preds = {"sst": np.stack([np.where(rng.random(60) < 0.6, golds["sst"], 0.0) for _ in range(3)]),
             "sts": np.stack([golds["sts"] + rng.normal(0, s, 60) for s in (0.5, 1.0, 2.0)])}  # fmt: skip
    boot = stats.bootstrap_scores(preds, golds, draws=50, rng=np.random.default_rng(1))
    assert boot["sst"].shape == (50, 3)
    # draw 0 by hand: the same multinomial counts, examples repeated
    counts = np.random.default_rng(1).multinomial(60, np.full(60, 1 / 60))
    idx = np.repeat(np.arange(60), counts)
    assert boot["sst"][0, 1] == pytest.approx(np.mean(preds["sst"][1, idx] == golds["sst"][idx]))
    # (sts draws come after sst's from the same generator: check the mean behaviour instead)
    assert boot["sts"].mean(axis=0) == pytest.approx(
        [pearson(preds["sts"][r], golds["sts"]) for r in range(3)], abs=0.03
    )
    overall = stats.combine_overall({"sst": boot["sst"], "sts": boot["sts"]})
    assert overall[0, 0] == pytest.approx((boot["sst"][0, 0] + (boot["sts"][0, 0] + 1) / 2) / 2)
    noise = stats.eval_noise(overall, np.array(["x", "x", "y"]), ["x", "y"], "x")
    assert noise["diff_sd"]["x"] == 0.0 and noise["level_sd"]["y"] > 0
