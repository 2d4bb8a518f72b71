"""The run config: every setting of one training run, frozen and documented.

A run is fully described by one :class:`RunConfig`. Search backends only produce
overrides for it (``{"lr": 3e-5, "sampler_args.sigma": 2}``) and a search space may
name nothing that is not a field here or a typed argument of a registered strategy.
Each field's docstring is its user-facing documentation (``mtsearch dims`` prints it).

Validation happens when the config is built, before any data or model is touched:
an unknown key, a value out of range or an argument that does not belong to the
chosen strategy raises :class:`~mtsearch.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mtsearch.errors import ConfigError
from mtsearch.registry import suggest
from mtsearch.tasks import TASKS

#: Fields that change how a run is executed or recorded but not what it learns; they
#: are left out of the configuration hash so seed repeats and reruns group together.
NON_SEMANTIC_FIELDS = frozenset(
    {"name", "progress", "mlflow", "data_dir", "device", "num_threads", "save_checkpoint", "seed"}
)


class RunConfig(BaseModel):
    """One multitask fine-tuning run."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    # --- identity -------------------------------------------------------------
    name: str | None = None
    """Run directory name under runs/; default: a timestamp plus the config hash."""
    seed: int = Field(0, ge=0)
    """Seeds python, numpy, torch, model init, data order and every strategy's generator."""

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
    eval_limit: int | None = Field(1000, ge=1)
    """Evaluate periodically on a fixed random subset of this many dev examples per task (None: all)."""
    final_eval: bool = True
    """After training, score the best checkpoint on the full dev sets (skipped when eval_limit already covers them)."""
    max_length: int = Field(128, ge=8, le=512)
    """Token budget of one input; longer inputs are truncated (longest sentence first)."""

    # --- inputs, pooling, heads -------------------------------------------------
    pair_mode: Literal["concat"] = "concat"
    """How a sentence pair is fed: 'concat' = one input [CLS] a [SEP] b [SEP] with token types."""
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

    # --- sampling and updates -------------------------------------------------
    sampler: str = "round_robin"
    """Which task batches make up each step (registry 'samplers')."""
    sampler_args: dict[str, Any] = Field(default_factory=dict)
    """Typed arguments of the chosen sampler."""
    batch_size: int = Field(32, ge=1, le=4096)
    """Examples per task batch."""
    bucket_by_length: bool = True
    """Group examples of similar length into batches (shuffled in chunks of 50 batches) to cut padding."""
    update: str = "combined"
    """How task losses become parameter updates (registry 'updates')."""
    update_args: dict[str, Any] = Field(default_factory=dict)
    """Typed arguments of the chosen update rule."""

    # --- optimisation ---------------------------------------------------------
    lr: float = Field(5e-5, gt=0.0, le=1.0)
    """Peak learning rate of the encoder (AdamW)."""
    head_lr: float | None = Field(1e-3, gt=0.0, le=1.0)
    """Peak learning rate of the task heads; None: same as lr."""
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)
    """AdamW weight decay (not applied to biases and LayerNorm weights)."""
    warmup_ratio: float = Field(0.1, ge=0.0, le=1.0)
    """Fraction of the step budget spent warming the learning rate up linearly from 0."""
    schedule: Literal["linear", "constant"] = "linear"
    """Learning-rate shape after warm-up: 'linear' decays to 0 at the last step, 'constant' stays."""
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    """Clip the global gradient norm to this value; None: no clipping."""

    # --- budget, evaluation, stopping ----------------------------------------
    max_steps: int | None = Field(200, ge=1)
    """Stop after this many optimizer steps (one step = one batch of each scheduled task)."""
    max_examples: int | None = Field(None, ge=1)
    """Stop once this many training examples (over all tasks) were seen; with max_steps, whichever comes first."""
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
    num_threads: int | None = Field(None, ge=1)
    """CPU threads for torch; None: torch's default."""
    progress: bool = True
    """Show a progress bar with loss and speed."""
    mlflow: bool = True
    """Mirror the run into MLflow (MLFLOW_TRACKING_URI, default a sqlite store in runs/)."""

    # ------------------------------------------------------------------ checks
    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        value = tuple(value)
        if not value:
            raise ValueError("at least one task is needed")
        for task in value:
            if task not in TASKS:
                raise ValueError(
                    f"unknown task '{task}'{suggest(task, list(TASKS))}; choose from {', '.join(TASKS)}"
                )
        if len(set(value)) != len(value):
            raise ValueError("a task is listed twice")
        return value

    @model_validator(mode="after")
    def _strategies(self) -> RunConfig:
        from mtsearch.strategies import registries

        for reg in registries().values():
            reg.parse_args(getattr(self, reg.field), getattr(self, f"{reg.field}_args"), f"{reg.field}_args")
        if self.max_steps is None and self.max_examples is None:
            raise ValueError("set max_steps or max_examples: a run needs a budget")
        return self

    # ---------------------------------------------------------------- helpers
    def args(self, field: str) -> BaseModel:
        """The typed arguments of the strategy chosen in ``field`` (e.g. 'sampler')."""
        from mtsearch.strategies import registries

        reg = registries()[field]
        return reg.parse_args(getattr(self, field), getattr(self, f"{field}_args"), f"{field}_args")

    def semantic_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in NON_SEMANTIC_FIELDS}

    def config_hash(self) -> str:
        """Hash of everything that changes what is learned, seed excluded: seed repeats share it."""
        blob = json.dumps(self.semantic_dict(), sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


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


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {p} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of config keys")
    return data


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    values = read_config_file(path) if path else {}
    return make_config(apply_overrides(values, overrides or {}))
