"""The dashboard opens a sweep's study through the Optuna backend's open_study, never creating one."""

from __future__ import annotations

import optuna
import pytest

from mtsearch.dashboard.study import study_location, sweep_study
from tests.dashboard.synthetic import configurations, write_sweep


def test_the_study_named_after_the_sweep_is_the_one_read(tmp_path):
    sd = write_sweep(tmp_path / "runs", "named")
    url = f"sqlite:///{(sd / 'study.db').resolve()}"
    # A second study in the same file, created first: the name decides, not the order.
    optuna.create_study(study_name="another", storage=url)
    assert study_location(sd) == (url, "named")
    study = sweep_study(sd)
    assert study.study_name == "named" and len(study.trials) == 2 * len(
        configurations()
    )  # one trial per (configuration, seed)


def test_a_study_under_another_name_is_still_found(tmp_path):
    sd = write_sweep(tmp_path / "runs", "renamed")
    url = f"sqlite:///{(sd / 'study.db').resolve()}"
    optuna.copy_study(from_study_name="renamed", from_storage=url, to_storage=url, to_study_name="old-name")
    optuna.delete_study(study_name="renamed", storage=url)
    assert sweep_study(sd).study_name == "old-name"


def test_an_empty_study_file_is_an_error_not_a_new_study(tmp_path):
    sd = write_sweep(tmp_path / "runs", "gone")
    url = f"sqlite:///{(sd / 'study.db').resolve()}"
    optuna.delete_study(study_name="gone", storage=url)
    with pytest.raises(LookupError, match="no study in study.db"):
        sweep_study(sd)
    assert optuna.get_all_study_names(url) == []
