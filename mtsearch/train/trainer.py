"""The trainer: one shared encoder fine-tuned on several tasks at once.

:func:`train` is the whole run, read top to bottom as a sequence of stages; each is a
function below that returns what the later ones need:

1. :func:`setup_run`: everything cheap that can be wrong is checked (model, data files,
   device) before anything heavy happens; threads and seeds are set.
2. :func:`load_data`: the splits loaded and encoded, the dev subsets of periodic evaluation.
3. :func:`build_model`: the encoder with the tasks' poolings and heads.
4. :func:`pre_stages`: what changes the model before the loop sees it: SimCSE
   pre-training, freezing and the activation cache.
5. :func:`open_records`: the run directory (config, environment) and the MLflow mirror.
6. :func:`run_loop`: the multitask loop (:class:`_Loop`: the sampler picks the tasks, the
   update rule turns their losses into an update) with periodic evaluation,
   best-checkpoint keeping, early stopping and a ``report`` hook for search backends;
   then the best checkpoint on the full dev sets and ``result.json``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtsearch.config import RunConfig
from mtsearch.errors import ConfigError, MtsearchError, Pruned
from mtsearch.paths import runs_dir
from mtsearch.records import RunDir, environment
from mtsearch.tasks import overall_score
from mtsearch.train import activation_cache, simcse
from mtsearch.train.optim import (
    Freezer,
    LossWatch,
    StepPlan,
    check_freeze_depth,
    epochs_to_steps,
    loss_check_every,
    optim_handle,
)
from mtsearch.train.runtime import (
    CompiledModel,
    autocast,
    pad_static,
    pick_device,
    progress_bar,
    rng_for,
    seed_everything,
    use_compile,
)

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
    mlflow_params: dict[str, Any] | None = None,
) -> TrainResult:
    """Train one multitask model as ``config`` says and return its scores.

    ``report(step, metrics)`` is called after every evaluation with flat metrics
    (``overall``, one key per task, ``examples``); it may raise :class:`Pruned`.
    """
    t_start = time.perf_counter()
    runtime = setup_run(config)
    data = load_data(config, runtime)
    model = build_model(config, runtime)
    pre = pre_stages(config, runtime, data, model)
    records = open_records(
        config, runtime, data, model, pre, run_dir, mlflow_parent, mlflow_tags, mlflow_params
    )
    return run_loop(Prepared(config, runtime, data, model, pre.freezer, records, report), t_start)


# ---------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class Runtime:
    """What :func:`setup_run` checked and chose: the model's source, the data, the device."""

    source: Any  # mtsearch.models.encoder.ModelSource
    data_dir: Path
    extra_paths: dict[str, Path]  # task -> extra_data file
    device: torch.device
    precision: str  # fp32 | bf16


def setup_run(config: RunConfig) -> Runtime:
    """Stage 1: check what is cheap to check, before anything heavy; set threads and seeds.

    The model is found, the data files are there (extra_data included), the device
    exists: a bad input fails here, before any data is read or any run directory exists.
    """
    from mtsearch.data import require_extra_files, require_files, resolve_data_dir
    from mtsearch.models.encoder import resolve_model

    source = resolve_model(config.model)
    data_dir = resolve_data_dir(config.data_dir)
    require_files(data_dir, list(config.tasks), ["train", "dev"])
    extra_paths = require_extra_files(config.extra_data)
    device, precision = pick_device(config)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)
    return Runtime(source, data_dir, extra_paths, device, precision)


@dataclass
class RunData:
    """What :func:`load_data` produces: the splits as read, encoded for the model."""

    tokenizer: Any
    train_splits: dict[str, Any]  # task -> mtsearch.data.Split
    extra_splits: dict[str, Any]  # task -> Split of the task's extra_data rows
    dev_splits: dict[str, Any]
    enc_train: dict[str, Any]  # task -> EncodedSplit, extra_data rows appended
    enc_dev: dict[str, Any]
    subsets: dict[str, np.ndarray | None]  # dev rows periodic evaluation scores; None: all
    pad_id: int
    # held_out_score: per task (half A: chooses the checkpoint, half B: scores it); None: off
    halves: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    def training_splits(self) -> list:
        """Every training Split: the tasks' then the extra_data ones."""
        return [*self.train_splits.values(), *self.extra_splits.values()]

    def all_splits(self) -> list:
        """Every Split the run reads, in the order of the data fingerprint."""
        return [*self.training_splits(), *self.dev_splits.values()]


