"""Uncertainty weighting: the loss by hand, its optimum, and its parameters in the optimizer."""

import math

import pytest
import torch

from mtsearch.updates import UPDATES
from mtsearch.updates.uncertainty import uncertainty_loss
from tests.updates.helpers import TASKS3, loss_fn, random_batches, tiny_model


def _value_and_grads(loss: float, s: float, kind: str):
    L = torch.tensor(loss, requires_grad=True)
    log_var = torch.tensor(s, requires_grad=True)
    out = uncertainty_loss(L, log_var, kind)
    out.backward()
    return float(out.detach()), float(L.grad), float(log_var.grad)


def test_regression_form_by_hand():
    # 0.5 exp(-s) L + 0.5 s at s = 0, L = 2: 0.5 * 2 + 0 = 1; dL = 0.5; ds = -0.5 * 2 + 0.5 = -0.5.
    assert _value_and_grads(2.0, 0.0, "regression") == pytest.approx((1.0, 0.5, -0.5))


def test_classification_form_by_hand():
    # exp(-s) L + 0.5 s at s = log 2, L = 3: 1.5 + 0.5 log 2 = 1.8465736; dL = 0.5; ds = -1.5 + 0.5.
    value, d_loss, d_s = _value_and_grads(3.0, math.log(2), "class")
    assert value == pytest.approx(1.5 + 0.5 * math.log(2)) and value == pytest.approx(1.8465736)
    assert (d_loss, d_s) == pytest.approx((0.5, -1.0))
    assert _value_and_grads(3.0, math.log(2), "binary") == pytest.approx((value, d_loss, d_s))


@pytest.mark.parametrize("kind, optimum", [("regression", math.log(0.8)), ("class", math.log(1.6))])
def test_the_learned_variance_settles_at_the_loss(kind, optimum):
    # d/ds = 0 at s = log L (regression) and s = log 2L (classification), for L = 0.8.
    assert _value_and_grads(0.8, optimum, kind)[2] == pytest.approx(0.0, abs=1e-7)


def test_log_variances_are_trained_by_the_trainers_optimizer():
    from mtsearch.train.optim import OptimHandle, build_optimizer

    model, config = tiny_model(head_lr=1e-2, warmup_ratio=0.0)
    model.eval()
    rule = UPDATES.create(
        "uncertainty", UPDATES.get("uncertainty").Args(lr=0.05, init=0.5), tasks=list(TASKS3)
    )
    extra = rule.extra_parameters()
    assert len(extra) == 3 and all(float(s.detach()) == 0.5 for s in extra)
    optimizer, scheduler = build_optimizer(model, config, 10, extra, rule.extra_lr())
    group = [g for g in optimizer.param_groups if g["role"] == "extra"]
    assert len(group) == 1 and group[0]["lr"] == pytest.approx(0.05) and group[0]["weight_decay"] == 0.0
    assert {id(p) for p in group[0]["params"]} == {id(p) for p in extra}
    # Without lr the heads' learning rate is used.
    plain = UPDATES.create("uncertainty", UPDATES.get("uncertainty").Args(), tasks=list(TASKS3))
    opt2, _ = build_optimizer(model, config, 10, plain.extra_parameters(), plain.extra_lr())
    assert [g["lr"] for g in opt2.param_groups if g["role"] == "extra"] == [pytest.approx(1e-2)]

    batches = random_batches(seed=2)
    loss_of = loss_fn(model, batches)
    with torch.no_grad():
        raw = {t: float(loss_of(t)) for t in TASKS3}
    optim = OptimHandle.for_model(model, optimizer, scheduler, 1.0)
    losses = rule.step(list(TASKS3), loss_of, optim)
    assert losses == pytest.approx(raw)  # the rule reports the raw task losses
    state = rule.state()
    assert set(state) == {"log_var_sst", "log_var_para", "log_var_sts"}
    for t in TASKS3:
        # Adam's first step moves s by lr against the sign of its gradient.
        kind_scale = 0.5 if t == "sts" else 1.0
        grad = -kind_scale * math.exp(-0.5) * raw[t] + 0.5
        expected = 0.5 - 0.05 * math.copysign(1.0, grad)
        assert state[f"log_var_{t}"] == pytest.approx(expected, abs=1e-4), t
