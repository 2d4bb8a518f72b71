"""Schedules, layer-wise and per-task learning rates, gradient accumulation, freezing, phases."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from mtsearch.config import make_config
from mtsearch.errors import ConfigError, NonFiniteLoss
from mtsearch.models.layers import encoder_parts, hidden_after
from mtsearch.records import read_metrics
from mtsearch.train import train
from mtsearch.train.optim import (
    Freezer,
    GradAccumulator,
    LossWatch,
    OptimHandle,
    build_optimizer,
    optimizer_steps,
    phase_bounds,
    step_rounds,
)
from mtsearch.updates import UPDATES
from tests.helpers import tiny_config
from tests.updates.helpers import TASKS3, loss_fn, random_batches, snapshot, tiny_model


def _lr_curve(steps: int = 10, **config) -> list[float]:
    """The encoder's learning rate at optimizer steps 0..steps-1, as a fraction of lr."""
    model, cfg = tiny_model(max_steps=steps, lr=1e-3, **config)
    optimizer, scheduler = build_optimizer(model, cfg, steps)
    curve = []
    for _ in range(steps):
        curve.append(optimizer.param_groups[0]["lr"] / 1e-3)
        optimizer.step()  # no gradients: a no-op, but the scheduler expects it first
        scheduler.step()
    return curve


# ------------------------------------------------------------------ schedules
# 10 optimizer steps, warmup_ratio 0.2: warm-up steps 0, 1 at 1/3, 2/3; S - warmup = 8.
WARM = [1 / 3, 2 / 3]


@pytest.mark.parametrize(
    "schedule, extra, expected",
    [
        ("constant", {}, WARM + [1.0] * 8),
        # (10 - s) / 8
        ("linear", {}, WARM + [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]),
        # 0.5 * (1 + cos(pi * (s - 2) / 8))
        ("cosine", {}, WARM + [0.5 * (1 + math.cos(math.pi * i / 8)) for i in range(8)]),
        # milestones 0.5 and 0.8 of 10 steps: steps 5 and 8; gamma 0.5
        (
            "multistep",
            {"schedule_milestones": [0.5, 0.8], "schedule_gamma": 0.5},
            WARM + [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25],
        ),
    ],
)
def test_schedule_curves(schedule, extra, expected):
    curve = _lr_curve(10, schedule=schedule, warmup_ratio=0.2, **extra)
    assert curve == pytest.approx(expected, abs=1e-12)
    if schedule == "cosine":  # hand-worked points of the formula
        assert curve[2] == pytest.approx(1.0) and curve[6] == pytest.approx(0.5)
        assert curve[4] == pytest.approx(0.8535534, abs=1e-7) and curve[9] == pytest.approx(
            0.0380602, abs=1e-7
        )


def test_multistep_default_gamma_is_a_tenth():
    curve = _lr_curve(10, schedule="multistep", warmup_ratio=0.0, schedule_milestones=[0.3])
    assert curve == pytest.approx([1.0] * 3 + [0.1] * 7)


@pytest.mark.parametrize(
    "values, fragments",
    [
        ({"schedule_milestones": [0.5]}, ["schedule_milestones", "schedule 'multistep'", "'linear'"]),
        ({"schedule_gamma": 0.5, "schedule": "cosine"}, ["schedule_gamma", "'cosine'"]),
        ({"schedule": "multistep"}, ["schedule 'multistep' needs schedule_milestones"]),
        ({"schedule": "multistep", "schedule_milestones": [0.6, 0.4]}, ["increase"]),
        ({"schedule": "multistep", "schedule_milestones": [1.5]}, ["(0, 1)"]),
        ({"schedule": "multistep", "schedule_milestones": [0.05]}, ["warmup_ratio 0.1"]),
        ({"task_head_lr": {"cfimdb": 1e-3}}, ["task_head_lr", "cfimdb", "not in tasks"]),
        ({"task_head_lr": {"sst": 0.0}}, ["task_head_lr.sst", "(0, 1]"]),
        ({"layer_lr_decay": 0.0}, ["layer_lr_decay"]),
        ({"layer_lr_decay": 1.2}, ["layer_lr_decay"]),
        ({"grad_accum": 0}, ["grad_accum"]),
        ({"grad_accum": 2, "update": "separate"}, ["grad_accum", "update 'separate'"]),
        ({"freeze_layers": -1}, ["freeze_layers"]),
        ({"frozen_encoder": True, "freeze_layers": 2}, ["frozen_encoder", "freeze_layers"]),
        (
            {"frozen_encoder": True, "heads_only_steps_before": 2},
            ["heads_only_steps_before", "frozen_encoder"],
        ),
        ({"frozen_encoder": True, "update": "pcgrad"}, ["update 'pcgrad'", "frozen_encoder"]),
        (
            {"max_steps": 10, "heads_only_steps_before": 6, "heads_only_steps_after": 5},
            ["heads_only_steps_before", "heads_only_steps_after", "max_steps (10)"],
        ),
    ],
)
def test_bad_optimisation_settings_name_the_fields(values, fragments):
    with pytest.raises(ConfigError) as err:
        make_config(values)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_activation_cache_does_not_change_the_config_hash():
    on, off = make_config({"freeze_layers": 2}), make_config({"freeze_layers": 2, "activation_cache": False})
    assert on.config_hash() == off.config_hash()
    assert on.config_hash() != make_config({"freeze_layers": 3}).config_hash()


