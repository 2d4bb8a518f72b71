"""The leaderboard's reproducing command, and the runs table's links to MLflow."""

from __future__ import annotations

import shlex

import pytest

from mtsearch.cli import build_parser
from mtsearch.config import load_config, make_config, parse_set
from mtsearch.dashboard.leaderboard import reproduce_command, runs_table
from mtsearch.dashboard.sweeps import load_sweep

pytestmark = pytest.mark.filterwarnings("ignore")


def test_the_command_rebuilds_the_run_config_of_every_smoke_run(smoke_root):
    """The card's command, parsed as the CLI parses it, gives the very config the sweep trained."""
    d = load_sweep(smoke_root / "sweeps" / "smoke")
    for _, run in d.results.runs.iterrows():
        cmd = reproduce_command(d.meta, run["params"], int(run["seed"]))
        args = build_parser().parse_args(shlex.split(cmd)[1:])
        rebuilt = load_config(None, parse_set(args.set))
        trained = load_config(d.sweep_dir / "runs" / run["run"] / "config.yaml")
        assert rebuilt.config_hash() == trained.config_hash() == run["config_hash"]
        assert rebuilt.seed == trained.seed == run["seed"]


def test_command_values_survive_yaml_quoting():
    meta = {"space": {"base": {"model": "tiny", "tasks": ["sst", "sts"], "task_dropout": {"sts": 0.3},
                               "schedule": "multistep", "schedule_milestones": [0.5, 0.75], "name": "true"}}}  # fmt: skip
    cmd = reproduce_command(meta, {"lr": 3e-5, "sampler": "temperature", "sampler_args.temperature": 2.0}, 3)
    values = parse_set(build_parser().parse_args(shlex.split(cmd)[1:]).set)
    cfg = make_config(values)
    assert cfg.tasks == ("sst", "sts") and cfg.task_dropout == {"sts": 0.3} and cfg.name == "true"
    assert cfg.lr == 3e-5 and cfg.sampler_args == {"temperature": 2.0} and cfg.seed == 3
    assert cfg.schedule_milestones == (0.5, 0.75)


def test_mlflow_links_point_at_each_trials_run(smoke_root, monkeypatch):
    monkeypatch.setenv("MTSEARCH_RUNS", str(smoke_root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    d = load_sweep(smoke_root / "sweeps" / "smoke")
    table = runs_table(d, "http://127.0.0.1:5999")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_root / 'mlflow.db'}")
    assert table["mlflow"].notna().all()
    for _, r in table.iterrows():
        rid = r["mlflow"].rsplit("/", 1)[-1]
        run = client.get_run(rid)
        assert run.data.tags["sweep"] == "smoke" and run.data.tags["trial"] == str(r["trial"])
        assert run.data.tags["seed"] == str(r["seed"])
        assert r["mlflow"] == f"http://127.0.0.1:5999/#/experiments/{run.info.experiment_id}/runs/{rid}"
