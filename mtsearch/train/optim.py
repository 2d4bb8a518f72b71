"""Optimizer, learning-rate schedules, the optimizer step, gradient accumulation and freezing.

Every training stage (the multitask loop, SimCSE pre-training) builds its AdamW from
:func:`param_groups` and :func:`adamw` and steps it through an :class:`OptimHandle`
(clip, step, zero, schedule), checking each loss with :func:`finite_loss` first.

Learning rates. AdamW with one peak rate for the encoder (``lr``) and one for the heads
(``head_lr``, per task ``task_head_lr``). With ``layer_lr_decay`` d < 1 the encoder's
rate decays with depth from the top: layer l (0-based of L) gets ``lr * d**(L-1-l)``, the
embeddings ``lr * d**L`` (so with d = 0.9 and L = 6 the top layer trains at lr and the
embeddings at 0.53 lr). Every group follows the same schedule factor:

- warm-up: ``int(warmup_ratio * S)`` optimizer steps (S: the run's optimizer steps) rise
  linearly, step s getting ``(s + 1) / (warmup + 1)``;
- then ``constant`` (1), ``linear`` (``(S - s) / (S - warmup)``, 0 at s = S),
  ``cosine`` (``0.5 * (1 + cos(pi * (s - warmup) / (S - warmup)))``, 0 at s = S) or
  ``multistep`` (``gamma ** #{milestones passed}``; a milestone m, a fraction of the run,
  is optimizer step ``int(m * S)``; fractions keep a schedule meaningful whatever the
  budget, max_steps or max_examples, and whatever ``grad_accum``).

Epochs. Settings the reports count in epochs (``heads_only_epochs_*``, multistep
milestones with ``schedule_milestones_unit: epoch``; the trainer's ``max_epochs`` and
``eval_every_epochs``) become steps through the sampler's epoch length, once it is known
(:class:`StepPlan`): e epochs are ``round(e * steps_per_epoch)`` steps, and a milestone of
e epochs drops the rate once those steps' optimizer steps are done.

One optimizer per task. An update rule may ask for its own AdamW per task
(:meth:`~mtsearch.updates.base.UpdateRule.task_optimizers`, update 'separate' with
``optimizers: per_task``): :func:`optim_handle` then builds each task an AdamW over the
whole model, with that task's learning rate (reaching the heads too) and weight decay, its
own state and its own schedule, and hands the rule a :class:`PerTaskOptim`.

Gradient accumulation. The budget (``max_steps``, the evaluation period, the heads-only
phases) counts steps, i.e. rounds: one batch of each scheduled task. With
``grad_accum`` k the update rule runs every round as usual, but only every k-th round
steps the optimizer, with the AVERAGE of the k rounds' gradients: exactly what scaling
each round's loss by 1/k and summing would give, so k rounds of batch b train like one
round of batch k*b (clipping applies to the average). The schedule advances once per
real optimizer step, so S = ceil(rounds / k) (windows also end where a heads-only phase
starts or ends, so no window mixes frozen and unfrozen rounds). Logged losses stay the
per-round losses.

Freezing. ``freeze_layers`` k freezes the embeddings and layers 0..k-1; ``frozen_encoder``
the whole encoder; ``heads_only_steps_before/after`` the whole encoder for the first /
last steps of the run. A frozen module gets no gradient (``requires_grad`` False, so
AdamW skips it: no update and no weight decay) and stays in eval mode even while the
model trains (no dropout), whatever ``model.train()`` later says: its outputs are then a
deterministic function of its inputs, which is what makes the activation cache
(:mod:`mtsearch.train.activation_cache`) exact.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtsearch.config import RunConfig
from mtsearch.errors import ConfigError, NonFiniteLoss
from mtsearch.models.layers import encoder_parts, require_parts

#: Parameter names that never get weight decay (biases and normalisation weights).
NO_DECAY = ("bias", "LayerNorm.weight", "layernorm.weight", "norm.weight")
#: schedule_gamma when unset
DEFAULT_GAMMA = 0.1


# ----------------------------------------------------------------------- schedule
def phase_bounds(total_rounds: int, before: int, after: int) -> list[tuple[int, int]]:
    """The run's phases as [start, end) round ranges: heads-only before, full, heads-only after."""
    cuts = sorted({0, min(before, total_rounds), max(0, total_rounds - after), total_rounds})
    return [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def step_rounds(total_rounds: int, grad_accum: int, before: int = 0, after: int = 0) -> list[int]:
    """The rounds (0-based) after which the optimizer really steps.

    Every ``grad_accum``-th round of each phase, and the last round of each phase (a
    phase whose length is not a multiple of k ends with a shorter window).
    """
    out = []
    for start, end in phase_bounds(total_rounds, before, after):
        out += [r for r in range(start, end) if (r - start + 1) % grad_accum == 0 or r == end - 1]
    return out


def epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    """``epochs`` of ``steps_per_epoch`` steps, rounded to the nearest step (halves up)."""
    return int(math.floor(epochs * steps_per_epoch + 0.5))


@dataclass(frozen=True)
class StepPlan:
    """A run's counts in steps (rounds): its length and the heads-only phases.

    The config may count phases (and schedule milestones, evaluations, the budget) in
    epochs of the sampler; :meth:`of` turns them into steps once the sampler's epoch
    length (``steps_per_epoch``) is known. A plain step count (``build_optimizer(model,
    config, 10)``) is a plan without epochs.
    """

    total: int
    steps_per_epoch: int | None = None
    before: int = 0
    after: int = 0

    @classmethod
    def of(cls, config: RunConfig, total: int, steps_per_epoch: int | None = None) -> StepPlan:
        def phase(when: str) -> int:
            steps = getattr(config, f"heads_only_steps_{when}")
            epochs = getattr(config, f"heads_only_epochs_{when}")
            if not epochs:
                return steps
            return epochs_to_steps(epochs, _epoch_length(steps_per_epoch, f"heads_only_epochs_{when}"))

        return cls(total, steps_per_epoch, phase("before"), phase("after"))


def _epoch_length(steps_per_epoch: int | None, what: str) -> int:
    if steps_per_epoch is None:
        raise ConfigError(f"{what} counts epochs, and this run's epoch length is not known here")
    return steps_per_epoch


def as_plan(config: RunConfig, total: int | StepPlan) -> StepPlan:
    return total if isinstance(total, StepPlan) else StepPlan.of(config, total)


def optimizer_steps(config: RunConfig, total_rounds: int | StepPlan) -> int:
    """Optimizer steps in a run of ``total_rounds`` rounds (the schedule's length)."""
    plan = as_plan(config, total_rounds)
    if config.grad_accum == 1:
        return plan.total
    return len(step_rounds(plan.total, config.grad_accum, plan.before, plan.after))


def milestone_steps(config: RunConfig, plan: StepPlan) -> list[int] | None:
    """Multistep milestones counted in epochs, as the optimizer steps at which the rate drops.

    None when milestones are fractions of the run (:func:`schedule_factor` places them). A
    milestone of e epochs drops the rate once the rounds of e epochs are done: at the
    number of optimizer steps those rounds take. A milestone inside the warm-up is refused.
    """
    if config.schedule != "multistep" or config.schedule_milestones_unit != "epoch":
        return None
    per_epoch = _epoch_length(plan.steps_per_epoch, "schedule_milestones (unit epoch)")
    rounds = [epochs_to_steps(e, per_epoch) for e in config.schedule_milestones]
    if config.grad_accum == 1:
        steps = rounds
    else:
        ends = step_rounds(plan.total, config.grad_accum, plan.before, plan.after)
        steps = [sum(r < m for r in ends) for m in rounds]
    warmup = int(config.warmup_ratio * optimizer_steps(config, plan))
    if steps and steps[0] < warmup:
        raise ConfigError(
            f"schedule_milestones: epoch {config.schedule_milestones[0]} (optimizer step {steps[0]}) falls "
            f"inside the warm-up ({warmup} steps, warmup_ratio {config.warmup_ratio}); put milestones after it"
        )
    return steps


def lr_factor(
    step: int,
    *,
    schedule: str,
    total: int,
    warmup: int,
    milestones: Sequence[int] = (),
    gamma: float = DEFAULT_GAMMA,
) -> float:
    """The schedule's multiplier of the peak learning rates at optimizer step ``step`` (0-based)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    if schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "multistep":
        return gamma ** sum(step >= m for m in milestones)
    raise ValueError(f"unknown schedule '{schedule}'")


def schedule_factor(
    schedule: str,
    total_steps: int,
    warmup_ratio: float,
    milestones: Sequence[float] = (),
    gamma: float | None = None,
    milestone_steps: Sequence[int] | None = None,
) -> Callable[[int], float]:
    """``step -> factor`` of ``schedule`` over ``total_steps`` OPTIMIZER steps.

    ``milestones`` are fractions of the run (multistep), or ``milestone_steps`` the
    optimizer steps themselves; ``gamma`` None is the default.
    """
    warmup = int(warmup_ratio * total_steps)
    steps = (
        list(milestone_steps) if milestone_steps is not None else [int(m * total_steps) for m in milestones]
    )
    gamma = gamma if gamma is not None else DEFAULT_GAMMA

    def factor(step: int) -> float:
        return lr_factor(
            step, schedule=schedule, total=total_steps, warmup=warmup, milestones=steps, gamma=gamma
        )

    return factor


def schedule_of(config: RunConfig, total_steps: int, milestone_steps: Sequence[int] | None = None):
    """``step -> factor`` for a run of ``total_steps`` OPTIMIZER steps, as the config says.

    ``milestone_steps``: multistep milestones already in optimizer steps (:func:`milestone_steps`).
    """
    return schedule_factor(
        config.schedule,
        total_steps,
        config.warmup_ratio,
        config.schedule_milestones,
        config.schedule_gamma,
        milestone_steps,
    )


# ----------------------------------------------------------------------- optimizer
def layer_lr_scales(encoder: nn.Module, decay: float) -> dict[int, float]:
    """``id(parameter) -> lr multiplier`` under layer-wise decay (empty when decay is 1)."""
    if decay == 1.0:
        return {}
    parts = require_parts(encoder, "layer_lr_decay")
    depth = parts.depth
    scales = {id(p): decay**depth for p in parts.embeddings.parameters()}
    for i, layer in enumerate(parts.layers):
        scales.update({id(p): decay ** (depth - 1 - i) for p in layer.parameters()})
    return scales


def param_groups(
    named: Iterable[tuple[str, nn.Parameter]], lr: float, weight_decay: float, role: str, **tags
):
    """The two AdamW groups of ``named``'s trainable parameters at ``lr``: decayed, then not.

    Biases and normalisation weights (names ending in :data:`NO_DECAY`) get no weight
    decay. Groups carry tags the optimizer ignores: ``role``, ``decay`` (whether weight
    decay applies) and any ``tags`` (e.g. ``lr_scale``), for :meth:`OptimHandle.apply`.
    """
    named = [(n, p) for n, p in named if p.requires_grad]
    decay = [p for n, p in named if not n.endswith(NO_DECAY)]
    nodecay = [p for n, p in named if n.endswith(NO_DECAY)]
    return [
        {"params": decay, "lr": lr, "weight_decay": weight_decay, "role": role, "decay": True, **tags},
        {"params": nodecay, "lr": lr, "weight_decay": 0.0, "role": role, "decay": False, **tags},
    ]


def adamw(groups: list[dict], factor: Callable[[int], float], *, fused: bool = True):
    """AdamW over ``groups`` (empty ones dropped) and its schedule, ``factor`` times each group's lr.

    ``fused`` does the whole update in one kernel (CPU and CUDA in torch >= 2.4), falling
    back to the default implementation where torch has none. The two round differently
    in the last bits, so a stage keeps the one its recorded results were made with.
    """
    groups = [g for g in groups if g["params"]]
    optimizer = None
    if fused:
        try:
            optimizer = torch.optim.AdamW(groups, fused=True)
        except (RuntimeError, TypeError):
            pass
    if optimizer is None:
        optimizer = torch.optim.AdamW(groups)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_optimizer(
    model,
    config: RunConfig,
    total_steps: int | StepPlan,
    extra_params: list[torch.nn.Parameter] | None = None,
    extra_lr: float | None = None,
    *,
    lr: float | None = None,
    weight_decay: float | None = None,
):
    """AdamW over the model (plus an update rule's own parameters) and its LR schedule.

    ``total_steps`` is the run's budget in steps (rounds); the schedule's length is the
    number of real optimizer steps in it (:func:`optimizer_steps`: fewer with
    ``grad_accum``). Parameters that do not require grad (frozen for the whole run) are
    left out; a heads-only phase freezes the encoder later, so call this before it.

    Groups carry tags the optimizer ignores: ``role`` (encoder / heads / extra),
    ``decay`` (whether weight decay applies) and ``lr_scale`` (the layer-wise factor of
    an encoder group), for :meth:`OptimHandle.apply`. Encoder groups come first, the
    full-rate one (top layers) before the decayed ones, so group 0 carries the encoder's
    learning rate. ``extra_params`` (e.g. the learned task uncertainties) get their own
    group at ``extra_lr`` (default: the heads' learning rate), without weight decay.

    ``lr`` and ``weight_decay`` override the config's for this optimizer (one task's own,
    update 'separate' with per-task optimizers): ``lr`` then applies to the whole model,
    heads included (``head_lr`` and ``task_head_lr`` do not), ``weight_decay`` to every
    group that decays.
    """
    plan = as_plan(config, total_steps)
    wd = config.weight_decay if weight_decay is None else weight_decay
    enc_lr = config.lr if lr is None else lr
    # encoder: one pair of groups per learning-rate scale, largest first
    scales = layer_lr_scales(model.encoder, config.layer_lr_decay)
    encoder_named = list(model.encoder.named_parameters())
    groups: list[dict] = []
    for scale in sorted({scales.get(id(p), 1.0) for _, p in encoder_named}, reverse=True):
        named = [(n, p) for n, p in encoder_named if scales.get(id(p), 1.0) == scale]
        groups += param_groups(named, enc_lr * scale, wd, "encoder", lr_scale=scale)

    # everything outside the encoder: poolings, heads, shared pair layers; a task named in
    # task_head_lr gets its own groups for its pooling and head(s)
    head_lr = (config.head_lr or config.lr) if lr is None else lr
    rest = [(n, p) for n, p in model.named_parameters() if not n.startswith("encoder.")]
    per_task = {}
    for task, task_lr in config.task_head_lr.items() if lr is None else ():
        if task in getattr(model, "tasks", ()):
            ids = {id(p) for p in model.task_parameters(task)}
            per_task[task] = ([(n, p) for n, p in rest if id(p) in ids], task_lr)
    taken = {id(p) for named, _ in per_task.values() for _, p in named}
    groups += param_groups([(n, p) for n, p in rest if id(p) not in taken], head_lr, wd, "heads")
    for task, (named, task_lr) in per_task.items():
        groups += param_groups(named, task_lr, wd, "heads", task=task)

    if extra_params:
        groups.append(
            {
                "params": list(extra_params),
                "lr": extra_lr or head_lr,
                "weight_decay": 0.0,
                "role": "extra",
                "decay": False,
            }
        )
    steps = optimizer_steps(config, plan)
    return adamw(groups, schedule_of(config, steps, milestone_steps(config, plan)))


# --------------------------------------------------------------- accumulation
class GradAccumulator:
    """Sums the rounds' gradients between real optimizer steps and hands back their mean.

    :class:`OptimHandle` calls :meth:`hold` once per round, after the update
    rule's backward passes (and, for gradient surgery, after it wrote the combined
    gradient). A round that does not end its window moves every ``.grad`` into a private
    buffer and clears it: whatever the rule does with ``.grad`` during the next round
    (surgery rules move it into buffers of their own) cannot touch the sum. The round
    that ends the window adds the buffer back and divides by the window's rounds.
    """

    def __init__(self, params: Sequence[nn.Parameter], ends: Iterable[int]):
        self.params = list(params)
        self.ends = set(ends)
        self.round = 0  # rounds seen so far
        self.pending = 0  # rounds in the current window, this one included once held
        self._sum: list[torch.Tensor | None] = [None] * len(self.params)

    def hold(self) -> bool:
        """True: this round's gradient was stashed, do not step. False: step now on the mean."""
        r = self.round
        self.round += 1
        self.pending += 1
        if r in self.ends:
            self.release()
            return False
        for k, p in enumerate(self.params):
            if p.grad is None:
                continue
            if self._sum[k] is None:
                self._sum[k] = p.grad.detach().clone()
            else:
                self._sum[k].add_(p.grad)
            p.grad = None
        return True

    def release(self) -> bool:
        """Put the window's mean gradient into ``.grad``; False when no round is pending."""
        if not self.pending:
            return False
        scale = 1.0 / self.pending
        for k, p in enumerate(self.params):
            acc = self._sum[k]
            if acc is not None:
                # new tensors: .grad may be a view into an update rule's own buffer
                p.grad = (acc + p.grad if p.grad is not None else acc) * scale
            elif p.grad is not None:
                p.grad = p.grad * scale
        self._sum = [None] * len(self.params)
        self.pending = 0
        return True


def make_accumulator(optimizer, config: RunConfig, total_rounds: int | StepPlan) -> GradAccumulator | None:
    """The accumulator of the multitask loop's :class:`OptimHandle`; None when grad_accum is 1."""
    if config.grad_accum == 1:
        return None
    plan = as_plan(config, total_rounds)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    return GradAccumulator(params, step_rounds(plan.total, config.grad_accum, plan.before, plan.after))


# ----------------------------------------------------------------------- the step
def finite_loss(loss: torch.Tensor, name: str, where: str, advice: str) -> float:
    """``loss`` as a float; :class:`NonFiniteLoss` (naming ``name``, ``where`` and ``advice``) if NaN or inf."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLoss(f"the {name} loss became {value} at {where}: {advice}")
    return value


#: Steps between two reads of the loss-finiteness flags on an accelerator (see :class:`LossWatch`).
LOSS_CHECK_EVERY = 50


def loss_check_every(device: torch.device) -> int:
    """How often the multitask loop reads its loss flags: every step on the CPU (reading a
    CPU tensor waits for nothing), every :data:`LOSS_CHECK_EVERY` steps on an accelerator."""
    return 1 if device.type == "cpu" else LOSS_CHECK_EVERY


class LossWatch:
    """Is every training loss finite? Checked on the loss's device, read every ``every`` steps.

    Reading a GPU tensor's value (``float(loss)``) makes the host wait for the GPU, which
    then idles while Python prepares the next step. So with ``every`` > 1 each loss only
    ORs ``~isfinite(loss)`` into its task's flag, on the device, and :meth:`check` reads
    the flags (one copy) every ``every`` steps and before every evaluation: a divergence
    raises :class:`NonFiniteLoss` naming the task and the window of steps it happened in
    (the weights are NaN by then either way: the run fails as before, up to ``every`` - 1
    steps later). With ``every`` 1 each loss is checked at once (:func:`finite_loss`), with
    the exact step and value.
    """

    def __init__(self, every: int, advice: str):
        self.every = every
        self.advice = advice
        self._flags: dict[str, torch.Tensor] = {}
        self._first: int | None = None  # the window's first and last step (1-based)
        self._last = 0

    def add(self, task: str, loss: torch.Tensor, step: int) -> None:
        """Watch ``task``'s loss of step ``step`` (1-based)."""
        if self.every == 1:
            finite_loss(loss, task, f"step {step}", self.advice)
            return
        bad = ~torch.isfinite(loss.detach())
        flag = self._flags.get(task)
        self._flags[task] = bad if flag is None else flag | bad
        self._first = step if self._first is None else self._first
        self._last = step

    def due(self, step: int) -> bool:
        """Is step ``step`` (1-based, done) one after which the flags are read?"""
        return step % self.every == 0

    def check(self) -> None:
        """Read the flags of the steps since the last check; NonFiniteLoss if one was set."""
        if not self._flags:
            return
        tasks = list(self._flags)
        bad = torch.stack([self._flags[t] for t in tasks]).tolist()  # the one host-device sync
        first, last = self._first, self._last
        self._flags, self._first = {}, None
        for task, flag in zip(tasks, bad, strict=True):
            if flag:
                raise NonFiniteLoss(
                    f"the {task} loss became NaN or inf in steps {first}-{last} (checked every "
                    f"{self.every} steps on the device): {self.advice}"
                )


class OptimHandle:
    """One optimizer step, as every training stage takes it: clip, step, zero grads, schedule.

    ``step`` is one trainer step: ``apply`` (clip ``params``' gradient norm to
    ``max_grad_norm``, optimizer step, zero grads) then ``advance`` (the schedule moves
    once). A rule that steps several times per trainer step (update 'separate': once per
    task) calls ``apply`` per task, with that task's encoder lr / weight decay, and
    ``advance`` once at the end, so the schedule counts trainer steps whatever the rule does.

    With an ``accumulator`` (``grad_accum`` k > 1, :func:`make_accumulator`) ``step`` only
    stashes the round's gradient, except every k-th round, which steps on the mean
    gradient of its window (config refuses update 'separate' with k > 1).

    This is also what update rules see of the optimizer (:class:`mtsearch.updates.base.Optim`):
    ``shared_params`` (where tasks can conflict) and ``head_params`` per task, which
    :meth:`for_model` fills in from the multitask model.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        params: Sequence[nn.Parameter],
        max_grad_norm: float | None,
        *,
        accumulator: GradAccumulator | None = None,
        shared_params: Sequence[nn.Parameter] = (),
        head_params: dict[str, list[nn.Parameter]] | None = None,
    ):
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.all_params = list(params)  # clipped together, in this order
        self.max_grad_norm = max_grad_norm
        self.accumulator = accumulator
        self.shared_params = list(shared_params)
        self.head_params = head_params or {}

    @classmethod
    def for_model(cls, model, optimizer, scheduler, max_grad_norm, accumulator=None) -> OptimHandle:
        """The handle of a multitask model's optimizer (:func:`build_optimizer`)."""
        return cls(
            optimizer,
            scheduler,
            [p for p in model.parameters() if p.requires_grad],
            max_grad_norm,
            accumulator=accumulator,
            # shared: the encoder plus the pair layer para and sts share (if any; its
            # gradient stays None for the tasks that do not use it).
            shared_params=[p for p in model.shared_parameters() if p.requires_grad],
            head_params={t: [p for p in model.task_parameters(t) if p.requires_grad] for t in model.tasks},
        )

    def step(self) -> None:
        if self.accumulator is not None and self.accumulator.hold():
            return  # mid-window: the gradient is stashed, the optimizer waits
        self.apply()
        self.advance()

    def flush(self) -> None:
        """Step now on a partly accumulated window (the run ends before the window does)."""
        if self.accumulator is not None and self.accumulator.release():
            self.apply()
            self.advance()

    def apply(self, *, lr: float | None = None, weight_decay: float | None = None) -> None:
        """Clip, one optimizer step, zero the gradients; the schedule does not move.

        ``lr`` replaces the encoder's peak learning rate for this step only (times the
        schedule's current factor); ``weight_decay`` replaces the decay of the groups that
        decay (``param_groups`` tags them). Both are restored afterwards.
        """
        saved = [(g["lr"], g["weight_decay"]) for g in self.optimizer.param_groups]
        for g in self.optimizer.param_groups:
            if lr is not None and g.get("role") == "encoder":
                # keep the schedule's factor and the group's layer-wise scale (layer_lr_decay)
                g["lr"] = lr * g.get("lr_scale", 1.0) * g["lr"] / g.get("initial_lr", g["lr"])
            if weight_decay is not None and g.get("decay"):
                g["weight_decay"] = weight_decay
        try:
            if self.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.all_params, self.max_grad_norm)
            self.optimizer.step()
        finally:
            for g, (g_lr, g_wd) in zip(self.optimizer.param_groups, saved, strict=True):
                g["lr"], g["weight_decay"] = g_lr, g_wd
        self.optimizer.zero_grad(set_to_none=True)

    def advance(self) -> None:
        self.scheduler.step()

    def for_task(self, task: str) -> OptimHandle:
        """One optimizer for every task: this handle."""
        return self

    @property
    def lr(self) -> float:
        """The current learning rate of the first group (the encoder's, for the multitask model)."""
        return self.optimizer.param_groups[0]["lr"]


