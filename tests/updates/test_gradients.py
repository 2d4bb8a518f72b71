"""The per-task gradient machinery the surgery rules share."""

import copy

import numpy as np
import torch

from mtsearch.updates import UPDATES
from mtsearch.updates.gradients import FlatGrads, GradientSurgery, gram
from tests.updates.helpers import (
    TASKS3,
    delta,
    loss_fn,
    max_diff,
    random_batches,
    sgd_handle,
    snapshot,
    tiny_model,
)


def test_take_and_put_move_gradients_through_one_buffer():
    a = torch.nn.Parameter(torch.zeros(2, 3))
    b = torch.nn.Parameter(torch.zeros(4))
    unused = torch.nn.Parameter(torch.zeros(5))
    flat = FlatGrads([a, b, unused])
    rows = flat.reset(2)
    assert rows.shape == (2, 6 + 4 + 5)
    a.grad, b.grad = torch.arange(6.0).view(2, 3), torch.full((4,), 7.0)
    flat.take(0)
    assert a.grad is None and b.grad is None  # cleared, so the next backward starts fresh
    a.grad = torch.ones(2, 3)
    flat.take(1)
    assert torch.equal(rows[0], torch.tensor([0, 1, 2, 3, 4, 5, 7, 7, 7, 7, 0, 0, 0, 0, 0.0]))
    assert torch.equal(rows[1, :6], torch.ones(6)) and torch.equal(rows[1, 6:], torch.zeros(9))
    out = rows.sum(0)
    flat.put(out)
    assert torch.equal(a.grad, torch.tensor([[1.0, 2, 3], [4, 5, 6]])) and torch.equal(
        b.grad, torch.full((4,), 7.0)
    )
    assert a.grad.data_ptr() == out.data_ptr()  # a view, not a copy
    assert unused.grad is None  # no task reached it: the optimizer must skip it as under combined
    again = flat.reset(2)
    assert again.data_ptr() == rows.data_ptr() and not again.any()  # the buffer is reused, zeroed


def test_gram_is_exact_in_double_precision():
    g = torch.tensor(np.random.default_rng(0).normal(size=(3, 2_500_000)), dtype=torch.float32)
    expected = g.double() @ g.double().T
    assert np.allclose(gram(g), expected.numpy(), rtol=1e-12)


class _Sum(GradientSurgery):
    """A surgery that changes nothing: summing the rows must reproduce the combined loss."""

    name = "sum-for-test"

    def combine(self, grads, tasks):
        return grads.sum(0)


def test_collecting_per_task_gradients_reproduces_the_combined_update():
    model, _ = tiny_model()
    batches = random_batches(seed=3)
    other = copy.deepcopy(model)
    updates = []
    for m, rule in (
        (model, _Sum(None, tasks=list(TASKS3))),
        (other, UPDATES.create("combined", UPDATES.get("combined").Args(), tasks=list(TASKS3))),
    ):
        m.train()
        before = snapshot(m)
        torch.manual_seed(9)
        rule.step(list(TASKS3), loss_fn(m, batches), sgd_handle(m))
        updates.append(delta(m, before))
    assert max_diff(*updates) < 1e-6
    assert max(float(d.abs().max()) for d in updates[0].values()) > 1e-3
