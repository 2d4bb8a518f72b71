"""CAGrad: conflict-averse gradient descent (Liu et al. 2021, "Conflict-Averse Gradient Descent
for Multi-task Learning", NeurIPS).

The update ``d`` maximises the worst task's improvement ``min_i g_i . d`` within a ball
around the average gradient ``g0``: ``|d - g0| <= c |g0|``. Through its dual this is

    w* = argmin_{w in simplex}  g_w . g0 + sqrt(phi) |g_w|,   g_w = sum_i w_i g_i,  phi = c^2 |g0|^2
    d  = g0 + sqrt(phi) / |g_w*| * g_w*

The dual is solved on the ``T x T`` Gram matrix with scipy's SLSQP (bounds [0, 1], one
equality constraint), started from uniform weights as in the authors' code and given the
analytic gradient; the best of its answer, the start and the simplex corners is kept, so a
solver hiccup can only cost optimality, never correctness. The Gram matrix is normalised
by its mean diagonal first: the minimiser does not depend on the gradients' scale, and
SLSQP's tolerances then mean the same for tiny and large gradients.

Scale, as in the reference implementation (github.com/Cranial-XIX/CAGrad, ``cagrad`` with
``rescale=1`` and ``overwrite_grad``): ``d`` is divided by ``1 + c^2`` and multiplied by the
number of tasks "to match the sum loss". :func:`cagrad_combine` returns ``d / (1 + c^2)``
(mean scale, so ``c = 0`` gives exactly the average gradient); the rule multiplies by T
so its steps have the scale of ``combined``'s summed loss. Heads keep their own gradient.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import minimize

from mtsearch.updates.base import UPDATES
from mtsearch.updates.gradients import GradientSurgery, combine_rows, gram

#: Keeps sqrt(w G w) differentiable where a combination of the gradients vanishes.
_EPS = 1e-12


def cagrad_weights(g: np.ndarray, c: float) -> np.ndarray:
    """The dual solution ``w*`` on the simplex for Gram matrix ``g`` and radius factor ``c``."""
    g = np.asarray(g, dtype=np.float64)
    n = g.shape[0]
    b = np.full(n, 1.0 / n)
    scale = float(np.trace(g)) / n
    if n == 1 or c == 0.0 or scale <= 0.0:
        return b
    a = g / scale
    sqrt_phi = c * float(np.sqrt(max(b @ a @ b, 0.0)))
    ab = a @ b

    def objective(w: np.ndarray) -> float:
        return float(w @ ab + sqrt_phi * np.sqrt(max(w @ a @ w, 0.0) + _EPS))

    def gradient(w: np.ndarray) -> np.ndarray:
        return ab + sqrt_phi * (a @ w) / np.sqrt(max(w @ a @ w, 0.0) + _EPS)

    res = minimize(
        objective,
        b,
        jac=gradient,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(n)}],
        options={"ftol": 1e-12, "maxiter": 200},
    )
    w = np.clip(np.asarray(res.x, dtype=np.float64), 0.0, None)
    w = w / w.sum() if w.sum() > 0 else b
    candidates = [w, b, *np.eye(n)]
    return min(candidates, key=objective)


def cagrad_coefficients(g: np.ndarray, c: float) -> np.ndarray:
    """``d / (1 + c^2)`` as weights on the original gradients: ``(1/T + lambda w*) / (1 + c^2)``."""
    g = np.asarray(g, dtype=np.float64)
    n = g.shape[0]
    b = np.full(n, 1.0 / n)
    w = cagrad_weights(g, c)
    g0_norm = float(np.sqrt(max(b @ g @ b, 0.0)))
    gw_norm = float(np.sqrt(max(w @ g @ w, 0.0)))
    # lambda = sqrt(phi) / |g_w|; where g_w vanishes the reference adds 1e-8 to the
    # denominator, which makes the term zero: d is then g0.
    lam = c * g0_norm / gw_norm if gw_norm > 1e-12 * max(1.0, g0_norm) else 0.0
    return (b + lam * w) / (1.0 + c * c)


def cagrad_combine(grads: torch.Tensor | list[torch.Tensor], c: float = 0.5) -> torch.Tensor:
    """The CAGrad direction ``d / (1 + c^2)`` of ``[T, P]`` per-task gradients (mean scale)."""
    rows = torch.stack(list(grads)) if isinstance(grads, list | tuple) else grads
    return combine_rows(cagrad_coefficients(gram(rows), c), rows)


class CAGradArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    c: float = Field(0.5, ge=0.0, lt=1.0)
    """Radius of the ball around the average gradient, as a fraction of its norm (0: plain average)."""


@UPDATES.register("cagrad")
class CAGrad(GradientSurgery):
    """CAGrad (Liu et al. 2021): the update that most helps the worst task near the average gradient."""

    Args = CAGradArgs

    def combine(self, grads: torch.Tensor, tasks: list[str]) -> torch.Tensor:
        # Times T, as the reference code does, so the step matches the summed loss's scale.
        return cagrad_combine(grads, self.args.c) * grads.shape[0]
