"""benchmarks/bench_gpu.py on the CPU: it skips cleanly; its table and JSON from fake measurements."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.helpers import load_file_module

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    return load_file_module(ROOT / "benchmarks" / "bench_gpu.py")


FAKE = {
    "device": "NVIDIA H200",
    "gpus": 1,
    "steps": 200,
    "training": [
        {
            "model": "MiniLM",
            "mode": "eager",
            "mtsearch": {"rate": 1340.0, "first_half_seconds": 9.0, "gpu_util_mean": 15.0},
            "plain": {"rate": 1054.0, "first_half_seconds": 9.0},
        },
        {
            "model": "MiniLM",
            "mode": "compiled",
            "mtsearch": {"rate": 2500.0, "first_half_seconds": 61.0, "gpu_util_mean": None},
            "plain": {"error": "StageTimeout: over its 180 s"},
        },
    ],
    "evaluation": {"rate": 16000.0, "examples": 22176, "seconds": 1.4, "first_pass_seconds": 3.0},
    "auto_cost": {
        "seconds": 41.0,
        "jobs": 8,
        "per_gpu": 8,
        "line": "jobs: 8, runs sharing each GPU: GPU 0: 8",
    },
    "stages_not_measured": {"plain-compiled": "not started: 9.1 min had passed (--minutes)"},
    "jobs": [
        {
            "jobs": 1,
            "wall_seconds": 60.0,
            "runs_per_hour": 60.0,
            "gpu_util_mean": 15.0,
            "run_memory_gib": 2.0,
        },
        {
            "jobs": 2,
            "wall_seconds": 60.0,
            "runs_per_hour": 120.0,
            "gpu_util_mean": 30.0,
            "run_memory_gib": 2.0,
        },
        {
            "jobs": 4,
            "wall_seconds": 80.0,
            "runs_per_hour": 180.0,
            "gpu_util_mean": None,
            "run_memory_gib": 2.1,
        },
        {
            "jobs": 8,
            "wall_seconds": 157.0,
            "runs_per_hour": 183.0,
            "gpu_util_mean": 99.0,
            "run_memory_gib": 2.1,
        },
    ],
}


def test_without_cuda_it_skips_with_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _bench().main(["--out", str(tmp_path / "gpu.json")]) == 0
    assert capsys.readouterr().out == "bench_gpu: skipped, torch sees no CUDA device\n"
    assert not (tmp_path / "gpu.json").exists()


def test_an_unknown_stage_is_one_line(capsys):
    import pytest

    with pytest.raises(SystemExit):
        _bench().main(["--stages", "eval,warp"])
    assert "unknown stage(s) warp: the stages are minilm-eager, eval" in capsys.readouterr().err


def test_a_stage_over_its_cap_is_recorded_and_the_next_runs():
    bench = _bench()
    assert bench._guarded(lambda: 1 / 0) == {"error": "ZeroDivisionError: division by zero"}
    import signal

    with bench.time_cap(1):  # the cap's signal ends the wait, on any machine
        assert bench._guarded(signal.pause) == {"error": "StageTimeout: over its 1 s"}


def test_table_and_json_from_fake_measurements(tmp_path):
    bench = _bench()
    result = dict(FAKE, auto=bench.packing_of(FAKE["jobs"], gpu_memory_gib=139.0, cores=16, gpus=1))
    assert result["auto"]["per_gpu"] == 4  # 8 jobs raise runs per hour only 1.02x over 4
    table = bench.format_table(result)
    assert (
        "| training MiniLM, eager | mtsearch 1,340 (GPU busy 15%) vs plain loop 1,054 examples/s; 1.27x |"
        in table
    )
    assert (
        "| training MiniLM, compiled | mtsearch 2,500 (first half 61 s) examples/s; "
        "plain: StageTimeout: over its 180 s |" in table
    )
    assert "| evaluation, MiniLM, full dev (22,176 examples) | 16,000 examples/s |" in table
    assert (
        "| `--jobs auto` measurement, sampling gpu profile | 41 s: jobs: 8, runs sharing each GPU: GPU 0: 8 |"
        in table
    )
    assert "| stage plain-compiled | not started: 9.1 min had passed (--minutes) |" in table
    assert "| runs per hour at jobs 4 | 180.0 (3.00x jobs 1) |" in table  # no utilisation sampled
    assert "| runs per hour at jobs 8 | 183.0 (3.05x jobs 1), GPU busy 99% |" in table
    assert "| `--jobs auto` would choose | 4 run(s) a GPU: " in table
    bench.write_result(result, tmp_path / "bench" / "gpu.json")
    assert json.loads((tmp_path / "bench" / "gpu.json").read_text()) == result
