"""Scoring a model on encoded dev/test splits."""

from __future__ import annotations

import numpy as np
import torch

from mtsearch.data import EncodedSplit, collate
from mtsearch.models.multitask import MultitaskModel, predictions, task_loss
from mtsearch.tasks import task_score
from mtsearch.train.runtime import autocast


@torch.inference_mode()
def predict(
    model: MultitaskModel,
    task: str,
    encoded: EncodedSplit,
    indices: np.ndarray | None,
    device: torch.device,
    precision: str,
    batch_size: int,
    pad_id: int = 0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Predictions (labels or scores) for ``indices`` in their given order, plus mean loss."""
    was_training = model.training
    model.eval()
    if indices is None:
        indices = np.arange(len(encoded))
    # Length-sorted batches waste little padding; results are put back in order.
    order = np.argsort(encoded.lengths()[indices], kind="stable")
    out = np.empty(len(indices), dtype=np.float64)
    loss_sum, n_loss = 0.0, 0
    for start in range(0, len(order), batch_size):
        pos = order[start : start + batch_size]
        batch = collate(encoded, indices[pos], pad_id=pad_id)
        inputs = [{k: v.to(device, non_blocking=True) for k, v in seg.items()} for seg in batch["inputs"]]
        with autocast(device, precision):
            output = model(task, inputs)
        out[pos] = predictions(task, output).float().cpu().numpy()
        if batch["labels"] is not None:
            loss = task_loss(task, output, batch["labels"].to(device), model.loss_options)
            loss_sum += float(loss) * len(pos)
            n_loss += len(pos)
    model.train(was_training)
    return indices, out, (loss_sum / n_loss if n_loss else float("nan"))


#: one task's evaluation: (dev row indices, predictions, golds, mean loss)
Examples = tuple[np.ndarray, np.ndarray, np.ndarray, float]


def evaluate_examples(
    model: MultitaskModel,
    dev: dict[str, EncodedSplit],
    subsets: dict[str, np.ndarray | None],
    device: torch.device,
    precision: str,
    batch_size: int,
    pad_id: int = 0,
) -> dict[str, Examples]:
    """Per task, the evaluated rows with their predictions, golds and the mean dev loss."""
    out = {}
    for task, enc in dev.items():
        idx, preds, loss = predict(model, task, enc, subsets.get(task), device, precision, batch_size, pad_id)
        out[task] = (idx, preds, np.asarray(enc.labels[idx], dtype=np.float64), loss)
    return out


def scores_on(examples: dict[str, Examples], rows: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Per-task score of ``examples``, restricted to the dev rows ``rows[task]`` when given."""
    scores = {}
    for task, (idx, preds, golds, _) in examples.items():
        keep = slice(None) if rows is None else np.isin(idx, rows[task])
        scores[task] = task_score(task, preds[keep], golds[keep])
    return scores


def scores_and_losses(examples: dict[str, Examples]) -> tuple[dict[str, float], dict[str, float]]:
    """Per-task score and mean dev loss of an evaluation."""
    return scores_on(examples), {t: e[3] for t, e in examples.items()}
