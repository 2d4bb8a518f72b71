"""Parameter importances from the sweep's study, or from its results when it has none."""

from __future__ import annotations

import optuna
import pytest

from mtsearch.dashboard.importance import importance, importance_frame
from mtsearch.dashboard.study import sweep_study
from mtsearch.dashboard.sweeps import load_sweep
from tests.dashboard.synthetic import configurations, write_sweep

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def synthetic(tmp_path):
    return load_sweep(write_sweep(tmp_path / "runs", "synthetic"))


def test_importance_finds_the_dimensions_that_drive_each_score(synthetic):
    imp = importance(synthetic, "fanova")
    assert imp.message is None and imp.trials == 2 * len(configurations())  # one trial per run
    assert imp.left_out == ["sampler_args.temperature"]  # conditional: not in every trial
    top = {m: max(v, key=v.get) for m, v in imp.values.items()}
    assert top == {"overall": "lr", "sst": "lr", "para": "pooling", "sts": "lr"}
    assert sum(imp.values["overall"].values()) == pytest.approx(1.0)
    ped = importance(synthetic, "ped-anova")
    assert max(ped.values["overall"], key=ped.values["overall"].get) == "lr"
    frame = importance_frame(imp)
    assert set(frame["metric"]) == {"overall", "sst", "para", "sts"}


def test_importance_without_a_study_uses_the_results(synthetic):
    (synthetic.sweep_dir / "study.db").unlink()
    d = load_sweep(synthetic.sweep_dir)
    assert d.counts_from == "run directories"
    imp = importance(d)
    assert max(imp.values["overall"], key=imp.values["overall"].get) == "lr"


def test_importance_with_fewer_than_two_trials(tmp_path):
    sd = write_sweep(tmp_path / "runs", "one")
    study = sweep_study(sd)
    keep = study.trials[0]
    optuna.delete_study(study_name="one", storage=f"sqlite:///{sd / 'study.db'}")
    fresh = optuna.create_study(
        study_name="one", storage=f"sqlite:///{sd / 'study.db'}", direction="maximize"
    )
    fresh.add_trial(keep)
    imp = importance(load_sweep(sd))
    assert (
        imp.values is None
        and imp.message == "Importance needs at least 2 completed trials; this sweep has 1."
    )
