"""`mtsearch sweep` flags, sweep names in MLflow, and MLflow runs a killed worker left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mtsearch.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--trials", "0"], "mtsearch: error: --trials is the number of configurations, a whole number >= 1 (got 0)"),
        (["--minutes", "-5"], "mtsearch: error: --minutes is a wall-clock budget, a number of minutes > 0 (got -5.0)"),
        (["--minutes", "nan"], "mtsearch: error: --minutes is a wall-clock budget, a number of minutes > 0 (got nan)"),
        (["--name", "../x"], "mtsearch: error: --name: a name is one folder under runs/"),
        (["--name", ".."], "mtsearch: error: --name: a name may not be '.' or contain '..'"),
    ],
)  # fmt: skip
def test_bad_sweep_flags_end_in_one_line(runs, flags, message, capsys):
    assert main(["sweep", "smoke", "--quiet", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err, err
    assert not (runs / "sweeps").exists() or not any((runs / "sweeps").iterdir())


def _client(runs: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")


def _all_runs(runs: Path):
    client = _client(runs)
    exp = client.get_experiment_by_name("mtsearch")
    return client.search_runs([exp.experiment_id], max_results=1000)


def test_quotes_in_a_sweep_name_and_a_killed_run_left_running(sweep_env, capsys):
    """A name with both quote characters never reaches an MLflow filter; an orphan run is closed."""
    runs = sweep_env
    name = """o'brien "quoted" sweep"""
    assert main(["sweep", "smoke", "--quiet", "--name", name]) == 0
    assert "every grid configuration is done" in capsys.readouterr().out
    mruns = _all_runs(runs)
    children = [r for r in mruns if r.data.tags.get("mtsearch.kind") == "trial"]
    assert len(children) == 4 and {r.data.tags["sweep"] for r in mruns} == {name}
    # Make one run look killed mid-training: its result gone, its MLflow run still RUNNING.
    victim = children[0]
    _client(runs).update_run(victim.info.run_id, status="RUNNING")
    rd = Path(victim.data.tags["run_dir"])
    (rd / "result.json").unlink()
    assert main(["sweep", "smoke", "--quiet", "--name", name]) == 0
    out = capsys.readouterr().out
    assert "1 run(s) trained" in out
    statuses = {r.info.run_id: r.info.status for r in _all_runs(runs)}
    assert statuses[victim.info.run_id] == "FAILED"
    assert "RUNNING" not in statuses.values()
    assert json.loads((rd / "result.json").read_text())["status"] == "finished"


def test_filter_values_are_quoted_or_refused():
    from mtsearch.tracking import filter_value

    assert filter_value("abc") == "'abc'"
    assert filter_value("it's") == '"it\'s"'
    with pytest.raises(ValueError, match="both quote characters"):
        filter_value("""it's "x" """)


def test_a_parent_run_created_but_not_recorded_is_adopted(sweep_env, monkeypatch):
    """A session killed between creating the parent run and recording it leaves no second parent."""
    from mtsearch import tracking
    from mtsearch.backends import BACKENDS
    from mtsearch.sweep.space import load_space

    real = tracking.parent_run
    made = []

    def parent_then_die(*args, **kwargs):
        made.append(real(*args, **kwargs))
        raise KeyboardInterrupt  # the process dies before sweep.json records the parent

    monkeypatch.setattr(tracking, "parent_run", parent_then_die)
    with pytest.raises(KeyboardInterrupt):
        BACKENDS.get("optuna")().run(load_space("smoke"), progress=False)
    monkeypatch.setattr(tracking, "parent_run", real)
    BACKENDS.get("optuna")().run(load_space("smoke"), progress=False)
    parents = [r for r in _all_runs(sweep_env) if r.data.tags.get("mtsearch.kind") == "sweep"]
    assert [p.info.run_id for p in parents] == made and parents[0].info.status == "FINISHED"
