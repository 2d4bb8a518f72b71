"""Per-task gradients on the shared encoder: the machinery every gradient-surgery rule shares.

Each task's loss depends only on its own batch, so the per-task gradients cost no extra
backward work: the rule runs one backward per task right after that task's forward (as
``combined`` does), copies the encoder's gradient into one row of a preallocated
``[T, P]`` buffer and clears it; the heads' gradients accumulate where they are, since
only their own task reaches them. A rule then combines the rows into one flat vector
(:meth:`GradientSurgery.combine`, a pure function of the rows) which is handed back to
the encoder parameters as views, with no further copy, before the optimizer step.

Adding a surgery rule is therefore one small module: subclass :class:`GradientSurgery`
and implement ``combine``. Most rules only need the Gram matrix of the rows
(:func:`gram`), which turns their ``T``-dimensional algebra into numbers on the CPU and
leaves a single ``[T] @ [T, P]`` product for the end.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from mtsearch.updates.base import Optim, TaskLosses, UpdateRule, backward

if TYPE_CHECKING:
    from mtsearch.config import RunConfig

#: Columns per chunk when the Gram matrix is accumulated in float64 (bounds the temporary copy).
_GRAM_CHUNK = 1 << 20


class FlatGrads:
    """Gradients of a fixed list of parameters, one task per row of a flat buffer.

    The buffer is allocated once (on the parameters' device and dtype) and grown only
    when a step has more tasks than any before. ``touched`` remembers which parameters
    received a gradient from any task, so a parameter no task reached keeps ``grad=None``
    (and is skipped by the optimizer) exactly as it would under the combined loss.
    """

    def __init__(self, params: Sequence[torch.nn.Parameter]):
        self.params = list(params)
        if not self.params:
            raise ValueError("no shared parameters to collect gradients of")
        dtypes = {p.dtype for p in self.params}
        if len(dtypes) != 1:
            raise ValueError(f"shared parameters of mixed dtypes {sorted(map(str, dtypes))}")
        self.numels = [p.numel() for p in self.params]
        self.offsets = np.concatenate([[0], np.cumsum(self.numels)]).tolist()
        self.size = int(self.offsets[-1])
        self.buffer: torch.Tensor | None = None
        self.touched = [False] * len(self.params)
        self.reached: list[list[bool]] = []  # per row taken: which parameters it had a gradient for

    def reset(self, rows: int) -> torch.Tensor:
        """Zero the first ``rows`` rows (growing the buffer if needed) and return them."""
        if self.buffer is None or self.buffer.shape[0] < rows:
            p0 = self.params[0]
            self.buffer = torch.zeros(rows, self.size, dtype=p0.dtype, device=p0.device)
        else:
            self.buffer[:rows].zero_()
        self.touched = [False] * len(self.params)
        self.reached = [[False] * len(self.params) for _ in range(rows)]
        return self.buffer[:rows]

    def rows(self, rows: int) -> torch.Tensor:
        assert self.buffer is not None
        return self.buffer[:rows]

    def _segment(self, row: torch.Tensor, k: int) -> torch.Tensor:
        return row[self.offsets[k] : self.offsets[k + 1]].view_as(self.params[k])

    def take(self, row: int) -> None:
        """Move the parameters' ``.grad`` into ``row`` and clear it (``None``).

        Clearing with ``None`` rather than zeros lets the next backward hand its fresh
        gradient tensor straight to ``.grad`` (autograd steals it), so no zero-fill and no
        accumulation happen there.
        """
        assert self.buffer is not None
        dst = self.buffer[row]
        for k, p in enumerate(self.params):
            if p.grad is not None:
                self._segment(dst, k).copy_(p.grad)
                self.touched[k] = True
                self.reached[row][k] = True
                p.grad = None

    def scale_common(self, flat: torch.Tensor, rows: int, factor: float) -> torch.Tensor:
        """``flat`` with the parameters every one of the first ``rows`` rows reached scaled by ``factor``.

        Tseng's PCGrad averages the projected gradients where every task has a gradient
        (the shared parameters) and sums them elsewhere (each head: its own task's).
        """
        common = [all(self.reached[r][k] for r in range(rows)) for k in range(len(self.params))]
        if all(common):
            return flat * factor
        out = flat.clone()
        for k, both in enumerate(common):
            if both:
                out[self.offsets[k] : self.offsets[k + 1]] *= factor
        return out

    def store(self, row: int, grads: Sequence[torch.Tensor | None]) -> None:
        """Copy gradients returned by ``torch.autograd.grad`` (``.grad`` is never touched)."""
        assert self.buffer is not None
        dst = self.buffer[row]
        for k, g in enumerate(grads):
            if g is not None:
                self._segment(dst, k).copy_(g)
                self.touched[k] = True

    def put(self, flat: torch.Tensor) -> None:
        """Make ``flat`` the parameters' gradient: each ``.grad`` becomes a view into it."""
        if flat.shape != (self.size,):
            raise ValueError(f"expected a flat gradient of {self.size} values, got {tuple(flat.shape)}")
        flat = flat.to(dtype=self.params[0].dtype).contiguous()
        for k, p in enumerate(self.params):
            if self.touched[k]:
                p.grad = self._segment(flat, k)
            else:
                p.grad = None


def gram(grads: torch.Tensor) -> np.ndarray:
    """``grads @ grads.T`` in float64, for ``[T, P]`` gradients with P in the millions.

    Accumulated over column chunks in double precision: the sign of a dot product near
    zero decides whether PCGrad projects, and a float32 sum over 20M terms can flip it.
    """
    t = grads.shape[0]
    out = torch.zeros(t, t, dtype=torch.float64, device=grads.device)
    for chunk in grads.split(_GRAM_CHUNK, dim=1):
        c = chunk.double()
        out += c @ c.T
    return out.cpu().numpy()


def combine_rows(coef: np.ndarray, grads: torch.Tensor) -> torch.Tensor:
    """``sum_t coef[t] * grads[t]`` as one matrix-vector product."""
    w = torch.as_tensor(np.asarray(coef, dtype=np.float64), device=grads.device).to(grads.dtype)
    return w @ grads


class GradientSurgery(UpdateRule):
    """Base of rules that combine the tasks' gradients on the shared encoder.

    ``step`` collects one gradient row per task of the step (one backward each, heads
    untouched), calls :meth:`combine` on the rows, writes the result back as the encoder's
    gradient and takes one optimizer step. A step with a single task uses that task's
    gradient as is: there is nothing to conflict with. A rule whose :meth:`scope` is 'all'
    collects and combines the whole model's gradient instead, heads included.
    """

    def __init__(self, args, *, tasks: list[str], rng: np.random.Generator | None = None):
        super().__init__(args, tasks=tasks, rng=rng)
        self._flat: FlatGrads | None = None
        self._flat_key: tuple[int, ...] = ()

    @classmethod
    def check_config(cls, args, config: RunConfig) -> None:
        if len(config.tasks) < 2:
            raise ValueError(
                f"update '{cls.name}' combines the gradients of several tasks, but tasks has only "
                f"one ({', '.join(config.tasks)}): add a task or use update 'combined'"
            )
        # With the encoder frozen, only a shared pair layer (para and sts) is left to combine.
        if config.frozen_encoder and not config.shared_pair_layer:
            raise ValueError(
                f"update '{cls.name}' combines the tasks' encoder gradients, and frozen_encoder "
                "leaves none: use update 'combined' (or unfreeze the encoder)"
            )

    @abstractmethod
    def combine(self, grads: torch.Tensor, tasks: list[str]) -> torch.Tensor:
        """The shared gradient ``[P]`` from the per-task rows ``[T, P]`` (row i is ``tasks[i]``)."""

    def scope(self) -> str:
        """Which gradients the rule combines: 'shared' (the shared parameters; each head keeps its
        own task's gradient) or 'all' (the whole model's, heads included)."""
        return "shared"

    def surgery_params(self, optim: Optim) -> list[torch.nn.Parameter]:
        """The parameters whose per-task gradients :meth:`combine` sees, as :meth:`scope` says."""
        params = list(optim.shared_params)
        if self.scope() == "all":
            seen = {id(p) for p in params}
            for task_params in optim.head_params.values():
                for p in task_params:
                    if id(p) not in seen:
                        seen.add(id(p))
                        params.append(p)
        return params

    def flat_grads(self, params: Sequence[torch.nn.Parameter]) -> FlatGrads:
        key = tuple(id(p) for p in params)
        if self._flat is None or key != self._flat_key:
            self._flat, self._flat_key = FlatGrads(params), key
        return self._flat

    def step(
        self, tasks: list[str], loss_of: Callable[[str], torch.Tensor], optim: Optim
    ) -> dict[str, torch.Tensor]:
        flat = self.flat_grads(self.surgery_params(optim))
        flat.reset(len(tasks))
        losses = TaskLosses()
        for i, task in enumerate(tasks):
            loss = loss_of(task)
            backward(loss)
            losses.add(task, loss)
            flat.take(i)
        rows = flat.rows(len(tasks))
        # One task: its row is the gradient (the buffer is re-zeroed before it is reused).
        flat.put(rows[0] if len(tasks) == 1 else self.combine(rows, list(tasks)))
        optim.step()
        return losses.means()
