"""Evaluation: one copy back per task, batches sized to the device, results as before."""

from __future__ import annotations

import types

import numpy as np
import torch

from mtsearch.data import collate
from mtsearch.models.multitask import predictions, task_loss
from mtsearch.train.evaluate import EVAL_TOKENS_MAX, eval_rows, evaluate_examples
from mtsearch.train.trainer import build_model, load_data, setup_run
from tests.helpers import tiny_config


def _per_batch_reference(model, task, encoded, indices, batch_size, pad_id):
    """Evaluation as it was before predictions stayed on the device: a float read per batch."""
    model.eval()
    order = np.argsort(encoded.lengths()[indices], kind="stable")
    out = np.empty(len(indices), dtype=np.float64)
    loss_sum, n = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            pos = order[start : start + batch_size]
            batch = collate(encoded, indices[pos], pad_id=pad_id)
            output = model(task, batch["inputs"])
            out[pos] = predictions(task, output).float().cpu().numpy()
            loss_sum += float(task_loss(task, output, batch["labels"], model.loss_options)) * len(pos)
            n += len(pos)
    return out, loss_sum / n


def test_evaluation_on_the_cpu_is_exactly_the_per_batch_one(data_dir):
    cfg = tiny_config(data_dir)
    runtime = setup_run(cfg)
    data = load_data(cfg, runtime)
    model = build_model(cfg, runtime)
    rows = {t: np.arange(0, 120, 2) for t in cfg.tasks}  # 60 rows a task, 9 batches of 7 (the last short)
    got = evaluate_examples(model, data.enc_dev, rows, runtime.device, "fp32", 7, data.pad_id)
    for task in cfg.tasks:
        preds, loss = _per_batch_reference(model, task, data.enc_dev[task], rows[task], 7, data.pad_id)
        idx, got_preds, _, got_loss = got[task]
        assert np.array_equal(idx, rows[task])
        assert np.array_equal(got_preds, preds) and got_loss == loss, task  # bit for bit


def test_gpu_batches_follow_a_token_budget_sized_to_memory(monkeypatch):
    assert eval_rows(torch.device("cpu"), 64, 40) == 64  # the CPU keeps eval_batch_size
    props = types.SimpleNamespace(total_memory=16 * 2**30)  # a 16 GiB GPU: 16,384 tokens a batch
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    cuda = torch.device("cuda")
    assert eval_rows(cuda, 64, 32) == 512 and eval_rows(cuda, 64, 512) == 64  # never below batch_size
    props.total_memory = 1024 * 2**30  # huge: capped
    assert eval_rows(cuda, 64, 32) == EVAL_TOKENS_MAX // 32
