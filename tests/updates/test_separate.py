"""Separate updates: one optimizer step per task with its own lr / weight decay, one schedule tick."""

import copy

import pytest
import torch

from mtsearch.errors import ConfigError
from mtsearch.updates import UPDATES
from tests.updates.helpers import TASKS3, loss_fn, random_batches, tiny_model


def _setup(tasks=TASKS3, update_args=None, max_grad_norm=1.0, **config):
    from mtsearch.train.optim import OptimHandle, build_optimizer

    model, cfg = tiny_model(tasks, update="separate", update_args=update_args or {}, **config)
    model.eval()  # no dropout: the hand-worked update below needs the exact gradient
    optimizer, scheduler = build_optimizer(model, cfg, 10)
    rule = UPDATES.create("separate", cfg.args("update"), tasks=list(tasks))
    return (
        model,
        cfg,
        rule,
        optimizer,
        scheduler,
        OptimHandle.for_model(model, optimizer, scheduler, max_grad_norm),
    )


def test_each_task_steps_with_its_own_lr_and_decay_and_the_schedule_ticks_once():
    # warmup = int(0.2 * 10) = 2 steps: the factor is 1/3 at step 0 and 2/3 at step 1.
    model, cfg, rule, optimizer, scheduler, optim = _setup(
        update_args={"lr": {"sst": 1e-2}, "weight_decay": {"para": 0.5}},
        lr=1e-3,
        head_lr=1e-2,
        weight_decay=0.01,
        warmup_ratio=0.2,
    )
    seen = []

    def record(opt, args, kwargs):
        groups = {(g["role"], g["decay"]): (g["lr"], g["weight_decay"]) for g in opt.param_groups}
        with_grad = {t for t in TASKS3 if any(p.grad is not None for p in model.task_parameters(t))}
        seen.append((groups, with_grad))

    optimizer.register_step_pre_hook(record)
    losses = rule.step(list(TASKS3), loss_fn(model, random_batches()), optim)
    assert set(losses) == set(TASKS3) and len(seen) == 3
    third = 1 / 3
    expected = {  # task -> encoder lr, decay of the decaying groups
        "sst": (1e-2 * third, 0.01),
        "para": (1e-3 * third, 0.5),
        "sts": (1e-3 * third, 0.01),
    }
    for (groups, with_grad), task in zip(seen, TASKS3, strict=True):
        enc_lr, wd = expected[task]
        assert groups[("encoder", True)] == pytest.approx((enc_lr, wd))
        assert groups[("encoder", False)] == pytest.approx((enc_lr, 0.0))
        assert groups[("heads", True)] == pytest.approx((1e-2 * third, wd))  # heads keep head_lr
        assert with_grad == {task}  # only this task's head has a gradient in its step
    # One schedule tick for the whole trainer step; the groups are back to the schedule's values.
    assert scheduler.last_epoch == 1
    for g in optimizer.param_groups:
        base = 1e-3 if g["role"] == "encoder" else 1e-2
        assert g["lr"] == pytest.approx(base * 2 / 3)
        assert g["weight_decay"] == (0.01 if g["decay"] else 0.0)
    assert all(p.grad is None for p in model.parameters())


def test_first_adamw_step_by_hand():
    """AdamW's first step: p <- p (1 - lr wd) - lr g / (|g| + eps), with the task's lr and decay."""
    model, cfg, rule, optimizer, scheduler, optim = _setup(
        ("sst",),
        update_args={"lr": {"sst": 0.02}, "weight_decay": {"sst": 0.1}},
        max_grad_norm=None,
        lr=1e-3,
        head_lr=0.005,
        warmup_ratio=0.0,
    )
    batches = random_batches(("sst",))
    reference = copy.deepcopy(model)
    loss_fn(reference, batches)("sst").backward()
    grads = {n: p.grad for n, p in reference.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    decays = {id(p): g["decay"] for g in optimizer.param_groups for p in g["params"]}
    rule.step(["sst"], loss_fn(model, batches), optim)
    worst = 0.0
    for n, p in model.named_parameters():
        lr = 0.02 if n.startswith("encoder.") else 0.005
        wd = 0.1 if decays[id(p)] else 0.0
        g = grads[n]
        expected = before[n] * (1 - lr * wd) - lr * g / (g.abs() + 1e-8)
        worst = max(worst, float((p.detach() - expected).abs().max()))
    assert worst < 1e-6


def test_each_task_sees_the_previous_tasks_update():
    model, cfg, rule, optimizer, scheduler, optim = _setup()
    loss_of = loss_fn(model, random_batches())
    weight = model.encoder.embeddings.LayerNorm.weight
    seen = []

    def watching(task):
        seen.append(weight.detach().clone())
        return loss_of(task)

    rule.step(list(TASKS3), watching, optim)
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])


