"""The racing policy: which configurations get the next seed, when the race stops, and replaying after a crash."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtsearch.sweep import racing
from mtsearch.sweep.racing import RaceSpec, decide

# The rules other than futility, each on its own: the futility stop (tested below) would end some
# of these races among near-ties earlier.
SPEC = RaceSpec(min=2, max=6, delta=0.005, futility=0)


def run(config: str, k: int, score: float | None, status: str = "finished") -> dict:
    return {"config_hash": config, "seed_index": k, "seed": 1000 + k, "status": status, "score": score,
            "error": "RuntimeError: boom" if status == "failed" else None, "pruned_config": status == "pruned"}  # fmt: skip


class Sweep:
    """Runs a race against a known truth: each decision's runs are 'trained' (drawn) and appended."""

    def __init__(self, truth: dict[str, float], sigma: float = 0.01, seed: int = 0):
        self.truth, self.sigma = truth, sigma
        self.rng = np.random.default_rng(seed)
        self.blocks: dict[int, float] = {}
        self.rows: list[dict] = []

    def train(self, configs, k: int) -> None:
        block = self.blocks.setdefault(k, float(self.rng.normal(0, self.sigma)))  # shared by seed index k
        for c in configs:
            self.rows.append(run(c, k, self.truth[c] + block + float(self.rng.normal(0, self.sigma))))

    def race(self, spec: RaceSpec) -> racing.RaceDecision:
        if not self.rows:
            assert decide(pd.DataFrame(), spec).next_seed_index == 0
            self.train(list(self.truth), 0)
        for _ in range(100):
            d = decide(pd.DataFrame(self.rows), spec)
            if d.stop:
                return d
            assert d.extend, d
            self.train(d.extend, d.next_seed_index)
        raise AssertionError("the race never stopped")


def test_first_seeds_then_only_the_best_set_gets_the_next_seed_index():
    sweep = Sweep({"a": 0.60, "b": 0.598, "c": 0.50, "d": 0.45})
    sweep.train(["a", "b", "c", "d"], 0)
    d = decide(pd.DataFrame(sweep.rows), SPEC)
    assert (d.extend, d.next_seed_index, d.reason, d.stop) == (
        ["a", "b", "c", "d"],
        1,
        racing.FIRST_SEEDS,
        False,
    )
    sweep.train(d.extend, 1)
    d = decide(pd.DataFrame(sweep.rows), SPEC)
    assert d.reason == racing.EXTEND and d.next_seed_index == 2 and set(d.extend) == {"a", "b"}
    assert d.why["c"].startswith("out after 2 seeds") and "seed index 2 next" in d.why["a"]
    final = sweep.race(SPEC)
    per = pd.DataFrame(sweep.rows).groupby("config_hash").size().to_dict()
    assert per["c"] == per["d"] == 2 and per["a"] == per["b"] > 2
    assert final.stop and final.reason in (racing.MAX_SEEDS, racing.ONE_MEMBER)


def test_the_race_stops_when_one_member_is_left():
    sweep = Sweep({"a": 0.60, "b": 0.58, "c": 0.50}, sigma=0.004, seed=1)
    d = sweep.race(SPEC)
    assert d.reason == racing.ONE_MEMBER and d.best_set == ["a"]
    assert set(pd.DataFrame(sweep.rows)["seed_index"]) <= set(range(SPEC.max))


def test_the_race_stops_when_every_member_is_within_delta():
    sweep = Sweep({"a": 0.60, "b": 0.6, "c": 0.50}, sigma=0.0008, seed=2)
    d = sweep.race(RaceSpec(min=2, max=10, delta=0.005))
    assert d.reason == racing.WITHIN_DELTA and set(d.best_set) == {"a", "b"}
    assert "within delta" in d.why["b"] or "within delta" in d.why["a"]


def test_the_race_stops_at_max_seeds_and_at_the_budget():
    truth = {"a": 0.60, "b": 0.60, "c": 0.40}
    d = Sweep(truth, sigma=0.01, seed=3).race(RaceSpec(min=2, max=4, delta=0.0001, futility=0))
    assert d.reason == racing.MAX_SEEDS
    sweep = Sweep(truth, sigma=0.01, seed=3)
    d = sweep.race(RaceSpec(min=2, max=10, delta=0.0001, budget=9, futility=0))
    assert d.reason == racing.BUDGET and len(sweep.rows) <= 9


