"""Every preset: the published systems are there, each with the report's settings quoted, its
deviations listed, the encoder caveat, cpu/gpu profiles that change the budget only, and
each trains a few steps on the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
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


def test_004_trains_sts_with_the_reports_plus_minus_one_cosine_embedding_loss():
    """The report's cosine embedding loss, by hand: 1 - cos for a similar pair (target +1),
    max(0, cos - margin) for a dissimilar one (target -1); graded targets stay an option."""
    from mtsearch.heads import STS_SCALE
    from mtsearch.models.multitask import LossOptions, task_loss

    cfg = load_config(PRESET_DIR / "rr_over_multistep_phases_cosine.yaml", profile="gpu")
    assert (cfg.sts_loss, cfg.sts_cosine_targets, cfg.sts_margin) == ("cosine_embedding", "sign", 0.0)
    cos = torch.tensor([0.8, 0.3, -0.4])
    gold = torch.tensor([4.0, 1.0, 0.5])  # similar (+1), dissimilar (-1), dissimilar (-1)
    by_hand = ((1 - 0.8) + max(0.0, 0.3 - 0.0) + max(0.0, -0.4 - 0.0)) / 3  # = 0.5 / 3
    got = task_loss("sts", STS_SCALE * cos, gold, LossOptions.from_config(cfg))
    assert got.item() == pytest.approx(by_hand, abs=1e-6)
    graded = LossOptions.from_config(cfg.model_copy(update={"sts_cosine_targets": "graded"}))
    assert task_loss("sts", STS_SCALE * cos, gold, graded).item() != pytest.approx(by_hand, abs=1e-3)


@pytest.mark.parametrize("preset", list(REPORTS))
def test_report_presets_shuffle_as_their_reports_and_bucket_only_on_the_cpu_budget(preset: str):
    path = PRESET_DIR / f"{preset}.yaml"
    assert load_config(path, profile="gpu").bucket_by_length is False
    assert load_config(path, profile="cpu").bucket_by_length is True
    assert "cpu profile, batching: length-bucketed batches" in path.read_text()  # listed as a deviation


def test_001s_pcgrad_averages_per_parameter_and_000_has_no_simcse_temperature():
    cfg001 = load_config(PRESET_DIR / "ensemble_cnn_bilstm_supsimcse_pcgrad.yaml")
    assert cfg001.args("update").reduction == "mean_reached" and cfg001.args("update").scope == "all"
    assert load_config(PRESET_DIR / "concat_shared_resample_pcgrad_simcse.yaml").simcse_temperature == 1.0
