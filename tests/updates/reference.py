"""Reference implementations the update-rule tests and benchmark compare the package against.

Not shipped in ``mtsearch``: they exist only to check (and time) the real rules.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mtsearch.updates.base import Optim
from mtsearch.updates.pcgrad import OrderRng, projection_orders


def naive_pcgrad_step(
    tasks: list[str], loss_of: Callable[[str], torch.Tensor], optim: Optim, rng: OrderRng
) -> dict[str, float]:
    """PCGrad as it is usually written. The reference for the equivalence test and the benchmark.

    All task graphs are built first and kept alive; for each task one backward with
    ``retain_graph=True`` fills ``.grad`` of every parameter, which is flattened and copied
    (heads included); the projections then loop over P-long vectors. It computes the same
    update as :class:`~mtsearch.updates.pcgrad.PCGrad` (same ``rng`` state, same projection orders) at a higher cost
    in memory and copies.
    """
    shared = list(optim.shared_params)
    heads = []
    seen = {id(p) for p in shared}
    for t in tasks:
        for p in optim.head_params[t]:
            if id(p) not in seen:
                seen.add(id(p))
                heads.append(p)
    params = shared + heads
    n_shared = sum(p.numel() for p in shared)

    task_losses = [loss_of(t) for t in tasks]
    rows = []
    touched = [False] * len(params)
    for loss in task_losses:
        for p in params:
            p.grad = None
        loss.backward(retain_graph=True)
        touched = [seen or p.grad is not None for seen, p in zip(touched, params, strict=True)]
        rows.append(
            torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        )
    for p in params:
        p.grad = None

    full = torch.stack(rows)
    originals = full[:, :n_shared]
    projected = originals.clone()
    for i, order in enumerate(projection_orders(len(tasks), rng)):
        for j in order:
            dot = torch.dot(projected[i], originals[j])
            if dot < 0:
                projected[i] -= dot / torch.dot(originals[j], originals[j]) * originals[j]
    # Another task's row is zero on a head, so the column sum is each head's own gradient.
    merged = torch.cat([projected.sum(0), full[:, n_shared:].sum(0)])
    offset = 0
    for p, reached in zip(params, touched, strict=True):
        p.grad = merged[offset : offset + p.numel()].view_as(p).clone() if reached else None
        offset += p.numel()
    optim.step()
    return {t: float(loss.detach()) for t, loss in zip(tasks, task_losses, strict=True)}


def tseng_pcgrad(
    grads: list[torch.Tensor], has_grads: list[torch.Tensor], orders: list[list[int]]
) -> torch.Tensor:
    """Tseng's PCGrad (github.com/WeiChengTseng/Pytorch-PCGrad, ``_project_conflicting``), reduction 'mean'.

    ``grads``: each task's gradient of the WHOLE model, flattened (zeros where the task has
    none); ``has_grads``: 1 where the task has a gradient, 0 elsewhere. Tseng shuffles all
    tasks (itself included) before projecting each one; ``orders[i]`` is that order for
    task i (self-projection is a no-op as long as the partly projected gradient still has
    a non-negative dot with its own original, which holds in these fixtures). The projected
    gradients are averaged where every task has a gradient ("shared") and summed elsewhere.
    """
    shared = torch.stack(has_grads).prod(0).bool()
    pc_grad = [g.clone() for g in grads]
    for i, g_i in enumerate(pc_grad):
        for j in orders[i]:
            g_j = grads[j]
            g_i_g_j = torch.dot(g_i, g_j)
            if g_i_g_j < 0:
                g_i -= g_i_g_j * g_j / (g_j.norm() ** 2)
    merged = torch.zeros_like(grads[0])
    merged[shared] = torch.stack([g[shared] for g in pc_grad]).mean(dim=0)
    merged[~shared] = torch.stack([g[~shared] for g in pc_grad]).sum(dim=0)
    return merged
