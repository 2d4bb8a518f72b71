"""compile: the training forward through torch.compile agrees with eager, and falls back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtsearch.train.runtime as runtime
from mtsearch.records import read_metrics
from mtsearch.train import train
from mtsearch.train.runtime import pad_static, static_width, use_compile
from mtsearch.updates import UPDATES
from tests.helpers import tiny_config

#: Compiled and eager per-step training losses agree within this (relative and absolute)
#: over 20 steps: the graph is the same computation, padded to static widths with masked
#: positions, so only float rounding in reductions over other shapes separates them.
TOLERANCE = 1e-4


def _step_losses(data_dir, name: str, **overrides) -> np.ndarray:
    # an evaluation after every step on 8 dev rows: each row's train_loss is that step's loss;
    # max_length 16 is one static width: one graph per task
    values = dict(name=name, max_steps=20, eval_every=1, eval_limit=8, max_length=16)
    cfg = tiny_config(data_dir, **{**values, **overrides})
    rows = [r for r in read_metrics(train(cfg).run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    return np.array([[r["train_loss"][t] for t in sorted(r["train_loss"])] for r in rows])


@pytest.fixture
def no_dropout(monkeypatch):
    """No dropout: a padded batch draws other dropout masks than the unpadded one, so with
    dropout compiled and eager runs would differ by design, not by rounding."""
    import mtsearch.train.trainer as trainer

    build = trainer.build_model

    def without_dropout(config, rt):
        model = build(config, rt)
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        return model

    monkeypatch.setattr(trainer, "build_model", without_dropout)


@pytest.fixture
def fast_backend(monkeypatch, no_dropout):
    # aot_eager: the same dynamo graph capture and autograd split as inductor, no kernel
    # generation: seconds, not minutes; the graphs are shared between the tests
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", "aot_eager")


@pytest.mark.e2e  # compiles the model twice per rule: ~40 s each on 2 cores
@pytest.mark.parametrize("update", UPDATES.names())
def test_compiled_and_eager_losses_agree_over_20_steps(data_dir, runs, fast_backend, update):
    eager = _step_losses(data_dir, f"eager-{update}", update=update, compile="off")
    compiled = _step_losses(data_dir, f"compiled-{update}", update=update, compile="on")
    assert eager.shape == compiled.shape == (20, 3)
    np.testing.assert_allclose(compiled, eager, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.e2e  # torch.compile fails, then eager: ~60 s
def test_a_compile_failure_falls_back_to_eager_with_one_warning(data_dir, runs, monkeypatch, no_dropout):
    def broken(graph, example_inputs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(runtime, "COMPILE_BACKEND", broken)
    with pytest.warns(RuntimeWarning, match="torch.compile failed, training goes on eagerly") as caught:
        fell_back = _step_losses(data_dir, "broken", compile="on", max_steps=4)
    assert len([w for w in caught if "torch.compile" in str(w.message)]) == 1
    eager = _step_losses(data_dir, "plain", compile="off", max_steps=4)
    np.testing.assert_allclose(fell_back, eager, rtol=TOLERANCE, atol=TOLERANCE)  # it trained on


def test_compile_auto_is_on_for_cuda_only(data_dir):
    auto = tiny_config(data_dir)
    assert auto.compile == "auto"
    assert use_compile(auto, torch.device("cuda")) and not use_compile(auto, torch.device("cpu"))
    assert use_compile(tiny_config(data_dir, compile="on"), torch.device("cpu"))
    assert not use_compile(tiny_config(data_dir, compile="off"), torch.device("cuda"))


def test_static_widths_are_few_and_masked():
    assert [static_width(w, 64) for w in (1, 16, 17, 33, 64)] == [16, 16, 32, 64, 64]
    assert static_width(200, 512) == 256 and static_width(300, 300) == 300
    seg = {
        "input_ids": torch.tensor([[5, 6, 7]]),
        "attention_mask": torch.tensor([[1, 1, 0]]),
        "token_type_ids": torch.zeros(1, 3, dtype=torch.long),
    }
    out = pad_static(seg, 64, pad_id=9)
    assert out["input_ids"].tolist() == [[5, 6, 7] + [9] * 13]
    assert out["attention_mask"].tolist() == [[1, 1, 0] + [0] * 13]
    assert out["token_type_ids"].shape == (1, 16)
