"""The gradient-conflict diagnostic, by hand and in the trainer for every update rule."""

import math

import pytest
import torch

from mtsearch.records import read_metrics
from mtsearch.train import train
from mtsearch.updates import gradient_cosines
from tests.helpers import tiny_config


class _Toy(torch.nn.Module):
    """An 'encoder' w in R^2 whose task losses are w . v_t: the gradient of task t is v_t."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(2, 1, bias=False)
        self.drop = torch.nn.Dropout(0.5)
        self.vectors = {"a": [1.0, 0.0], "b": [1.0, 1.0], "c": [-2.0, 0.0]}
        self.modes = []

    def loss(self, task):
        self.modes.append(self.training)
        return self.encoder(self.drop(torch.tensor(self.vectors[task]))).sum()


def test_cosines_by_hand_and_the_model_is_left_as_it_was():
    model = _Toy()
    model.train()
    out = gradient_cosines(model, ["a", "b", "c"], model.loss)
    # cos(a, b) = 1/sqrt(2); a and c point opposite ways; cos(b, c) = -2 / (sqrt(2) * 2).
    assert out == pytest.approx({"a|b": 1 / math.sqrt(2), "a|c": -1.0, "b|c": -1 / math.sqrt(2)})
    assert model.modes == [False, False, False]  # eval mode: no dropout noise in the probe
    assert model.training  # restored
    assert model.encoder.weight.grad is None  # no .grad written, nothing to clean up
    assert gradient_cosines(model, ["a"], model.loss) == {}
    model.encoder.weight.requires_grad_(False)  # a frozen encoder has nothing to compare
    assert (
        gradient_cosines(model, ["a", "b"], lambda t: model.loss(t) * torch.ones((), requires_grad=True))
        == {}
    )


def _evals(result):
    return [r for r in read_metrics(result.run_dir / "metrics.jsonl") if r["kind"] == "eval"]


def test_the_diagnostic_does_not_change_training(data_dir, runs):
    on = train(tiny_config(data_dir, name="on", update="pcgrad", max_steps=4, eval_every=2))
    off = train(
        tiny_config(data_dir, name="off", update="pcgrad", max_steps=4, eval_every=2, log_grad_conflict=False)
    )
    a, b = _evals(on), _evals(off)
    assert "grad_cosine" in a[0] and "grad_cosine" not in b[0]
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["scores"] for r in a] == [r["scores"] for r in b]
    assert on.run_dir.name != off.run_dir.name
    from mtsearch.config import make_config

    # A diagnostic is not part of what is learned: both runs share one config hash.
    assert (
        make_config({"log_grad_conflict": False}).config_hash()
        == make_config({"log_grad_conflict": True}).config_hash()
    )