# ------------------------------------------------------ per-layer / per-task rates
def test_layer_wise_decay_and_per_task_head_rates():
    model, cfg = tiny_model(lr=1e-3, head_lr=1e-2, layer_lr_decay=0.5, task_head_lr={"sts": 4e-2})
    optimizer, _ = build_optimizer(model, cfg, 10)
    peak = {id(p): g["initial_lr"] for g in optimizer.param_groups for p in g["params"]}
    assert len(peak) == sum(1 for _ in model.parameters())  # every parameter, once
    parts = encoder_parts(model.encoder)
    # L = 2: layer 1 at lr, layer 0 at lr * 0.5, embeddings at lr * 0.5^2
    assert {peak[id(p)] for p in parts.layers[1].parameters()} == {1e-3}
    assert {peak[id(p)] for p in parts.layers[0].parameters()} == {5e-4}
    assert {peak[id(p)] for p in parts.embeddings.parameters()} == {2.5e-4}
    assert {peak[id(p)] for p in model.task_parameters("sts")} == {4e-2}
    assert {peak[id(p)] for t in ("sst", "para") for p in model.task_parameters(t)} == {1e-2}
    # group 0 is the encoder at its full rate (the trainer logs it as "lr")
    assert optimizer.param_groups[0]["role"] == "encoder" and optimizer.param_groups[0]["initial_lr"] == 1e-3
    # weight decay: not on biases and LayerNorm weights
    for g in optimizer.param_groups:
        assert g["weight_decay"] == (cfg.weight_decay if g["decay"] else 0.0)


def test_a_rules_encoder_lr_override_keeps_the_layer_scale():
    # update 'separate' replaces the encoder's peak lr per task; the layer-wise factor stays.
    model, cfg = tiny_model(lr=1e-3, layer_lr_decay=0.5, warmup_ratio=0.0, schedule="constant")
    optimizer, scheduler = build_optimizer(model, cfg, 10)
    seen = {}
    optimizer.register_step_pre_hook(
        lambda opt, a, k: seen.update(
            {g["lr_scale"]: g["lr"] for g in opt.param_groups if g["role"] == "encoder"}
        )
    )
    handle = OptimHandle.for_model(model, optimizer, scheduler, None)
    handle.apply(lr=1e-2)
    assert seen == pytest.approx({1.0: 1e-2, 0.5: 5e-3, 0.25: 2.5e-3})
    assert optimizer.param_groups[0]["lr"] == 1e-3  # restored


# ------------------------------------------------------------- accumulation
def test_accumulation_windows_restart_at_phase_boundaries():
    assert step_rounds(10, 4) == [3, 7, 9]
    # heads-only rounds 0-2, then 3-9: windows [0,2] [3,6] [7,9]
    assert phase_bounds(10, 3, 0) == [(0, 3), (3, 10)]
    assert step_rounds(10, 4, before=3) == [2, 6, 9]
    assert step_rounds(10, 2, before=3, after=2) == [1, 2, 4, 6, 7, 9]
    cfg = make_config({"grad_accum": 4, "max_steps": 10})
    assert optimizer_steps(cfg, 10) == 3


def _concat(b1: dict, b2: dict) -> dict:
    seg = {k: torch.cat([b1["inputs"][0][k], b2["inputs"][0][k]]) for k in b1["inputs"][0]}
    return {"inputs": [seg], "labels": torch.cat([b1["labels"], b2["labels"]])}


