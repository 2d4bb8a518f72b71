"""Contracts of every registered sampler: seeded, honest about its step size, trains end to end."""

import itertools

import numpy as np
import pytest

from mtsearch.records import read_metrics
from mtsearch.samplers import SAMPLERS, BatchStream, TaskBatches
from mtsearch.train import train
from tests.helpers import tiny_config

TASKS3 = ["sst", "para", "sts"]
SIZES = {"sst": 500, "para": 2000, "sts": 300}
BATCH = {"sst": 8, "para": 16, "sts": 4}


def _sampler(name, seed, total_steps=4000):
    rng = np.random.default_rng(seed)
    labels = {"sst": np.arange(500) % 5, "para": np.arange(2000) % 2, "sts": np.linspace(0, 5, 300)}
    s = SAMPLERS.create(
        name,
        SAMPLERS.get(name).Args(),
        sizes=SIZES,
        batch_sizes=BATCH,
        rng=rng,
        labels={t: v.astype(np.float32) for t, v in labels.items()},
        total_steps=total_steps,
    )
    return s, rng


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_deterministic_per_seed_and_only_names_known_tasks(name):
    def first(seed, n=200):
        s, rng = _sampler(name, seed)
        steps = list(itertools.islice(s.schedule(), n))
        pools = {t: None if s.index_pool(t) is None else s.index_pool(t).tolist() for t in TASKS3}
        used_rng = rng.bit_generator.state != np.random.default_rng(seed).bit_generator.state
        return steps, pools, used_rng

    a, b, c = first(1), first(1), first(2)
    assert a == b
    steps, pools, used_rng = a
    # A task comes once per step, unless the sampler says steps may repeat it (partial batches).
    repeats = SAMPLERS.get(name).repeats_tasks
    assert steps and all(
        step and set(step) <= set(TASKS3) and (repeats or len(set(step)) == len(step)) for step in steps
    )
    for t, pool in pools.items():
        assert pool is None or (pool and 0 <= min(pool) and max(pool) < SIZES[t])
    # A sampler that draws random numbers gives another schedule or pool with another
    # seed; one that draws none gives the same (it must not hide randomness elsewhere).
    assert (a[:2] != c[:2]) == used_rng


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_expected_examples_per_step_matches_what_the_batches_hold(name):
    # The trainer turns max_examples into steps with this number. Over 4000 steps the
    # measured mean must be within 5 %: the worst random case (one task of 4, 8 or 16
    # per step) has a per-step sd under 6, i.e. an sd of the mean under 0.1 = ~1.2 % of
    # ~8; the rest covers a part-finished epoch at the end.
    # The streams are built as the trainer builds them: over the sampler's pools, at the
    # sampler's batch sizes (a sampler may serve smaller batches than the config's).
    sampler, _ = _sampler(name, 3)
    streams = {
        t: BatchStream(SIZES[t], sampler.batch_sizes[t], np.random.default_rng(i), pool=sampler.index_pool(t))
        for i, t in enumerate(TASKS3)
    }
    feed = TaskBatches(sampler, streams)
    seen = [sum(len(idx) for _, idx in feed.next_batches()) for _ in range(4000)]
    assert np.mean(seen) == pytest.approx(sampler.expected_examples_per_step(), rel=0.05)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_an_epoch_is_a_whole_number_of_steps_that_does_not_depend_on_the_budget(name):
    # The trainer turns max_epochs (and what else counts epochs) into steps with it.
    a, _ = _sampler(name, 3, total_steps=4000)
    b, _ = _sampler(name, 3, total_steps=None)
    assert isinstance(a.steps_per_epoch(), int) and a.steps_per_epoch() >= 1
    assert a.steps_per_epoch() == b.steps_per_epoch()


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_trains_end_to_end(name, data_dir, runs):
    # 192 rows per task, batches of 16 (para 8): 4 steps, one evaluation at the end.
    cfg = tiny_config(
        data_dir, name=name, sampler=name, max_steps=4, eval_every=4, task_batch_size={"para": 8}
    )
    result = train(cfg)
    assert result.status == "finished" and result.steps == 4
    evals = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [4] and np.isfinite(evals[-1]["overall"])
    # A step takes one batch of some of the tasks: 8 to 16 + 8 + 16 examples.
    assert 4 * 8 <= result.examples <= 4 * 40
