"""The sampler base: pools, stream restarts, the examples-per-step estimate, the trainer wiring."""

import numpy as np
import pytest

from mtsearch.config import make_config
from mtsearch.errors import ConfigError
from mtsearch.samplers import SAMPLERS, BatchStream, Sampler, TaskBatches, build_streams
from mtsearch.train import train
from tests.helpers import tiny_config


def _plain(sizes, batch_sizes, **kw) -> Sampler:
    # round_robin overrides none of the base's pool and estimate methods tested here.
    args = SAMPLERS.get("round_robin").Args()
    return SAMPLERS.create("round_robin", args, sizes=sizes, batch_sizes=batch_sizes, rng=None, **kw)


@pytest.mark.parametrize("bucket", [False, True])
def test_a_pooled_stream_yields_original_indices_one_pass_per_epoch(bucket):
    # A pool with repeats, drawn from 1000 examples: one epoch is one pass over the pool.
    pool = np.array([7, 7, 7, 500, 999, 3, 3, 42, 0, 640, 640])
    lengths = np.random.default_rng(0).integers(3, 60, 1000)
    stream = BatchStream(1000, 4, np.random.default_rng(1), lengths=lengths if bucket else None, pool=pool)
    assert stream.batches_per_epoch() == 3  # ceil(11 / 4)
    epoch = np.concatenate([stream.next() for _ in range(3)])
    assert sorted(epoch.tolist()) == sorted(pool.tolist()) and stream.epoch == 1
    again = np.concatenate([stream.next() for _ in range(3)])
    assert sorted(again.tolist()) == sorted(pool.tolist()) and stream.epoch == 2


def test_bucketing_a_pool_reads_lengths_by_example():
    # Examples 0..99 short, 100..199 long; the pool holds 20 of each. Sorting within one
    # chunk must put the 20 short ones together: 5 batches of 4 with only short lengths.
    lengths = np.r_[np.full(100, 5), np.full(100, 50)]
    pool = np.r_[np.arange(0, 100, 5), np.arange(100, 200, 5)]
    stream = BatchStream(200, 4, np.random.default_rng(2), lengths=lengths, pool=pool)
    kinds = sorted(len(set(lengths[stream.next()].tolist())) for _ in range(10))
    assert kinds == [1] * 10  # every batch is all short or all long


@pytest.mark.parametrize("bucket", [False, True])
def test_batch_stream_covers_each_example_once_per_epoch(bucket):
    n, bs = 103, 10
    lengths = np.random.default_rng(0).integers(3, 60, n)
    stream = BatchStream(
        n, bs, np.random.default_rng(5), lengths=lengths if bucket else None, chunk_batches=3
    )
    seen = np.concatenate([stream.next() for _ in range(stream.batches_per_epoch())])
    assert sorted(seen.tolist()) == list(range(n))
    again = BatchStream(n, bs, np.random.default_rng(5), lengths=lengths if bucket else None, chunk_batches=3)
    assert np.array_equal(
        again.next(),
        BatchStream(
            n, bs, np.random.default_rng(5), lengths=lengths if bucket else None, chunk_batches=3
        ).next(),
    )
    # The next epoch is a new permutation.
    nxt = np.concatenate([stream.next() for _ in range(stream.batches_per_epoch())])
    assert sorted(nxt.tolist()) == list(range(n)) and not np.array_equal(seen, nxt)


def test_length_bucketing_cuts_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, 5000)

    def padding_efficiency(stream):
        real = padded = 0
        for _ in range(stream.batches_per_epoch()):
            b = lengths[stream.next()]
            real += b.sum()
            padded += b.max() * len(b)
        return real / padded

    plain = padding_efficiency(BatchStream(5000, 32, np.random.default_rng(1)))
    bucketed = padding_efficiency(BatchStream(5000, 32, np.random.default_rng(1), lengths=lengths))
    assert bucketed > 0.9 > 0.7 > plain


def test_pool_indices_out_of_range_are_refused():
    with pytest.raises(ValueError, match="indices of the 10 examples"):
        BatchStream(10, 2, np.random.default_rng(0), pool=np.array([3, 10]))


def test_restart_opens_a_fresh_epoch():
    stream = BatchStream(10, 4, np.random.default_rng(0))
    stream.next()
    stream.restart()
    stream.next()
    assert stream.epoch == 2


