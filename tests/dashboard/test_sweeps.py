"""Reading sweeps: configuration counts from the run directories, the live signature."""

from __future__ import annotations

import json

import pytest

from mtsearch.dashboard.sweeps import COUNT_KEYS, dir_counts, load_sweep, signature
from tests.dashboard.synthetic import configurations, write_sweep

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def synthetic(tmp_path):
    return load_sweep(write_sweep(tmp_path / "runs", "synthetic"))


def test_counts_come_from_the_run_directories(synthetic, smoke_root):
    assert synthetic.counts_from == "run directories" and synthetic.counts["duplicate"] == 0
    assert {k: synthetic.counts[k] for k in COUNT_KEYS} == dir_counts(synthetic.sweep_dir)
    assert synthetic.counts["done"] == len(configurations())
    smoke = load_sweep(smoke_root / "sweeps" / "smoke")
    assert smoke.counts["done"] == 2 and dir_counts(smoke.sweep_dir) == dict(
        done=2, pruned=0, failed=0, running=0
    )
    assert smoke.wall_seconds > 0 and smoke.best == pytest.approx(
        smoke.results.configurations["overall_mean"].max()
    )


def test_a_running_trial_is_counted_and_changes_the_signature(synthetic):
    sig = signature(synthetic.sweep_dir)
    rd = synthetic.sweep_dir / "runs" / "0123456789" / "s0"
    rd.mkdir(parents=True)
    (rd.parent / "config.json").write_text(json.dumps({"params": {"lr": 1e-4}, "params_key": "x"}))
    (rd / "run.json").write_text(json.dumps({"trial": 99, "seed": 0, "params": {"lr": 1e-4}}))
    assert dir_counts(synthetic.sweep_dir)["running"] == 1
    assert signature(synthetic.sweep_dir) != sig
