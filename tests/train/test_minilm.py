"""The real encoder: a few MiniLM steps on real data (the slowest test, kept small)."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mtsearch.models.encoder import load_encoder, resolve_model
from mtsearch.records import read_metrics
from mtsearch.train import train
from tests.helpers import tiny_config


@pytest.mark.e2e  # the real 22.7M-parameter encoder: ~45 s on 2 cores
def test_minilm_trains_on_real_data(data_dir, runs):
    cfg = tiny_config(
        data_dir, model="minilm", name="minilm", train_limit=64, batch_size=8, max_steps=4, eval_every=4,
        eval_limit=48, num_threads=2, lr=1e-4,
    )  # fmt: skip
    result = train(cfg)
    assert result.status == "finished" and result.steps == 4 and result.examples == 4 * 3 * 8
    row = read_metrics(result.run_dir / "metrics.jsonl")[-1]
    assert all(np.isfinite(v) for v in row["scores"].values())
    # Training moved the pretrained weights, and the checkpoint holds the moved ones.
    pretrained = load_encoder(resolve_model("minilm")).state_dict()
    saved = load_file(str(result.run_dir / "best.safetensors"))
    key = "encoder.encoder.layer.0.attention.self.query.weight"
    assert saved[key].shape == (384, 384)
    assert not torch.equal(saved[key], pretrained["encoder.layer.0.attention.self.query.weight"])