def check_data(config: RunConfig) -> None:
    """The checks every run of ``config``'s data makes before training (:func:`setup_run`, then the
    splits read and checked as :func:`load_data` reads them), without the model or the encoding:
    a sweep calls it once before its first run, so a data problem every run would hit is one
    error, not a failed run per configuration."""
    read_splits(config, setup_run(config))


def read_splits(config: RunConfig, runtime: Runtime) -> tuple[dict[str, Any], dict[str, Any]]:
    """The train and dev splits of ``config``'s tasks, each checked to have a usable row."""
    from mtsearch.data import load_split

    strict = config.strict_data
    train_splits = {
        t: load_split(
            t,
            "train",
            runtime.data_dir,
            strict=strict,
            limit=config.train_limit,
            seed=config.seed if config.data_seed is None else config.data_seed,
            fraction=config.train_fraction,
        )
        for t in config.tasks
    }
    dev_splits = {t: load_split(t, "dev", runtime.data_dir, strict=strict) for t in config.tasks}
    for split in [*train_splits.values(), *dev_splits.values()]:  # a list: a dict by task let dev hide train
        if not split.examples:
            skipped = (
                f"; {len(split.defects)} malformed row(s) skipped, the first at line {split.defects[0].line}: "
                f"{split.defects[0].reason}"
                if split.defects
                else ""
            )
            raise MtsearchError(
                f"{split.path}: no usable rows for task '{split.task}' ({split.split}{skipped})"
            )
    return train_splits, dev_splits


def load_data(config: RunConfig, runtime: Runtime) -> RunData:
    """Stage 2: load, check and encode the train and dev splits; draw the dev subsets.

    ``encode_for_model`` decides which encodings the config's pair_mode needs (one place).
    A task's extra_data rows are their own Split (own token cache, own fingerprint row),
    appended to the task's training examples.
    """
    from mtsearch.data import concat_encoded, load_extra
    from mtsearch.models.encoder import load_tokenizer
    from mtsearch.models.multitask import encode_for_model

    tokenizer = load_tokenizer(runtime.source)
    strict = config.strict_data
    train_splits, dev_splits = read_splits(config, runtime)
    enc_train = {t: encode_for_model(s, tokenizer, config) for t, s in train_splits.items()}
    extra_splits = {t: load_extra(t, p, strict=strict) for t, p in runtime.extra_paths.items()}
    for t, extra in extra_splits.items():
        enc_train[t] = concat_encoded(enc_train[t], encode_for_model(extra, tokenizer, config))
    enc_dev = {t: encode_for_model(s, tokenizer, config) for t, s in dev_splits.items()}
    subsets = eval_subsets(enc_dev, config.eval_limit)
    return RunData(
        tokenizer,
        train_splits,
        extra_splits,
        dev_splits,
        enc_train,
        enc_dev,
        subsets=subsets,
        pad_id=tokenizer.pad_token_id or 0,
        halves=eval_halves(enc_dev, subsets) if held_out(config, subsets) else None,
    )


def eval_subsets(enc_dev: dict[str, Any], eval_limit: int | None) -> dict[str, np.ndarray | None]:
    """Per task, the sorted dev rows periodic evaluation scores (None: the whole split).

    Drawn with :data:`EVAL_SUBSET_SEED`, so every run of a sweep sees the same rows.
    """
    rng = np.random.default_rng(EVAL_SUBSET_SEED)
    subsets: dict[str, np.ndarray | None] = {}
    for t, enc in enc_dev.items():
        n = len(enc)
        subsets[t] = (
            np.sort(rng.choice(n, eval_limit, replace=False)) if eval_limit and n > eval_limit else None
        )
    return subsets


def held_out(config: RunConfig, subsets: dict[str, np.ndarray | None]) -> bool:
    """Is the run scored on evaluation rows that did not choose its checkpoint (held_out_score)?

    Only needed where no final evaluation follows: a final evaluation scores the checkpoint on
    the full dev sets, most of whose rows periodic evaluation never saw.
    """
    final_follows = config.final_eval and any(s is not None for s in subsets.values())
    return config.held_out_score and not final_follows


