"""proportional, temperature and annealed: one task per step, drawn from a task distribution.

Tolerance: over N draws with probabilities p_t, a task's count is binomial; it must lie
within 4 standard deviations, sqrt(N p (1 - p)), of N p (a false alarm about 1 in 16,000
per check). For annealed, whose p changes every step, the variance is sum_s p_s (1 - p_s).
"""

import itertools

import numpy as np
import pytest

from mtsearch.samplers import SAMPLERS
from mtsearch.samplers.weighted import power_weights

SIZES = {"sst": 500, "para": 2000, "sts": 300}
BATCH = {"sst": 8, "para": 16, "sts": 4}
N = 10_000


def _make(name, seed=0, total_steps=None, **args):
    return SAMPLERS.create(
        name,
        SAMPLERS.get(name).Args(**args),
        sizes=SIZES,
        batch_sizes=BATCH,
        rng=np.random.default_rng(seed),
        total_steps=total_steps,
    )


def _draw(sampler, n=N):
    steps = list(itertools.islice(sampler.schedule(), n))
    assert all(len(step) == 1 for step in steps)
    return np.array([[step[0] == t for t in SIZES] for step in steps])  # [n, tasks] one-hot


def _within_4_sd(counts, mean, var):
    assert np.all(np.abs(counts - mean) <= 4 * np.sqrt(var)), (counts, mean)


@pytest.mark.parametrize(
    "name, args, p",
    [
        # 500 : 2000 : 300 of 2800
        ("proportional", {}, [5 / 28, 20 / 28, 3 / 28]),
        # sqrt: 22.361 : 44.721 : 17.321 of 84.403
        ("temperature", {"temperature": 2.0}, [0.26493, 0.52986, 0.20521]),
        ("temperature", {"temperature": 1.0}, [5 / 28, 20 / 28, 3 / 28]),
        # cap 400 before the power: 400 : 400 : 300
        ("temperature", {"temperature": 1.0, "size_cap": 400}, [4 / 11, 4 / 11, 3 / 11]),
        # T -> infinity: uniform
        ("temperature", {"temperature": 1e9}, [1 / 3, 1 / 3, 1 / 3]),
    ],
)
def test_draws_honour_the_task_distribution(name, args, p):
    s = _make(name, **args)
    assert s.probabilities(0) == pytest.approx(p, abs=1e-5)
    p = np.array(p)
    _within_4_sd(_draw(s).sum(0), N * p, N * p * (1 - p))
    assert s.expected_examples_per_step() == pytest.approx(p @ [8, 16, 4], abs=1e-3)


@pytest.mark.parametrize(
    "name, args", [("proportional", {}), ("temperature", {}), ("annealed", {"final_alpha": 0.2})]
)
def test_same_seed_same_schedule_other_seed_another(name, args):
    a, b, c = (_draw(_make(name, seed=s, total_steps=N, **args), 500) for s in (5, 5, 6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_annealing_line():
    s = _make("annealed", total_steps=11, final_alpha=0.2)
    # alpha(s) = 1 - (1 - 0.2) * s / 10
    assert [s.alpha(i) for i in (0, 5, 10)] == pytest.approx([1.0, 0.6, 0.2])
    assert s.probabilities(0) == pytest.approx(power_weights([500, 2000, 300], 1.0))
    assert _make("annealed", total_steps=11).probabilities(10) == pytest.approx([1 / 3] * 3)
    assert _make("annealed", total_steps=1).alpha(0) == 1.0
    with pytest.raises(ValueError, match="needs total_steps"):
        _make("annealed").schedule()


def test_annealed_moves_from_proportional_to_uniform():
    s = _make("annealed", total_steps=N)
    onehot = _draw(s)
    probs = np.array([s.probabilities(i) for i in range(N)])
    for window in (slice(0, 2000), slice(N - 2000, N)):
        _within_4_sd(
            onehot[window].sum(0), probs[window].sum(0), (probs[window] * (1 - probs[window])).sum(0)
        )
    early, late = onehot[:2000].mean(0), onehot[-2000:].mean(0)
    # para: ~0.68 of the first 2,000 draws (alpha 1 -> 0.8), ~0.36 of the last (0.2 -> 0).
    assert early[1] > 0.6 and late[1] < 0.42
    # The estimate is the average over the annealing path; the draws agree within 4 sd
    # of the mean of N steps (each step's b has sd below 6 examples).
    used = (onehot * np.array([8, 16, 4])).sum(1)
    assert abs(used.mean() - s.expected_examples_per_step()) <= 4 * 6 / np.sqrt(N)
