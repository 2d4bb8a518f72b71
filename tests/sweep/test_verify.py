"""`mtsearch verify`: the rank-agreement statistics on known cases, the runs it trains, its bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtsearch.cli import main
from mtsearch.sweep.verify import rank_agreement


def _scores(means: list[float], spread: float = 0.01) -> dict[str, np.ndarray]:
    """Configurations c0, c1, ... with three seeds each around the given means."""
    return {f"c{i}": np.array([m - spread, m, m + spread]) for i, m in enumerate(means)}


# ------------------------------------------------------------------------ statistics
def test_identical_ranking_gives_tau_one_and_no_swap():
    cheap = _scores([0.9, 0.7, 0.5, 0.3])
    long = _scores([0.95, 0.8, 0.6, 0.2])
    a = rank_agreement(cheap, long, n_boot=200)
    assert a.tau == pytest.approx(1.0)
    assert a.swapped == []
    # Seeds spread 0.01 around means 0.1+ apart: no resample can reorder them.
    assert a.interval == (pytest.approx(1.0), pytest.approx(1.0))


def test_reversed_ranking_gives_tau_minus_one_and_every_pair_swapped():
    cheap = _scores([0.9, 0.7, 0.5])
    long = _scores([0.1, 0.3, 0.5])
    a = rank_agreement(cheap, long, n_boot=200)
    assert a.tau == pytest.approx(-1.0)
    assert len(a.swapped) == 3  # every pair of 3
    assert {(s["cheap_above"], s["cheap_below"]) for s in a.swapped} == {
        ("c0", "c1"),
        ("c0", "c2"),
        ("c1", "c2"),
    }


def test_one_swap_is_named_with_its_scores():
    cheap = _scores([0.9, 0.7, 0.5, 0.3])
    long = _scores([0.9, 0.5, 0.7, 0.3])  # c1 and c2 trade places
    a = rank_agreement(cheap, long, n_boot=200)
    # 6 pairs, 1 discordant: (5 - 1) / 6
    assert a.tau == pytest.approx(4 / 6)
    assert len(a.swapped) == 1
    s = a.swapped[0]
    assert (s["cheap_above"], s["cheap_below"]) == ("c1", "c2")
    assert s["cheap"] == pytest.approx([0.7, 0.5]) and s["long"] == pytest.approx([0.5, 0.7])
    assert s["share_of_resamples"] == pytest.approx(1.0)  # the swap is far outside the seed spread


def test_the_interval_widens_with_seed_noise_and_is_reproducible():
    """Overlapping seeds make the order uncertain; the explicit generator seed fixes the interval."""
    cheap = {
        "a": np.array([0.50, 0.60, 0.40]),
        "b": np.array([0.52, 0.38, 0.61]),
        "c": np.array([0.2, 0.3, 0.25]),
    }
    long = {
        "a": np.array([0.55, 0.45, 0.62]),
        "b": np.array([0.40, 0.60, 0.50]),
        "c": np.array([0.3, 0.2, 0.28]),
    }
    one, two = (
        rank_agreement(cheap, long, n_boot=300, seed=7),
        rank_agreement(cheap, long, n_boot=300, seed=7),
    )
    assert one.interval == two.interval
    low, high = one.interval
    # c sits far below: its pairs never swap, so tau is 1/3 (a and b swapped) or 1 in every resample.
    assert one.tau == pytest.approx(1 / 3) and (low, high) == (pytest.approx(1 / 3), pytest.approx(1.0))
    for s in one.swapped:  # a swap inside the seed noise: some resamples keep the order, some swap it
        assert 0.0 < s["share_of_resamples"] < 1.0


def test_scores_must_be_aligned_by_seed():
    with pytest.raises(ValueError, match="aligned"):
        rank_agreement(
            {"a": np.array([0.1, 0.2]), "b": np.array([0.3])}, {"a": np.array([0.1]), "b": np.array([0.3])}
        )


# ------------------------------------------------------------------------ end to end
def _runs_of(root: Path) -> dict[tuple[str, int], dict]:
    """(config_hash, seed index) -> run.json of every run folder under a runs/ root."""
    out = {}
    for rd in sorted(root.glob("*/s*")):
        out[(rd.parent.name, int(rd.name[1:]))] = json.loads((rd / "run.json").read_text())
    return out


def test_verify_trains_the_chosen_configurations_with_the_sweep_seeds_and_resumes(sweep_env, capsys):
    runs = sweep_env
    assert main(["sweep", "smoke", "--quiet", "--no-mlflow"]) == 0
    capsys.readouterr()
    assert main(["verify", "smoke", "--profile", "long", "--top", "1", "--worst", "1", "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    assert "estimate: 4 run(s) to train" in out and "Kendall's tau" in out and "the interval assumes" in out
    assert "x 2.0 for the run's budget" in out  # the long profile's max_steps 8 over the sweep's 4

    sweep_dir = runs / "sweeps" / "smoke"
    cheap, long = _runs_of(sweep_dir / "runs"), _runs_of(sweep_dir / "verify" / "long" / "runs")
    assert len(cheap) == len(long) == 4
    report = json.loads((sweep_dir / "verify" / "long" / "verify.json").read_text())
    by_long = {c["long_hash"]: c for c in report["configurations"]}
    assert {c["role"] for c in report["configurations"]} == {"top", "worst"}
    for (h, k), info in long.items():
        c = by_long[h]
        assert info["seed"] == cheap[(c["config_hash"], k)]["seed"]  # the same derived seed per index
        assert info["params"] == cheap[(c["config_hash"], k)]["params"]
        assert h != c["config_hash"]  # the long settings are another configuration
        res = json.loads((sweep_dir / "verify" / "long" / "runs" / h / f"s{k}" / "result.json").read_text())
        assert res["status"] == "finished"
        cfg = yaml.safe_load(
            (sweep_dir / "verify" / "long" / "runs" / h / f"s{k}" / "config.yaml").read_text()
        )
        assert cfg["max_steps"] == 8 and cfg["train_limit"] == 192 and cfg["seed"] == info["seed"]
    a = report["agreement"]
    assert a["tau"] in (-1.0, 1.0)  # two configurations: they keep or swap their order
    low, high = a["interval"]
    assert -1.0 <= low <= a["tau"] <= high <= 1.0
    assert a["n_boot"] > 0 and "seed noise only" in a["assumes"]
    assert len(a["swapped"]) == (1 if a["tau"] == -1.0 else 0)

    # A verify killed mid-run: one run without its result is trained again, the others are kept.
    victim = next(iter(long))
    victim_dir = sweep_dir / "verify" / "long" / "runs" / victim[0] / f"s{victim[1]}"
    (victim_dir / "result.json").unlink()
    kept = {
        p: p.stat().st_mtime_ns for p in (sweep_dir / "verify" / "long" / "runs").glob("*/s*/result.json")
    }
    assert main(["verify", "smoke", "--top", "1", "--worst", "1", "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    assert "estimate: 1 run(s) to train (3 already done)" in out
    assert out.count("training ") == 1
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert json.loads((victim_dir / "result.json").read_text())["status"] == "finished"


# ------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    "argv, message",
    [
        (["verify", "nosuch"], "mtsearch: error: no sweep 'nosuch'"),
        (["verify", "smoke", "--top", "0"], "mtsearch: error: --top is how many of the best configurations"),
        (["verify", "smoke", "--worst", "-1"], "mtsearch: error: --worst is how many of the worst"),
        (["verify", "smoke", "--profile", "huge"], "mtsearch: error: smoke.yaml:"),
        (["verify", "smoke", "--profile", "cpu"], "mtsearch: error: --profile cpu is the profile sweep 'smoke' ran with"),
        (["verify", "one"], "mtsearch: error: sweep 'one' has 1 finished configuration(s); verify compares"),
        (["verify", "smoke", "--seeds", "0"], "mtsearch: error: --seeds is how many seed indices to re-run"),
        (["verify", "smoke", "--seeds", "3"],
         "mtsearch: error: --seeds 3: the chosen configurations share only 2 finished seed indices (0, 1)"),
        (["verify", "smoke", "--set", "max_steps=0"], "mtsearch: error: "),
    ],
)  # fmt: skip
def test_bad_verify_requests_end_in_one_line(sweep_env, argv, message, capsys, monkeypatch):
    """Every refusal comes before any training: a sweep's folder is enough (its runs faked from one config)."""
    _fake_sweep(sweep_env, "smoke", configs=2)
    _fake_sweep(sweep_env, "one", configs=1)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err, err
    if "huge" in argv:
        assert "profile 'huge' is not defined; defined: cpu, long" in err
    assert not list((sweep_env / "sweeps").glob("*/verify"))


