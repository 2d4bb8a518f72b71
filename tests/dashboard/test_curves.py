"""Learning curves and gradient cosines, read from every run's metrics.jsonl."""

from __future__ import annotations

import pytest

from mtsearch.dashboard.curves import curves
from mtsearch.dashboard.sweeps import load_sweep
from mtsearch.sweep.results import NA
from tests.dashboard.synthetic import configurations, write_sweep

pytestmark = pytest.mark.filterwarnings("ignore")


def test_curves_and_cosines_from_metrics_files(tmp_path):
    synthetic = load_sweep(write_sweep(tmp_path / "runs", "synthetic"))
    frame, cos = curves(synthetic)
    runs = 2 * len(configurations())
    assert len(frame) == runs * 2 * 4  # 2 evaluations x (overall + 3 tasks)
    assert len(cos) == runs * 2 * 3 and set(cos["pair"]) == {"sst|para", "sst|sts", "para|sts"}
    assert set(frame.loc[frame["sampler"] == "round_robin", "sampler_args.temperature"]) == {NA}
