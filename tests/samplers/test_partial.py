"""partial_batches (001): several small batches per step, each of a task drawn uniformly with replacement."""

import itertools

import numpy as np
import pytest

from mtsearch.samplers import SAMPLERS, TaskBatches, build_streams
from mtsearch.train.runtime import rng_for

SIZES = {"sst": 500, "para": 2000, "sts": 300}


def _make(seed=0, batch=16, **args):
    return SAMPLERS.create(
        "partial_batches",
        SAMPLERS.parse_args("partial_batches", args, "sampler_args"),
        sizes=SIZES,
        batch_sizes={t: batch for t in SIZES},
        rng=np.random.default_rng(seed),
    )


def test_a_step_is_parts_partial_batches_of_uniformly_drawn_tasks():
    s = _make()  # 001: batch 16 in 4 partial batches of 4
    assert s.batch_sizes == {t: 4 for t in SIZES} and s.full_batch_sizes == {t: 16 for t in SIZES}
    steps = list(itertools.islice(s.schedule(), 30000))
    assert all(len(step) == 4 for step in steps)
    counts = {t: sum(step.count(t) for step in steps) for t in SIZES}
    # 120,000 uniform draws over 3 tasks: each count ~ Binomial(120000, 1/3), sd 163; 5 sd = 816
    assert all(abs(c - 40000) < 816 for c in counts.values())
    # with replacement: a task comes twice or more in a step as often as chance says,
    # P(no repeat among 4 draws of 3) = 0, so every step repeats some task
    assert all(len(set(step)) < len(step) for step in steps)
    assert s.expected_examples_per_step() == 16.0


def test_partial_batch_sizes_follow_each_tasks_batch_size():
    s = SAMPLERS.create(
        "partial_batches",
        SAMPLERS.parse_args("partial_batches", {"parts": 3}, "sampler_args"),
        sizes=SIZES,
        batch_sizes={"sst": 16, "para": 8, "sts": 30},
        rng=np.random.default_rng(0),
    )
    assert s.batch_sizes == {"sst": 6, "para": 3, "sts": 10}  # ceil(b / 3)
    assert s.expected_examples_per_step() == pytest.approx(3 * (6 + 3 + 10) / 3)
    # an epoch: as many steps as draw, on average, as many examples as the tasks hold
    assert s.steps_per_epoch() == int(np.ceil(2800 / 19))


def test_the_feed_gives_one_entry_per_partial_batch_and_refuses_a_dict():
    s = _make(seed=3)
    feed = TaskBatches(s, build_streams(s, rng_for, 0))
    drawn = feed.next_batches()
    assert len(drawn) == 4 and all(len(idx) == 4 for _, idx in drawn)
    again = _make(seed=3)
    assert [t for t, _ in drawn] == next(again.schedule())  # the sampler's order, repeats kept
    with pytest.raises(ValueError, match="named a task twice in one step"):
        for _ in range(10):
            feed.next()


def test_trainer_hands_the_rule_each_partial_batch_in_order(data_dir, runs, monkeypatch):
    from mtsearch.train import train
    from mtsearch.updates.combined import Combined
    from tests.helpers import tiny_config

    seen = []
    original = Combined.step

    def spy(self, tasks, loss_of, optim):
        seen.append(list(tasks))
        return original(self, tasks, loss_of, optim)

    monkeypatch.setattr(Combined, "step", spy)
    cfg = tiny_config(data_dir, name="partial", sampler="partial_batches", max_steps=5, eval_every=5)
    result = train(cfg)
    assert result.status == "finished" and result.steps == 5
    assert all(len(tasks) == 4 for tasks in seen) and any(len(set(t)) < 4 for t in seen)
    # 5 steps x 4 partial batches of 16 / 4 examples (train_limit 192: every partial batch is full)
    assert result.examples == 5 * 4 * 4
