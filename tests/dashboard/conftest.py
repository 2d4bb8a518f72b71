"""Dashboard fixtures: one real smoke sweep per test session, and sweeps written without training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.dashboard.synthetic import write_sweep
from tests.helpers import built_once


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory, data_dir, token_cache) -> Path:
    """runs/ holding the smoke space swept once (tiny model, 2 configurations x 2 seeds, checkpoints kept)."""
    return built_once(tmp_path_factory, "dash-runs", lambda root: _sweep_smoke(root, data_dir, token_cache))


def _sweep_smoke(root: Path, data_dir: Path, token_cache: Path) -> None:
    from mtsearch.backends import BACKENDS
    from mtsearch.sweep.results import compute, write_tables
    from mtsearch.sweep.space import load_space

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTSEARCH_RUNS", str(root))
        mp.setenv("MTSEARCH_CACHE", str(token_cache))
        mp.setenv("MTSEARCH_DATA", str(data_dir))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        out = BACKENDS.get("optuna")().run(
            load_space("smoke", extra_set={"save_checkpoint": True}), progress=False
        )
        assert out.counts["configurations"] == 2 and out.runs == 4
        write_tables(compute("smoke"))  # trials.csv, as `mtsearch sweep` leaves it


@pytest.fixture
def dash_env(monkeypatch, data_dir, token_cache):
    """Point the app (AppTest runs in-process) at a runs/ folder: call with the folder."""

    def use(root: Path) -> Path:
        monkeypatch.setenv("MTSEARCH_RUNS", str(root))
        monkeypatch.setenv("MTSEARCH_CACHE", str(token_cache))
        monkeypatch.setenv("MTSEARCH_DATA", str(data_dir))
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.delenv("MTSEARCH_MLFLOW_URL", raising=False)
        monkeypatch.delenv("MTSEARCH_MLFLOW_PORT", raising=False)
        return root

    return use


@pytest.fixture
def smoke(smoke_root, dash_env) -> Path:
    return dash_env(smoke_root)


@pytest.fixture
def synthetic_root(tmp_path) -> Path:
    root = tmp_path / "runs"
    write_sweep(root, "synthetic")
    return root


@pytest.fixture
def both_root(smoke_root, tmp_path) -> Path:
    """The smoke sweep and a synthetic one side by side (copies: tests may write into them)."""
    root = tmp_path / "both"
    shutil.copytree(
        smoke_root / "sweeps" / "smoke",
        root / "sweeps" / "smoke",
        ignore=shutil.ignore_patterns("*.safetensors"),
    )
    write_sweep(root, "synthetic")
    return root
