"""sequential: one task's every batch, then the next task's, in a configurable order."""

import itertools

import numpy as np
import pytest

from mtsearch.config import make_config
from mtsearch.errors import ConfigError
from mtsearch.samplers import SAMPLERS, BatchStream, TaskBatches

SIZES = {"sst": 10, "para": 25, "sts": 7}
BATCH = {"sst": 4, "para": 5, "sts": 2}  # 3, 5 and 4 batches per pass


def _make(order=None, seed=0):
    return SAMPLERS.create(
        "sequential",
        SAMPLERS.get("sequential").Args(order=order),
        sizes=SIZES,
        batch_sizes=BATCH,
        rng=np.random.default_rng(seed),
    )


@pytest.mark.parametrize(
    "order, expected",
    [
        (None, ["sst"] * 3 + ["para"] * 5 + ["sts"] * 4),
        (["sts", "sst", "para"], ["sts"] * 4 + ["sst"] * 3 + ["para"] * 5),
    ],
)
def test_each_epoch_visits_every_example_of_each_task_once_in_order(order, expected):
    s = _make(order)
    assert s.steps_per_epoch() == 12
    streams = {t: BatchStream(SIZES[t], BATCH[t], np.random.default_rng(i)) for i, t in enumerate(SIZES)}
    feed = TaskBatches(s, streams)
    for epoch in range(1, 834):  # 833 epochs = 9,996 steps
        drawn = [feed.next() for _ in range(12)]
        assert [list(d) for d in drawn] == [[t] for t in expected] and s.epoch == epoch
        for t in SIZES:
            seen = np.concatenate([d[t] for d in drawn if t in d])
            assert sorted(seen.tolist()) == list(range(SIZES[t]))
    # 42 examples in 12 one-task steps.
    assert s.expected_examples_per_step() == pytest.approx(42 / 12)


def test_the_schedule_does_not_depend_on_the_seed():
    a, b = _make(seed=1), _make(seed=2)
    assert list(itertools.islice(a.schedule(), 30)) == list(itertools.islice(b.schedule(), 30))


def test_order_must_name_every_task_once():
    assert make_config({"sampler": "sequential", "sampler_args": {"order": "sts,sst,para"}}).args(
        "sampler"
    ).order == ["sts", "sst", "para"]
    cases = [
        (["sst", "para"], "leaves out sts"),
        (["sst", "para", "sts", "sst"], "lists sst twice"),
        (["sst", "para", "sts", "cfimdb"], "names cfimdb, not among the run's tasks"),
    ]
    for order, why in cases:
        with pytest.raises(
            ConfigError, match=rf"sampler_args\.order {why}: it must name every task in tasks"
        ):
            make_config({"sampler": "sequential", "sampler_args": {"order": order}})
        with pytest.raises(ValueError, match=why):
            _make(order)
