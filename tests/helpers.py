"""Plain helpers the tests import (a conftest.py is pytest's to load, never a module to import)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path | None:
    for cand in (ROOT / "data" / "cs224n", ROOT.parent / "shared" / "data" / "cs224n"):
        if (cand / "ids-sst-train.csv").exists():
            return cand
    return None


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
