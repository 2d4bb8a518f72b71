"""The trainer: one shared encoder fine-tuned on several tasks at once.

Read top to bottom, :func:`train` is the whole run: check everything that can be
checked cheaply, load data and model, then a loop of steps (the sampler picks the
tasks, the update rule turns their losses into an update) with periodic evaluation,
best-checkpoint keeping, early stopping and a ``report`` hook for search backends.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtsearch.config import RunConfig
from mtsearch.errors import ConfigError, MtsearchError, NonFiniteLoss, Pruned
from mtsearch.paths import runs_dir
from mtsearch.records import RunDir, environment
from mtsearch.tasks import overall_score
from mtsearch.train.optim import Freezer, build_optimizer, check_freeze_depth, make_accumulator

log = logging.getLogger("mtsearch.train")

Report = Callable[[int, dict[str, float]], None]

#: Dev subsets for periodic evaluation are drawn with this fixed seed, not the run's:
#: every run of a sweep is then compared on the same examples.
EVAL_SUBSET_SEED = 20240


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # finished | stopped_early | pruned | failed | killed
    steps: int
    examples: int
    seconds: float
    best: dict[str, Any] = field(default_factory=dict)  # the best periodic evaluation
    final: dict[str, float] | None = None  # best checkpoint on the full dev sets
    mlflow_run_id: str | None = None
    error: str | None = None

    @property
    def scores(self) -> dict[str, float]:
        """The most complete scores of the best checkpoint: full dev when measured."""
        return self.final or self.best.get("scores", {})

    @property
    def overall(self) -> float:
        return overall_score(self.scores)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["run_dir"] = str(self.run_dir)
        out["overall"] = self.overall
        return out


def default_run_name(config: RunConfig) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{config.config_hash()}-s{config.seed}"


def train(
    config: RunConfig,
    report: Report | None = None,
    *,
    run_dir: Path | None = None,
    mlflow_parent: str | None = None,
    mlflow_tags: dict[str, str] | None = None,
) -> TrainResult:
    """Train one multitask model as ``config`` says and return its scores.

    ``report(step, metrics)`` is called after every evaluation with flat metrics
    (``overall``, one key per task, ``examples``); it may raise :class:`Pruned`.
    """
    from mtsearch.data import (
        concat_encoded,
        fingerprint,
        load_extra,
        load_split,
        require_extra_files,
        require_files,
        resolve_data_dir,
    )
    from mtsearch.models.encoder import load_encoder, load_tokenizer, resolve_model
    from mtsearch.models.multitask import MultitaskModel, encode_for_model
    from mtsearch.train.runtime import pick_device, rng_for, seed_everything

    t_start = time.perf_counter()
    # Everything cheap that can be wrong is checked before anything heavy happens.
    source = resolve_model(config.model)
    data_dir = resolve_data_dir(config.data_dir)
    require_files(data_dir, list(config.tasks), ["train", "dev"])
    extra_paths = require_extra_files(config.extra_data)  # extra_data: every file is there
    device, precision = pick_device(config)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)

    tokenizer = load_tokenizer(source)
    train_splits = {
        t: load_split(
            t,
            "train",
            data_dir,
            strict=config.strict_data,
            limit=config.train_limit,
            seed=config.seed,
            fraction=config.train_fraction,
        )
        for t in config.tasks
    }
    dev_splits = {t: load_split(t, "dev", data_dir, strict=config.strict_data) for t in config.tasks}
    for name, split in {**train_splits, **dev_splits}.items():
        if not split.examples:
            raise MtsearchError(f"{split.path}: no usable rows for task '{split.task}' ({name})")
    # encode_for_model decides which encodings the config's pair_mode needs (one place).
    enc_train = {t: encode_for_model(s, tokenizer, config) for t, s in train_splits.items()}
    # extra_data: a user's rows are their own Split (own token cache, own fingerprint row),
    # appended to the task's training examples.
    extra_splits = {t: load_extra(t, p, strict=config.strict_data) for t, p in extra_paths.items()}
    for t, extra in extra_splits.items():
        enc_train[t] = concat_encoded(enc_train[t], encode_for_model(extra, tokenizer, config))
    enc_dev = {t: encode_for_model(s, tokenizer, config) for t, s in dev_splits.items()}
    pad_id = tokenizer.pad_token_id or 0
    eval_rng = np.random.default_rng(EVAL_SUBSET_SEED)
    subsets: dict[str, np.ndarray | None] = {}
    for t, enc in enc_dev.items():
        n = len(enc)
        subsets[t] = (
            np.sort(eval_rng.choice(n, config.eval_limit, replace=False))
            if config.eval_limit and n > config.eval_limit
            else None
        )
    needs_final = config.final_eval and any(s is not None for s in subsets.values())

    encoder = load_encoder(source, seed=config.seed)
    if config.freeze_layers and not config.frozen_encoder:
        check_freeze_depth(encoder, config)  # before SimCSE can spend minutes
    model = MultitaskModel(encoder, config).to(device)
    # SimCSE pre-training (mtsearch/train/simcse.py; None when config.simcse is 'none'):
    # before freezing, the activation cache's key (a hash of the frozen weights) and the
    # optimizer, so all of them see the pre-trained encoder. Its rows are recorded below.
    from mtsearch.train.simcse import run_simcse

    simcse = run_simcse(
        config, model.encoder, [*train_splits.values(), *extra_splits.values()], tokenizer, device, precision
    )
    # Freezing (mtsearch/train/optim.py): a model too shallow for freeze_layers is refused
    # here, before any run directory. Frozen layers' outputs are then fixed, so the
    # activation cache may hand their output to the model instead of running them.
    freezer = Freezer(model.encoder, config)
    cache_report = None
    if config.activation_cache and freezer.frozen_depth:
        from mtsearch.train.activation_cache import prepare

        pairs = [(train_splits[t], enc_train[t]) for t in config.tasks]
        pairs += [(dev_splits[t], enc_dev[t]) for t in config.tasks]
        cache_report = prepare(config, model.encoder, freezer.frozen_depth, source, tokenizer, pairs, device)

    name = config.name or default_run_name(config)
    rd = RunDir(run_dir or runs_dir() / name)
    rd.write_config(config.to_yaml())
    data_fp = fingerprint(
        list(train_splits.values()) + list(extra_splits.values()) + list(dev_splits.values())
    )
    model_info = {
        "source": asdict(source),
        "parameters": sum(p.numel() for p in model.parameters()),
        "encoder_parameters": sum(p.numel() for p in model.encoder.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if cache_report is not None:
        model_info["activation_cache"] = cache_report.to_json()
    rd.write_env(environment(str(device), precision, data_fp, model_info))

    mirror = None
    if config.mlflow:
        from mtsearch.tracking import MlflowMirror

        tags = {"config_hash": config.config_hash(), "seed": str(config.seed), "run_dir": str(rd.path)}
        mirror = MlflowMirror(
            name, config.model_dump(mode="json"), {**tags, **(mlflow_tags or {})}, mlflow_parent
        )

    if simcse is not None:
        simcse.record(rd, mirror)  # metrics.jsonl rows of kind "simcse", MLflow simcse_loss
    loop = _Loop(config, model, enc_train, enc_dev, subsets, device, precision, pad_id, rd, mirror, report)
    loop.freezer = freezer
    status, error = "failed", None
    try:
        status = loop.run(rng_for)
        final = None
        if needs_final and loop.best_state is not None:
            model.load_state_dict(loop.best_state)
            final = loop.full_eval()
        result = loop.result(status, final, time.perf_counter() - t_start)
    except Pruned:
        status = "pruned"
        result = loop.result(status, None, time.perf_counter() - t_start)
        _close(rd, mirror, result, "KILLED")
        raise
    except KeyboardInterrupt:
        result = loop.result("killed", None, time.perf_counter() - t_start, error="interrupted")
        _close(rd, mirror, result, "KILLED")
        raise
    except BaseException as err:
        error = f"{type(err).__name__}: {err}"
        result = loop.result("failed", None, time.perf_counter() - t_start, error=error)
        _close(rd, mirror, result, "FAILED")
        raise
    result.mlflow_run_id = mirror.run_id if mirror else None
    _close(rd, mirror, result, "FINISHED")
    return result


def _close(rd: RunDir, mirror, result: TrainResult, mlflow_status: str) -> None:
    if mirror is not None:
        result.mlflow_run_id = mirror.run_id
        summary = {f"best_{k}": v for k, v in result.best.get("scores", {}).items()}
        summary["best_overall"] = result.best.get("overall", float("nan"))
        if result.final:
            summary.update({f"final_{k}": v for k, v in result.final.items()})
            summary["final_overall"] = overall_score(result.final)
    rd.write_result(result.to_json())
    if mirror is not None:
        try:
            mirror.log_metrics(result.steps, summary)
            mirror.finish(rd.path, mlflow_status)
        except Exception as err:  # the run directory is the record; MLflow only mirrors it
            log.warning("MLflow could not be updated at the end of the run: %s", err)


class _OptimHandle:
    """What update rules see of the optimizer: parameters, ``step``, and ``apply`` + ``advance``.

    ``step`` is one trainer step: ``apply`` (clip, optimizer step, zero grads) then
    ``advance`` (the schedule moves once). A rule that steps several times per trainer
    step (update 'separate': once per task) calls ``apply`` per task, with that task's
    encoder lr / weight decay, and ``advance`` once at the end, so the schedule counts
    trainer steps whatever the rule does.

    With ``grad_accum`` k the trainer sets ``accumulator`` (mtsearch/train/optim.py):
    ``step`` then only stashes the round's gradient, except every k-th round, which steps
    on the mean gradient of its window (config refuses update 'separate' with k > 1).
    """

    accumulator = None  # optim.GradAccumulator when grad_accum > 1

    def __init__(self, model, optimizer, scheduler, max_grad_norm):
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.max_grad_norm = max_grad_norm
        # shared: the encoder plus the pair layer para and sts share (if any; its gradient
        # stays None for the tasks that do not use it).
        self.shared_params = [p for p in model.shared_parameters() if p.requires_grad]
        self.head_params = {t: [p for p in model.task_parameters(t) if p.requires_grad] for t in model.tasks}
        self.all_params = [p for p in model.parameters() if p.requires_grad]

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
        decay (``build_optimizer`` tags them). Both are restored afterwards.
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


class _Loop:
    def __init__(
        self, config, model, enc_train, enc_dev, subsets, device, precision, pad_id, rd, mirror, report
    ):
        self.config = config
        self.model = model
        self.enc_train = enc_train
        self.enc_dev = enc_dev
        self.subsets = subsets
        self.device = device
        self.precision = precision
        self.pad_id = pad_id
        self.rd = rd
        self.mirror = mirror
        self.report = report
        self.step = 0
        self.examples = 0
        self.tokens = 0
        self.padded_tokens = 0
        self.best: dict[str, Any] = {}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.rule = None  # the update rule, set by run()
        self.probe: dict[str, dict] = {}  # gradient-conflict probe batch per task (run())
        self.batch_loss: Callable[[str, dict], torch.Tensor] | None = None
        self.freezer = None  # mtsearch.train.optim.Freezer: the heads-only phases (train())

    # ------------------------------------------------------------------ training
    def run(self, rng_for) -> str:
        from tqdm.auto import tqdm

        from mtsearch.data import collate
        from mtsearch.samplers import SAMPLERS, TaskBatches, build_streams
        from mtsearch.train.runtime import autocast
        from mtsearch.updates import UPDATES

        cfg = self.config
        sizes = {t: len(e) for t, e in self.enc_train.items()}
        batch_sizes = {t: cfg.task_batch_size.get(t, cfg.batch_size) for t in cfg.tasks}
        labels = {t: e.labels for t, e in self.enc_train.items() if e.labels is not None}

        def make_sampler(total_steps: int | None):
            return SAMPLERS.create(
                cfg.sampler,
                cfg.args("sampler"),
                sizes=sizes,
                batch_sizes=batch_sizes,
                labels=labels,
                rng=rng_for(cfg.seed, "sampler"),
                total_steps=total_steps,
            )

        # The step budget depends on the sampler (examples per step) and an annealing
        # sampler depends on the budget: a first sampler answers the former, the one that
        # trains is built with the budget. Both start from the same fresh generator, so
        # the schedule does not depend on the first one.
        total_steps = self.total_steps(make_sampler(None))
        sampler = make_sampler(total_steps)
        lengths = {t: e.lengths() for t, e in self.enc_train.items()} if cfg.bucket_by_length else None
        feed = TaskBatches(sampler, build_streams(sampler, rng_for, cfg.seed, lengths))
        # The rule first: its own parameters (if any) join the optimizer in their own group.
        rule = UPDATES.create(
            cfg.update, cfg.args("update"), tasks=list(cfg.tasks), rng=rng_for(cfg.seed, "update")
        ).to(self.device)
        self.rule = rule
        optimizer, scheduler = build_optimizer(
            self.model, cfg, total_steps, rule.extra_parameters(), rule.extra_lr()
        )
        optim = _OptimHandle(self.model, optimizer, scheduler, cfg.max_grad_norm)
        # grad_accum: the handle steps the optimizer on the mean gradient every k rounds
        optim.accumulator = make_accumulator(optimizer, cfg, total_steps)
        phases = cfg.heads_only_steps_before + cfg.heads_only_steps_after
        if phases > total_steps:  # a budget in max_examples is only known now
            raise ConfigError(
                f"heads_only_steps_before + heads_only_steps_after ({phases}) exceed the run's "
                f"{total_steps} steps (max_examples {cfg.max_examples}): they count inside the budget"
            )
        if cfg.log_grad_conflict and len(cfg.tasks) > 1:
            # One fixed probe batch per task for the gradient-conflict diagnostic, from its
            # own generator: drawing it shifts no other random stream.
            probe_rng = rng_for(cfg.seed, "grad_probe")
            for t, enc in self.enc_train.items():
                idx = probe_rng.choice(len(enc), min(len(enc), batch_sizes[t]), replace=False)
                self.probe[t] = collate(enc, np.sort(idx), pad_id=self.pad_id)
        self.model.train()

        loss_sums = {t: 0.0 for t in cfg.tasks}
        loss_counts = {t: 0 for t in cfg.tasks}
        batches: dict[str, dict] = {}

        def batch_loss(task: str, batch: dict) -> torch.Tensor:
            from mtsearch.models.multitask import task_loss

            inputs = [
                {k: v.to(self.device, non_blocking=True) for k, v in seg.items()} for seg in batch["inputs"]
            ]
            with autocast(self.device, self.precision):
                output = self.model(task, inputs)
            return task_loss(task, output, batch["labels"].to(self.device), self.model.loss_options)

        self.batch_loss = batch_loss  # the gradient-conflict probe in evaluate() uses it too

        def loss_of(task: str) -> torch.Tensor:
            loss = batch_loss(task, batches[task])
            if not torch.isfinite(loss):
                raise NonFiniteLoss(
                    f"the {task} loss became {float(loss.detach())} at step {self.step + 1}: "
                    "lower the learning rate or enable clipping (max_grad_norm)"
                )
            return loss

        bar = tqdm(
            total=total_steps, disable=not cfg.progress, desc=f"train {self.rd.path.name}", unit="step"
        )
        no_better = 0
        status = "finished"
        t_mark = time.perf_counter()
        try:
            while self.step < total_steps:
                if self.freezer is not None:  # heads-only phases: the encoder frozen or not
                    self.freezer.enter_step(self.step, total_steps, self.model.training)
                drawn = feed.next()  # {task: example indices} in the sampler's order
                if drawn is None:
                    # A finite schedule (e.g. one pass) ran out before the budget: the steps
                    # since the last evaluation still count and are evaluated.
                    optim.flush()
                    if self.step and (not self.history or self.history[-1]["step"] != self.step):
                        self.train_seconds += time.perf_counter() - t_mark
                        self.evaluate(
                            {t: loss_sums[t] / loss_counts[t] for t in cfg.tasks if loss_counts[t]}, optimizer
                        )
                    break
                tasks = list(drawn)
                batches.clear()
                for t, indices in drawn.items():
                    batch = collate(self.enc_train[t], indices, pad_id=self.pad_id)
                    batches[t] = batch
                    mask = batch["inputs"][0]["attention_mask"]
                    self.examples += mask.shape[0]
                    for seg in batch["inputs"]:
                        self.tokens += int(seg["attention_mask"].sum())
                        self.padded_tokens += seg["attention_mask"].numel()
                losses = rule.step(tasks, loss_of, optim)
                for t, v in losses.items():
                    loss_sums[t] += v
                    loss_counts[t] += 1
                self.step += 1
                elapsed = time.perf_counter() - t_mark
                bar.update(1)
                bar.set_postfix(
                    loss=f"{sum(losses.values()):.3f}",
                    ex_s=f"{self.examples / max(1e-9, self.train_seconds + elapsed):.1f}",
                )
                last = self.step >= total_steps or (cfg.max_examples and self.examples >= cfg.max_examples)
                if last:
                    optim.flush()  # an accumulation window cut short by the budget still counts
                if self.step % cfg.eval_every == 0 or last:
                    self.train_seconds += time.perf_counter() - t_mark
                    train_loss = {t: loss_sums[t] / loss_counts[t] for t in cfg.tasks if loss_counts[t]}
                    loss_sums = {t: 0.0 for t in cfg.tasks}
                    loss_counts = {t: 0 for t in cfg.tasks}
                    improved = self.evaluate(train_loss, optimizer)
                    bar.set_description(f"train {self.rd.path.name} dev {self.history[-1]['overall']:.3f}")
                    no_better = 0 if improved else no_better + 1
                    t_mark = time.perf_counter()
                    if cfg.patience and no_better >= cfg.patience:
                        status = "stopped_early"
                        break
                    if last:
                        break
        finally:
            bar.close()
        return status

    def total_steps(self, sampler) -> int:
        """The step budget: max_steps, or fewer when max_examples comes first.

        max_examples becomes steps through the sampler's expected examples per step (exact
        for round robin with full batches; an average for samplers whose steps differ, so
        the loop also stops as soon as max_examples examples were seen).
        """
        cfg = self.config
        steps = cfg.max_steps or math.inf
        if cfg.max_examples:
            steps = min(steps, math.ceil(cfg.max_examples / sampler.expected_examples_per_step()))
        return int(steps)

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, train_loss: dict[str, float], optimizer) -> bool:
        from mtsearch.train.evaluate import evaluate

        t0 = time.perf_counter()
        scores, dev_loss = evaluate(
            self.model,
            self.enc_dev,
            self.subsets,
            self.device,
            self.precision,
            self.config.eval_batch_size,
            self.pad_id,
        )
        grad_cosine = None
        # (not while the whole encoder is frozen: there is no encoder gradient to compare)
        trainable = any(p.requires_grad for p in self.model.encoder.parameters())
        if self.probe and self.batch_loss is not None and trainable:
            from mtsearch.updates import gradient_cosines

            # Do the tasks conflict? Cosines of their encoder gradients on the fixed probe
            # batches (eval mode, no .grad touched, no step: training is unaffected).
            grad_cosine = gradient_cosines(
                self.model, list(self.probe), lambda t: self.batch_loss(t, self.probe[t])
            )
        self.eval_seconds += time.perf_counter() - t0
        overall = overall_score(scores)
        row = {
            "kind": "eval",
            "step": self.step,
            "examples": self.examples,
            "scores": scores,
            "overall": overall,
            "train_loss": train_loss,
            "dev_loss": dev_loss,
            "lr": optimizer.param_groups[0]["lr"],
            "train_seconds": round(self.train_seconds, 3),
            "eval_seconds": round(self.eval_seconds, 3),
            "examples_per_second": self.examples / max(1e-9, self.train_seconds),
            "padding_efficiency": self.tokens / max(1, self.padded_tokens),
            "tokens": self.tokens,
            "padded_tokens": self.padded_tokens,
            "eval_examples": sum(
                len(e) if self.subsets.get(t) is None else len(self.subsets[t])
                for t, e in self.enc_dev.items()
            ),
        }
        if grad_cosine is not None:
            row["grad_cosine"] = grad_cosine
        if self.rule is not None and self.rule.state():
            row["update_state"] = self.rule.state()  # e.g. the learned task log-variances
        improved = not self.best or overall > self.best["overall"]
        row["best"] = improved
        self.history.append(row)
        self.rd.append_metrics(row)
        if improved:
            self.best = {k: row[k] for k in ("step", "examples", "scores", "overall")}
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            if self.config.save_checkpoint:
                self.rd.save_checkpoint(
                    self.best_state,
                    {"step": str(self.step), "overall": f"{overall:.6f}", "model": self.config.model},
                )
        flat = self.flat(row)
        if self.mirror is not None:
            self.mirror.log_metrics(self.step, flat)
        if self.report is not None:
            self.report(self.step, flat)  # may raise Pruned
        return improved

    @staticmethod
    def flat(row: dict[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {"overall": row["overall"], "examples": row["examples"], "lr": row["lr"]}
        out.update(row["scores"])
        out.update({f"train_loss_{t}": v for t, v in row["train_loss"].items()})
        out.update({f"dev_loss_{t}": v for t, v in row["dev_loss"].items()})
        out["examples_per_second"] = row["examples_per_second"]
        out.update(
            {f"grad_cos_{pair.replace('|', '_')}": v for pair, v in row.get("grad_cosine", {}).items()}
        )
        out.update({f"update_{k}": v for k, v in row.get("update_state", {}).items()})
        return out

    def full_eval(self) -> dict[str, float]:
        from mtsearch.train.evaluate import evaluate

        full = {t: None for t in self.enc_dev}
        scores, dev_loss = evaluate(
            self.model,
            self.enc_dev,
            full,
            self.device,
            self.precision,
            self.config.eval_batch_size,
            self.pad_id,
        )
        row = {
            "kind": "final",
            "step": self.best.get("step"),
            "examples": self.best.get("examples"),
            "scores": scores,
            "overall": overall_score(scores),
            "dev_loss": dev_loss,
            "dev_sizes": {t: len(e) for t, e in self.enc_dev.items()},
        }
        self.rd.append_metrics(row)
        return scores

    def result(self, status: str, final, seconds: float, error: str | None = None) -> TrainResult:
        return TrainResult(
            run_dir=self.rd.path,
            status=status,
            steps=self.step,
            examples=self.examples,
            seconds=round(seconds, 3),
            best=self.best,
            final=final,
            error=error,
        )