class PerTaskOptim:
    """One :class:`OptimHandle` per task, for a rule that asked for its own optimizer per task.

    (update 'separate' with ``optimizers: per_task``, 002.) The rule steps a task's own
    optimizer with ``for_task(task).apply()``; ``advance`` moves every task's schedule once
    per trainer step. There is no whole-model step: :meth:`step` and :meth:`apply` refuse.
    """

    def __init__(self, handles: dict[str, OptimHandle]):
        if not handles:
            raise ValueError("per-task optimizers need at least one task")
        self.handles = dict(handles)
        first = next(iter(self.handles.values()))
        self.all_params = first.all_params
        self.shared_params = first.shared_params
        self.head_params = first.head_params
        self.accumulator = None

    def for_task(self, task: str) -> OptimHandle:
        return self.handles[task]

    def step(self) -> None:
        raise RuntimeError(
            "one optimizer per task: step the task's own (for_task(task).apply()), then advance()"
        )

    def apply(self, *, lr: float | None = None, weight_decay: float | None = None) -> None:
        raise RuntimeError("one optimizer per task: step the task's own (for_task(task).apply())")

    def advance(self) -> None:
        for handle in self.handles.values():
            handle.advance()

    def flush(self) -> None:
        """Nothing is ever accumulated (update 'separate' refuses grad_accum)."""

    @property
    def lr(self) -> float:
        """The current encoder learning rate of the first task's optimizer (what metrics log)."""
        return next(iter(self.handles.values())).lr