def test_accumulating_two_rounds_is_one_step_on_their_concatenation():
    """k = 2 with SGD: the update equals one step on both rounds' batches together."""
    model, cfg = tiny_model(max_grad_norm=None)
    model.eval()  # no dropout: the gradients are exact functions of the batches
    twin = copy.deepcopy(model)
    rule = UPDATES.create("combined", cfg.args("update"), tasks=list(TASKS3))
    first, second = random_batches(seed=1), random_batches(seed=2)

    def handle(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        return OptimHandle.for_model(m, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), None)

    acc = handle(model)
    acc.accumulator = GradAccumulator([p for p in model.parameters()], ends=[1])
    before = snapshot(model)
    rule.step(list(TASKS3), loss_fn(model, first), acc)
    assert snapshot(model).keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in snapshot(model).items())  # round 1: no step
    assert all(p.grad is None for p in model.parameters())  # its gradient is stashed away
    rule.step(list(TASKS3), loss_fn(model, second), acc)

    both = {t: _concat(first[t], second[t]) for t in TASKS3}
    rule.step(list(TASKS3), loss_fn(twin, both), handle(twin))
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        # float32 sums taken in another order: ~1 ulp of values up to ~10 in size
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-6), name
    moved = sum(not torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert moved > 0


def test_accumulator_mean_of_gradients_and_flush():
    w = torch.nn.Parameter(torch.zeros(3))
    acc = GradAccumulator([w], ends=[2])
    for g in ([1.0, 2.0, 3.0], [3.0, 0.0, 0.0]):
        w.grad = torch.tensor(g)
        assert acc.hold() is True and w.grad is None
    # the run ends mid-window: release averages the two pending rounds
    assert acc.release() is True
    assert torch.equal(w.grad, torch.tensor([2.0, 1.0, 1.5]))
    assert acc.release() is False  # nothing pending


def test_grad_accum_in_the_trainer_steps_the_schedule_per_optimizer_step(small_data_dir, runs):
    # 4 rounds, k = 2: 2 optimizer steps; linear, no warm-up: factor (2 - s) / 2 after s steps.
    result = train(
        tiny_config(
            small_data_dir,
            name="acc",
            max_steps=4,
            eval_every=1,
            grad_accum=2,
            warmup_ratio=0.0,
            lr=1e-3,
            train_limit=64,
        )
    )
    evals = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["lr"] / 1e-3 for r in evals] == pytest.approx([1.0, 0.5, 0.5, 0.0])
    assert result.steps == 4 and evals[-1]["examples"] == 4 * 3 * 16  # the budget counts rounds


# ------------------------------------------------------------------ freezing
def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    return random_batches(("sst",), seed=seed)["sst"]["inputs"][0]


def test_frozen_layers_get_no_update_and_no_dropout():
    model, cfg = tiny_model(freeze_layers=1, weight_decay=0.1, lr=1e-2)
    freezer = Freezer(model.encoder, cfg)
    assert freezer.frozen_depth == 1
    parts = encoder_parts(model.encoder)
    model.train()
    model.eval()
    model.train()  # what evaluation does around a training run: the frozen part stays in eval
    assert not parts.embeddings.training and not parts.layers[0].training
    assert all(not m.training for m in parts.layers[0].modules())
    assert parts.layers[1].training and model.heads["sst"].training
    assert not any(p.requires_grad for m in parts.lower(1) for p in m.parameters())

    # No dropout below layer 1: two forwards agree exactly in train mode; above, they do not.
    x = _inputs()
    assert torch.equal(hidden_after(model.encoder, x, 1), hidden_after(model.encoder, x, 1))
    assert not torch.equal(model.encode(x), model.encode(x))

    frozen = {n: p.detach().clone() for m in parts.lower(1) for n, p in m.named_parameters()}
    top = {n: p.detach().clone() for n, p in parts.layers[1].named_parameters()}
    optimizer, scheduler = build_optimizer(model, cfg, 10)
    handle = OptimHandle.for_model(model, optimizer, scheduler, 1.0)
    rule = UPDATES.create("combined", cfg.args("update"), tasks=list(TASKS3))
    for seed in range(3):
        rule.step(list(TASKS3), loss_fn(model, random_batches(seed=seed)), handle)
    now = {n: p for m in parts.lower(1) for n, p in m.named_parameters()}
    assert all(torch.equal(now[n], v) for n, v in frozen.items())  # bit for bit: no decay either
    assert any(not torch.equal(p, top[n]) for n, p in parts.layers[1].named_parameters())


def test_frozen_encoder_trains_only_the_heads():
    model, cfg = tiny_model(frozen_encoder=True)
    freezer = Freezer(model.encoder, cfg)
    model.train()
    assert freezer.frozen_depth == 2 and not model.encoder.training
    assert not any(p.requires_grad for p in model.encoder.parameters())
    optimizer, _ = build_optimizer(model, cfg, 10)
    assert {g["role"] for g in optimizer.param_groups} == {"heads"}


