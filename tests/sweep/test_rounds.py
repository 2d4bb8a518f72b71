"""Racing rounds: the sweep adds one seed index at a time to the configurations a policy names.

The policy here is a deterministic fake (the real one is :mod:`mtsearch.sweep.racing`,
tested in the racing tests): what is tested is the execution — which runs are trained,
in which order, and that the rounds are a function of the run folders (a crash between
rounds changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mtsearch.backends import BACKENDS
from mtsearch.sweep.runner import load_runs
from mtsearch.sweep.space import load_space

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Decision:
    extend: list[str]
    stop: bool
    reason: str
    why: dict[str, str] = field(default_factory=dict)


class FakePolicy:
    """Level 2: extend the two best configurations; level 3: the best; then stop (one set member)."""

    def __init__(self):
        self.calls: list[tuple[int, int, list[str]]] = []  # (level seen, runs seen, configurations extended)

    def __call__(self, runs, spec):
        level = int(runs["seed_index"].max()) + 1
        means = runs.groupby("config_hash")["score"].mean().sort_values(ascending=False)
        order = list(means.index)
        if level == 2:
            extend, stop = order[:2], False
        elif level == 3:
            extend, stop = [h for h in order if (runs.config_hash == h).sum() == 3][:1], False
        else:
            extend, stop = [], True
        self.calls.append((level, len(runs), extend))
        return Decision(extend, stop, "one configuration left in the best set" if stop else "")


def racing_space(tmp_path: Path, name: str = "race", max_seeds: int = 10) -> Path:
    text = (
        (ROOT / "search_spaces" / "smoke.yaml").read_text()
        .replace("name: smoke", f"name: {name}")
        .replace("seeds: 2", f"seeds: {{min: 2, max: {max_seeds}}}")
        .replace("  sampler:\n    choices: [round_robin, temperature]",
                 "  sampler:\n    choices: [round_robin, temperature, proportional]")
    )  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def order_of_runs(table) -> list[tuple[str, int]]:
    import json

    started = [(json.loads((Path(rd) / "run.json").read_text())["started"], h, k)
               for rd, h, k in zip(table["run_dir"], table["config_hash"], table["seed_index"], strict=True)]  # fmt: skip
    return [(h, k) for _, h, k in sorted(started)]


def test_rounds_add_one_seed_index_to_the_named_configurations(sweep_env, tmp_path):
    policy = FakePolicy()
    space = load_space(str(racing_space(tmp_path)))
    assert space.racing and (space.seeds, space.max_seeds) == (2, 10)
    out = BACKENDS.get("optuna")().run(space, progress=False, mlflow=False, race_policy=policy)
    assert out.stopped_because == "racing: one configuration left in the best set"
    table = load_runs(sweep_env / "sweeps" / "race")
    seeds = table.groupby("config_hash")["seed_index"].apply(sorted).to_dict()
    first, second = policy.calls[0][2]
    best = policy.calls[1][2][0]
    assert best == first or best == second
    third = next(h for h in seeds if h not in (first, second))
    assert seeds[best] == [0, 1, 2, 3] and seeds[third] == [0, 1]
    assert seeds[first if best == second else second] == [0, 1, 2]
    # The policy saw each level's runs only (all done), one level at a time.
    assert [(lvl, n) for lvl, n, _ in policy.calls] == [(2, 6), (3, 8), (4, 9)]
    # Seed index 2 went to both named configurations before index 3 went to one.
    order = order_of_runs(table)
    assert [k for _, k in order] == [0, 1, 0, 1, 0, 1, 2, 2, 3]
    # A rerun recomputes the same rounds from the folders and trains nothing.
    again = BACKENDS.get("optuna")().run(space, progress=False, mlflow=False, race_policy=FakePolicy())
    assert again.runs == 0 and again.stopped_because == out.stopped_because


def test_racing_stops_at_max_seeds(sweep_env, tmp_path):
    def extend_all(runs, spec):
        return Decision(sorted(runs["config_hash"].unique()), False, "")

    space = load_space(str(racing_space(tmp_path, "capped", max_seeds=3)))
    out = BACKENDS.get("optuna")().run(space, progress=False, mlflow=False, race_policy=extend_all)
    assert out.stopped_because == "racing: every configuration still open reached seeds.max = 3"
    table = load_runs(sweep_env / "sweeps" / "capped")
    assert table.groupby("config_hash").size().tolist() == [3, 3, 3]


class Crash(Exception):
    pass


@pytest.mark.e2e  # two racing sweeps: ~40 s
def test_a_crash_between_rounds_changes_nothing(sweep_env, tmp_path):
    """Killed right after a round's decision: the rerun replays it from the folders, the end is the same."""
    reference = FakePolicy()
    BACKENDS.get("optuna")().run(load_space(str(racing_space(tmp_path, "calm"))), progress=False, mlflow=False,
                                 race_policy=reference)  # fmt: skip

    crashing = FakePolicy()

    def crash_after_second_decision(runs, spec):
        decision = crashing(runs, spec)
        if len(crashing.calls) == 2:
            raise Crash()
        return decision

    space = load_space(str(racing_space(tmp_path, "crashed")))
    with pytest.raises(Crash):
        BACKENDS.get("optuna")().run(
            space, progress=False, mlflow=False, race_policy=crash_after_second_decision
        )
    BACKENDS.get("optuna")().run(space, progress=False, mlflow=False, race_policy=FakePolicy())
    calm = load_runs(sweep_env / "sweeps" / "calm")
    crashed = load_runs(sweep_env / "sweeps" / "crashed")
    key = ["config_hash", "seed_index"]
    assert (
        calm.sort_values(key)[[*key, "score"]].values.tolist()
        == crashed.sort_values(key)[[*key, "score"]].values.tolist()
    )


def test_seed_specs_in_a_space_file(tmp_path):
    from mtsearch.errors import ConfigError

    base = (ROOT / "search_spaces" / "smoke.yaml").read_text()
    for spec, message in (
        ("{min: 3, max: 2}", "seeds.max (2) is below seeds.min (3)"),
        ("{min: 2}", "seeds is a whole number >= 1, or a range {min: N, max: M}"),
        ("0", "seeds is a whole number >= 1"),
    ):
        path = tmp_path / "s.yaml"
        path.write_text(base.replace("seeds: 2", f"seeds: {spec}"))
        with pytest.raises(
            ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")
        ):
            load_space(str(path))
    path.write_text(base.replace("seeds: 2", "seeds: {min: 2, max: 5}"))
    sp = load_space(str(path))
    assert (sp.seeds, sp.max_seeds, sp.racing) == (2, 5, True)