def eval_halves(
    enc_dev: dict[str, Any], subsets: dict[str, np.ndarray | None]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per task, the evaluation rows split at random into half A (sorted) and half B (sorted).

    The best checkpoint is the one with the best overall score on half A; the run's score is
    that checkpoint's on half B. Choosing the best of several evaluations and reporting its
    score on the same rows favours noisy curves; on rows that played no part in the choice
    the score is unbiased. A fixed generator (like :func:`eval_subsets`), so every run of a
    sweep is scored on the same rows and a paired bootstrap over them is possible.
    """
    rng = np.random.default_rng([EVAL_SUBSET_SEED, 1])
    halves = {}
    for t, enc in enc_dev.items():
        rows = subsets.get(t)
        rows = np.arange(len(enc)) if rows is None else rows
        perm = rng.permutation(rows)
        cut = len(perm) // 2
        halves[t] = (np.sort(perm[:cut]), np.sort(perm[cut:]))
    return halves


def build_model(config: RunConfig, runtime: Runtime):
    """Stage 3: the encoder (a 'tiny' one's weights from the run's seed) with the tasks'
    poolings and heads, on the run's device; a MultitaskModel."""
    from mtsearch.models.encoder import load_encoder
    from mtsearch.models.multitask import MultitaskModel, needs_pooler

    encoder = load_encoder(runtime.source, seed=config.seed, pooler=needs_pooler(config))
    if config.freeze_layers and not config.frozen_encoder:
        check_freeze_depth(encoder, config)  # before SimCSE can spend minutes
    return MultitaskModel(encoder, config).to(runtime.device)


@dataclass
class PreStages:
    """What :func:`pre_stages` did to the model before the loop."""

    pretrained: simcse.SimcseResult | None  # SimCSE's record; None: config.simcse is 'none'
    freezer: Freezer  # freeze_layers / frozen_encoder applied; switches the heads-only phases
    cache: activation_cache.CacheReport | None  # None: no activation cache


def pre_stages(config: RunConfig, runtime: Runtime, data: RunData, model) -> PreStages:
    """Stage 4: SimCSE pre-training, then freezing and the activation cache.

    SimCSE (mtsearch/train/simcse.py) runs first, so freezing, the activation cache's key
    (a hash of the frozen weights) and the optimizer all see the pre-trained encoder; its
    metrics rows are written by :func:`open_records`. Freezing (mtsearch/train/optim.py)
    refuses a model too shallow for freeze_layers, still before any run directory.
    Frozen layers' outputs are then fixed, so the activation cache may hand their output
    to the model instead of running them.
    """
    pretrained = simcse.run_simcse(
        config, model.encoder, data.training_splits(), data.tokenizer, runtime.device, runtime.precision
    )
    freezer = Freezer(model.encoder, config)
    cache = None
    if config.activation_cache and freezer.frozen_depth:
        # Cache the rows the run reads: its training subset, and the dev rows periodic
        # evaluation scores (every dev row when a final evaluation on the full dev sets follows).
        pairs = [(data.train_splits[t], data.enc_train[t], None) for t in config.tasks]
        pairs += [
            (data.dev_splits[t], data.enc_dev[t], None if config.final_eval else data.subsets[t])
            for t in config.tasks
        ]
        cache = activation_cache.prepare(
            config, model.encoder, freezer.frozen_depth, runtime.source, data.tokenizer, pairs, runtime.device
        )
    return PreStages(pretrained, freezer, cache)


@dataclass
class Records:
    """Where the run is recorded: its directory and, with ``config.mlflow``, the MLflow mirror."""

    rd: RunDir
    mirror: Any | None  # mtsearch.tracking.MlflowMirror

    def close(self, result: TrainResult, mlflow_status: str) -> None:
        """Write result.json and end the MLflow run with the best and final scores."""
        mirror = self.mirror
        if mirror is not None:
            result.mlflow_run_id = mirror.run_id
        self.rd.write_result(result.to_json())
        if mirror is not None:
            try:
                mirror.log_result(result.to_json())  # best_*, final_* and score, at the best step
                mirror.finish(self.rd.path, mlflow_status)
            except Exception as err:  # the run directory is the record; MLflow only mirrors it
                log.warning("MLflow could not be updated at the end of the run: %s", err)


def open_records(
    config: RunConfig,
    runtime: Runtime,
    data: RunData,
    model,
    pre: PreStages,
    run_dir: Path | None = None,
    mlflow_parent: str | None = None,
    mlflow_tags: dict[str, str] | None = None,
    mlflow_params: dict[str, Any] | None = None,
) -> Records:
    """Stage 5: the run directory (config.yaml, env.json), the MLflow mirror, the pre-stages' rows.

    ``run_dir`` defaults to ``runs/<name>``; the MLflow run is nested under
    ``mlflow_parent`` (a sweep's run) with ``mlflow_tags`` added to the run's own and
    ``mlflow_params`` to the config's (a sweep's dimensions, inactive ones included).
    """
    from mtsearch.data import fingerprint

    name = config.name or default_run_name(config)
    rd = RunDir(run_dir or runs_dir() / name)
    rd.write_config(config.to_yaml())
    model_info = {
        "source": asdict(runtime.source),
        "parameters": sum(p.numel() for p in model.parameters()),
        "encoder_parameters": sum(p.numel() for p in model.encoder.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if pre.cache is not None:
        model_info["activation_cache"] = pre.cache.to_json()
    rd.write_env(
        environment(str(runtime.device), runtime.precision, fingerprint(data.all_splits()), model_info)
    )

    mirror = None
    if config.mlflow:
        from mtsearch.tracking import MlflowMirror

        tags = {"config_hash": config.config_hash(), "seed": str(config.seed), "run_dir": str(rd.path)}
        mirror = MlflowMirror(
            name,
            config.model_dump(mode="json"),
            {**tags, **(mlflow_tags or {})},
            mlflow_parent,
            mlflow_params,
        )
    if pre.pretrained is not None:
        pre.pretrained.record(rd, mirror)  # metrics.jsonl rows of kind "simcse", MLflow simcse_loss
    return Records(rd, mirror)


@dataclass
class Prepared:
    """Everything the stages before the loop built, handed whole to :class:`_Loop`."""

    config: RunConfig
    runtime: Runtime
    data: RunData
    model: Any  # mtsearch.models.multitask.MultitaskModel
    freezer: Freezer
    records: Records
    report: Report | None


@dataclass
class Progress:
    """The loop's running totals and evaluations: what a TrainResult says, even of a failed run."""

    step: int = 0
    examples: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)  # the eval rows
    best: dict[str, Any] = field(default_factory=dict)  # step, examples, scores, overall, chosen_by
    best_state: dict[str, torch.Tensor] | None = None  # the best evaluation's weights, on CPU
    # the scored evaluation's examples: (which rows, per task (rows, predictions, golds))
    scored: tuple[str, dict[str, Any]] | None = None

    def result(self, run_dir: Path, status: str, seconds: float, final=None, error=None) -> TrainResult:
        return TrainResult(
            run_dir=run_dir,
            status=status,
            steps=self.step,
            examples=self.examples,
            seconds=round(seconds, 3),
            best=self.best,
            final=final,
            error=error,
        )


def run_loop(run: Prepared, t_start: float) -> TrainResult:
    """Stage 6: the multitask loop, then the best checkpoint on the full dev sets.

    The records are closed whatever happens: result.json says finished, stopped_early,
    pruned, killed or failed (with the error), and the MLflow run ends to match.
    """
    progress = Progress()
    path, records = run.records.rd.path, run.records

    def seconds() -> float:
        return time.perf_counter() - t_start

    try:
        loop = _Loop(run, progress)  # inside: a bad budget for the phases fails the run
        status = loop.run()
        final = loop.final_eval()
        loop.write_scored_examples()
        result = progress.result(path, status, seconds(), final)
    except Pruned:
        records.close(progress.result(path, "pruned", seconds()), "KILLED")
        raise
    except KeyboardInterrupt:
        records.close(progress.result(path, "killed", seconds(), error="interrupted"), "KILLED")
        raise
    except BaseException as err:
        records.close(
            progress.result(path, "failed", seconds(), error=f"{type(err).__name__}: {err}"), "FAILED"
        )
        raise
    records.close(result, "FINISHED")
    return result


# ---------------------------------------------------------------------------- the loop
class _LossWindow:
    """Each task's mean training loss over the steps since the last evaluation.

    The losses are summed where they are (0-dim tensors on the device, in float32) and
    read once, by :meth:`take`: no step waits for the GPU to log its loss.
    """

    def __init__(self, tasks):
        self.tasks = list(tasks)
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, Any] = {t: 0.0 for t in self.tasks}
        self.counts = {t: 0 for t in self.tasks}

    def add(self, losses: dict[str, Any]) -> None:
        for t, v in losses.items():
            self.sums[t] = self.sums[t] + (v.float() if isinstance(v, torch.Tensor) else v)
            self.counts[t] += 1

    def take(self) -> dict[str, float]:
        """The means (tasks without a step left out); the window starts again."""
        means = {t: float(self.sums[t]) / self.counts[t] for t in self.tasks if self.counts[t]}
        self._reset()
        return means


class _Loop:
    """The multitask loop of one prepared run: built complete, then :meth:`run` once.

    The constructor builds what the loop steps with, in the order that fixes the run's
    random streams: the sampler (the budget first), the task batch streams, the update
    rule, the optimizer and its handle, the gradient-conflict probe batches.
    """

    def __init__(self, run: Prepared, progress: Progress):
        from mtsearch.updates import UPDATES

        cfg = self.config = run.config
        self.model = run.model
        self.data = run.data
        self.device, self.precision = run.runtime.device, run.runtime.precision
        self.freezer = run.freezer
        self.records = run.records
        self.report = run.report
        self.progress = progress
        self.losses = _LossWindow(cfg.tasks)
        # compile: the training forward through torch.compile, batches padded to static widths
        self.compiled = CompiledModel(self.model, self.device) if use_compile(cfg, self.device) else None
        self.watch = LossWatch(
            loss_check_every(self.device), "lower the learning rate or enable clipping (max_grad_norm)"
        )
        self.batch_sizes = {t: cfg.task_batch_size.get(t, cfg.batch_size) for t in cfg.tasks}
        # The step budget depends on the sampler (examples per step) and an annealing
        # sampler depends on the budget: a first sampler answers the former, the one that
        # trains is built with the budget. Both start from the same fresh generator, so
        # the schedule does not depend on the first one.
        # Settings counted in epochs (max_epochs, eval_every_epochs, heads-only phases,
        # multistep milestones) become steps with the sampler's epoch length (StepPlan).
        first = self._sampler(None)
        self.total_steps = self._budget(first)
        self.plan = StepPlan.of(cfg, self.total_steps, first.steps_per_epoch())
        self.freezer.set_phases(self.plan)
        self.eval_every = (
            max(1, epochs_to_steps(cfg.eval_every_epochs, first.steps_per_epoch()))
            if cfg.eval_every_epochs
            else cfg.eval_every
        )
        self.feed = self._feed(self._sampler(self.total_steps))
        # The rule first: its own parameters (if any) join the optimizer in their own group.
        self.rule = UPDATES.create(
            cfg.update, cfg.args("update"), tasks=list(cfg.tasks), rng=rng_for(cfg.seed, "update")
        ).to(self.device)
        # One AdamW (grad_accum: stepped on the mean gradient every k rounds), or one per
        # task when the rule asks for it.
        self.optim = optim_handle(self.model, cfg, self.plan, self.rule)
        _check_phases(cfg, self.plan)
        self.probe = self._probe_batches()

    # ------------------------------------------------------------------ building
    def _sampler(self, total_steps: int | None):
        from mtsearch.samplers import SAMPLERS

        cfg, enc = self.config, self.data.enc_train
        return SAMPLERS.create(
            cfg.sampler,
            cfg.args("sampler"),
            sizes={t: len(e) for t, e in enc.items()},
            batch_sizes=self.batch_sizes,
            labels={t: e.labels for t, e in enc.items() if e.labels is not None},
            rng=rng_for(cfg.seed, "sampler"),
            total_steps=total_steps,
        )

    def _budget(self, sampler) -> int:
        """The step budget: max_steps, or fewer when max_examples or max_epochs comes first.

        max_examples becomes steps through the sampler's expected examples per step (exact
        for round robin with full batches; an average for samplers whose steps differ, so
        the loop also stops as soon as max_examples examples were seen); max_epochs
        through the sampler's epoch length.
        """
        cfg = self.config
        steps = cfg.max_steps or math.inf
        if cfg.max_examples:
            steps = min(steps, math.ceil(cfg.max_examples / sampler.expected_examples_per_step()))
        if cfg.max_epochs:
            steps = min(steps, max(1, epochs_to_steps(cfg.max_epochs, sampler.steps_per_epoch())))
        return int(steps)

    def _feed(self, sampler):
        """The sampler's tasks turned into example indices, one shuffled stream per task."""
        from mtsearch.samplers import TaskBatches, build_streams

        enc = self.data.enc_train
        lengths = {t: e.lengths() for t, e in enc.items()} if self.config.bucket_by_length else None
        return TaskBatches(sampler, build_streams(sampler, rng_for, self.config.seed, lengths))

    def _probe_batches(self) -> dict[str, dict]:
        """One fixed batch per task for the gradient-conflict diagnostic ({} when it is off).

        Drawn from its own generator: drawing it shifts no other random stream.
        """
        from mtsearch.data import collate

        cfg = self.config
        if not (cfg.log_grad_conflict and len(cfg.tasks) > 1):
            return {}
        rng = rng_for(cfg.seed, "grad_probe")
        probe = {}
        for t, enc in self.data.enc_train.items():
            idx = rng.choice(len(enc), min(len(enc), self.batch_sizes[t]), replace=False)
            probe[t] = collate(enc, np.sort(idx), pad_id=self.data.pad_id)
        return probe

    # ------------------------------------------------------------------ training
    def run(self) -> str:
        """Train until the budget, the end of a finite schedule or patience stops it.

        Returns the status: finished or stopped_early.
        """
        self.model.train()
        bar = progress_bar(self.total_steps, f"train {self.records.rd.path.name}", self.config.progress)
        try:
            return self._steps(bar)
        finally:
            bar.close()

    def _steps(self, bar) -> str:
        cfg, done = self.config, self.progress
        no_better = 0
        t_mark = time.perf_counter()
        while done.step < self.total_steps:
            self.freezer.enter_step(done.step, self.total_steps, self.model.training)  # heads-only phases
            drawn = self.feed.next_batches()  # [(task, example indices)] in the sampler's order
            if drawn is None:
                # A finite schedule (e.g. one pass) ran out before the budget: the steps
                # since the last evaluation still count and are evaluated.
                self.optim.flush()
                self.watch.check()
                if done.step and (not done.history or done.history[-1]["step"] != done.step):
                    self._evaluate_window(t_mark)
                return "finished"
            losses = self._train_step(drawn)
            bar.update(1)
            if self.watch.due(done.step):
                self.watch.check()
                if not bar.disable:  # the loss is read (a sync) only on the watch's cadence
                    speed = done.examples / max(1e-9, done.train_seconds + time.perf_counter() - t_mark)
                    bar.set_postfix(loss=f"{float(sum(losses.values())):.3f}", ex_s=f"{speed:.1f}")
            last = done.step >= self.total_steps or (cfg.max_examples and done.examples >= cfg.max_examples)
            if last:
                self.optim.flush()  # an accumulation window cut short by the budget still counts
            if done.step % self.eval_every == 0 or last:
                self.watch.check()  # no evaluation (nor checkpoint) of a diverged model
                improved = self._evaluate_window(t_mark)
                bar.set_description(
                    f"train {self.records.rd.path.name} dev {done.history[-1]['overall']:.3f}"
                )
                no_better = 0 if improved else no_better + 1
                t_mark = time.perf_counter()
                if cfg.patience and no_better >= cfg.patience:
                    return "stopped_early"
                if last:
                    return "finished"
        return "finished"

    def _train_step(self, drawn: list[tuple[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        """One step: the drawn batches, the update rule on their losses; the loss per task.

        A task may come several times (partial batches): ``loss_of(task)`` then takes its
        batches in the order they were drawn.
        """
        batches: dict[str, deque] = {}
        for t, indices in drawn:
            batches.setdefault(t, deque()).append(self._collate(t, indices))
        tasks = [t for t, _ in drawn]
        if self.compiled is not None:
            self.compiled.step_begins()
        losses = self.rule.step(tasks, lambda t: self._checked_loss(t, batches[t].popleft()), self.optim)
        self.losses.add(losses)
        self.progress.step += 1
        return losses

    def _collate(self, task: str, indices: np.ndarray) -> dict:
        """The task's training batch of ``indices``, counted in examples and tokens."""
        from mtsearch.data import collate

        batch = collate(self.data.enc_train[task], indices, pad_id=self.data.pad_id)
        done = self.progress
        done.examples += batch["inputs"][0]["attention_mask"].shape[0]
        for seg in batch["inputs"]:  # counted on the CPU batch, before the copy: no device sync
            done.tokens += int(seg["attention_mask"].sum())
            done.padded_tokens += seg["attention_mask"].numel()
        return batch

    def batch_loss(self, task: str, batch: dict) -> torch.Tensor:
        """The model's loss on one collated batch of ``task`` (training or probe)."""
        from mtsearch.models.multitask import task_loss

        segs = batch["inputs"]
        forward = self.model
        if self.compiled is not None and self.compiled.failed is None:
            forward = self.compiled
            segs = [pad_static(seg, self.config.max_length, self.data.pad_id) for seg in segs]
        inputs = [{k: v.to(self.device, non_blocking=True) for k, v in seg.items()} for seg in segs]
        with autocast(self.device, self.precision):
            output = forward(task, inputs)
        labels = batch["labels"].to(self.device, non_blocking=True)
        return task_loss(task, output, labels, self.model.loss_options)

    def _checked_loss(self, task: str, batch: dict) -> torch.Tensor:
        """``loss_of(task)`` for the update rule: the batch's loss, watched for divergence
        (NonFiniteLoss at once on the CPU, on the watch's cadence on a GPU: :class:`LossWatch`)."""
        loss = self.batch_loss(task, batch)
        self.watch.add(task, loss, self.progress.step + 1)
        return loss

    # ---------------------------------------------------------------- evaluation
    def _evaluate_window(self, t_mark: float) -> bool:
        """Close the training window that started at ``t_mark`` and evaluate; True if best."""
        self.progress.train_seconds += time.perf_counter() - t_mark
        return self.evaluate(self.losses.take())

    def evaluate(self, train_loss: dict[str, float]) -> bool:
        """Score the dev subsets, record the row, keep the best checkpoint, report; True if best."""
        done = self.progress
        t0 = time.perf_counter()
        from mtsearch.train.evaluate import scores_and_losses, scores_on

        examples = self._examples(self.data.subsets)
        scores, dev_loss = scores_and_losses(examples)
        grad_cosine = self._grad_cosine()
        done.eval_seconds += time.perf_counter() - t0
        row = self._eval_row(scores, dev_loss, train_loss)
        halves = self.data.halves
        if halves is not None:
            # the checkpoint is chosen on half A; half B's scores are only recorded here
            for key, half in (("half_a", 0), ("half_b", 1)):
                part = scores_on(examples, {t: h[half] for t, h in halves.items()})
                row[key] = {"scores": part, "overall": overall_score(part)}
        if grad_cosine is not None:
            row["grad_cosine"] = grad_cosine
        if self.rule.state():
            row["update_state"] = self.rule.state()  # e.g. the learned task log-variances
        chosen_by = row["half_a"]["overall"] if halves is not None else row["overall"]
        improved = not done.best or chosen_by > done.best["chosen_by"]
        row["best"] = improved
        done.history.append(row)
        self.records.rd.append_metrics(row)
        if improved:
            self._keep_best(row, chosen_by, examples)
        flat = flat_metrics(row)
        if self.records.mirror is not None:
            self.records.mirror.log_metrics(done.step, flat)
        if self.report is not None:
            self.report(done.step, flat)  # may raise Pruned
        return improved

    def _examples(self, subsets: dict[str, np.ndarray | None]) -> dict[str, Any]:
        """Per task, the evaluated dev rows with predictions, golds and mean loss (evaluate_examples)."""
        from mtsearch.train.evaluate import evaluate_examples

        data = self.data
        return evaluate_examples(
            self.model,
            data.enc_dev,
            subsets,
            self.device,
            self.precision,
            self.config.eval_batch_size,
            data.pad_id,
        )

    def _grad_cosine(self) -> dict[str, float] | None:
        """Do the tasks conflict? Cosines of their encoder gradients on the probe batches.

        Eval mode, no .grad touched, no step: training is unaffected. None without probe
        batches or while the whole encoder is frozen (there is no encoder gradient).
        """
        trainable = any(p.requires_grad for p in self.model.encoder.parameters())
        if not self.probe or not trainable:
            return None
        from mtsearch.updates import gradient_cosines

        return gradient_cosines(self.model, list(self.probe), lambda t: self.batch_loss(t, self.probe[t]))

    def _eval_row(self, scores, dev_loss, train_loss) -> dict[str, Any]:
        """The metrics.jsonl row of kind 'eval' (without its optional keys and 'best')."""
        done, data = self.progress, self.data
        return {
            "kind": "eval",
            "step": done.step,
            "examples": done.examples,
            "scores": scores,
            "overall": overall_score(scores),
            "train_loss": train_loss,
            "dev_loss": dev_loss,
            "lr": self.optim.lr,
            "train_seconds": round(done.train_seconds, 3),
            "eval_seconds": round(done.eval_seconds, 3),
            "examples_per_second": done.examples / max(1e-9, done.train_seconds),
            "padding_efficiency": done.tokens / max(1, done.padded_tokens),
            "tokens": done.tokens,
            "padded_tokens": done.padded_tokens,
            "eval_examples": sum(
                len(e) if data.subsets.get(t) is None else len(data.subsets[t])
                for t, e in data.enc_dev.items()
            ),
        }

    def _keep_best(self, row: dict[str, Any], chosen_by: float, examples: dict[str, Any]) -> None:
        """Remember the evaluation, its scored examples and the model's weights; save them with
        save_checkpoint. With held-out halves the best's scores are half B's (``chosen_by``
        is half A's overall, which chose it); otherwise the evaluated rows'."""
        done = self.progress
        halves = self.data.halves
        scored = row["half_b"] if halves is not None else row
        done.best = {"step": row["step"], "examples": row["examples"], "scores": scored["scores"],
                     "overall": scored["overall"], "chosen_by": chosen_by,
                     "chosen_on": "half_a" if halves is not None else "eval_rows"}  # fmt: skip
        if halves is not None:
            keep = {t: np.isin(e[0], halves[t][1]) for t, e in examples.items()}
            done.scored = (
                "half_b",
                {t: (e[0][keep[t]], e[1][keep[t]], e[2][keep[t]]) for t, e in examples.items()},
            )
        else:
            done.scored = ("eval_rows", {t: e[:3] for t, e in examples.items()})
        done.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if self.config.save_checkpoint:
            self.records.rd.save_checkpoint(
                done.best_state,
                {"step": str(done.step), "overall": f"{row['overall']:.6f}", "model": self.config.model},
            )

    def final_eval(self) -> dict[str, float] | None:
        """The best checkpoint's scores on the full dev sets, recorded as a row of kind 'final'.

        None when final_eval is off, periodic evaluation already scored full dev sets, or
        nothing was evaluated. Loads the best weights into the model.
        """
        done, data = self.progress, self.data
        needed = self.config.final_eval and any(s is not None for s in data.subsets.values())
        if not needed or done.best_state is None:
            return None
        from mtsearch.train.evaluate import scores_and_losses

        self.model.load_state_dict(done.best_state)
        examples = self._examples({t: None for t in data.enc_dev})
        scores, dev_loss = scores_and_losses(examples)
        done.scored = ("full_dev", {t: e[:3] for t, e in examples.items()})
        row = {
            "kind": "final",
            "step": done.best.get("step"),
            "examples": done.best.get("examples"),
            "scores": scores,
            "overall": overall_score(scores),
            "dev_loss": dev_loss,
            "dev_sizes": {t: len(e) for t, e in data.enc_dev.items()},
        }
        self.records.rd.append_metrics(row)
        return scores

    def write_scored_examples(self) -> None:
        """eval_examples.npz: the scored evaluation's rows, predictions and golds, for the paired
        bootstrap of mtsearch results (evaluation-set noise beside the seed noise)."""
        if self.progress.scored is not None:
            self.records.rd.write_eval_examples(*self.progress.scored)


def _check_phases(config: RunConfig, plan: StepPlan) -> None:
    phases = plan.before + plan.after
    if phases > plan.total:  # a budget in max_examples (or phases in epochs) is only known now
        raise ConfigError(
            f"the heads-only phases ({plan.before} + {plan.after} steps) exceed the run's "
            f"{plan.total} steps (max_steps {config.max_steps}, max_examples {config.max_examples}, "
            f"max_epochs {config.max_epochs}): they count inside the budget"
        )


def flat_metrics(row: dict[str, Any]) -> dict[str, float]:
    """An eval row as the flat metrics MLflow and ``report`` get."""
    out: dict[str, float] = {"overall": row["overall"], "examples": row["examples"]}
    out["lr_now"] = row["lr"]  # the scheduled rate; "lr", the param, is the peak
    out.update(row["scores"])
    # held-out halves: half A's scores chose the checkpoint, half B's score it
    for half in ("half_a", "half_b"):
        if half in row:
            out[f"{half}_overall"] = row[half]["overall"]
            out.update({f"{half}_{t}": v for t, v in row[half]["scores"].items()})
    out.update({f"train_loss_{t}": v for t, v in row["train_loss"].items()})
    out.update({f"dev_loss_{t}": v for t, v in row["dev_loss"].items()})
    out["examples_per_second"] = row["examples_per_second"]
    out.update({f"grad_cos_{pair.replace('|', '_')}": v for pair, v in row.get("grad_cosine", {}).items()})
    out.update({f"update_{k}": v for k, v in row.get("update_state", {}).items()})
    return out
