"""combined: the weighted sum of the task losses, one optimizer step."""

import pytest
import torch

from mtsearch.updates import UPDATES


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