def test_heads_only_phases_leave_the_encoder_unchanged():
    # 6 steps: 2 heads-only, 2 full, 2 heads-only
    model, cfg = tiny_model(
        max_steps=6, heads_only_steps_before=2, heads_only_steps_after=2, freeze_layers=1, lr=1e-2
    )
    freezer = Freezer(model.encoder, cfg)
    optimizer, scheduler = build_optimizer(model, cfg, 6)  # before the phases: they toggle
    handle = OptimHandle.for_model(model, optimizer, scheduler, 1.0)
    rule = UPDATES.create("combined", cfg.args("update"), tasks=list(TASKS3))
    model.train()
    lower = encoder_parts(model.encoder).lower(1)
    encoder_moved, heads_moved, modes = [], [], []
    for step in range(6):
        freezer.enter_step(step, 6, model.training)
        modes.append(model.encoder.training)
        enc = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
        head = {n: p.detach().clone() for n, p in model.heads.named_parameters()}
        rule.step(list(TASKS3), loss_fn(model, random_batches(seed=step)), handle)
        encoder_moved.append(any(not torch.equal(p, enc[n]) for n, p in model.encoder.named_parameters()))
        heads_moved.append(any(not torch.equal(p, head[n]) for n, p in model.heads.named_parameters()))
        assert all(not m.training for m in lower)  # the permanently frozen part never trains
    assert encoder_moved == [False, False, True, True, False, False]
    assert heads_moved == [True] * 6
    assert modes == [False, False, True, True, False, False]  # no dropout while heads-only
    # back to the run's own freezing after the first phase: layer 0 stayed frozen
    assert not any(p.requires_grad for m in lower for p in m.parameters())


def test_heads_only_run_keeps_the_pretrained_encoder(small_data_dir, runs):
    from safetensors.torch import load_file

    from mtsearch.models.encoder import load_encoder, resolve_model

    result = train(
        tiny_config(small_data_dir, name="ho", max_steps=4, heads_only_steps_before=4, train_limit=64)
    )
    state = load_file(str(result.run_dir / "best.safetensors"))
    fresh = load_encoder(resolve_model("tiny"), seed=0).state_dict()
    assert all(torch.equal(state[f"encoder.{k}"], v) for k, v in fresh.items() if f"encoder.{k}" in state)
    evals = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert all("grad_cosine" not in r for r in evals)  # no encoder gradient to compare


def test_freezing_more_layers_than_the_model_has_is_refused_before_the_run(small_data_dir, runs):
    with pytest.raises(ConfigError, match="freeze_layers is 3, but model 'tiny' has only 2 encoder layers"):
        train(tiny_config(small_data_dir, freeze_layers=3))
    assert not runs.exists() or not any(runs.iterdir())


def test_trainable_parameters_are_recorded(small_data_dir, runs):
    result = train(
        tiny_config(
            small_data_dir, name="fz", max_steps=2, freeze_layers=2, activation_cache=False, train_limit=32
        )
    )
    env = json.loads((result.run_dir / "env.json").read_text())["model"]
    assert env["trainable_parameters"] == env["parameters"] - env["encoder_parameters"]
    assert "activation_cache" not in env


def test_loss_watch_reads_its_flags_on_its_cadence_and_names_the_window():
    watch = LossWatch(3, "lower the lr")
    for step in (1, 2, 3):  # a finite window: checked, then forgotten
        watch.add("sst", torch.tensor(0.5), step)
    assert [watch.due(s) for s in (1, 2, 3, 6)] == [False, False, True, True]
    watch.check()
    watch.add("sst", torch.tensor(0.5), 4)
    watch.add("sts", torch.tensor(float("inf")), 5)
    watch.add("sts", torch.tensor(1.0), 6)  # a later finite loss does not clear the flag
    with pytest.raises(NonFiniteLoss, match=r"the sts loss became NaN or inf in steps 4-6 .*: lower the lr"):
        watch.check()
    watch.check()  # the window was consumed: nothing left to raise


def test_loss_watch_every_step_raises_at_once_with_the_value():
    watch = LossWatch(1, "lower the lr")
    watch.add("sst", torch.tensor(0.5), 1)
    with pytest.raises(NonFiniteLoss, match="the para loss became nan at step 2: lower the lr"):
        watch.add("para", torch.tensor(float("nan")), 2)
