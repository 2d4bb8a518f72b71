"""resample_each_epoch (002): a fresh sample per task per epoch, aligned to the same number of batches."""

import numpy as np

from mtsearch.samplers import SAMPLERS, TaskBatches, build_streams
from mtsearch.train.runtime import rng_for

SIZES = {"sst": 500, "para": 2000, "sts": 130}
BATCH = {"sst": 30, "para": 150, "sts": 30}  # 002's batch sizes


def _make(seed=0, **args):
    return SAMPLERS.create(
        "resample_each_epoch",
        SAMPLERS.parse_args("resample_each_epoch", args, "sampler_args"),
        sizes=SIZES,
        batch_sizes=BATCH,
        rng=np.random.default_rng(seed),
    )


def test_every_task_has_the_same_number_of_batches_and_its_own_sample_size():
    s = _make()
    # the fewest full batches: sts 130 // 30 = 4 (sst 16, para 13)
    assert s.steps_per_epoch() == 4
    assert {t: len(s.index_pool(t)) for t in SIZES} == {"sst": 120, "para": 600, "sts": 120}
    # enough examples everywhere: without replacement
    assert all(len(set(s.index_pool(t).tolist())) == len(s.index_pool(t)) for t in SIZES)
    assert s.expected_examples_per_step() == 210.0


def test_samples_are_redrawn_each_epoch_and_every_epoch_uses_its_sample_once():
    s = _make(seed=1)
    feed = TaskBatches(s, build_streams(s, rng_for, 0))
    epochs = []
    for _ in range(3):
        drawn = [feed.next_batches() for _ in range(4)]
        assert all([t for t, _ in step] == ["sst", "para", "sts"] for step in drawn)
        pools = {t: np.sort(s.index_pool(t)) for t in SIZES}
        for t in SIZES:
            seen = np.sort(np.concatenate([idx for step in drawn for task, idx in step if task == t]))
            assert np.array_equal(seen, pools[t])  # the epoch's sample, each example once
        epochs.append(pools)
    assert s.epoch == 3
    for t in SIZES:  # a new sample each epoch
        assert not np.array_equal(epochs[0][t], epochs[1][t]) and not np.array_equal(
            epochs[1][t], epochs[2][t]
        )


def test_a_task_too_small_for_its_sample_draws_with_replacement():
    s = _make(steps=10)  # sts: 10 x 30 = 300 > 130 examples
    assert len(s.index_pool("sts")) == 300 and len(set(s.index_pool("sts").tolist())) <= 130
    assert len(set(s.index_pool("sst").tolist())) == 300  # 500 >= 300: without replacement
