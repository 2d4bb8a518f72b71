"""Do the tasks conflict? Pairwise cosines between the tasks' gradients on the shared encoder.

The trainer calls :func:`gradient_cosines` at every evaluation, whatever the update rule,
on one fixed probe batch per task (drawn once per run from the training data), and logs
the result as ``grad_cosine`` (``{"sst|para": ...}``) in the metrics row and as
``grad_cos_sst_para`` ... in the flat metrics. A negative cosine means a step on one
task's loss makes the other's worse, which is what gradient surgery is about.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from mtsearch.updates.gradients import FlatGrads, gram


def pair_key(a: str, b: str) -> str:
    """The key of a task pair in ``grad_cosine`` (the flat metric is ``grad_cos_{a}_{b}``)."""
    return f"{a}|{b}"


def gradient_cosines(
    model: torch.nn.Module,
    tasks: Sequence[str],
    loss_of: Callable[[str], torch.Tensor],
    params: Sequence[torch.nn.Parameter] | None = None,
) -> dict[str, float]:
    """Cosine between every pair of tasks' gradients of ``params`` (default: the encoder's).

    One forward and one backward per task, no optimizer step. Gradients are taken with
    ``torch.autograd.grad``, so no parameter's ``.grad`` is read or written (nothing to
    zero afterwards) and the heads' gradients are not even computed.

    The model runs in EVAL mode (its training flag is restored afterwards): with dropout
    on, each gradient would carry the noise of its own random mask, which lowers every
    cosine whether or not the tasks conflict, and the probe would draw from torch's global
    generator, so switching the diagnostic on or off would change the training run.
    Pairs are ordered as ``tasks``; a task whose gradient is zero gives NaN cosines. Only
    parameters that require grad count; none (a frozen encoder) gives an empty dict.
    """
    tasks = list(tasks)
    if params is None:
        params = model.encoder.parameters()
    # Frozen parameters have no gradient to compare; with the whole encoder frozen (a
    # heads-only phase) the tasks cannot conflict on it and there is nothing to log.
    params = [p for p in params if p.requires_grad]
    if len(tasks) < 2 or not params:
        return {}
    flat = FlatGrads(params)
    flat.reset(len(tasks))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for i, task in enumerate(tasks):
                loss = loss_of(task)
                flat.store(i, torch.autograd.grad(loss, params, allow_unused=True))
    finally:
        model.train(was_training)
    g = gram(flat.rows(len(tasks)))
    out = {}
    for i in range(len(tasks)):
        for j in range(i + 1, len(tasks)):
            denom = math.sqrt(g[i, i] * g[j, j])
            out[pair_key(tasks[i], tasks[j])] = float(g[i, j] / denom) if denom > 0 else float("nan")
    return out
