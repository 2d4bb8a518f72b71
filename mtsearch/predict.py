"""Predictions of a finished run in the CS224N output format.

``mtsearch predict RUN`` loads the run's config and best checkpoint and writes, per
task and split, ``<run>/predictions/<task>-<split>-output.csv`` with the course's
header and one ``id , prediction`` line per example.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mtsearch.config import load_config
from mtsearch.errors import MtsearchError
from mtsearch.paths import runs_dir
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


def format_prediction(task: str, value: float) -> str:
    kind = TASKS[task].kind
    return f"{value:.4f}" if kind == "regression" else str(int(value))


def predict_run(
    run: str, data_dir: str | None = None, splits=("dev", "test"), out_dir: Path | None = None
) -> list[Path]:
    import torch
    from safetensors.torch import load_file

    from mtsearch.data import load_split, require_files, resolve_data_dir, split_path
    from mtsearch.models.encoder import load_encoder, load_tokenizer, resolve_model
    from mtsearch.models.multitask import MultitaskModel, encode_for_model
    from mtsearch.train.evaluate import predict
    from mtsearch.train.runtime import pick_device

    path = find_run(run)
    config = load_config(path / "config.yaml", {"data_dir": data_dir} if data_dir else {})
    source = resolve_model(config.model)
    ddir = resolve_data_dir(config.data_dir)
    # dev must be there (the run trained against it); a test file may be missing from a
    # mirror (the QQP test file is not in every copy): those are skipped with a warning.
    require_files(ddir, list(config.tasks), [s for s in splits if s != "test"])
    device, precision = pick_device(config)
    tokenizer = load_tokenizer(source)
    model = MultitaskModel(load_encoder(source, seed=config.seed), config)
    model.load_state_dict(load_file(str(path / "best.safetensors")))
    model.to(device).eval()
    out_dir = out_dir or path / "predictions"
    written = []
    with torch.inference_mode():
        for task in config.tasks:
            for split in splits:
                if split_path(task, split, ddir) is None:
                    log.warning("no %s %s file in %s: its predictions are skipped", task, split, ddir)
                    continue
                data = load_split(task, split, ddir, strict=config.strict_data)
                enc = encode_for_model(data, tokenizer, config)
                idx, preds, _ = predict(
                    model,
                    task,
                    enc,
                    None,
                    device,
                    precision,
                    config.eval_batch_size,
                    tokenizer.pad_token_id or 0,
                )
                lines = [TASKS[task].prediction_header]
                lines += [
                    f"{enc.ids[i]} , {format_prediction(task, p)} " for i, p in zip(idx, preds, strict=True)
                ]
                target = out_dir / f"{task}-{split}-output.csv"
                atomic_write_text(target, "\n".join(lines) + "\n")
                written.append(target)
    return written


__all__ = ["predict_run", "find_run"]
