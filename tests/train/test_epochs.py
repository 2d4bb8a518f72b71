"""Settings counted in epochs as the reports count them: the budget, evaluations, heads-only
phases, multistep milestones (004), the heads-only encoder's dropout, and SimCSE (000, 001)."""

from types import SimpleNamespace

import pytest
import torch

from mtsearch.config import make_config
from mtsearch.errors import ConfigError
from mtsearch.records import read_metrics
from mtsearch.train import train
from mtsearch.train.optim import (
    Freezer,
    OptimHandle,
    StepPlan,
    build_optimizer,
    milestone_steps,
    optimizer_steps,
)
from mtsearch.train.simcse import positive_examples, stage_steps
from mtsearch.updates import UPDATES
from tests.helpers import tiny_config
from tests.updates.helpers import TASKS3, loss_fn, random_batches, tiny_model


def test_max_epochs_and_eval_every_epochs_in_the_trainer(data_dir, runs):
    # rr_over without sigma: an epoch is one pass over the largest task, 192 / 16 = 12 steps.
    cfg = tiny_config(
        data_dir, name="epochs", sampler="rr_over", max_steps=None, max_epochs=0.5, eval_every_epochs=0.25
    )
    result = train(cfg)
    evals = [r["step"] for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert result.steps == 6 and evals == [3, 6]
    # with max_steps too, whichever comes first
    assert train(cfg.model_copy(update={"name": "both", "max_steps": 4})).steps == 4


def test_phases_counted_in_epochs_become_steps():
    cfg = make_config(
        {"max_steps": None, "max_epochs": 30, "heads_only_epochs_before": 5, "heads_only_epochs_after": 5}
    )
    plan = StepPlan.of(cfg, 90, steps_per_epoch=3)
    assert (plan.before, plan.after) == (15, 15)
    model, tcfg = tiny_model(max_steps=None, max_epochs=2, heads_only_epochs_before=1)
    freezer = Freezer(model.encoder, tcfg)
    freezer.set_phases(StepPlan.of(tcfg, 6, steps_per_epoch=3))
    model.train()
    phases = []
    for step in range(6):
        freezer.enter_step(step, 6, model.training)
        phases.append(not any(p.requires_grad for p in model.encoder.parameters()))
    assert phases == [True, True, True, False, False, False]
    with pytest.raises(ConfigError, match="epoch length is not known"):
        StepPlan.of(cfg, 90)
    with pytest.raises(ConfigError, match="exceed max_epochs"):
        make_config({"max_epochs": 8, "heads_only_epochs_before": 5, "heads_only_epochs_after": 5})
    with pytest.raises(ConfigError, match="both set the same phase"):
        make_config({"heads_only_epochs_before": 1, "heads_only_steps_before": 3})


def test_multistep_decays_at_epochs_5_and_25_of_30_as_004():
    values = dict(
        max_steps=None, max_epochs=30, schedule="multistep", schedule_milestones=[5, 25],
        schedule_milestones_unit="epoch", schedule_gamma=0.7, warmup_ratio=0.0,
    )  # fmt: skip
    model, cfg = tiny_model(**values)
    plan = StepPlan.of(cfg, 90, steps_per_epoch=3)
    assert milestone_steps(cfg, plan) == [15, 75]
    optimizer, scheduler = build_optimizer(model, cfg, plan)
    peak = optimizer.param_groups[0]["initial_lr"]
    lrs = []
    for _ in range(90):
        lrs.append(optimizer.param_groups[0]["lr"] / peak)
        optimizer.step()
        scheduler.step()
    # no warm-up; x0.7 once 5 epochs (15 steps) are done, x0.49 once 25 (75 steps) are
    assert lrs[0] == pytest.approx(1.0) and lrs[14] == pytest.approx(1.0)
    assert lrs[15] == pytest.approx(0.7) and lrs[74] == pytest.approx(0.7) and lrs[75] == pytest.approx(0.49)
    # with grad_accum 2 the milestones are the optimizer steps those rounds take: 7 and 37
    _, acc = tiny_model(**values, grad_accum=2)
    assert milestone_steps(acc, StepPlan.of(acc, 90, steps_per_epoch=3)) == [7, 37]
    assert optimizer_steps(acc, StepPlan.of(acc, 90, steps_per_epoch=3)) == 45
    # a milestone inside the warm-up is refused once it is known in steps
    _, warm = tiny_model(**{**values, "warmup_ratio": 0.2})
    with pytest.raises(ConfigError, match="falls inside the warm-up"):
        milestone_steps(warm, StepPlan.of(warm, 90, steps_per_epoch=3))
    with pytest.raises(ConfigError, match="not inside the run's max_epochs"):
        make_config({**values, "max_epochs": 20})


@pytest.mark.parametrize("keep_dropout", [False, True])
def test_heads_only_phases_may_keep_the_encoders_dropout(keep_dropout):
    model, cfg = tiny_model(max_steps=4, heads_only_steps_before=2, heads_only_encoder_dropout=keep_dropout)
    freezer = Freezer(model.encoder, cfg)
    optimizer, scheduler = build_optimizer(model, cfg, 4)  # before the phases: they toggle
    model.train()
    freezer.enter_step(0, 4, model.training)
    assert not any(p.requires_grad for p in model.encoder.parameters())  # frozen either way
    assert model.encoder.training == keep_dropout  # 004: weights frozen, dropout still on
    x = random_batches(("sst",))["sst"]["inputs"][0]
    assert torch.equal(model.encode(x), model.encode(x)) != keep_dropout
    # the step: the encoder does not move, whatever its mode
    before = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    rule = UPDATES.create("combined", cfg.args("update"), tasks=list(TASKS3))
    rule.step(
        list(TASKS3),
        loss_fn(model, random_batches()),
        OptimHandle.for_model(model, optimizer, scheduler, 1.0),
    )
    assert all(torch.equal(p, before[n]) for n, p in model.encoder.named_parameters())
    freezer.enter_step(2, 4, model.training)
    assert model.encoder.training and all(p.requires_grad for p in model.encoder.parameters())
    with pytest.raises(ConfigError, match="applies to heads-only phases"):
        make_config({"heads_only_encoder_dropout": True})


def test_simcse_positives_greater_than_4_and_epochs():
    split = SimpleNamespace(task="sts", examples=[SimpleNamespace(label=v) for v in (4.0, 4.2, 3.9, 5.0)])
    assert positive_examples(split, 4.0).tolist() == [0, 1, 3]  # at least 4 (the default)
    assert positive_examples(split, 4.0, strict=True).tolist() == [1, 3]  # 001: "greater than 4"
    cfg = make_config({"simcse": "sup", "simcse_epochs": 2.5, "simcse_batch_size": 64})
    assert stage_steps(cfg, 946) == 35  # 14 full batches of 64 per pass (the tail is dropped) x 2.5
    assert stage_steps(make_config({"simcse": "sup", "simcse_steps": 7}), 946) == 7
