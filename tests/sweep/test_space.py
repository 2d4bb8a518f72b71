"""Search spaces: shipped ones load, malformed ones fail with a message naming the line."""

import textwrap

import pytest

from mtsearch.errors import ConfigError
from mtsearch.sweep.space import list_spaces, load_space

GOOD = """\
name: t
base:
  preset: baseline
  set: {model: tiny, max_steps: 4}
dimensions:
  sampler:
    choices: [round_robin, rr_over, temperature]
  sampler_args.sigma:
    values: [5, 10]
    when: {sampler: rr_over}
  sampler_args.temperature:
    values: [2.0]
    when: {sampler: temperature}
  lr:
    values: [1.0e-5, 3.0e-5]
seeds: 2
algorithm: grid
"""


def write(tmp_path, text):
    p = tmp_path / "space.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_every_shipped_space_loads_on_both_profiles():
    names = list_spaces()
    assert {"smoke", "sampling"} <= set(names)
    for name in names:
        sp = load_space(name)
        assert sp.dimensions and sp.seeds >= 1
        if name != "smoke":
            assert sp.seeds >= 2, f"{name}: ablations need seed repeats"
            assert load_space(name, "gpu").profile == "gpu"


def test_the_grid_is_a_tree(tmp_path):
    sp = load_space(str(write(tmp_path, GOOD)))
    grid = sp.grid()
    # round_robin: 2 lr; rr_over: 2 sigma x 2 lr; temperature: 1 x 2 lr
    assert len(grid) == 2 + 4 + 2
    assert all("sampler_args.sigma" not in p for p in grid if p["sampler"] != "rr_over")
    assert {p["sampler_args.sigma"] for p in grid if p["sampler"] == "rr_over"} == {5, 10}
    cfg = sp.config(grid[3], seed=1)
    assert cfg.seed == 1 and cfg.model == "tiny"


@pytest.mark.parametrize(
    "old, new, fragments",
    [
        ("  sampler:\n    choices", "  samplr:\n    choices", ["space.yaml:6", "unknown dimension 'samplr'", "did you mean 'sampler'"]),
        ("[round_robin, rr_over, temperature]", "[round_robin, rr_overr, temperature]",
         ["space.yaml:7", "no choice 'rr_overr'", "did you mean 'rr_over'", "valid:"]),
        ("  lr:\n    values: [1.0e-5, 3.0e-5]", "  lr:\n    low: 1.0e-3\n    high: 1.0e-4",
         ["space.yaml:14", "empty range"]),
        ("when: {sampler: rr_over}", "when: {sampler_kind: rr_over}",
         ["space.yaml:10", "condition on 'sampler_kind'", "dimensions so far: sampler"]),
        ("when: {sampler: rr_over}", "when: {sampler: proportional}", ["never takes the value 'proportional'"]),
        ("    values: [5, 10]\n    when: {sampler: rr_over}\n", "    values: [5, 10]\n",
         ["space.yaml:8", "'sampler_args.sigma' does not apply to sampler 'round_robin'", "when: {sampler: rr_over}"]),
        ("seeds: 2", "seeds: 0", ["space.yaml:16", "seeds is a whole number >= 1"]),
        ("algorithm: grid", "algorithm: bayes", ["space.yaml:17", "unknown algorithm 'bayes'", "valid: grid"]),
        ("algorithm: grid", "algorithm: grid\npruner: asha2", ["unknown pruner 'asha2'", "did you mean 'asha'"]),
        ("seeds: 2", "seeds: 2\nobjective: [sst, qqp]", ["unknown objective 'qqp'", "valid: overall, sst, para, sts"]),
        ("seeds: 2", "seeds: 2\nbudgett: {trials: 3}", ["space.yaml:17", "unknown key 'budgett'", "did you mean 'budget'"]),
        ("set: {model: tiny, max_steps: 4}", "set: {model: tiny, max_stepz: 4}", ["unknown config key 'max_stepz'"]),
        ("preset: baseline", "preset: basline", ["no preset 'basline'", "did you mean 'baseline'"]),
        ("  lr:\n    values: [1.0e-5, 3.0e-5]", "  lr:\n    low: 0.0\n    high: 1.0e-4\n    type: float",
         ["'lr' = 0.0 is not a valid value"]),
        ("  lr:\n    values: [1.0e-5, 3.0e-5]", "  lr:\n    low: 1.0e-5\n    high: 1.0e-4",
         ["a grid needs 'values'"]),
        # NaN and infinity (YAML's .nan, .inf) are refused wherever a number goes.
        ("  lr:\n    values: [1.0e-5, 3.0e-5]", "  lr:\n    values: [1.0e-5, .nan]",
         ["space.yaml:15", "'lr': every value must be a finite number (got nan)"]),  # the values line
        ("  lr:\n    values: [1.0e-5, 3.0e-5]", "  lr:\n    choices: [.inf]", ["every choice must be a finite number (got inf)"]),
        ("  lr:\n    values: [1.0e-5, 3.0e-5]", "  lr:\n    low: 1.0e-5\n    high: .inf",
         ["'lr': high must be a finite number (got inf)"]),
        ("  lr:\n    values: [1.0e-5, 3.0e-5]", "  lr:\n    low: -.inf\n    high: 1.0e-4",
         ["'lr': low must be a finite number (got -inf)"]),
        ("seeds: 2", "seeds: 2\nbase_seed: -1", ["base_seed must be a whole number from 0"]),
        ("seeds: 2", "seeds: 2\nvary_data: maybe", ["vary_data is true or false"]),
        ("seeds: 2", "seeds: 2\ndelta: -0.01", ["delta is a margin on the score's scale, from 0 to 1"]),
        ("seeds: 2", "seeds: 2\ndelta: many", ["delta is a margin on the score's scale"]),
    ],
)  # fmt: skip
def test_malformed_spaces_name_the_line_and_valid_names(tmp_path, old, new, fragments):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as err:
        load_space(str(path))
    for frag in fragments:
        assert frag in str(err.value), str(err.value)