def test_per_task_arguments_must_name_trained_tasks():
    from mtsearch.config import make_config

    with pytest.raises(ConfigError, match=r"update_args\.lr names 'cfimdb'.*not in tasks"):
        make_config({"update": "separate", "update_args": {"lr": {"cfimdb": 1e-4}}})
    with pytest.raises(ConfigError, match=r"update_args\.weight_decay names 'sts'"):
        make_config({"update": "separate", "tasks": ["sst"], "update_args": {"weight_decay": {"sts": 0.1}}})
    with pytest.raises(ConfigError, match=r"update_args\.weights does not apply to update 'separate'"):
        make_config({"update": "separate", "update_args": {"weights": {"sst": 2.0}}})
    with pytest.raises(ConfigError, match=r"update_args\.lr"):
        make_config({"update": "separate", "update_args": {"lr": {"sst": 0.0}}})
    with pytest.raises(ConfigError, match=r"update_args\.weights names 'cfimdb'"):
        make_config({"update": "combined", "update_args": {"weights": {"cfimdb": 2.0}}})
    make_config({"update": "separate", "update_args": {"lr": {"sst": 1e-4}, "weight_decay": {"para": 0.0}}})


# ---------------------------------------------------------------- one optimizer per task (002)
def _per_task(update_args, **config):
    from mtsearch.train.optim import StepPlan, optim_handle

    model, cfg = tiny_model(
        ("sst", "para"), update="separate", update_args={"optimizers": "per_task", **update_args}, **config
    )
    model.eval()
    rule = UPDATES.create("separate", cfg.args("update"), tasks=["sst", "para"])
    return model, rule, optim_handle(model, cfg, StepPlan(10), rule)


def test_per_task_optimizers_keep_distinct_state_and_the_lr_reaches_the_head():
    model, rule, optim = _per_task(
        {"lr": {"sst": 0.02, "para": 0.005}, "weight_decay": {"sst": 0.1}},
        lr=1e-3, head_lr=1e-3, weight_decay=0.0, warmup_ratio=0.0, max_grad_norm=None,
    )  # fmt: skip
    sst, para = optim.for_task("sst"), optim.for_task("para")
    assert sst.optimizer is not para.optimizer
    batches = random_batches(("sst", "para"))
    # By hand: each optimizer's first AdamW step, p <- p (1 - lr wd) - lr g / (|g| + eps),
    # with the task's own lr on every parameter it reaches (the head included) and, for
    # para, the gradient at the weights sst's step left: a fresh Adam state, not sst's.
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref = copy.deepcopy(model)
    loss_fn(ref, batches)("sst").backward()
    g_sst = {n: p.grad for n, p in ref.named_parameters()}
    decays = {id(p): g["decay"] for g in sst.optimizer.param_groups for p in g["params"]}

    def first_step(before, grads, lr, wd):
        out = {}
        for n, p in model.named_parameters():
            g = grads.get(n)
            if g is None:
                out[n] = before[n]
                continue
            w = wd if decays[id(p)] else 0.0
            out[n] = before[n] * (1 - lr * w) - lr * g / (g.abs() + 1e-8)
        return out

    after_sst = first_step(weights, g_sst, 0.02, 0.1)
    ref2 = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in ref2.named_parameters():
            p.copy_(after_sst[n])
    loss_fn(ref2, batches)("para").backward()
    g_para = {n: p.grad for n, p in ref2.named_parameters()}
    expected = first_step(after_sst, g_para, 0.005, 0.0)

    rule.step(["sst", "para"], loss_fn(model, batches), optim)
    worst = max(float((p.detach() - expected[n]).abs().max()) for n, p in model.named_parameters())
    assert worst < 1e-6
    # Distinct state: each optimizer stepped once, over the encoder and its own task's head only.
    enc = model.encoder.embeddings.word_embeddings.weight
    assert int(sst.optimizer.state[enc]["step"]) == 1 and int(para.optimizer.state[enc]["step"]) == 1
    assert not torch.equal(sst.optimizer.state[enc]["exp_avg"], para.optimizer.state[enc]["exp_avg"])
    sst_head, para_head = model.heads["sst"].proj.weight, model.heads["para"].proj.weight
    assert sst_head in sst.optimizer.state and sst_head not in para.optimizer.state
    assert para_head in para.optimizer.state and para_head not in sst.optimizer.state
    # One schedule tick per trainer step, for every task's optimizer.
    assert sst.scheduler.last_epoch == 1 and para.scheduler.last_epoch == 1


def test_the_shared_optimizer_stays_the_default_and_per_task_has_no_whole_model_step():
    from mtsearch.config import make_config

    assert make_config({"update": "separate"}).args("update").optimizers == "shared"
    _, rule, optim = _per_task({})
    with pytest.raises(RuntimeError, match="one optimizer per task"):
        optim.step()
    # a task without its own lr: the config's lr (5e-5) on the encoder, head_lr (1e-3) on the heads
    peaks = {g["role"]: g["initial_lr"] for g in optim.for_task("sst").optimizer.param_groups}
    assert peaks == {"encoder": pytest.approx(5e-5), "heads": pytest.approx(1e-3)}
