"""Predictions of a finished run in the CS224N output format.

``mtsearch predict RUN`` loads the run's config and best checkpoint (:func:`load_run`, which
the dashboard's error analysis uses too) and writes, per task and split,
``<run>/predictions/<task>-<split>-output.csv`` with the course's header and one
``id , prediction`` line per example.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtsearch.config import load_config
from mtsearch.errors import MtsearchError
from mtsearch.paths import cache_dir, require_writable, runs_dir
from mtsearch.records import atomic_write_text
from mtsearch.tasks import TASKS

log = logging.getLogger("mtsearch.predict")


def find_run(run: str) -> Path:
    path = Path(run)
    if not path.is_dir():
        path = runs_dir() / run
    if not (path / "config.yaml").exists():
        raise MtsearchError(f"no run at '{run}' (looked for {path}/config.yaml)")
    if not (path / "best.safetensors").exists():
        raise MtsearchError(f"run {path} has no best.safetensors checkpoint (was save_checkpoint off?)")
    return path


@dataclass
class LoadedRun:
    """A finished run ready to predict: its config, data folder, tokenizer and best checkpoint."""

    path: Path
    config: Any  # mtsearch.config.RunConfig
    data_dir: Path
    tokenizer: Any
    model: Any  # mtsearch.models.multitask.MultitaskModel, in eval mode on `device`
    device: Any
    precision: str

    def encode(self, data):
        """A split's examples tokenized the way the run trained."""
        from mtsearch.models.multitask import encode_for_model

        return encode_for_model(data, self.tokenizer, self.config)

    def predict(self, task: str, encoded):
        """(example indices, predictions) for every example of an encoded split."""
        import torch

        from mtsearch.train.evaluate import predict

        with torch.inference_mode():
            idx, preds, _ = predict(self.model, task, encoded, None, self.device, self.precision,
                                    self.config.eval_batch_size, self.tokenizer.pad_token_id or 0)  # fmt: skip
        return idx, preds


def load_run(run: str | Path, data_dir: str | None = None, splits=("dev",)) -> LoadedRun:
    """Load a finished run (a folder, or a name under runs/) for inference.

    ``data_dir`` overrides the run's data folder. The files of ``splits`` must be there,
    except test: a test file may be missing from a mirror (the QQP test file is not in every
    copy), so predicting it is skipped with a warning instead.
    """
    from safetensors.torch import load_file

    from mtsearch.data import require_files, resolve_data_dir
    from mtsearch.models.encoder import load_encoder, load_tokenizer, resolve_model
    from mtsearch.models.multitask import MultitaskModel, needs_pooler
    from mtsearch.train.runtime import pick_device

    path = find_run(str(run))
    require_writable(cache_dir(), "cache folder (MTSEARCH_CACHE, default <runs>/cache)")  # token ids
    try:
        config = load_config(path / "config.yaml", {"data_dir": data_dir} if data_dir else {})
    except MtsearchError as err:  # a config.yaml edited or damaged since the run wrote it
        raise MtsearchError(f"run {path}: its config.yaml does not load: {err}") from None
    source = resolve_model(config.model)
    ddir = resolve_data_dir(config.data_dir)
    require_files(ddir, list(config.tasks), [s for s in splits if s != "test"])
    device, precision = pick_device(config)
    tokenizer = load_tokenizer(source)
    model = MultitaskModel(load_encoder(source, seed=config.seed, pooler=needs_pooler(config)), config)
    checkpoint = path / "best.safetensors"
    try:
        state = load_file(str(checkpoint))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own types for a truncated or damaged file
        raise MtsearchError(
            f"checkpoint {checkpoint} is unreadable ({' '.join(str(err).split())}): truncated or damaged; "
            "train the run again"
        ) from None
    check_checkpoint(path, model.state_dict(), state)
    model.load_state_dict(state)
    model.to(device).eval()
    return LoadedRun(path, config, ddir, tokenizer, model, device, precision)


def check_checkpoint(path: Path, expected: dict, state: dict) -> None:
    """The checkpoint holds exactly the tensors, of the shapes, the run's config.yaml builds."""
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    shapes = sorted(
        k for k in expected.keys() & state.keys() if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shapes:
        k = shapes[0]
        parts.append(
            f"{len(shapes)} of another shape (e.g. {k}: {list(state[k].shape)} in the checkpoint, "
            f"{list(expected[k].shape)} in the model)"
        )
    raise MtsearchError(
        f"run {path}: best.safetensors does not match the model its config.yaml describes ({'; '.join(parts)}); "
        "was config.yaml edited after training?"
    )


def format_prediction(task: str, value: float) -> str:
    kind = TASKS[task].kind
    return f"{value:.4f}" if kind == "regression" else str(int(value))


def predict_run(
    run: str, data_dir: str | None = None, splits=("dev", "test"), out_dir: Path | None = None
) -> list[Path]:
    from mtsearch.data import load_split, split_path

    loaded = load_run(run, data_dir, splits)
    config, ddir = loaded.config, loaded.data_dir
    out_dir = require_writable(out_dir or loaded.path / "predictions", "predictions folder")
    written = []
    for task in config.tasks:
        for split in splits:
            if split_path(task, split, ddir) is None:
                log.warning("no %s %s file in %s: its predictions are skipped", task, split, ddir)
                continue
            enc = loaded.encode(load_split(task, split, ddir, strict=config.strict_data))
            idx, preds = loaded.predict(task, enc)
            lines = [TASKS[task].prediction_header]
            lines += [
                f"{enc.ids[i]} , {format_prediction(task, p)} " for i, p in zip(idx, preds, strict=True)
            ]
            target = out_dir / f"{task}-{split}-output.csv"
            atomic_write_text(target, "\n".join(lines) + "\n")
            written.append(target)
    return written


__all__ = ["LoadedRun", "find_run", "load_run", "predict_run"]