def test_a_raced_sweep_is_verified_on_the_seed_indices_every_chosen_configuration_has(sweep_env):
    """Racing gave the best configuration 4 seeds and the other 2: both are compared on seeds 0 and 1."""
    from mtsearch.sweep.verify import plan_verify

    _fake_sweep(sweep_env, "raced", configs=2, extra_seeds={1: 2})
    plan = plan_verify("raced", "long", top=1, worst=1)
    assert [sorted(c.seeds) for c in plan.chosen] == [[0, 1], [0, 1]]
    assert [sorted(c.cheap) for c in plan.chosen] == [[0, 1], [0, 1]]
    assert [sorted(c.seeds) for c in plan_verify("raced", "long", top=1, worst=1, seeds=1).chosen] == [
        [0],
        [0],
    ]
    # --set reaches the long runs' settings
    plan = plan_verify("raced", "long", top=1, worst=1, extra_set={"max_steps": 7})
    assert plan.space.base["max_steps"] == 7


def _fake_sweep(runs: Path, name: str, configs: int, extra_seeds: dict[int, int] | None = None) -> None:
    """A finished smoke sweep's folders without training: sweep.json, config.json, run.json and result.json."""
    from mtsearch.records import write_json
    from mtsearch.sweep.keys import RunKey, run_dir
    from mtsearch.sweep.runner import prepare_sweep, register_configuration
    from mtsearch.sweep.space import load_space

    space = load_space("smoke")
    ctx = prepare_sweep(space, name, "optuna", mlflow=False)
    for i, params in enumerate(space.grid()[:configs]):
        h = register_configuration(ctx, params)
        for k in range(space.seeds + (extra_seeds or {}).get(i, 0)):
            rd = run_dir(ctx.sweep_dir, RunKey(h, k))
            write_json(rd / "run.json", {"seed": space.seed_for(k), "params": params})
            scores = {"sst": 0.3 + 0.1 * i, "para": 0.6, "sts": 0.2}
            write_json(rd / "result.json", {"status": "finished", "best": {"step": 4, "scores": scores}})
