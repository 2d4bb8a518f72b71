"""Scoring a model on encoded dev/test splits."""

from __future__ import annotations

import numpy as np
import torch

from mtsearch.data import EncodedSplit, collate
from mtsearch.models.multitask import MultitaskModel, predictions, task_loss
from mtsearch.tasks import task_score
from mtsearch.train.runtime import autocast

#: Tokens per evaluation batch per GiB of the GPU's memory (a CUDA device only): inference
#: keeps no activations for a backward pass, so batches far larger than training's fit.
EVAL_TOKENS_PER_GIB = 1024
#: The most tokens one evaluation batch holds on a GPU, however large its memory.
EVAL_TOKENS_MAX = 131072


def eval_rows(device: torch.device, batch_size: int, width: int) -> int:
    """Rows of an evaluation batch whose longest sequence is ``width`` tokens.

    ``batch_size`` (the config's eval_batch_size) on the CPU, where larger batches gain
    nothing; on a GPU as many rows as a token budget sized to its memory allows, never
    fewer than ``batch_size``: one kernel launch then covers many short examples.
    """
    if device.type != "cuda":
        return batch_size
    gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    tokens = min(EVAL_TOKENS_MAX, int(gib * EVAL_TOKENS_PER_GIB))
    return max(batch_size, tokens // max(1, width))


def _last_width(lengths: np.ndarray, order: np.ndarray, start: int, rows: int) -> int:
    return int(lengths[order[min(len(order), start + rows) - 1]])


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
    """Predictions (labels or scores) for ``indices`` in their given order, plus mean loss.

    Batches are length-sorted (little padding), as large as the device allows
    (:func:`eval_rows`), and nothing is read back per batch: predictions and the loss sum
    stay on the device and are copied once for the task (the host queues every batch
    while the GPU works). The loss sum is kept in float64, each batch's mean loss times
    its rows, so on the CPU the figures are exactly those of a per-batch float sum.
    """
    was_training = model.training
    model.eval()
    if indices is None:
        indices = np.arange(len(encoded))
    # Length-sorted batches waste little padding; results are put back in order.
    lengths = encoded.lengths()[indices]
    order = np.argsort(lengths, kind="stable")
    preds: list[torch.Tensor] = []
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_loss = 0
    start = 0
    while start < len(order):
        # sorted ascending: a batch's last row is its longest; sized on the width it would
        # have at batch_size rows, then shrunk to the width it has at that size
        rows = eval_rows(device, batch_size, _last_width(lengths, order, start, batch_size))
        rows = min(rows, eval_rows(device, batch_size, _last_width(lengths, order, start, rows)))
        pos = order[start : start + rows]
        start += len(pos)
        batch = collate(encoded, indices[pos], pad_id=pad_id)
        inputs = [{k: v.to(device, non_blocking=True) for k, v in seg.items()} for seg in batch["inputs"]]
        with autocast(device, precision):
            output = model(task, inputs)
        preds.append(predictions(task, output).float())
        if batch["labels"] is not None:
            loss = task_loss(task, output, batch["labels"].to(device, non_blocking=True), model.loss_options)
            loss_sum += loss.double() * len(pos)
            n_loss += len(pos)
    model.train(was_training)
    out = np.empty(len(indices), dtype=np.float64)
    if preds:
        out[order] = torch.cat(preds).cpu().numpy()  # the task's one copy back
    return indices, out, (float(loss_sum) / n_loss if n_loss else float("nan"))


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
