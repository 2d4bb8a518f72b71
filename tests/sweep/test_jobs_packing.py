"""choose_packing: how many runs share a GPU, from hand-made measurements (no GPU needed)."""

from __future__ import annotations

import pytest

from mtsearch.backends.jobs import PackProbe, choose_packing

# Shaped like the H200 measurements of issue 17 (MiniLM, runs per hour of one GPU).
H200 = [PackProbe(1, 8.0), PackProbe(2, 16.0), PackProbe(4, 32.0), PackProbe(8, 54.4), PackProbe(16, 56.0)]


def test_packing_stops_where_one_more_run_no_longer_pays():
    packing = choose_packing(H200, run_memory_gib=2.0, gpu_memory_gib=139.0, cores=16, gpus=1)
    assert (packing.per_gpu, packing.jobs, packing.gpus_per_trial) == (8, 8, 0.125)
    assert "16 runs raised runs per hour only 1.03x over 8 (< 1.05x)" in packing.reason
    assert "memory allows 62" in packing.reason and "cores 16 a GPU" in packing.reason


def test_packing_is_capped_by_cores_and_by_memory():
    by_cores = choose_packing(H200, run_memory_gib=2.0, gpu_memory_gib=139.0, cores=4, gpus=1)
    assert by_cores.per_gpu == 4 and "8 would exceed the cap of 4" in by_cores.reason
    by_memory = choose_packing(H200, run_memory_gib=40.0, gpu_memory_gib=80.0, cores=16, gpus=1)
    assert by_memory.per_gpu == 1 and "memory allows 1 (40.0 GiB a run of 80 GiB)" in by_memory.reason


def test_several_gpus_share_the_cores_and_each_take_the_same_count():
    packing = choose_packing(H200, run_memory_gib=2.0, gpu_memory_gib=139.0, cores=16, gpus=2)
    assert (packing.per_gpu, packing.gpus, packing.jobs) == (8, 2, 16)  # 8 cores a GPU: 8 runs each


def test_every_count_paying_keeps_the_largest_measured_and_nothing_measured_keeps_one():
    rising = [PackProbe(1, 10.0), PackProbe(2, 20.0)]
    packing = choose_packing(rising, run_memory_gib=1.0, gpu_memory_gib=80.0, cores=64, gpus=1)
    assert packing.per_gpu == 2 and "each measured count up to 2 raised runs per hour" in packing.reason
    assert choose_packing([], run_memory_gib=1.0, gpu_memory_gib=80.0, cores=8, gpus=1).per_gpu == 1
    with pytest.raises(ValueError, match="no GPU"):
        choose_packing(rising, run_memory_gib=1.0, gpu_memory_gib=80.0, cores=8, gpus=0)