def test_after_a_crash_the_round_is_replayed_and_only_the_missing_runs_are_asked_for():
    sweep = Sweep({"a": 0.60, "b": 0.598, "c": 0.40, "d": 0.30}, seed=4)  # c, d: far below at 2 seeds
    sweep.train(["a", "b", "c", "d"], 0)
    sweep.train(["a", "b", "c", "d"], 1)
    d = decide(pd.DataFrame(sweep.rows), SPEC)
    assert set(d.extend) == {"a", "b"}
    sweep.train(["a"], 2)  # the worker crashed before b's seed 2
    again = decide(pd.DataFrame(sweep.rows).sample(frac=1, random_state=0), SPEC)  # any row order
    assert (again.extend, again.next_seed_index) == (["b"], 2)
    # a run that is still going (no final status): nobody starts the next round yet
    rows = [*sweep.rows, run("b", 2, None, status="running")]
    assert decide(pd.DataFrame(rows), SPEC).reason == racing.WAITING


def test_pruned_and_failed_runs():
    rows = [run("a", 0, 0.60), run("a", 1, 0.61), run("b", 0, 0.59), run("b", 1, None, "pruned"),
            run("c", 0, 0.40), run("c", 1, None, "failed"), run("e", 0, 0.30), run("e", 1, 0.31)]  # fmt: skip
    d = decide(pd.DataFrame(rows), SPEC)
    assert "b" not in d.extend and d.why["b"].startswith("pruned")
    assert d.why["c"].startswith("out after 2 seeds: fewer than two finished runs")
    assert d.reason == racing.ONE_MEMBER or "a" in d.extend


def test_spec_from_a_space_description():
    assert RaceSpec.from_space({"seeds": {"min": 3, "max": 8}, "delta": 0.01}) == RaceSpec(3, 8, 0.01)
    assert RaceSpec.from_space({"seeds": 2}) == RaceSpec(2, 2)
    with pytest.raises(ValueError, match="min <= max"):
        RaceSpec(min=5, max=3)
    with pytest.raises(ValueError, match="futility"):
        RaceSpec(futility=1.0)
    # fixed seeds: after them the race is over at once
    rows = [run(c, k, 0.5 + 0.01 * k) for c in "ab" for k in range(2)]
    assert decide(pd.DataFrame(rows), RaceSpec.from_space({"seeds": 2})).stop


def test_the_runner_passes_its_space_and_gets_the_same_decision(tmp_path):
    """sweep/runner.py calls decide(runs, space): seeds is the minimum, max_seeds the maximum."""
    from pathlib import Path

    from mtsearch.sweep.space import load_space

    root = Path(__file__).resolve().parents[2]
    text = (root / "search_spaces" / "smoke.yaml").read_text().replace("seeds: 2", "seeds: {min: 2, max: 6}")
    (tmp_path / "raced.yaml").write_text(text.replace("name: smoke", "name: raced"))
    space = load_space(str(tmp_path / "raced.yaml"))
    assert RaceSpec.of(space) == RaceSpec(2, 6)
    # what sweep.json records (seeds the minimum, max_seeds beside it): results judge at the final level
    assert RaceSpec.from_space(space.describe()) == RaceSpec(2, 6)
    assert racing.verdict_alpha(space.describe()) == RaceSpec(2, 6).final_alpha == pytest.approx(0.04)
    sweep = Sweep({"a": 0.60, "b": 0.598, "c": 0.50, "d": 0.45})
    for k in range(2):
        sweep.train(["a", "b", "c", "d"], k)
    runs = pd.DataFrame(sweep.rows)
    assert decide(runs, space) == decide(runs, RaceSpec(2, 6))
    assert RaceSpec.of({"seeds": {"min": 3, "max": 8}}) == RaceSpec(3, 8)


