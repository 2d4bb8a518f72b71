"""A tiny multitask model, random batches and optimizer handles for the update-rule tests."""

from __future__ import annotations

import torch

TASKS3 = ("sst", "para", "sts")


def tiny_model(tasks=TASKS3, seed: int = 0, **overrides):
    """The real MultitaskModel on the tiny random 2-layer BERT, and its config."""
    from mtsearch.config import make_config
    from mtsearch.models.encoder import load_encoder, resolve_model
    from mtsearch.models.multitask import MultitaskModel

    values = dict(model="tiny", tasks=list(tasks), max_steps=10, mlflow=False, progress=False)
    values.update(overrides)
    config = make_config(values)
    torch.manual_seed(seed)  # the heads' init
    return MultitaskModel(load_encoder(resolve_model("tiny"), seed=seed), config), config


def random_batches(tasks=TASKS3, n: int = 6, length: int = 10, seed: int = 0) -> dict[str, dict]:
    """One batch per task of random token ids (one input segment, as pair_mode 'concat' reads)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for t in tasks:
        mask = torch.ones(n, length, dtype=torch.long)
        mask[0, length // 2 :] = 0  # one padded row
        inputs = {
            "input_ids": torch.randint(1000, 5000, (n, length), generator=g) * mask,
            "attention_mask": mask,
            "token_type_ids": torch.zeros(n, length, dtype=torch.long),
        }
        if t == "sst":
            labels = torch.randint(0, 5, (n,), generator=g).float()
        elif t == "sts":
            labels = torch.rand(n, generator=g) * 5
        else:
            labels = torch.randint(0, 2, (n,), generator=g).float()
        out[t] = {"inputs": [inputs], "labels": labels}
    return out


def loss_fn(model, batches):
    """``loss_of(task)`` as the trainer builds it."""
    from mtsearch.models.multitask import task_loss

    def loss_of(task: str) -> torch.Tensor:
        b = batches[task]
        return task_loss(task, model(task, b["inputs"]), b["labels"], model.loss_options)

    return loss_of


def sgd_handle(model, lr: float = 1.0, max_grad_norm: float | None = 1.0):
    """The trainer's optimizer handle around plain SGD: the parameter update is -lr * gradient,
    so two rules' updates can be compared value by value (Adam's first step is ~lr * sign)."""
    from mtsearch.train.optim import OptimHandle

    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return OptimHandle.for_model(model, opt, sched, max_grad_norm)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def delta(model, before: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach() - before[k] for k, v in model.named_parameters()}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)