def test_delta_is_a_space_setting_that_reaches_the_sweep_record(tmp_path):
    assert load_space(str(write(tmp_path, GOOD))).delta == 0.005  # stats.DELTA, the documented default
    sp = load_space(str(write(tmp_path, GOOD.replace("seeds: 2", "seeds: 2\ndelta: 0.01"))))
    assert sp.delta == 0.01 and sp.describe()["delta"] == 0.01  # results and racing read sweep.json's copy
    # an analysis setting: changing it does not make the sweep a different one
    assert sp.fingerprint() == load_space(str(write(tmp_path, GOOD))).fingerprint()


def test_unknown_space_and_profile(tmp_path):
    with pytest.raises(ConfigError, match="no search space 'samplng'.*did you mean 'sampling'"):
        load_space("samplng")
    with pytest.raises(ConfigError, match="profile 'tpu' is not defined"):
        load_space(str(write(tmp_path, GOOD)), profile="tpu")


def test_random_search_needs_a_budget_and_samples_the_tree(tmp_path):
    text = GOOD.replace("algorithm: grid", "algorithm: random").replace(
        "  lr:\n    values: [1.0e-5, 3.0e-5]", "  lr:\n    low: 1.0e-5\n    high: 1.0e-4\n    log: true"
    )
    with pytest.raises(ConfigError, match="needs a budget"):
        load_space(str(write(tmp_path, text)))
    sp = load_space(str(write(tmp_path, text + "budget: {trials: 5}\n")))
    import optuna

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        t = study.ask()
        p = sp.sample(t)
        assert ("sampler_args.sigma" in p) == (p["sampler"] == "rr_over")
        assert 1e-5 <= p["lr"] <= 1e-4
        sp.config(p, 0)  # every sample is a valid run config
        study.tell(t, 0.0)


def test_a_searched_seed_is_refused(tmp_path):
    text = GOOD.replace("dimensions:\n", "dimensions:\n  data_seed:\n    values: [1, 2]\n")
    with pytest.raises(ConfigError, match="'data_seed' cannot be searched"):
        load_space(str(write(tmp_path, text)))


def test_finite_spaces_know_their_configurations(tmp_path):
    sp = load_space(str(write(tmp_path, GOOD)))
    assert sp.finite_grid() == sp.grid()
    text = GOOD.replace("algorithm: grid", "algorithm: random").replace(
        "  lr:\n    values: [1.0e-5, 3.0e-5]", "  lr:\n    low: 1.0e-5\n    high: 1.0e-4"
    )
    assert load_space(str(write(tmp_path, text + "budget: {trials: 5}\n"))).finite_grid() is None
