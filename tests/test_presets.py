"""Every preset run config loads, keeps the baseline's budget, and trains on the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from mtsearch.config import RunConfig, load_config, read_config_file
from mtsearch.records import read_metrics
from mtsearch.train import train

PRESETS = sorted((Path(__file__).resolve().parents[1] / "search_spaces" / "presets").glob("*.yaml"))
BUDGET = ("max_steps", "eval_every", "eval_limit")


def _id(path: Path) -> str:
    return path.stem


def test_the_published_systems_are_there():
    assert {p.stem for p in PRESETS} >= {
        "baseline",
        "concat_shared_resample_pcgrad_simcse",
        "ensemble_cnn_bilstm_supsimcse_pcgrad",
        "attention_separate_updates",
        "rr_over_multistep_phases_cosine",
    }


@pytest.mark.parametrize("path", PRESETS, ids=_id)
def test_preset_loads_with_documented_keys_and_the_baseline_budget(path: Path):
    config = load_config(path)
    values = read_config_file(path)
    assert set(values) <= set(RunConfig.model_fields)  # every key is a RunConfig field
    assert path.read_text().startswith("#"), "a preset opens with a comment citing its technique"
    baseline = yaml.safe_load((path.parent / "baseline.yaml").read_text())
    assert {k: getattr(config, k) for k in BUDGET} == {k: baseline[k] for k in BUDGET}


def _tiny_budget(config: RunConfig, data_dir: Path) -> dict:
    """Overrides that make a preset a few-second run on the tiny model, technique kept."""
    out = {
        "model": "tiny",
        "data_dir": str(data_dir),
        "train_limit": 64,
        "max_steps": 3,
        "eval_every": 3,
        "eval_limit": 50,
        "final_eval": False,
        "batch_size": 16,
        "max_length": 48,
        "progress": False,
        "mlflow": False,
        "num_threads": 1,
        "simcse_steps": 2,
        "simcse_batch_size": 16,
    }
    if config.sampler == "resample_equal":
        out["sampler_args.n"] = 32
    # phases count inside max_steps: one heads-only step at each end that has one
    if config.heads_only_steps_before:
        out["heads_only_steps_before"] = 1
    if config.heads_only_steps_after:
        out["heads_only_steps_after"] = 1
    return out


@pytest.mark.parametrize("path", PRESETS, ids=_id)
def test_preset_trains_a_few_steps_on_the_tiny_model(path: Path, small_data_dir, runs):
    config = load_config(path, {"name": path.stem, **_tiny_budget(load_config(path), small_data_dir)})
    result = train(config)
    assert result.status == "finished" and result.steps == 3
    rows = read_metrics(result.run_dir / "metrics.jsonl")
    kinds = [r["kind"] for r in rows]
    assert kinds == (["simcse"] if config.simcse != "none" else []) + ["eval"]
    assert np.isfinite(result.overall)
    assert all(np.isfinite(v) for v in rows[-1]["train_loss"].values())