def optim_handle(model, config: RunConfig, plan: StepPlan, rule) -> OptimHandle | PerTaskOptim:
    """The multitask loop's optimizer handle: one AdamW (with the rule's own parameters and
    the accumulator of grad_accum), or one per task when the rule asks for it
    (:meth:`~mtsearch.updates.base.UpdateRule.task_optimizers`)."""
    extra, extra_lr = rule.extra_parameters(), rule.extra_lr()
    per_task = rule.task_optimizers()
    if per_task is None:
        optimizer, scheduler = build_optimizer(model, config, plan, extra, extra_lr)
        accumulator = make_accumulator(optimizer, config, plan)
        return OptimHandle.for_model(model, optimizer, scheduler, config.max_grad_norm, accumulator)
    handles = {}
    for task, overrides in per_task.items():
        optimizer, scheduler = build_optimizer(model, config, plan, extra, extra_lr, **overrides)
        handles[task] = OptimHandle.for_model(model, optimizer, scheduler, config.max_grad_norm)
    return PerTaskOptim(handles)


# ----------------------------------------------------------------------- freezing
def _train_unless_frozen(self: nn.Module, mode: bool = True) -> nn.Module:
    # Replaces ``train`` on a module that may be frozen: nn.Module.train recurses through
    # children's own ``train``, so a frozen module stays in eval mode (no dropout) however
    # deep in the model ``train()`` was called, and its children follow it.
    return nn.Module.train(self, bool(mode) and not self.__dict__.get("_mtsearch_frozen", False))


