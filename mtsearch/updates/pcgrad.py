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
passes over P-long vectors. The textbook implementation, which the equivalence test and
the update-rule benchmark compare against, is ``tests/updates/reference.py``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from mtsearch.updates.base import UPDATES
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


class PCGradArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    scope: Literal["shared", "all"] = "shared"
    """Which gradients are projected: 'shared' = the shared parameters' (the encoder and a shared pair layer; each head keeps its own task's gradient, as Yu et al. apply it); 'all' = the whole model's flattened gradient, heads included (Tseng's implementation, which 000 and 004 name; 001's own PCGrad flattens the whole model too)."""
    reduction: Literal["sum", "mean", "mean_reached"] = "sum"
    """How the projected gradients combine: 'sum' (Yu et al.'s sum, the scale of the summed loss); 'mean' = their mean where every task has a gradient and their sum elsewhere (Tseng's implementation); 'mean_reached' = per parameter, their mean over the losses that reached it (001's own code: with partial batches a head of a task drawn twice gets the mean of its two gradients, not their sum)."""


@UPDATES.register("pcgrad")
class PCGrad(GradientSurgery):
    """PCGrad (Yu et al. 2020): project away conflicting components of the tasks' encoder gradients.

    Defaults (``scope: shared``, ``reduction: sum``) are the rule as Yu et al. define it
    (Algorithm 1 sums the projected gradients; shared parameters only, heads keep their
    gradient) and as mtsearch ran it before issue 11, so earlier runs keep their meaning.
    Tseng's public implementation (github.com/WeiChengTseng/Pytorch-PCGrad), which 000 and
    004 name, is ``scope: all, reduction: mean``: the whole model's gradient is flattened,
    heads included, every task's flattened gradient is projected against the others' (so
    a head can receive a component of another task's gradient), then the projected
    gradients are averaged where all tasks have a gradient and summed where only some do.
    Tseng's loop also visits a gradient's own original in its shuffled list; that
    projection acts only if the partly projected gradient turned against its own
    original, which this rule leaves out (as Yu et al. do). 001 did not run Tseng's code:
    it wrote its own, which skips the self-projection too and averages each parameter's
    projected gradients over the losses that reached it (``scope: all, reduction:
    mean_reached``).
    """

    Args = PCGradArgs

    def scope(self) -> str:
        return self.args.scope

    def combine(self, grads: torch.Tensor, tasks: list[str]) -> torch.Tensor:
        combined = pcgrad_combine(grads, self.rng)
        n = grads.shape[0]
        if self.args.reduction == "mean_reached":
            return self._mean_over_reached(combined, n)
        if self.args.reduction == "mean":
            # The buffer the rows came from knows which parameters every row reached; rows
            # handed in from elsewhere count as reaching every parameter.
            flat = self._flat
            if flat is None or len(flat.reached) < n:
                return combined / n
            combined = flat.scale_common(combined, n, 1.0 / n)
        return combined

    def _mean_over_reached(self, combined: torch.Tensor, n: int) -> torch.Tensor:
        """Each parameter's summed projected gradient divided by how many of the ``n`` rows
        (losses) reached it; a parameter no row reached stays zero. Rows handed in from
        elsewhere count as reaching every parameter."""
        flat = self._flat
        if flat is None or len(flat.reached) < n:
            return combined / n
        out = combined.clone()
        for k in range(len(flat.params)):
            count = sum(flat.reached[r][k] for r in range(n))
            if count > 1:
                out[flat.offsets[k] : flat.offsets[k + 1]] /= count
        return out