def test_default_estimate_is_one_batch_of_every_task_and_partial_passes_count_batches():
    s = _plain({"a": 10, "b": 25}, {"a": 4, "b": 5})
    assert s.expected_examples_per_step() == 9.0
    assert s.batches_per_epoch("a") == 3  # ceil(10 / 4)
    # 7 batches of a: two passes (2 x 10) and one more batch of 4.
    assert s.examples_in_batches("a", 7) == 24
    assert s.index_pool("a") is None and s.pool_size("b") == 25


def test_a_sampler_without_a_batch_size_for_a_task_is_refused():
    with pytest.raises(ValueError, match="no batch size for task"):
        _plain({"a": 10, "b": 25}, {"a": 4})


def test_feed_hands_out_the_scheduled_tasks_in_order():
    s = SAMPLERS.create(
        "sequential",
        SAMPLERS.get("sequential").Args(order=["b", "a"]),
        sizes={"a": 3, "b": 2},
        batch_sizes={"a": 2, "b": 2},
        rng=np.random.default_rng(0),
    )
    streams = {t: BatchStream(n, 2, np.random.default_rng(0)) for t, n in s.sizes.items()}
    feed = TaskBatches(s, streams)
    got = [list(feed.next()) for _ in range(4)]
    assert got == [["b"], ["a"], ["a"], ["b"]]


# ------------------------------------------------------------------ config field
def test_task_batch_size_is_validated_naming_the_field():
    assert make_config({"task_batch_size": {"para": 64}}).task_batch_size == {"para": 64}
    with pytest.raises(ConfigError, match=r"task_batch_size\.para: a batch size is in \[1, 4096\] \(got 0\)"):
        make_config({"task_batch_size": {"para": 0}})
    with pytest.raises(ConfigError, match="task_batch_size: unknown task 'qqp'"):
        make_config({"task_batch_size": {"qqp": 8}})
    with pytest.raises(ConfigError, match=r"task_batch_size names 'cfimdb', which is not in tasks"):
        make_config({"task_batch_size": {"cfimdb": 8}})


# ------------------------------------------------------------------ in the trainer
def test_per_task_batch_sizes_and_the_sampler_estimate_reach_the_trainer(data_dir, runs):
    rr = train(tiny_config(data_dir, name="rr", max_steps=3, eval_every=3, task_batch_size={"para": 8}))
    assert rr.examples == 3 * (16 + 8 + 16)
    # sequential: 576 examples in 36 batches per epoch, 16 per step: 100 examples take
    # ceil(100 / 16) = 7 steps (112 examples); round robin's 48 per step would give 3.
    seq = train(
        tiny_config(
            data_dir, name="seq", sampler="sequential", max_steps=None, max_examples=100, eval_every=50
        )
    )
    assert seq.steps == 7 and seq.examples == 112


def test_a_stream_moves_to_a_new_pool_at_once():
    stream = BatchStream(10, 3, np.random.default_rng(0), pool=np.array([0, 1, 2]))
    assert sorted(stream.next().tolist()) == [0, 1, 2]
    stream.next()  # part of the old pool's next epoch
    stream.set_pool(np.array([7, 8, 9, 9]))
    assert sorted(np.concatenate([stream.next(), stream.next()]).tolist()) == [7, 8, 9, 9]
    with pytest.raises(ValueError, match="indices of the 10 examples"):
        stream.set_pool(np.array([10]))


@pytest.mark.parametrize("name", [n for n in SAMPLERS.names() if not SAMPLERS.get(n).repeats_tasks])
def test_next_and_next_batches_are_the_same_step(name):
    # every sampler that names a task once per step keeps the dict feed it always had
    def feed():
        s = SAMPLERS.create(
            name, SAMPLERS.get(name).Args(), sizes={"a": 40, "b": 70}, batch_sizes={"a": 4, "b": 8},
            rng=np.random.default_rng(2), labels={"a": np.arange(40) % 2, "b": np.arange(70) % 2}, total_steps=50,
        )  # fmt: skip
        return TaskBatches(s, build_streams(s, lambda seed, what: np.random.default_rng(len(what)), 0))

    a, b = feed(), feed()
    for _ in range(30):
        as_dict, as_list = a.next(), b.next_batches()
        assert list(as_dict) == [t for t, _ in as_list]
        assert all(np.array_equal(as_dict[t], idx) for t, idx in as_list)
