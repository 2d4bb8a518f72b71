"""round_robin, rr_under and rr_over: every task each step, three notions of an epoch."""

import itertools

import numpy as np
import pytest

from mtsearch.samplers import SAMPLERS, BatchStream, TaskBatches

# Hand-worked: a = 10 examples in batches of 4 -> 3 batches (4, 4, 2); b = 25 in batches
# of 5 -> 5 batches; c = 7 in batches of 2 -> 4 batches (2, 2, 2, 1).
SIZES = {"a": 10, "b": 25, "c": 7}
BATCH = {"a": 4, "b": 5, "c": 2}


def _make(name, **args):
    s = SAMPLERS.create(
        name, SAMPLERS.get(name).Args(**args), sizes=SIZES, batch_sizes=BATCH, rng=np.random.default_rng(0)
    )
    streams = {t: BatchStream(SIZES[t], BATCH[t], np.random.default_rng(i)) for i, t in enumerate(SIZES)}
    return s, streams, TaskBatches(s, streams)


def test_round_robin_has_no_epochs_and_streams_carry_on():
    s, streams, feed = _make("round_robin")
    for _ in range(10_000):
        assert list(feed.next()) == ["a", "b", "c"]
    assert s.epoch == 0
    # 10,000 batches of a = 3,333 full passes + 1 batch: never restarted early.
    assert streams["a"].epoch == 3334 and s.expected_examples_per_step() == 11


def test_rr_under_stops_each_epoch_with_the_task_of_fewest_batches():
    s, streams, feed = _make("rr_under")
    assert s.steps_per_epoch() == 3  # min(3, 5, 4): a runs out first
    seen = {t: [] for t in SIZES}
    for step in range(3 * 3334):  # 3,334 epochs, 10,002 steps
        drawn = feed.next()
        assert list(drawn) == ["a", "b", "c"] and s.epoch == step // 3 + 1
        for t, idx in drawn.items():
            seen[t].append(idx)
        if step % 3 == 2:  # an epoch ended: a saw each of its 10 examples exactly once
            assert sorted(np.concatenate(seen["a"]).tolist()) == list(range(10))
            # b and c saw 3 full batches of a fresh permutation: 15 and 6 distinct examples
            assert len(set(np.concatenate(seen["b"]).tolist())) == 15
            assert len(set(np.concatenate(seen["c"]).tolist())) == 6
            seen = {t: [] for t in SIZES}
    # Each epoch restarted every stream: b started 3,334 permutations, not 10,002 / 5.
    assert streams["b"].epoch == 3334 and streams["c"].epoch == 3334
    # (10 + 15 + 6) examples in 3 steps.
    assert s.expected_examples_per_step() == pytest.approx(31 / 3)


@pytest.mark.parametrize("sigma, expected_steps", [(None, 5), (1, 1), (7, 7)])
def test_rr_over_gives_exactly_sigma_steps_per_epoch(sigma, expected_steps):
    s, streams, feed = _make("rr_over", sigma=sigma)
    assert s.steps_per_epoch() == expected_steps  # default: max(3, 5, 4) for b
    epochs = []
    for _ in range(10_000):
        assert list(feed.next()) == ["a", "b", "c"]
        epochs.append(s.epoch)
    counts = np.bincount(epochs)[1:]
    full = 10_000 // expected_steps
    assert counts[:full].tolist() == [expected_steps] * full
    assert counts[full:].sum() == 10_000 % expected_steps


def test_rr_over_cycles_smaller_tasks_within_an_epoch():
    s, streams, feed = _make("rr_over", sigma=7)
    seen = [feed.next()["a"] for _ in range(7)]
    # 7 batches of a (3 per pass): two full passes, then one batch of a third pass.
    assert streams["a"].epoch == 3 and sum(map(len, seen)) == 24
    first, second = np.concatenate(seen[:3]), np.concatenate(seen[3:6])
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(10))
    feed.next()  # the next epoch restarts a with a fresh permutation
    assert streams["a"].epoch == 4
    # Per epoch of 7 steps: a 24; b one pass (25) + 2 batches of 5 = 35; c one pass (7)
    # + 3 batches of 2 = 13.
    assert s.expected_examples_per_step() == pytest.approx((24 + 35 + 13) / 7)


def test_round_robin_family_ignores_the_seed():
    for name in ("round_robin", "rr_under", "rr_over"):
        a = SAMPLERS.create(
            name, SAMPLERS.get(name).Args(), sizes=SIZES, batch_sizes=BATCH, rng=np.random.default_rng(1)
        )
        b = SAMPLERS.create(
            name, SAMPLERS.get(name).Args(), sizes=SIZES, batch_sizes=BATCH, rng=np.random.default_rng(2)
        )
        assert list(itertools.islice(a.schedule(), 50)) == list(itertools.islice(b.schedule(), 50))


def test_round_robin_gives_every_task_each_step():
    s = SAMPLERS.create(
        "round_robin",
        SAMPLERS.get("round_robin").Args(),
        sizes={"a": 3, "b": 5},
        batch_sizes={"a": 1, "b": 1},
        rng=np.random.default_rng(0),
    )
    assert list(itertools.islice(s.schedule(), 4)) == [["a", "b"]] * 4
