"""Ablation rows per dimension, and one spelling of a level across the tables and views."""

from __future__ import annotations

import json

import pytest

from mtsearch.dashboard.ablation import (
    ablation_for,
    condition_text,
    model,
    model_text,
    parallel_frame,
    single_level_text,
    verdict_table,
)
from mtsearch.dashboard.curves import curves
from mtsearch.dashboard.leaderboard import leaderboard
from mtsearch.dashboard.sweeps import load_sweep
from mtsearch.sweep.results import NA, level_label, shown_level
from tests.dashboard.synthetic import write_sweep

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def synthetic(tmp_path):
    return load_sweep(write_sweep(tmp_path / "runs", "synthetic"))


def test_ablation_marks_the_levels_that_are_worse_than_the_best(synthetic):
    ab = ablation_for(synthetic, "lr")
    overall = ab[ab["metric"] == "overall"]
    assert overall["is_best"].sum() == 1
    assert list(overall["mean"]) == sorted(overall["mean"], reverse=True)  # levels by mean, best first
    best = overall[overall["is_best"]].iloc[0]["level"]
    assert best == overall["level"].iloc[0] == "[0.001, 0.001]"  # the largest lr is best
    assert (overall[~overall["is_best"]]["verdict"] == "worse").all()  # lr's effect is far above the noise
    assert model(synthetic, "lr").kind == "observational"  # TPE chose the configurations
    assert "observational" in model_text(synthetic, "lr") and "95% best set: [0.001, 0.001]" in model_text(
        synthetic, "lr"
    )
    sampler = ablation_for(synthetic, "sampler")
    assert not (sampler[sampler["metric"] == "overall"]["verdict"] == "worse").any()  # sampler does nothing
    assert condition_text(synthetic, "sampler_args.temperature") == "sampler = temperature"
    table = verdict_table(synthetic, "sampler", "overall")
    assert list(table.columns[:4]) == ["level", "mean", "diff from best", "interval low"]
    assert set(table["verdict"]) == {"in best set"}  # every level of a sampler that does nothing
    assert set(table["decided"]) <= {"observed best", "undecided", "equivalent"}


def test_a_conditional_dimension_with_one_level_is_one_line_not_a_panel(tmp_path):
    sd = write_sweep(tmp_path / "runs", "one-level")
    for conf in sorted((sd / "runs").glob("*/config.json")):  # every temperature run at T = 2.0
        info = json.loads(conf.read_text())
        if "sampler_args.temperature" in info["params"]:
            info["params"]["sampler_args.temperature"] = 2.0
            conf.write_text(json.dumps(info))
    d = load_sweep(sd)
    line = single_level_text(d, "sampler_args.temperature")
    n = int((d.results.runs["sampler"] == "temperature").sum())
    assert line.startswith("sampler_args.temperature (where sampler = temperature): one level, 2.0: overall ")
    assert line.endswith(f"over {n} run(s); nothing to compare.")
    assert single_level_text(d, "sampler") is None and model(d, "sampler").kind != "single level"


def test_level_labels():
    assert [level_label(v) for v in ([0.5, 0.75], {"sts": 0.3}, 2.0, "mean", None)] == [
        "[0.5, 0.75]", '{"sts": 0.3}', "2.0", "mean", "None"
    ]  # fmt: skip
    assert [shown_level(v) for v in (None, float("nan"), "2.0")] == [NA, NA, "2.0"]


def test_a_list_valued_dimension_has_one_level_label_everywhere(tmp_path):
    """Ablation, leaderboard and curves all spell a list choice the same way."""
    sd = write_sweep(tmp_path / "runs", "lists")
    choices = [[0.5], [0.5, 0.75]]  # in choice order, not the alphabetical order of their labels
    meta = json.loads((sd / "sweep.json").read_text())
    meta["space"]["dimensions"].append(
        {"name": "schedule_milestones", "kind": "categorical", "choices": choices}
    )
    (sd / "sweep.json").write_text(json.dumps(meta))
    for i, conf in enumerate(sorted((sd / "runs").glob("*/config.json"))):
        info = json.loads(conf.read_text())
        info["params"]["schedule_milestones"] = choices[i % 2]
        conf.write_text(json.dumps(info))
        for rd in conf.parent.glob("s*"):
            run = json.loads((rd / "run.json").read_text())
            run["params"] = info["params"]
            (rd / "run.json").write_text(json.dumps(run))
    d = load_sweep(sd)
    labels = ["[0.5]", "[0.5, 0.75]"]
    ab = ablation_for(d, "schedule_milestones")
    assert set(ab["level"]) == set(labels)
    assert set(leaderboard(d)["schedule_milestones"]) == set(labels)
    frame, cos = curves(d)
    assert set(frame["schedule_milestones"]) == set(cos["schedule_milestones"]) == set(labels)


def test_parallel_frame_marks_where_a_dimension_does_not_apply(synthetic):
    frame = parallel_frame(synthetic)
    temps = dict(zip(frame["sampler"], frame["sampler_args.temperature"], strict=True))
    assert temps["round_robin"] == NA
    assert set(frame.loc[frame["sampler"] == "temperature", "sampler_args.temperature"]) <= {"1.0", "2.0"}
