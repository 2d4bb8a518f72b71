"""Contract tests run over every registered strategy of every family."""

import itertools

import numpy as np
import pytest
import torch

from mtsearch.heads import HEADS
from mtsearch.pooling import POOLING
from mtsearch.registry import Registry
from mtsearch.samplers import SAMPLERS, BatchStream, TaskBatches
from mtsearch.strategies import registries
from mtsearch.updates import UPDATES

TASKS3 = ["sst", "para", "sts"]


def test_registries_are_keyed_by_their_config_field():
    regs = registries()
    assert set(regs) == {"sampler", "update", "pooling", "head"}
    for field, reg in regs.items():
        assert isinstance(reg, Registry) and reg.field == field and reg.names()


@pytest.mark.parametrize(
    "reg, name",
    [(r, n) for r in registries().values() for n in r.names()],
    ids=lambda x: getattr(x, "family", x),
)
def test_every_strategy_is_documented_and_has_default_args(reg, name):
    assert reg.doc(name), f"{reg.family}/{name} has no doc line"
    args = reg.get(name).Args()  # every knob has a default
    for knob, info in type(args).model_fields.items():
        assert info.description, f"{reg.family}/{name} knob {knob} has no docstring"


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
def test_samplers_are_deterministic_per_seed_and_only_name_known_tasks(name):
    def first(seed, n=200):
        s, rng = _sampler(name, seed)
        steps = list(itertools.islice(s.schedule(), n))
        pools = {t: None if s.index_pool(t) is None else s.index_pool(t).tolist() for t in TASKS3}
        used_rng = rng.bit_generator.state != np.random.default_rng(seed).bit_generator.state
        return steps, pools, used_rng

    a, b, c = first(1), first(1), first(2)
    assert a == b
    steps, pools, used_rng = a
    assert steps and all(step and set(step) <= set(TASKS3) and len(set(step)) == len(step) for step in steps)
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
    sampler, _ = _sampler(name, 3)
    streams = {
        t: BatchStream(SIZES[t], BATCH[t], np.random.default_rng(i), pool=sampler.index_pool(t))
        for i, t in enumerate(TASKS3)
    }
    feed = TaskBatches(sampler, streams)
    seen = [sum(len(idx) for idx in feed.next().values()) for _ in range(4000)]
    assert np.mean(seen) == pytest.approx(sampler.expected_examples_per_step(), rel=0.05)


def test_round_robin_gives_every_task_each_step():
    s = SAMPLERS.create(
        "round_robin",
        SAMPLERS.get("round_robin").Args(),
        sizes={"a": 3, "b": 5},
        batch_sizes={"a": 1, "b": 1},
        rng=np.random.default_rng(0),
    )
    assert list(itertools.islice(s.schedule(), 4)) == [["a", "b"]] * 4


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


@pytest.mark.parametrize("name", POOLING.names())
def test_pooling_shapes(name):
    pool = POOLING.create(name, POOLING.get(name).Args(), hidden_size=16)
    hidden = torch.randn(3, 7, 16)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, 4:] = 0
    assert pool(hidden, mask).shape == (3, pool.out_dim)


@pytest.mark.parametrize("name", HEADS.names())
def test_head_shapes(name):
    head = HEADS.create(name, HEADS.get(name).Args(), in_dim=16, out_dim=5, dropout=0.1)
    assert head(torch.randn(4, 16)).shape == (4, 5)


class _Optim:
    def __init__(self, params):
        self.shared_params = params
        self.head_params = {}
        self.steps = 0
        self.grads = None

    def step(self):
        self.steps += 1
        self.grads = [p.grad.clone() for p in self.shared_params]
        for p in self.shared_params:
            p.grad = None


def test_combined_update_applies_the_weighted_sum_of_gradients():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    losses = {"sst": lambda: (w**2).sum(), "sts": lambda: (3 * w).sum()}
    rule = UPDATES.create(
        "combined", UPDATES.get("combined").Args(weights={"sts": 0.5}), tasks=["sst", "sts"]
    )
    opt = _Optim([w])
    out = rule.step(["sst", "sts"], lambda t: losses[t](), opt)
    assert opt.steps == 1
    assert torch.allclose(opt.grads[0], 2 * w.detach() + 0.5 * 3)
    assert out == {"sst": pytest.approx(5.0), "sts": pytest.approx(-3.0)}
