"""Contracts of every registered update rule, and of every gradient-surgery rule among them.

Every rule: one step reports each scheduled task's loss, touches no other task's head,
ticks the learning-rate schedule exactly once, is reproducible from its generator, and
trains end to end. Every surgery rule (a :class:`GradientSurgery`): no gradient gives no
update, agreeing tasks are all helped, identical gradients are not turned, a conflict
that the plain sum loses is softened, and a step of one task uses its gradient as is.
"""

import copy
import math

import numpy as np
import pytest
import torch

from mtsearch.records import read_metrics
from mtsearch.train import train
from mtsearch.updates import UPDATES
from mtsearch.updates.gradients import GradientSurgery
from tests.helpers import tiny_config
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

SURGERY = [n for n in UPDATES.names() if issubclass(UPDATES.get(n), GradientSurgery)]


def _rule(name, tasks=TASKS3, seed=0):
    return UPDATES.create(name, UPDATES.get(name).Args(), tasks=list(tasks), rng=np.random.default_rng(seed))


class _Toy(torch.nn.Module):
    """A shared vector w and one head vector per task; task t's loss is ((w + h_t) . x_t - y_t)^2."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(4, generator=g))
        self.heads = torch.nn.ParameterDict(
            {t: torch.nn.Parameter(torch.randn(4, generator=g)) for t in TASKS3}
        )
        self.x = {t: torch.randn(4, generator=g) for t in TASKS3}
        self.y = {t: float(torch.randn((), generator=g)) * 3 for t in TASKS3}

    def loss(self, task: str) -> torch.Tensor:
        return ((self.w + self.heads[task]) @ self.x[task] - self.y[task]) ** 2


class _Optim:
    """The trainer's optimizer handle as plain SGD, counting schedule ticks (step = apply + advance)."""

    def __init__(self, toy: _Toy, lr: float = 0.05):
        self.shared_params = [toy.w]
        self.head_params = {t: [p] for t, p in toy.heads.items()}
        self.params = list(toy.parameters())
        self.lr = lr
        self.ticks = 0

    def apply(self, *, lr: float | None = None, weight_decay: float | None = None) -> None:
        with torch.no_grad():
            for p in self.params:
                if p.grad is not None:
                    p -= (lr or self.lr) * p.grad
                    p.grad = None

    def advance(self) -> None:
        self.ticks += 1

    def step(self) -> None:
        self.apply()
        self.advance()


def _step(name: str, tasks: list[str], seed: int = 0) -> tuple[dict, dict, _Optim]:
    toy = _Toy()
    before = {k: v.detach().clone() for k, v in toy.named_parameters()}
    optim = _Optim(toy)
    losses = _rule(name, seed=seed).step(tasks, toy.loss, optim)
    moved = {k: not torch.equal(v.detach(), before[k]) for k, v in toy.named_parameters()}
    assert all(p.grad is None for p in toy.parameters()), "a step leaves no gradient behind"
    return losses, moved, optim


@pytest.mark.parametrize("tasks", [list(TASKS3), ["para", "sst"], ["sts"]], ids=lambda t: "+".join(t))
@pytest.mark.parametrize("name", UPDATES.names())
def test_a_step_reports_its_tasks_moves_only_their_heads_and_ticks_once(name, tasks):
    losses, moved, optim = _step(name, tasks)
    assert list(losses) == tasks and all(math.isfinite(v) for v in losses.values())
    assert optim.ticks == 1  # warm-up and decay count trainer steps, whatever the rule
    assert moved["w"]
    assert {t for t in TASKS3 if moved[f"heads.{t}"]} == set(tasks)


@pytest.mark.parametrize("name", UPDATES.names())
def test_the_same_generator_gives_the_same_update(name):
    toys = []
    for _ in range(2):
        toy = _Toy(seed=1)
        _rule(name, seed=7).step(list(TASKS3), toy.loss, _Optim(toy))
        toys.append(toy)
    for (k, a), (_, b) in zip(toys[0].named_parameters(), toys[1].named_parameters(), strict=True):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("name", UPDATES.names())
