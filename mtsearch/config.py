"""The run config: every setting of one training run, frozen and documented.

A run is fully described by one :class:`RunConfig`. Search backends only produce
overrides for it (``{"lr": 3e-5, "sampler_args.sigma": 2}``) and a search space may
name nothing that is not a field here or a typed argument of a registered strategy.
Each field's docstring is its user-facing documentation (``mtsearch dims`` prints it).

Validation happens when the config is built, before any data or model is touched:
an unknown key, a value out of range or an argument that does not belong to the
chosen strategy raises :class:`~mtsearch.errors.ConfigError` naming the field. The
config names no strategy and no task: what a strategy needs of the run it checks itself
(its ``check_config(args, config)``), what a task offers comes from the task registry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mtsearch.errors import ConfigError
from mtsearch.paths import check_name
from mtsearch.registry import suggest
from mtsearch.tasks import TASKS, check_task_keys

#: Fields that change how a run is executed or recorded but not what it learns; they
#: are left out of the configuration hash so seed repeats and reruns group together.
NON_SEMANTIC_FIELDS = frozenset(
    {
        "name",
        "progress",
        "mlflow",
        "data_dir",
        "device",
        "num_threads",
        "save_checkpoint",
        "seed",
        "log_grad_conflict",  # a diagnostic: it draws no randomness and changes no weight
        "activation_cache",  # exact: the same run with or without it (up to float rounding)
        "compile",  # the same computation, compiled (up to float rounding)
    }
)


class RunConfig(BaseModel):
    """One multitask fine-tuning run."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    # --- identity -------------------------------------------------------------
    name: str | None = None
    """Run directory name under runs/; default: a timestamp plus the config hash."""
    seed: int = Field(0, ge=0)
    """Seeds python, numpy, torch, model init, data order and every strategy's generator."""
    data_seed: int | None = Field(None, ge=0)
    """Seeds the train_limit / train_fraction subsets instead of seed (None: seed), so seeds can vary the initialisation and order over one fixed subset."""

    # --- model and data -------------------------------------------------------
    model: str = "minilm"
    """Encoder: 'minilm' (all-MiniLM-L6-v2 from the installed package), 'tiny' (random 2-layer BERT for tests), a local folder or a hub id (online only)."""
    tasks: tuple[str, ...] = ("sst", "para", "sts")
    """Tasks trained together; 'cfimdb' is an optional auxiliary task."""
    data_dir: str | None = None
    """Folder with the CS224N files; default: MTSEARCH_DATA, else data/cs224n in the project."""
    strict_data: bool = False
    """Fail on the first malformed data row instead of skipping it with a warning."""
    train_limit: int | None = Field(None, ge=1)
    """Use a seeded random subset of at most this many training examples per task."""
    train_fraction: float | None = Field(None, gt=0.0, le=1.0)
    """Use a seeded random fraction of each task's training examples: unlike train_limit, the tasks keep their relative sizes (with both, the smaller subset)."""
    eval_limit: int | None = Field(1000, ge=1)
    """Evaluate periodically on a fixed random subset of this many dev examples per task (None: all)."""
    final_eval: bool = True
    """After training, score the best checkpoint on the full dev sets (skipped when eval_limit already covers them)."""
    held_out_score: bool = True
    """Where no final evaluation on the full dev sets follows (final_eval off, or eval_limit already covering them): choose the best checkpoint on one half of each task's evaluation rows and score the run on the other half, so a run's score is not the maximum of several noisy evaluations of the same rows (false: chosen and scored on the same rows, an optimistic score)."""
    max_length: int = Field(128, ge=8, le=512)
    """Token budget of one input; longer inputs are truncated (longest sentence first)."""
    # extra labelled training rows (mtsearch/data/loaders.py: load_extra, tokens.py: concat_encoded)
    extra_data: dict[str, str] = Field(default_factory=dict)
    """Extra training rows per task from your own file in that task's train format (task -> path, e.g. {sst: my-sst.csv}; relative paths from the working directory): parsed like the task's file (malformed rows skipped and counted, strict_data honoured), appended to the task's training examples after train_limit (every extra row is used) and fingerprinted in env.json; a missing file stops the run before anything is loaded."""

    # --- inputs, pooling, heads -------------------------------------------------
    pair_mode: Literal["concat", "separate", "ensemble"] = "concat"
    """How a sentence pair is fed: 'concat' = one input [CLS] a [SEP] b [SEP] with token types; 'separate' = each sentence encoded alone, the head reads Sentence-BERT features [u; v; |u-v|]; 'ensemble' = both paths, each with its own head, outputs averaged (logits for para, scores for sts)."""
    pooling: str = "cls"
    """How token states become one vector per input (registry 'pooling')."""
    pooling_args: dict[str, Any] = Field(default_factory=dict)
    """Typed arguments of the chosen pooling."""
    head: str = "linear"
    """Task head on the pooled vector (registry 'heads')."""
    head_args: dict[str, Any] = Field(default_factory=dict)
    """Typed arguments of the chosen head."""
    head_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout on the pooled vector before each task head."""
    # pair tasks and per-task dropout (mtsearch/models/multitask.py, mtsearch/heads/pair.py)
    task_dropout: dict[str, float] = Field(default_factory=dict)
    """Dropout before one task's head, overriding head_dropout for that task (e.g. {sts: 0.3})."""
    shared_pair_layer: bool = False
    """Add one dropout-linear-ReLU layer, shared by para and sts, on the pair representation before their heads (per path in 'ensemble'; dropout = head_dropout)."""
    sts_head: Literal["regression", "cosine"] = "regression"
    """STS output: 'regression' = the head's score on the 0..5 scale; 'cosine' = 5 * cos(u, v) of the separately encoded sentences (Sentence-BERT), needs pair_mode 'separate' or 'ensemble'."""
    sts_loss: Literal["mse", "cosine_embedding"] = "mse"
    """STS loss: 'mse' on the 0..5 scale; 'cosine_embedding' (sts_head 'cosine', pair_mode 'separate') = s*(1-cos) + (1-s)*max(0, cos - sts_margin) with s = label/5."""
    sts_margin: float = Field(0.0, ge=-1.0, lt=1.0)
    """Margin of the cosine-embedding STS loss: unrelated pairs (label 0) are pushed below this cosine; ignored with sts_loss 'mse'."""
    # issue 11: the reports' pair inputs, ensemble and cosine head (mtsearch/models/multitask.py)
    task_pair_mode: dict[str, Literal["concat", "separate", "ensemble"]] = Field(default_factory=dict)
    """pair_mode of one pair task, overriding pair_mode for it (e.g. {sts: separate} with pair_mode concat: 004 feeds QQP concatenated and scores STS by the cosine of the two sentences)."""
    pair_features: Literal["u_v_absdiff", "u_v", "u_v_absdiff_prod"] = "u_v_absdiff"
    """Features a separately encoded pair gives its head: 'u_v_absdiff' = [u; v; |u-v|] (Sentence-BERT; 001); 'u_v' = [u; v] (the baselines of 000, 002 and 004); 'u_v_absdiff_prod' = [u; v; |u-v|; u*v] (InferSent)."""
    ensemble_combine: Literal["mean", "sum"] = "mean"
    """pair_mode 'ensemble': 'mean' = the mean of the two paths' outputs (logits for para, scores for sts); 'sum' = their sum, and an STS cosine path adds its raw cos(u, v) (not 5 * cos) to the concat path's score (001: "the cosine ... is added to a projection of BERT's [CLS]")."""
    concat_pooling: str | None = None
    """Pooling (registry 'pooling', default knobs) of a concatenated pair [CLS] a [SEP] b [SEP], on the concat path of pair_mode 'concat' or 'ensemble'; None: the same as pooling. 001 keeps the pooled [CLS] ('pooler') there while its sentences use 'cnn_bilstm'."""
    shared_layer_scope: Literal["pair", "all"] = "pair"
    """Where the shared_pair_layer sits: 'pair' = on the pair representation of para and sts (000); 'all' = on every task's pooled vector (each sentence's, before pair features or the cosine), one layer shared by all tasks (004's "downstream layer shared between tasks")."""
    sts_cosine_weight: bool = False
    """sts_head 'cosine': apply one learned weight matrix W (no bias, default init) to both sentence vectors before the cosine, cos(W u, W v) (004's "learned weight matrix"); false: cos(u, v) without parameters."""
    sts_cosine_targets: Literal["graded", "sign"] = "graded"
    """How sts_loss 'cosine_embedding' turns 0..5 labels into targets: 'graded' = s = label/5 weighs the two terms, s*(1-cos) + (1-s)*max(0, cos - sts_margin); 'sign' = torch's CosineEmbeddingLoss with target +1 for label >= 2.5 and -1 below (a similar / not similar split at the middle of the scale)."""

    # --- sampling and updates -------------------------------------------------
    sampler: str = "round_robin"
    """Which task batches make up each step (registry 'samplers')."""
    sampler_args: dict[str, Any] = Field(default_factory=dict)
    """Typed arguments of the chosen sampler."""
    batch_size: int = Field(32, ge=1, le=4096)
    """Examples per task batch."""
    # per-task batch sizes (mtsearch/samplers; wired into the trainer's batch_sizes)
    task_batch_size: dict[str, int] = Field(default_factory=dict)
    """Examples per batch of one task, overriding batch_size for that task (e.g. {para: 64})."""
    bucket_by_length: bool = True
    """Group examples of similar length into batches (shuffled in chunks of 50 batches) to cut padding."""
    update: str = "combined"
    """How task losses become parameter updates (registry 'updates')."""
    update_args: dict[str, Any] = Field(default_factory=dict)
    """Typed arguments of the chosen update rule."""
    # gradient-conflict diagnostic (mtsearch/updates/conflict.py, logged by the trainer's evaluate)
    log_grad_conflict: bool = True
    """At every evaluation, log the cosine between each pair of tasks' encoder gradients on one fixed probe batch per task (grad_cosine); costs one forward+backward per task, does not change training."""

    # --- optimisation ---------------------------------------------------------
    lr: float = Field(5e-5, gt=0.0, le=1.0)
    """Peak learning rate of the encoder (AdamW)."""
    head_lr: float | None = Field(1e-3, gt=0.0, le=1.0)
    """Peak learning rate of the task heads; None: same as lr."""
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)
    """AdamW weight decay (not applied to biases and LayerNorm weights)."""
    warmup_ratio: float = Field(0.1, ge=0.0, le=1.0)
    """Fraction of the step budget spent warming the learning rate up linearly from 0."""
    schedule: Literal["linear", "constant", "cosine", "multistep"] = "linear"
    """Learning-rate shape after warm-up: 'linear' decays to 0 at the last step, 'constant' stays, 'cosine' follows half a cosine down to 0 at the last step, 'multistep' multiplies by schedule_gamma at each of schedule_milestones."""
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    """Clip the global gradient norm to this value; None: no clipping."""
    # schedules, per-layer/per-task learning rates, accumulation, freezing and the activation
    # cache (mtsearch/train/optim.py, mtsearch/train/activation_cache.py)
    schedule_milestones: tuple[float, ...] = ()
    """'multistep' only: where the learning rate drops, as fractions in (0, 1) of the run's optimizer steps, increasing and past the warm-up (e.g. [0.5, 0.75])."""
    schedule_gamma: float | None = Field(None, gt=0.0, le=1.0)
    """'multistep' only: factor applied to the learning rate at each milestone; None: 0.1."""
    task_head_lr: dict[str, float] = Field(default_factory=dict)
    """Peak learning rate of one task's pooling and head(s), overriding head_lr for that task (e.g. {sts: 3e-3}); a shared pair layer keeps head_lr."""
    layer_lr_decay: float = Field(1.0, gt=0.0, le=1.0)
    """Layer-wise learning-rate decay: encoder layer l (0-based of L) gets lr * decay^(L-1-l), the embeddings lr * decay^L; 1.0: off."""
    grad_accum: int = Field(1, ge=1, le=1024)
    """Accumulate the gradients of this many steps and apply their average as one optimizer step (the same as scaling each loss by 1/k); max_steps still counts steps (rounds), the schedule counts optimizer steps."""
    freeze_layers: int = Field(0, ge=0, le=128)
    """Freeze the embeddings and the lower k encoder layers: no gradient, no weight decay, and no dropout there (kept in eval mode while training); 0: nothing frozen."""
    frozen_encoder: bool = False
    """Train only the heads: the whole encoder is frozen as freeze_layers freezes its lower layers."""
    heads_only_steps_before: int = Field(0, ge=0)
    """Steps at the start of the run with the whole encoder frozen (heads only) before full fine-tuning; they count inside max_steps."""
    heads_only_steps_after: int = Field(0, ge=0)
    """Steps at the end of the run with the whole encoder frozen (heads only) after full fine-tuning; they count inside max_steps."""
    activation_cache: bool = True
    """With freeze_layers (or frozen_encoder), compute the frozen layers' outputs once per data file and model, keep them on disk (cache_dir/activations) and run only the layers above them; exact, since frozen layers run without dropout."""
    # issue 11: schedules and phases in epochs, as the reports count them (mtsearch/train/optim.py)
    schedule_milestones_unit: Literal["fraction", "epoch"] = "fraction"
    """What schedule_milestones count: 'fraction' = fractions of the run's optimizer steps; 'epoch' = epochs of the sampler (a milestone e drops the rate once e epochs are done: 004 decays at epochs 5 and 25 of 30)."""
    heads_only_epochs_before: float = Field(0.0, ge=0.0)
    """Like heads_only_steps_before, counted in epochs of the sampler (004: 5 epochs heads only); set one of the two."""
    heads_only_epochs_after: float = Field(0.0, ge=0.0)
    """Like heads_only_steps_after, counted in epochs of the sampler (004: the last 5 epochs heads only); set one of the two."""
    heads_only_encoder_dropout: bool = False
    """During heads-only phases keep the encoder's dropout on (004 only stops BERT's gradient, so its dropout stays active); false: the frozen encoder runs in eval mode, without dropout."""

    # --- contrastive pre-training (SimCSE, Gao, Yao & Chen 2021; mtsearch/train/simcse.py)
    simcse: Literal["none", "unsup", "sup"] = "none"
    """Contrastive pre-training of the encoder before multitask training: 'unsup' = every training sentence (all tasks, deduplicated) against itself under two dropout masks; 'sup' = QQP duplicates (para label 1) and STS pairs scored >= simcse_sup_threshold as positives; both with in-batch negatives; 'none' = off (the simcse_* knobs are then ignored)."""
    simcse_steps: int = Field(200, ge=1)
    """Steps (one batch each) of the SimCSE stage; they come before and on top of max_steps. Paper: one epoch of 10^6 sentences at batch 64 (unsup)."""
    simcse_lr: float = Field(3e-5, gt=0.0, le=1.0)
    """Peak learning rate of the SimCSE stage's own AdamW over the encoder: linear warm-up over warmup_ratio of simcse_steps, then linear decay to 0; weight_decay and max_grad_norm as in training. Paper (BERT-base): 3e-5 unsup, 5e-5 sup."""
    simcse_schedule: Literal["linear", "constant"] = "linear"
    """Learning rate of the SimCSE stage over its steps: 'linear' = warm-up then linear decay to 0 (the SimCSE paper's); 'constant' = simcse_lr throughout (000: "a learning rate of 1e-5")."""
    simcse_temperature: float = Field(0.05, gt=0.0, le=10.0)
    """Temperature of the contrastive loss: cross-entropy over cosine similarities divided by it (paper: 0.05)."""
    simcse_batch_size: int = Field(64, ge=2, le=4096)
    """Sentences (unsup) or positive pairs (sup) per SimCSE step; every other one in the batch is a negative (paper: 64 unsup, 512 sup)."""
    simcse_pooling: Literal["cls", "cls_raw", "mean"] = "cls"
    """Sentence vector of the SimCSE loss: 'cls' = [CLS] state through a Linear+Tanh layer used only during the stage and discarded after (the paper's unsupervised recipe); 'cls_raw' = the [CLS] state itself, no extra layer (000's [CLS]); 'mean' = mean of the token states, no extra layer (as pooling 'mean')."""
    simcse_max_length: int = Field(32, ge=8, le=512)
    """Token budget of one SimCSE sentence; longer sentences are truncated (paper: 32)."""
    simcse_sup_threshold: float = Field(4.0, ge=0.0, le=5.0)
    """simcse 'sup': an STS pair is a positive when its similarity is at least this (0..5 scale)."""
    simcse_sup_strict: bool = False
    """simcse 'sup': an STS pair is a positive only when its similarity is strictly above simcse_sup_threshold (001: "greater than 4"; 346 training pairs sit at exactly 4.0); false: at least the threshold."""
    simcse_epochs: float | None = Field(None, gt=0.0)
    """Length of the SimCSE stage in passes over its sentences (unsup) or positive pairs (sup), ceil(epochs * items / simcse_batch_size) steps, instead of simcse_steps (000: 10 epochs)."""

    # --- budget, evaluation, stopping ----------------------------------------
    max_steps: int | None = Field(200, ge=1)
    """Stop after this many steps (one step = the batches the sampler schedules together: one of each scheduled task, or several small ones with partial_batches; with grad_accum k, an optimizer step every k steps)."""
    max_examples: int | None = Field(None, ge=1)
    """Stop once this many training examples (over all tasks) were seen; with max_steps, whichever comes first."""
    max_epochs: float | None = Field(None, gt=0.0)
    """Stop after this many epochs of the sampler (as the reports count them: one epoch is what the sampler calls one, e.g. a pass over the largest task for round robin, a resampled pool for resample_equal; `mtsearch dims` shows each sampler's); with max_steps or max_examples, whichever comes first."""
    eval_every_epochs: float | None = Field(None, gt=0.0)
    """Evaluate every this many epochs of the sampler (the reports evaluate after each epoch) instead of every eval_every steps."""
    eval_every: int = Field(100, ge=1)
    """Evaluate on dev every this many steps, and always at the end."""
    eval_batch_size: int = Field(128, ge=1)
    """Batch size for evaluation and prediction."""
    patience: int | None = Field(None, ge=1)
    """Stop early after this many evaluations without a better overall score; None: never."""
    save_checkpoint: bool = True
    """Keep the best checkpoint (safetensors) in the run directory."""

    # --- execution ------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """'auto' uses CUDA when present, else the CPU."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """'auto' is bf16 autocast on a CUDA device that supports it, fp32 otherwise."""
    compile: Literal["auto", "on", "off"] = "auto"
    """Run the model through torch.compile, training batches padded to a few fixed widths (static shapes; CUDA graphs on CUDA); 'auto' = on for CUDA, off on the CPU; a compile failure falls back to eager with one warning."""
    num_threads: int | None = Field(None, ge=1)
    """CPU threads for torch; None: torch's default."""
    progress: bool = True
    """Show a progress bar with loss and speed."""
    mlflow: bool = True
    """Mirror the run into MLflow (MLFLOW_TRACKING_URI, default a sqlite store in runs/)."""

    # ------------------------------------------------------------------ checks
    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        # The name becomes runs/<name>: no separators, no '..' (mtsearch.paths.check_name).
        return None if value is None else check_name(value, "name")

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):  # e.g. tasks=5: name the key, not Python's TypeError
            raise ValueError(
                f"a list of task names is expected (e.g. [sst, sts]); choose from {', '.join(TASKS)}"
            )
        value = tuple(value)
        if not value:
            raise ValueError("at least one task is needed")
        for task in value:
            if not isinstance(task, str):
                raise ValueError(f"a task is named by text; choose from {', '.join(TASKS)}")
            if task not in TASKS:
                raise ValueError(
                    f"unknown task '{task}'{suggest(task, list(TASKS))}; choose from {', '.join(TASKS)}"
                )
        if len(set(value)) != len(value):
            raise ValueError("a task is listed twice")
        return value

    @model_validator(mode="after")
    def _strategies(self) -> RunConfig:
        # Each chosen strategy exists and its knobs are typed right (it checks the run last).
        for field in _strategy_fields():
            self.args(field)
        if self.max_steps is None and self.max_examples is None and self.max_epochs is None:
            raise ValueError("set max_steps, max_examples or max_epochs: a run needs a budget")
        return self

    @model_validator(mode="after")
    def _task_batch_size(self) -> RunConfig:
        check_task_keys("task_batch_size", self.task_batch_size, self.tasks)
        for task in self.task_batch_size:
            size = self.task_batch_size[task]
            if not 1 <= size <= 4096:  # the range of batch_size
                raise ValueError(f"task_batch_size.{task}: a batch size is in [1, 4096] (got {size!r})")
        return self

    @model_validator(mode="after")
    def _pair_inputs(self) -> RunConfig:
        check_task_keys("task_dropout", self.task_dropout, self.tasks)
        for task, rate in self.task_dropout.items():
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"task_dropout.{task}: a dropout rate is in [0, 1) (got {rate!r})")
        check_task_keys("task_pair_mode", self.task_pair_mode, self.tasks)
        for task in self.task_pair_mode:
            if TASKS[task].inputs != "pair":
                pairs = ", ".join(t for t in self.tasks if TASKS[t].inputs == "pair") or "none here"
                raise ValueError(
                    f"task_pair_mode.{task}: {task} reads one sentence; only pair tasks ({pairs}) take a pair mode"
                )
        # The STS checks read STS's own pair mode (task_pair_mode may set it apart).
        sts_mode = self.pair_mode_of("sts")
        where = "pair_mode" if "sts" not in self.task_pair_mode else "task_pair_mode.sts"
        if self.sts_head == "cosine" and sts_mode == "concat":
            raise ValueError(
                f"sts_head 'cosine' needs each sentence encoded alone, which {where} 'concat' "
                "does not do: use pair_mode 'separate' or 'ensemble', or sts_head 'regression'"
            )
        if self.sts_loss == "cosine_embedding" and self.sts_head != "cosine":
            raise ValueError(
                "sts_loss 'cosine_embedding' is a loss on a cosine: it needs sts_head 'cosine' "
                f"(got sts_head '{self.sts_head}')"
            )
        if self.sts_loss == "cosine_embedding" and sts_mode != "separate":
            raise ValueError(
                f"sts_loss 'cosine_embedding' needs pair_mode 'separate': with {where} "
                f"'{sts_mode}' the STS output is not a pure cosine; use sts_loss 'mse'"
            )
        if self.sts_cosine_weight and self.sts_head != "cosine":
            raise ValueError(
                f"sts_cosine_weight is a weight matrix before the STS cosine: it needs sts_head 'cosine' "
                f"(got sts_head '{self.sts_head}')"
            )
        if self.sts_cosine_targets != "graded" and self.sts_loss != "cosine_embedding":
            raise ValueError(
                "sts_cosine_targets only applies to sts_loss 'cosine_embedding' "
                f"(got sts_loss '{self.sts_loss}')"
            )
        modes = {self.pair_mode_of(t) for t in self.tasks if TASKS[t].inputs == "pair"}
        if self.ensemble_combine != "mean" and "ensemble" not in modes:
            raise ValueError(
                "ensemble_combine only applies to pair_mode 'ensemble', which no task of this run uses"
            )
        if self.pair_features != "u_v_absdiff" and not modes & {"separate", "ensemble"}:
            raise ValueError(
                "pair_features are the head's input of separately encoded pairs: they need pair_mode "
                "'separate' or 'ensemble' for some task (no task of this run encodes its sentences alone)"
            )
        if self.concat_pooling is not None:
            names = _registry("pooling").names()
            if self.concat_pooling not in names:
                raise ValueError(
                    f"concat_pooling: unknown pooling '{self.concat_pooling}'"
                    f"{suggest(self.concat_pooling, names)}; choose one of {', '.join(names)}"
                )
            if not modes & {"concat", "ensemble"}:
                raise ValueError(
                    "concat_pooling pools concatenated pairs, and no task of this run reads one "
                    "(pair_mode 'concat' or 'ensemble')"
                )
        if self.shared_layer_scope != "pair" and not self.shared_pair_layer:
            raise ValueError(
                f"shared_layer_scope '{self.shared_layer_scope}' places the shared layer: it needs "
                "shared_pair_layer true"
            )
        return self

    @model_validator(mode="after")
    def _optimisation(self) -> RunConfig:
        # schedules, per-task head lr, accumulation and freezing (mtsearch/train/optim.py)
        check_task_keys("task_head_lr", self.task_head_lr, self.tasks)
        for task, rate in self.task_head_lr.items():
            if not 0.0 < rate <= 1.0:  # the range of head_lr
                raise ValueError(f"task_head_lr.{task}: a learning rate is in (0, 1] (got {rate!r})")
        if self.schedule != "multistep":
            if self.schedule_milestones:
                raise ValueError(
                    f"schedule_milestones only apply to schedule 'multistep' (got schedule '{self.schedule}')"
                )
            if self.schedule_gamma is not None:
                raise ValueError(
                    f"schedule_gamma only applies to schedule 'multistep' (got schedule '{self.schedule}')"
                )
            if self.schedule_milestones_unit != "fraction":
                raise ValueError(
                    "schedule_milestones_unit only applies to schedule 'multistep' "
                    f"(got schedule '{self.schedule}')"
                )
        elif self.schedule_milestones_unit == "epoch":
            # Epochs become optimizer steps once the sampler is known; the trainer then checks
            # the warm-up (mtsearch/train/optim.py: milestone_steps).
            ms = self.schedule_milestones
            if not ms:
                raise ValueError("schedule 'multistep' needs schedule_milestones (e.g. [5, 25] in epochs)")
            if any(m <= 0 for m in ms):
                raise ValueError(f"schedule_milestones: each milestone is an epoch > 0 (got {list(ms)})")
            if any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
                raise ValueError(f"schedule_milestones must increase strictly (got {list(ms)})")
            if self.max_epochs is not None and ms[-1] >= self.max_epochs:
                raise ValueError(
                    f"schedule_milestones: epoch {ms[-1]} is not inside the run's max_epochs ({self.max_epochs})"
                )
        else:
            ms = self.schedule_milestones
            if not ms:
                raise ValueError("schedule 'multistep' needs schedule_milestones (e.g. [0.5, 0.75])")
            if any(not 0.0 < m < 1.0 for m in ms):
                raise ValueError(
                    f"schedule_milestones: each milestone is a fraction of the run in (0, 1) (got {list(ms)})"
                )
            if any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
                raise ValueError(f"schedule_milestones must increase strictly (got {list(ms)})")
            if ms[0] < self.warmup_ratio:
                raise ValueError(
                    f"schedule_milestones: milestone {ms[0]} falls inside the warm-up "
                    f"(warmup_ratio {self.warmup_ratio}); put milestones after it"
                )
        for when in ("before", "after"):
            if getattr(self, f"heads_only_steps_{when}") and getattr(self, f"heads_only_epochs_{when}"):
                raise ValueError(
                    f"heads_only_steps_{when} and heads_only_epochs_{when} both set the same phase: set one"
                )
        epoch_phases = self.heads_only_epochs_before + self.heads_only_epochs_after
        if self.max_epochs is not None and epoch_phases > self.max_epochs:
            raise ValueError(
                f"heads_only_epochs_before + heads_only_epochs_after ({self.heads_only_epochs_before} + "
                f"{self.heads_only_epochs_after}) exceed max_epochs ({self.max_epochs}): they count inside it"
            )
        if self.heads_only_encoder_dropout and not self.has_phases():
            raise ValueError(
                "heads_only_encoder_dropout applies to heads-only phases: set heads_only_steps_* or "
                "heads_only_epochs_*"
            )
        phases = self.heads_only_steps_before + self.heads_only_steps_after
        if self.max_steps is not None and phases > self.max_steps:
            raise ValueError(
                f"heads_only_steps_before + heads_only_steps_after ({self.heads_only_steps_before} + "
                f"{self.heads_only_steps_after}) exceed max_steps ({self.max_steps}): they count inside it"
            )
        if self.frozen_encoder and self.freeze_layers:
            raise ValueError(
                f"frozen_encoder already freezes every layer: freeze_layers ({self.freeze_layers}) "
                "contradicts it; set one of them"
            )
        if self.frozen_encoder and self.has_phases():
            raise ValueError(
                "heads_only_steps_before / heads_only_steps_after freeze the encoder for part of the run, "
                "but frozen_encoder freezes it for all of it; set one of them"
            )
        return self

    @model_validator(mode="after")
    def _simcse_and_extra_data(self) -> RunConfig:
        # SimCSE (mtsearch/train/simcse.py): supervised positives come from the tasks that give some.
        givers = {t: spec.simcse_positives for t, spec in TASKS.items() if spec.simcse_positives}
        if self.simcse == "sup" and not set(givers) & set(self.tasks):
            sources = " and ".join(f"{t} ({what})" for t, what in givers.items())
            raise ValueError(
                f"simcse 'sup' takes its positive pairs from {sources}, but tasks ({', '.join(self.tasks)}) "
                f"has {'neither' if len(givers) == 2 else 'none of them'}: add {' or '.join(givers)} to tasks, "
                "or use simcse 'unsup'"
            )
        # extra_data (mtsearch/data/loaders.py): files are checked when the run starts, so a
        # stored run config still loads after its extra file moved.
        check_task_keys("extra_data", self.extra_data, self.tasks)
        for task, path in self.extra_data.items():
            if not str(path).strip():
                raise ValueError(f"extra_data.{task}: give the path of a file in the {task} train format")
        return self

    @model_validator(mode="after")
    def _strategies_accept_the_run(self) -> RunConfig:
        # Last, so a strategy sees a config whose every other field is valid.
        for field in _strategy_fields():
            strategy = _registry(field).get(getattr(self, field))
            strategy.check_config(self.args(field), self)
        if self.concat_pooling is not None:  # a pooling too, with its default knobs
            pooling = _registry("pooling").get(self.concat_pooling)
            pooling.check_config(pooling.Args(), self)
        return self

    # ---------------------------------------------------------------- helpers
    def pair_mode_of(self, task: str) -> str:
        """The pair mode ``task`` is read in: task_pair_mode[task], else pair_mode."""
        return self.task_pair_mode.get(task, self.pair_mode)

    def has_phases(self) -> bool:
        """Whether the run has heads-only phases (in steps or in epochs)."""
        return bool(
            self.heads_only_steps_before
            or self.heads_only_steps_after
            or self.heads_only_epochs_before
            or self.heads_only_epochs_after
        )

    def args(self, field: str) -> BaseModel:
        """The typed arguments of the strategy chosen in ``field`` (e.g. 'sampler')."""
        return _registry(field).parse_args(
            getattr(self, field), getattr(self, f"{field}_args"), f"{field}_args"
        )

    def semantic_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in NON_SEMANTIC_FIELDS}

    def config_hash(self) -> str:
        """Hash of everything that changes what is learned, seed excluded: seed repeats share it."""
        blob = json.dumps(self.semantic_dict(), sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _registry(field: str):
    from mtsearch.strategies import registries

    return registries()[field]


def _strategy_fields() -> list[str]:
    from mtsearch.strategies import registries

    return list(registries())


def field_names() -> list[str]:
    return list(RunConfig.model_fields)


def _format_error(err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "config"
    if e["type"] == "extra_forbidden":
        return f"unknown config key '{loc}'{suggest(loc, field_names())}"
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "value_error" and not e["loc"]:
        return msg
    got = e.get("input")
    return f"{loc}: {msg} (got {got!r})"


def make_config(values: dict[str, Any]) -> RunConfig:
    """Build a config from plain values, turning validation errors into one clear sentence."""
    try:
        return RunConfig(**values)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None


def apply_overrides(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Apply ``{"lr": 1e-4, "sampler_args.sigma": 2}`` style overrides to plain values.

    A dotted key may only go into a ``*_args`` field (a strategy's own knobs); anything
    else dotted is refused here so that typos do not silently create new keys.
    """
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in RunConfig.model_fields:
            raise ConfigError(f"unknown config key '{head}'{suggest(head, field_names())}")
        if rest:
            if not head.endswith("_args") or "." in rest:
                raise ConfigError(
                    f"'{key}': only a strategy's arguments take a dotted key (e.g. sampler_args.sigma)"
                )
            current = out.get(head) or {}
            out[head] = {**current, rest: value}
        else:
            out[head] = value
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are YAML (numbers, booleans, null, lists)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = _number(value)
    return out


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``3e-5`` (no dot) as a string; users mean the number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


#: What a config file's ``profiles`` section may set: the machine and the budget (how long,
#: on how much data, on which encoder, how much of it trained), never the technique.
PROFILE_KEYS = frozenset(
    {
        "model",
        "max_steps",
        "max_examples",
        "max_epochs",
        "eval_every",
        "eval_every_epochs",
        "eval_limit",
        "eval_batch_size",
        "final_eval",
        "train_limit",
        "train_fraction",
        "freeze_layers",
        "activation_cache",
        "max_length",
        # batching for speed (issue 19: the presets' cpu profiles bucket, their reports shuffle)
        "bucket_by_length",
        "simcse_steps",
        "simcse_epochs",
        "device",
        "precision",
        "compile",
        "num_threads",
        "save_checkpoint",
        "progress",
    }
)
#: The profile a config file's ``profiles`` section applies when none is asked for: the
#: machine every command assumes by default (sweeps' ``--profile`` defaults to it too).
DEFAULT_PROFILE = "cpu"


def read_config_file(path: str | Path, profile: str | None = None) -> dict[str, Any]:
    """The config values of a YAML file, with one of its ``profiles`` applied.

    A file may hold ``profiles: {name: {key: value}}`` (the presets do): each profile
    overrides budget keys only (:data:`PROFILE_KEYS`). ``profile`` picks one; None picks
    :data:`DEFAULT_PROFILE` when the file defines it, else none.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:  # a binary or Latin-1 file: say which byte, not a traceback
        raise ConfigError(
            f"config file {p} is not UTF-8 text (byte {err.start} is {err.object[err.start]:#04x})"
        ) from None
    except OSError as err:
        raise ConfigError(f"config file {p} cannot be read: {err.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {p} is not valid YAML: {yaml_problem(err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of config keys")
    profiles = data.pop("profiles", None)
    if profiles is None:
        if profile is not None:
            raise ConfigError(f"config file {p} defines no profiles (asked for profile '{profile}')")
        return data
    checked = check_profiles(profiles, str(p))
    name = profile if profile is not None else (DEFAULT_PROFILE if DEFAULT_PROFILE in checked else None)
    if name is None:
        return data
    if name not in checked:
        raise ConfigError(
            f"config file {p}: profile '{name}' is not defined{suggest(name, list(checked))}; "
            f"defined: {', '.join(checked)}"
        )
    return apply_overrides(data, checked[name])


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (PyYAML's own text spans several)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def check_profiles(profiles: Any, where: str) -> dict[str, dict[str, Any]]:
    """A ``profiles`` section as ``{name: overrides}``; a key that is not budget is refused."""
    if not isinstance(profiles, dict) or not profiles:
        raise ConfigError(f"{where}: profiles must be a mapping of profile names to config keys")
    out: dict[str, dict[str, Any]] = {}
    for name, values in profiles.items():
        values = values or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: profiles.{name} must be a mapping of config keys")
        for key in values:
            if key not in RunConfig.model_fields:
                raise ConfigError(
                    f"{where}: unknown config key 'profiles.{name}.{key}'{suggest(key, field_names())}"
                )
            if key not in PROFILE_KEYS:
                raise ConfigError(
                    f"{where}: profiles.{name}.{key}: a profile changes only the machine and the budget "
                    f"({', '.join(sorted(PROFILE_KEYS))}); set {key} in the file itself"
                )
        out[str(name)] = dict(values)
    return out


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, profile: str | None = None
) -> RunConfig:
    """The run config of a YAML file (with one of its profiles, see :func:`read_config_file`) and overrides."""
    if profile is not None and not path:
        raise ConfigError(f"profile '{profile}' needs a config file that defines profiles (--config)")
    values = read_config_file(path, profile) if path else {}
    return make_config(apply_overrides(values, overrides or {}))