def tied(seeds: int, gap: float = 0.0) -> list[dict]:
    """Hand-made runs: b is a's twin (gap below it, +-0.002 noise by seed), c is far below both."""
    wobble = [0.002, -0.002, 0.001, -0.001, 0.0015, -0.0015, 0.0005, -0.0005, 0.001, -0.001]
    rows = []
    for k in range(seeds):
        block = 0.01 * ((k * 7) % 5 - 2)  # seed index k moves every configuration alike
        rows += [run("a", k, 0.60 + block), run("b", k, 0.60 - gap + block + wobble[k]),
                 run("c", k, 0.40 + block - wobble[k])]  # fmt: skip
    return rows


def test_futility_stops_a_race_whose_open_members_max_seeds_would_almost_surely_leave_open():
    spec = RaceSpec(min=2, max=10, delta=0.0001, futility=0.1)
    # a and b tied within a noise of 0.002: at 10 seeds the interval on b - a (about +-0.004 wide
    # at that noise) cannot fall below 0, and delta is far too small for "equivalent"
    d = decide(pd.DataFrame(tied(5)), spec)
    assert d.stop and d.reason.startswith(racing.FUTILE) and "< 0.1" in d.reason
    assert sorted(d.best_set) == ["a", "b"] and d.why["c"].startswith("out after 2 seeds")
    rival = d.best_set[1]  # the one of the twins that is not the observed best
    assert d.why[rival].startswith("undecided after") and "predictive probability" in d.why[rival]
    # without the rule the same runs go on to the next seed index (a and b only)
    d = decide(pd.DataFrame(tied(5)), RaceSpec(min=2, max=10, delta=0.0001, futility=0))
    assert (d.stop, d.reason, sorted(d.extend), d.next_seed_index) == (False, racing.EXTEND, ["a", "b"], 5)


def test_futility_leaves_a_member_that_more_seeds_would_likely_decide_in_the_race():
    # b is 0.008 below a with a noise of 0.002: 2 seeds cannot separate them at 3 levels, 10 would
    d = decide(pd.DataFrame(tied(2, gap=0.008)), RaceSpec(min=2, max=10, delta=0.0001, futility=0.1))
    assert not d.stop and d.reason == racing.EXTEND and sorted(d.extend) == ["a", "b"]


def test_predictive_power_is_the_chance_that_max_seeds_decide_a_member():
    """The closed form against a direct simulation of the predictive distribution it describes."""
    from scipy import stats as st

    from mtsearch.sweep import stats

    spec = RaceSpec(min=2, max=10, delta=0.002, futility=0.1)
    rows = pd.DataFrame(tied(3, gap=0.004)).assign(config=lambda t: t["config_hash"])
    a = stats.analyse(rows, "config", delta=spec.delta, details=False)
    table = a.table.set_index("level")
    power = racing.predictive_power(a, table, ["b"], {"b": 3}, spec)["b"]
    n, m, s, d = 3, spec.max, a.sigma, float(table.loc["b", "diff"])
    rng = np.random.default_rng(0)
    true = rng.normal(d, s * np.sqrt(2 / n), 200_000)  # flat prior: the true difference given the estimate
    final = (n * d + (m - n) * rng.normal(true, s * np.sqrt(2 / (m - n)))) / m  # the estimate at max seeds
    half = st.studentized_range.ppf(1 - spec.final_alpha, 3, 2 * (m - 1)) / np.sqrt(2) * s * np.sqrt(2 / m)
    simulated = np.mean((final < -half) | (final > half - spec.delta))
    assert 0.01 < power < 0.99 and abs(power - simulated) < 0.01
    # a member that already has max seeds cannot gain anything
    assert racing.predictive_power(a, table, ["b"], {"b": m}, spec)["b"] == 0.0


def test_a_futility_race_stops_before_max_on_a_tie_and_every_open_member_gets_the_same_seeds():
    sweep = Sweep({"a": 0.60, "b": 0.60, "c": 0.40}, sigma=0.01, seed=5)
    d = sweep.race(RaceSpec(min=2, max=10, delta=0.0001, futility=0.1))
    per = pd.DataFrame(sweep.rows).groupby("config_hash").size().to_dict()
    assert d.reason.startswith(racing.FUTILE) and per["a"] == per["b"] < 10 and per["c"] < per["a"]