def test_trains_and_logs_grad_cosines(name, data_dir, runs):
    seen = []
    result = train(
        tiny_config(data_dir, name=name, update=name, max_steps=4, eval_every=2),
        report=lambda step, metrics: seen.append(metrics),
    )
    assert result.status == "finished" and result.steps == 4
    evals = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    for row, flat in zip(evals, seen, strict=True):
        assert set(row["grad_cosine"]) == {"sst|para", "sst|sts", "para|sts"}
        assert all(-1.0 <= v <= 1.0 for v in row["grad_cosine"].values())
        for pair, value in row["grad_cosine"].items():
            assert flat[f"grad_cos_{pair.replace('|', '_')}"] == value
        assert all(math.isfinite(v) for v in row["train_loss"].values())
    for key, value in evals[-1].get("update_state", {}).items():  # e.g. learned task weights
        assert math.isfinite(value) and seen[-1][f"update_{key}"] == value


@pytest.mark.parametrize("name", UPDATES.names())
def test_a_task_with_no_trainable_path_is_skipped_not_a_crash(name, data_dir, runs):
    # Heads-only phase + cosine STS over parameter-free [CLS] pooling: the STS loss has
    # nothing trainable under it for that phase; every update rule must carry on.
    cfg = tiny_config(data_dir, name=f"nopath-{name}", pair_mode="separate", sts_head="cosine",
                      heads_only_steps_before=2, max_steps=4, eval_every=4, update=name)  # fmt: skip
    assert train(cfg).status == "finished"


# ------------------------------------------------------------------ gradient surgery


def _combine(name: str, grads: torch.Tensor, seed: int = 0) -> torch.Tensor:
    tasks = (
        list(TASKS3[: grads.shape[0]]) if grads.shape[0] <= 3 else [f"t{i}" for i in range(grads.shape[0])]
    )
    return _rule(name, tasks=tasks, seed=seed).combine(grads.clone(), tasks)


@pytest.mark.parametrize("name", SURGERY)
def test_no_gradient_gives_no_update(name):
    assert torch.equal(_combine(name, torch.zeros(3, 6)), torch.zeros(6))


@pytest.mark.parametrize("name", SURGERY)
def test_identical_gradients_are_not_turned(name):
    g = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    out = _combine(name, g.repeat(3, 1))
    assert float(out @ g) > 0 and torch.allclose(out / out.norm(), g / g.norm(), atol=1e-9)


@pytest.mark.parametrize("name", SURGERY)
def test_agreeing_tasks_are_all_helped(name):
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 20:
        g = torch.tensor(rng.normal(size=(3, 5)) + 1.0, dtype=torch.float64)
        if not (g @ g.T > 0).all():
            continue
        assert (g @ _combine(name, g, seed=checked) > 0).all()
        checked += 1


@pytest.mark.parametrize("name", SURGERY)
def test_a_conflict_the_sum_loses_is_softened(name):
    # Two tasks where the summed gradient goes against one of them (g1 . (g1 + g2) < 0): the
    # rule's update must do that worst-off task no more harm than the sum does.
    rng = np.random.default_rng(1)
    for seed in range(30):
        g1, noise = rng.normal(size=6), rng.normal(size=6)
        noise -= (noise @ g1) / (g1 @ g1) * g1  # orthogonal to g1: g1 . (g1 + g2) = (1 - k) |g1|^2 < 0
        g2 = -rng.uniform(1.5, 3.0) * g1 + noise
        g = torch.tensor(np.stack([g1, g2]), dtype=torch.float64)
        plain = g @ g.sum(0)
        assert float(plain.min()) < 0
        assert float((g @ _combine(name, g, seed=seed)).min()) >= float(plain.min()) - 1e-9


@pytest.mark.parametrize("name", SURGERY)
def test_the_same_generator_gives_the_same_combination(name):
    g = torch.tensor(np.random.default_rng(2).normal(size=(3, 50)), dtype=torch.float32)
    assert torch.equal(_combine(name, g, seed=4), _combine(name, g, seed=4))


@pytest.mark.parametrize("name", SURGERY)
def test_a_step_with_one_task_uses_its_gradient_as_is(name):
    model, _ = tiny_model()
    other = copy.deepcopy(model)
    batches = random_batches(seed=4)
    updates = []
    for m, rule in ((model, name), (other, "combined")):
        m.eval()
        before = snapshot(m)
        _rule(rule).step(["para"], loss_fn(m, batches), sgd_handle(m))
        updates.append(delta(m, before))
    assert max_diff(*updates) < 1e-7
