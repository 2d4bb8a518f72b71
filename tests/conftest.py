"""Shared fixtures: where the real data is, and a private runs/ + MLflow store per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def real_data_dir() -> Path | None:
    for cand in (ROOT / "data" / "cs224n", ROOT.parent / "shared" / "data" / "cs224n"):
        if (cand / "ids-sst-train.csv").exists():
            return cand
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = real_data_dir()
    if d is None:
        pytest.skip("the CS224N data is not beside the checkout (run `make data`)")
    return d


@pytest.fixture(scope="session")
def token_cache(tmp_path_factory) -> Path:
    """One token cache for the whole session: tokenizing the real files once is enough."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def runs(tmp_path, monkeypatch, token_cache) -> Path:
    """A private runs/ folder and MLflow store, so tests never touch the user's."""
    root = tmp_path / "runs"
    monkeypatch.setenv("MTSEARCH_RUNS", str(root))
    monkeypatch.setenv("MTSEARCH_CACHE", str(token_cache))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


def tiny_config(data_dir: Path, **overrides):
    """A run small enough for a unit test: tiny model, a few hundred rows per task."""
    from mtsearch.config import make_config

    values = dict(
        model="tiny",
        data_dir=str(data_dir),
        train_limit=192,  # a multiple of batch_size: every batch is full
        eval_limit=100,
        final_eval=False,
        max_steps=6,
        eval_every=3,
        batch_size=16,
        max_length=64,
        progress=False,
        mlflow=False,
        num_threads=1,
    )
    values.update(overrides)
    return make_config(values)
