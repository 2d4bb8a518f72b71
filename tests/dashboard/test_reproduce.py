"""The leaderboard card's command, run as a user would, reproduces the best configuration's runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtsearch.dashboard.leaderboard import best_configuration
from mtsearch.dashboard.sweeps import load_sweep
from mtsearch.records import read_metrics


@pytest.mark.e2e
def test_the_best_configurations_command_reproduces_its_metrics(smoke_root, tmp_path, data_dir, token_cache):
    d = load_sweep(smoke_root / "sweeps" / "smoke")
    best = best_configuration(d)
    # the card's command loops over every seed; each pass is the per-seed command (run one: CPU time)
    assert best["command"].startswith(
        f"for seed in {' '.join(map(str, best['seed_values']))}; do mtsearch train "
    )
    assert (
        best["command"]
        .replace('"seed=$seed"', f"seed={best['seed_values'][0]}")
        .startswith(f"for seed in {' '.join(map(str, best['seed_values']))}; do {best['commands'][0]}; done")
    )
    out = tmp_path / "runs"
    env = {**os.environ, "MTSEARCH_RUNS": str(out), "MTSEARCH_CACHE": str(token_cache),
           "MTSEARCH_DATA": str(data_dir), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    # The sweep's MLflow store is already created: a fresh one would cost seconds of migrations.
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{smoke_root / 'mlflow.db'}"
    proc = subprocess.run(
        ["bash", "-c", best["commands"][0]], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = [p for p in out.iterdir() if (p / "metrics.jsonl").exists()]
    original = read_metrics(d.sweep_dir / "runs" / best["runs"][0] / "metrics.jsonl")
    again = read_metrics(run_dir / "metrics.jsonl")
    assert [(r["step"], r["examples"]) for r in again] == [(r["step"], r["examples"]) for r in original]
    for a, b in zip(again, original, strict=True):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-9)
        assert a["overall"] == pytest.approx(b["overall"], abs=1e-9)
    res = d.results.runs.set_index("run")
    # the run's score: half B of the evaluation at the step half A chose (held_out_score)
    chosen = max(again, key=lambda r: r["half_a"]["overall"])
    assert chosen["half_b"]["overall"] == pytest.approx(res.loc[best["runs"][0], "overall"], abs=1e-9)