def set_frozen(module: nn.Module, frozen: bool, training: bool | None = None) -> None:
    """Pin ``module`` to eval mode (frozen) or let it follow ``train()`` again (unfrozen).

    ``requires_grad`` is left to the caller; this only handles the mode. An unfrozen
    module is put in ``training`` mode (default: the mode it has now).
    """
    if "train" not in module.__dict__:
        module.train = types.MethodType(_train_unless_frozen, module)
    module.__dict__["_mtsearch_frozen"] = frozen
    module.train(False if frozen else (module.training if training is None else training))


def check_freeze_depth(encoder: nn.Module, config: RunConfig):
    """Refuse freeze_layers deeper than the model (the config cannot know the depth)."""
    parts = require_parts(encoder, "freeze_layers")
    if config.freeze_layers > parts.depth:
        raise ConfigError(
            f"freeze_layers is {config.freeze_layers}, but model '{config.model}' has only {parts.depth} "
            f"encoder layers: use at most {parts.depth} (or frozen_encoder)"
        )
    return parts


class Freezer:
    """Applies ``freeze_layers`` / ``frozen_encoder`` and switches the heads-only phases.

    Built by the trainer right after the model, before the optimizer (parameters frozen
    for the whole run stay out of it). ``frozen_depth`` is the number of encoder layers
    whose outputs are fixed for the whole run (k, or L with frozen_encoder; 0: none):
    the activation cache may store the hidden states after them.
    """

    def __init__(self, encoder: nn.Module, config: RunConfig):
        self.encoder = encoder
        self.config = config
        self.frozen_depth = 0
        self._heads_only = False
        self._saved: list[bool] | None = None
        # The phases in steps; phases counted in epochs are set by the loop (set_phases)
        # once the sampler's epoch length is known.
        self.before, self.after = config.heads_only_steps_before, config.heads_only_steps_after
        parts = encoder_parts(encoder)
        k = config.freeze_layers
        if config.frozen_encoder:
            modules = [encoder]
            self.frozen_depth = parts.depth if parts is not None else 0
        elif k:
            parts = check_freeze_depth(encoder, config)
            modules = parts.lower(k)
            self.frozen_depth = k
        else:
            modules = []
        if config.has_phases():
            set_frozen(encoder, False)  # install the mode guard the phases switch
        for m in modules:
            m.requires_grad_(False)
            set_frozen(m, True)

    def set_phases(self, plan: StepPlan) -> None:
        """Take the heads-only phases' lengths in steps from the run's plan."""
        self.before, self.after = plan.before, plan.after

    def enter_step(self, step: int, total_steps: int, training: bool = True) -> bool:
        """Set the phase of step ``step`` (0-based) of ``total_steps``; True when it changed."""
        heads_only = step < self.before or step >= total_steps - self.after
        if heads_only == self._heads_only:
            return False
        self.heads_only(heads_only, training)
        return True

    def heads_only(self, on: bool, training: bool = True) -> None:
        """Freeze the whole encoder (on) or return to the run's own freezing (off).

        ``training``: the model's mode, which the encoder follows again when unfrozen (and,
        with ``heads_only_encoder_dropout``, during the phase too: its weights get no
        gradient, its dropout stays on, as 004 ran it).
        """
        params = list(self.encoder.parameters())
        if on and not self._heads_only:
            self._saved = [p.requires_grad for p in params]
            for p in params:
                p.requires_grad_(False)
        elif not on and self._heads_only and self._saved is not None:
            for p, req in zip(params, self._saved, strict=True):
                p.requires_grad_(req)
        self._heads_only = on
        pinned = on and not self.config.heads_only_encoder_dropout
        set_frozen(self.encoder, pinned or self.config.frozen_encoder, training)
