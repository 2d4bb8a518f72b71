import pytest
from pydantic import ValidationError

from mtsearch.config import RunConfig, apply_overrides, load_config, make_config, parse_set
from mtsearch.errors import ConfigError


def test_defaults_are_valid_and_frozen():
    cfg = make_config({})
    assert cfg.tasks == ("sst", "para", "sts")
    with pytest.raises(ValidationError):
        cfg.lr = 1.0  # frozen: a run's settings never change under it


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"lrr": 1e-4}, "unknown config key 'lrr' (did you mean 'lr'?)"),
        ({"lr": -1}, "lr: Input should be greater than 0"),
        ({"batch_size": 0}, "batch_size"),
        ({"pair_mode": "sideways"}, "pair_mode: Input should be 'concat'"),
        ({"tasks": ["sst", "imdb"]}, "unknown task 'imdb'"),
        ({"tasks": []}, "at least one task"),
        ({"sampler": "round_robbin"}, "did you mean 'round_robin'"),
        ({"sampler_args": {"sigma": 2}}, "sampler_args.sigma does not apply to sampler 'round_robin'"),
        ({"update_args": {"weights": {"sst": "heavy"}}}, "update_args.weights.sst"),
        ({"max_steps": None}, "needs a budget"),
        ({"head_dropout": 1.5}, "head_dropout"),
        ({"tasks": 5}, "tasks: a list of task names"),
        ({"tasks": [5]}, "tasks: a task is named by text"),
        (
            {"update_args": {"weights": {"sst": float("nan")}}},
            "update_args.weights.sst for update 'combined'",
        ),
        ({"update_args": {"weights": {"sst": float("inf")}}}, "finite"),
        ({"update_args": {"weights": {"sst": -0.5}}}, "greater than or equal to 0"),
        ({"name": "../x"}, "name: a name is one folder under runs/"),
    ],
)
def test_bad_values_name_the_field(values, fragment):
    with pytest.raises(ConfigError) as err:
        make_config(values)
    assert fragment in str(err.value)


def test_overrides_and_set_parsing():
    over = parse_set(["lr=3e-5", "tasks=[sst, sts]", "patience=null", "update_args.weights={sst: 2}"])
    assert over["lr"] == 3e-5 and over["tasks"] == ["sst", "sts"] and over["patience"] is None
    cfg = make_config(apply_overrides({}, over))
    assert cfg.lr == 3e-5 and cfg.tasks == ("sst", "sts") and cfg.args("update").weights == {"sst": 2.0}


def test_dotted_key_only_into_strategy_args():
    with pytest.raises(ConfigError, match="only a strategy's arguments"):
        apply_overrides({}, {"lr.x": 1})
    with pytest.raises(
        ConfigError, match=r"unknown config key 'samplr_args' \(did you mean 'sampler_args'\?\)"
    ):
        apply_overrides({}, {"samplr_args.sigma": 1})
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["lr"])


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_yaml_round_trip_and_hash(tmp_path):
    cfg = make_config({"lr": 2e-5, "seed": 3, "tasks": "sst,sts"})
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    again = load_config(path)
    assert again == cfg
    # Seed repeats of one configuration share a hash; a real change does not.
    assert make_config({"lr": 2e-5, "seed": 4, "tasks": "sst,sts"}).config_hash() == cfg.config_hash()
    assert make_config({"lr": 3e-5, "seed": 3, "tasks": "sst,sts"}).config_hash() != cfg.config_hash()


def test_every_field_is_documented():
    for name, info in RunConfig.model_fields.items():
        assert info.description, f"config field {name} has no docstring"


def test_a_config_file_that_is_not_utf8_or_not_yaml_is_one_line(tmp_path):
    from mtsearch.config import read_config_file

    latin = tmp_path / "latin.yaml"
    latin.write_bytes("lr: 1e-4  # réglé\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml is not UTF-8 text \(byte 13 is 0xe9\)"):
        read_config_file(latin)
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: [1e-4\nmodel: tiny\n")
    with pytest.raises(ConfigError) as err:
        read_config_file(broken)
    assert "\n" not in str(err.value) and "line 2" in str(err.value)


# ------------------------------------------------------------------ profiles (issue 11)
PROFILED = """\
lr: 2.0e-5
model: bert-base-uncased
max_steps: null
max_epochs: 30
profiles:
  cpu:
    model: minilm
    max_epochs: 3
    train_fraction: 0.1
  gpu: {}
"""


def test_a_files_profiles_change_the_budget_and_cpu_is_the_default(tmp_path):
    from mtsearch.config import read_config_file

    path = tmp_path / "preset.yaml"
    path.write_text(PROFILED)
    cpu = load_config(path)  # no profile asked: cpu, the machine every command assumes
    assert (cpu.model, cpu.max_epochs, cpu.train_fraction, cpu.lr) == ("minilm", 3, 0.1, 2e-5)
    assert load_config(path, profile="cpu") == cpu
    gpu = load_config(path, {"eval_limit": 10}, profile="gpu")
    assert (gpu.model, gpu.max_epochs, gpu.train_fraction, gpu.eval_limit) == (
        "bert-base-uncased",
        30,
        None,
        10,
    )
    assert "profiles" not in read_config_file(path)
    with pytest.raises(
        ConfigError, match=r"profile 'gpuu' is not defined \(did you mean 'gpu'\?\); defined: cpu, gpu"
    ):
        load_config(path, profile="gpuu")


@pytest.mark.parametrize(
    "section, fragment",
    [
        ("  cpu:\n    lr: 1.0e-3\n", "profiles.cpu.lr: a profile changes only the machine and the budget"),
        (
            "  cpu:\n    max_epoch: 3\n",
            "unknown config key 'profiles.cpu.max_epoch' (did you mean 'max_epochs'?)",
        ),
        ("  cpu: [1, 2]\n", "profiles.cpu must be a mapping of config keys"),
    ],
)
def test_a_profile_that_changes_the_technique_is_refused(tmp_path, section, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text("lr: 2.0e-5\nprofiles:\n" + section)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert fragment in str(err.value) and str(path) in str(err.value)


def test_a_profile_of_a_file_without_profiles_is_refused(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text("lr: 2.0e-5\n")
    assert load_config(path).lr == 2e-5
    with pytest.raises(ConfigError, match="defines no profiles"):
        load_config(path, profile="gpu")
    with pytest.raises(ConfigError, match="needs a config file"):
        load_config(None, profile="gpu")


def test_max_epochs_alone_is_a_budget():
    assert make_config({"max_steps": None, "max_epochs": 2.5}).max_epochs == 2.5
    with pytest.raises(ConfigError, match="set max_steps, max_examples or max_epochs"):
        make_config({"max_steps": None})
