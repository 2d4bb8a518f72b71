"""The leaderboard card's command, run as a user would, reproduces the best run's scores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtsearch.dashboard.leaderboard import best_configuration
from mtsearch.dashboard.sweeps import load_sweep
from mtsearch.records import read_metrics


@pytest.mark.slow
def test_the_best_configurations_command_reproduces_its_metrics(smoke_root, tmp_path, data_dir, token_cache):
    d = load_sweep(smoke_root / "sweeps" / "smoke")
    best = best_configuration(d)
    assert best["command"].startswith("mtsearch train ")
    out = tmp_path / "runs"
    env = {**os.environ, "MTSEARCH_RUNS": str(out), "MTSEARCH_CACHE": str(token_cache),
           "MTSEARCH_DATA": str(data_dir), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    # The sweep's MLflow store is already created: a fresh one would cost seconds of migrations.
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{smoke_root / 'mlflow.db'}"
    proc = subprocess.run(
        ["bash", "-c", best["command"]], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = [p for p in out.iterdir() if (p / "metrics.jsonl").exists()]
    original = read_metrics(d.sweep_dir / "runs" / best["run"] / "metrics.jsonl")
    again = read_metrics(run_dir / "metrics.jsonl")
    assert [(r["step"], r["examples"]) for r in again] == [(r["step"], r["examples"]) for r in original]
    for a, b in zip(again, original, strict=True):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-9)
        assert a["overall"] == pytest.approx(b["overall"], abs=1e-9)
    assert max(r["overall"] for r in again) == pytest.approx(best["run_scores"]["overall"], abs=1e-9)
