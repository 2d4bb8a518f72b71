"""Run id -> experiment id, read from the store tracking.py names through MLflow's client."""

from __future__ import annotations

import json

import pytest

from mtsearch.dashboard.mlflow_links import mlflow_experiments
from mtsearch.tracking import sqlite_file, tracking_uri

pytestmark = pytest.mark.filterwarnings("ignore")


def _run_ids(smoke_root):
    runs = smoke_root / "sweeps" / "smoke" / "runs"
    return [json.loads((rd / "result.json").read_text())["mlflow_run_id"] for rd in sorted(runs.glob("*/s*"))]


def test_the_dashboard_reads_the_store_runs_write_to(smoke_root, monkeypatch):
    """The smoke sweep's runs are found by id, in the experiment MLflow filed them under."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MTSEARCH_RUNS", str(smoke_root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert sqlite_file(tracking_uri()) == (smoke_root / "mlflow.db").resolve()
    ids = _run_ids(smoke_root)
    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_root / 'mlflow.db'}")
    found = mlflow_experiments([*ids, "0" * 32, None, ""])  # unknown and missing ids are left out
    assert found == {rid: client.get_run(rid).info.experiment_id for rid in ids}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{smoke_root / 'mlflow.db'}")
    assert mlflow_experiments(ids) == found


def test_no_store_no_links_and_no_store_created(smoke_root, tmp_path, monkeypatch):
    ids = _run_ids(smoke_root)
    monkeypatch.setenv("MTSEARCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_experiments(ids) == {}
    assert not (tmp_path / "runs").exists()  # looking never creates a store
    # A server is not waited on: only a local sqlite store is read.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert sqlite_file(tracking_uri()) is None and mlflow_experiments(ids) == {}
