"""Every preset: the published systems are there, each with the report's settings quoted, its
deviations listed, the encoder caveat, cpu/gpu profiles that change the budget only, and
each trains a few steps on the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from mtsearch.config import PROFILE_KEYS, RunConfig, load_config
from mtsearch.records import read_metrics
from mtsearch.reproduce import published_scores, reproducible_presets
from mtsearch.train import train

PRESET_DIR = Path(__file__).resolve().parents[1] / "search_spaces" / "presets"
PRESETS = sorted(PRESET_DIR.glob("*.yaml"))
REPORTS = {p.preset: p for p in published_scores() if p.split == "dev"}
CAVEAT = "all-MiniLM-L6-v2, which was trained on QQP\n# duplicate pairs and NLI"


def _id(path: Path) -> str:
    return path.stem


def test_the_published_systems_are_there():
    assert {p.stem for p in PRESETS} >= {"baseline", *reproducible_presets()}
    assert [REPORTS[p].report for p in reproducible_presets()] == ["000", "001", "002", "004"]


@pytest.mark.parametrize("path", PRESETS, ids=_id)
def test_preset_loads_with_documented_keys(path: Path):
    raw = yaml.safe_load(path.read_text())
    assert set(raw) <= set(RunConfig.model_fields) | {"profiles"}  # every key a RunConfig field
    assert path.read_text().startswith("#"), "a preset opens with a comment citing its technique"
    load_config(path)


@pytest.mark.parametrize("preset", list(REPORTS))
def test_a_report_preset_quotes_the_report_lists_its_deviations_and_the_caveat(preset: str):
    text = (PRESET_DIR / f"{preset}.yaml").read_text()
    header = text.split("\nmodel:")[0]
    report = REPORTS[preset]
    assert f'Report {report.report}, "{report.title}" ({report.authors})' in " ".join(
        header.replace("# ", "").split("\n")
    )
    assert "ENCODER CAVEAT" in header and CAVEAT in header
    assert (
        "What is copied, with the report's words:" in header and "Deviations that remain, and why:" in header
    )
    assert header.count('"') >= 6  # the report's own sentences, quoted


@pytest.mark.parametrize("preset", list(REPORTS))
def test_profiles_change_only_the_budget_cpu_on_minilm_gpu_on_bert_base(preset: str):
    path = PRESET_DIR / f"{preset}.yaml"
    cpu, gpu = load_config(path, profile="cpu"), load_config(path, profile="gpu")
    assert cpu == load_config(path)  # cpu is the default
    assert cpu.model == "minilm" and cpu.freeze_layers > 0
    assert gpu.model == "bert-base-uncased" and gpu.freeze_layers == 0 and gpu.eval_limit is None
    assert gpu.max_epochs is not None and gpu.max_steps is None  # the report's epochs, as epochs
    technique = set(RunConfig.model_fields) - PROFILE_KEYS
    assert {k: getattr(cpu, k) for k in technique} == {k: getattr(gpu, k) for k in technique}


def test_002s_learning_rates_run_as_the_report_says_qqp_highest():
    cfg = load_config(PRESET_DIR / "attention_separate_updates.yaml")
    lrs = cfg.args("update").lr
    assert lrs == {"sst": 1e-7, "para": 1e-5, "sts": 1e-6} and max(lrs, key=lrs.get) == "para"
    assert cfg.args("update").optimizers == "per_task"


def _tiny_budget(config: RunConfig, data_dir: Path) -> dict:
    """Overrides that make a preset a few-second run on the tiny model, technique kept."""
    out = {
        "model": "tiny",
        "freeze_layers": min(config.freeze_layers, 1),  # tiny has 2 layers
        "data_dir": str(data_dir),
        "train_limit": 64,
        "max_steps": 3,
        "eval_every": 100,
        "eval_every_epochs": None,
        "eval_limit": 50,
        "final_eval": False,
        "max_length": 48,
        "progress": False,
        "mlflow": False,
        "num_threads": 1,
        "simcse_epochs": None,
        "simcse_steps": 2,
        "simcse_batch_size": 16,
    }
    if config.has_phases():
        # phases counted in epochs stay inside the run: the preset's epochs (64 rows = one
        # batch of 64 per epoch) instead of a step cap
        out["max_steps"] = None
    return out


@pytest.mark.parametrize("path", PRESETS, ids=_id)
def test_preset_trains_a_few_steps_on_the_tiny_model(path: Path, small_data_dir, runs):
    config = load_config(path, {"name": path.stem, **_tiny_budget(load_config(path), small_data_dir)})
    result = train(config)
    expected = 3 if config.max_steps else round(config.max_epochs)
    assert result.status == "finished" and result.steps == expected
    rows = read_metrics(result.run_dir / "metrics.jsonl")
    kinds = [r["kind"] for r in rows]
    assert kinds == (["simcse"] if config.simcse != "none" else []) + ["eval"]
    assert np.isfinite(result.overall)
    assert all(np.isfinite(v) for v in rows[-1]["train_loss"].values())
