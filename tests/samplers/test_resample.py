"""resample_equal: every task resampled to n examples, then round robin over the pools."""

import numpy as np
import pytest

from mtsearch.config import make_config
from mtsearch.errors import ConfigError
from mtsearch.samplers import SAMPLERS, BatchStream, TaskBatches

SIZES = {"sst": 500, "para": 300, "sts": 60}


def _labels():
    rng = np.random.default_rng(9)
    return {
        "sst": rng.integers(0, 5, 500).astype(np.float32),
        # para: 30 duplicates among 300 (1 in 10)
        "para": (np.arange(300) % 10 == 0).astype(np.float32),
        "sts": rng.uniform(0, 5, 60).astype(np.float32),
    }


def _make(seed=0, batch=None, **args):
    return SAMPLERS.create(
        "resample_equal",
        SAMPLERS.get("resample_equal").Args(**args),
        sizes=SIZES,
        batch_sizes=batch or {t: 10 for t in SIZES},
        labels=_labels(),
        rng=np.random.default_rng(seed),
    )


def test_pools_hold_n_examples_with_replacement_only_when_a_task_is_smaller():
    s = _make(n=200)
    for t, n in SIZES.items():
        pool = s.index_pool(t)
        assert len(pool) == 200 and pool.min() >= 0 and pool.max() < n
    assert len(set(s.index_pool("sst").tolist())) == 200  # 500 >= 200: without replacement
    assert len(set(s.index_pool("para").tolist())) == 200  # 300 >= 200: without replacement
    # 60 < 200: with replacement, so repeats (200 draws cannot all be distinct of 60)
    sts = np.bincount(s.index_pool("sts"), minlength=60)
    assert sts.sum() == 200 and sts.max() > 1
    # every example is equally likely: each of the 60 expects 200/60 = 3.33 copies, so
    # the largest count stays well below 15 (P(Binomial(200, 1/60) >= 15) < 1e-5 per example).
    assert sts.max() < 15


def test_default_n_is_the_mean_task_size():
    assert _make().n == round((500 + 300 + 60) / 3)  # 287


def test_each_epoch_gives_exactly_n_of_every_task():
    # n = 45 with batches 10, 20, 45: 5, 3 and 1 batches; a task sits out once its pool is used.
    s = _make(n=45, batch={"sst": 10, "para": 20, "sts": 45})
    assert s.steps_per_epoch() == 5
    streams = {
        t: BatchStream(SIZES[t], s.batch_sizes[t], np.random.default_rng(i), pool=s.index_pool(t))
        for i, t in enumerate(SIZES)
    }
    feed = TaskBatches(s, streams)
    for epoch in range(1, 2001):  # 2,000 epochs = 10,000 steps
        drawn = [feed.next() for _ in range(5)]
        assert [list(d) for d in drawn] == [
            ["sst", "para", "sts"],
            ["sst", "para"],
            ["sst", "para"],
            ["sst"],
            ["sst"],
        ]
        assert s.epoch == epoch
        for t in SIZES:
            seen = np.concatenate([d[t] for d in drawn if t in d])
            assert sorted(seen.tolist()) == sorted(s.index_pool(t).tolist())  # the pool, once
    assert s.expected_examples_per_step() == 3 * 45 / 5


def test_balanced_labels_share_n_equally():
    s = _make(n=101, balance_labels=True)
    labels = _labels()
    para = labels["para"][s.index_pool("para")]
    # 101 = 50 + 51 in some order; the 30 duplicates are drawn with replacement, the
    # 270 non-duplicates without.
    assert sorted(np.bincount(para.astype(int)).tolist()) == [50, 51]
    dup = s.index_pool("para")[para == 1]
    nondup = s.index_pool("para")[para == 0]
    assert len(set(dup.tolist())) < len(dup) and len(set(nondup.tolist())) == len(nondup)
    # sst: 5 labels, 101 = 20 x 5 + 1: four get 20, one gets 21.
    sst = np.bincount(labels["sst"][s.index_pool("sst")].astype(int), minlength=5)
    assert sorted(sst.tolist()) == [20, 20, 20, 20, 21]
    # sts is regression: resampled without regard to its scores.
    assert len(s.index_pool("sts")) == 101


def test_unbalanced_pools_keep_the_label_mix_within_tolerance():
    # Without balancing para's pool of 200 (without replacement from 300, 30 duplicates)
    # is hypergeometric: mean 20 duplicates, sd sqrt(200 * .1 * .9 * 100 / 299) = 2.45;
    # 4 sd = 9.8.
    para = _labels()["para"][_make(n=200).index_pool("para")]
    assert abs(para.sum() - 20) <= 9.8


def test_same_seed_same_pools_other_seed_others():
    a, b, c = _make(seed=3, n=50), _make(seed=3, n=50), _make(seed=4, n=50)
    for t in SIZES:
        assert np.array_equal(a.index_pool(t), b.index_pool(t))
    assert any(not np.array_equal(a.index_pool(t), c.index_pool(t)) for t in SIZES)


def test_balance_labels_needs_a_classification_task():
    with pytest.raises(
        ConfigError, match=r"sampler_args\.balance_labels needs a classification task .* tasks is sts"
    ):
        make_config({"sampler": "resample_equal", "sampler_args": {"balance_labels": True}, "tasks": "sts"})
    with pytest.raises(ValueError, match="needs the training labels of para"):
        SAMPLERS.create(
            "resample_equal",
            SAMPLERS.get("resample_equal").Args(balance_labels=True),
            sizes={"para": 10},
            batch_sizes={"para": 2},
            rng=np.random.default_rng(0),
        )


def test_balanced_tasks_and_sizes_per_task_are_settings():
    # 000: QQP balanced (as many duplicates as not), SST resampled as is, a size per task.
    s = _make(n=100, balance_labels=["para"], task_n={"para": 200})
    labels = _labels()
    para = labels["para"][s.index_pool("para")]
    assert len(para) == 200 and sorted(np.bincount(para.astype(int)).tolist()) == [100, 100]
    assert len(s.index_pool("sst")) == 100 and len(s.index_pool("sts")) == 100
    # sst is not balanced: its pool of 100 out of 500 keeps the label mix (no 20-20-20-20-20)
    assert "sst" not in s.balanced and s.balanced == ["para"]
    assert s.expected_examples_per_step() == (100 + 200 + 100) / s.steps_per_epoch()
    # from the command line a list comes as a comma-separated string
    assert SAMPLERS.parse_args(
        "resample_equal", {"balance_labels": "para"}, "sampler_args"
    ).balance_labels == ["para"]


def test_balanced_and_sized_tasks_must_be_trained_classification_tasks():
    with pytest.raises(ConfigError, match=r"balance_labels names sts, whose labels are not classes"):
        make_config({"sampler": "resample_equal", "sampler_args": {"balance_labels": ["sts"]}})
    with pytest.raises(ConfigError, match=r"sampler_args\.balance_labels names 'cfimdb'"):
        make_config({"sampler": "resample_equal", "sampler_args": {"balance_labels": ["cfimdb"]}})
    with pytest.raises(ConfigError, match=r"sampler_args\.task_n names 'cfimdb'"):
        make_config({"sampler": "resample_equal", "sampler_args": {"task_n": {"cfimdb": 10}}})
