"""PCGrad: gradient surgery (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning").

For each task i, in a random order of the other tasks j: if ``g_i . g_j < 0``, project the
conflicting component away, ``g_i -= (g_i . g_j) / |g_j|^2 g_j``, where ``g_i`` is the
already-projected gradient and ``g_j`` the ORIGINAL one (as in the paper's Algorithm 1 and
the authors' reference code). The shared gradient is the sum of the projected gradients
(the sum, like ``combined`` with unit weights, so the two rules take steps of the same
scale); each head keeps its own task's gradient.

Every projected gradient stays in the span of the original ones, so the surgery runs on
the ``T x T`` Gram matrix (:func:`pcgrad_coefficients`, float64 on the CPU) and costs one
Gram product and one ``[T] @ [T, P]`` product on the gradients, instead of ``T(T-1)``
passes over P-long vectors. :func:`naive_pcgrad_step` is the textbook implementation,
kept only as the reference the equivalence test and the benchmark compare against.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mtsearch.updates.base import UPDATES, Optim
from mtsearch.updates.gradients import GradientSurgery, combine_rows, gram

OrderRng = np.random.Generator | torch.Generator


def projection_orders(n: int, rng: OrderRng) -> list[list[int]]:
    """For each task i, the other tasks in the order they are projected against.

    Drawn task after task from ``rng``: the same generator state gives the same orders,
    whichever implementation consumes them.
    """
    orders = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        if isinstance(rng, torch.Generator):
            perm = torch.randperm(len(others), generator=rng).tolist()
        else:
            perm = rng.permutation(len(others)).tolist()
        orders.append([others[k] for k in perm])
    return orders


def pcgrad_coefficients(g: np.ndarray, orders: list[list[int]]) -> np.ndarray:
    """PCGrad in coefficient space: row i expresses projected ``g_i`` in the original gradients.

    With ``g_i' = sum_k C[i, k] g_k`` we have ``g_i' . g_j = C[i] @ G[:, j]``, so each
    projection only updates ``C[i, j]``. ``G`` is the Gram matrix of the original gradients.
    """
    g = np.asarray(g, dtype=np.float64)
    n = g.shape[0]
    coef = np.eye(n)
    for i in range(n):
        for j in orders[i]:
            dot = coef[i] @ g[:, j]
            if dot < 0 and g[j, j] > 0:
                coef[i, j] -= dot / g[j, j]
    return coef


def pcgrad_combine(grads: torch.Tensor | list[torch.Tensor], order_rng: OrderRng) -> torch.Tensor:
    """The PCGrad shared gradient (sum of projected gradients) of ``[T, P]`` per-task gradients."""
    rows = torch.stack(list(grads)) if isinstance(grads, list | tuple) else grads
    coef = pcgrad_coefficients(gram(rows), projection_orders(rows.shape[0], order_rng))
    return combine_rows(coef.sum(axis=0), rows)


@UPDATES.register("pcgrad")
class PCGrad(GradientSurgery):
    """PCGrad (Yu et al. 2020): project away conflicting components of the tasks' encoder gradients."""

    def combine(self, grads: torch.Tensor, tasks: list[str]) -> torch.Tensor:
        return pcgrad_combine(grads, self.rng)


def naive_pcgrad_step(
    tasks: list[str], loss_of: Callable[[str], torch.Tensor], optim: Optim, rng: OrderRng
) -> dict[str, float]:
    """PCGrad as it is usually written. FOR COMPARISON ONLY (benchmark and equivalence test).

    All task graphs are built first and kept alive; for each task one backward with
    ``retain_graph=True`` fills ``.grad`` of every parameter, which is flattened and copied
    (heads included); the projections then loop over P-long vectors. It computes the same
    update as :class:`PCGrad` (same ``rng`` state, same projection orders) at a higher cost
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
