"""Heads: the mlp head's shapes and knobs, the shared pair layer, the cosine head."""

import math

import pytest
import torch
from torch import nn

from mtsearch.config import make_config
from mtsearch.errors import ConfigError
from mtsearch.heads import HEADS, CosineHead, SharedPairLayer, pair_features
from mtsearch.models.encoder import load_encoder, resolve_model
from mtsearch.models.multitask import MultitaskModel


def mlp(**args):
    return HEADS.create("mlp", HEADS.parse_args("mlp", args, "head_args"), in_dim=12, out_dim=5, dropout=0.1)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
def test_mlp_shapes(layers, activation):
    head = mlp(hidden_size=7, layers=layers, activation=activation)
    assert head(torch.randn(4, 12)).shape == (4, 5)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    # in -> 7, (layers - 1) x 7 -> 7, 7 -> out
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 7)] + [(7, 7)] * (layers - 1) + [
        (7, 5)
    ]
    acts = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}
    assert sum(isinstance(m, acts[activation]) for m in head.modules()) == layers


def test_mlp_dropout_only_in_training():
    head = mlp(hidden_size=16)
    x = torch.randn(8, 12)
    head.eval()
    assert torch.equal(head(x), head(x))
    head.train()
    torch.manual_seed(0)
    assert not torch.equal(head(x), head(x))


@pytest.mark.parametrize(
    "args, match",
    [
        ({"layers": 0}, "head_args.layers for head 'mlp'"),
        ({"layers": 5}, "head_args.layers for head 'mlp'"),
        ({"hidden_size": 0}, "head_args.hidden_size for head 'mlp'"),
        ({"activation": "swish"}, "head_args.activation for head 'mlp'"),
        (
            {"width": 3},
            r"head_args.width does not apply to head 'mlp' \(it takes hidden_size, activation, layers\)",
        ),
    ],
)
def test_mlp_args_are_validated(args, match):
    with pytest.raises(ConfigError, match=match):
        make_config({"head": "mlp", "head_args": args})


def test_pair_features_and_cosine_head_by_hand():
    u, v = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    assert pair_features(u, v).tolist() == [[1.0, 0.0, 1.0, 1.0, 0.0, 1.0]]
    head = CosineHead(dropout=0.5).eval()
    assert head(u, v).item() == pytest.approx(5 / math.sqrt(2), abs=1e-6)
    assert head(u, -u).item() == pytest.approx(-5.0, abs=1e-6)  # the range is [-5, 5]
    assert list(head.parameters()) == []


def test_shared_pair_layer_keeps_the_width():
    layer = SharedPairLayer(6, dropout=0.0)
    out = layer(torch.randn(3, 6))
    assert out.shape == (3, 6) and (out >= 0).all()  # ends in a ReLU


def tiny_model(**values):
    cfg = make_config({"model": "tiny", **values})
    return MultitaskModel(load_encoder(resolve_model("tiny")), cfg)


@pytest.mark.parametrize("pair_mode", ["concat", "separate", "ensemble"])
def test_shared_pair_layer_is_one_module_for_para_and_sts(pair_mode):
    model = tiny_model(pair_mode=pair_mode, shared_pair_layer=True)
    paths = {"concat": ["concat"], "separate": ["separate"], "ensemble": ["concat", "separate"]}[pair_mode]
    for path in paths:
        layer = model.pair_layer("para", path)
        assert isinstance(layer, SharedPairLayer) and layer is model.pair_layer("sts", path)
        assert layer.dim == (64 if path == "concat" else 3 * 64)  # tiny: hidden 64
    assert model.pair_layer("sst", "single") is None
    # Stored once: its weights appear once in the state dict and among the shared parameters.
    keys = [k for k in model.state_dict() if "shared_pair" in k]
    assert len(keys) == 2 * len(paths)
    shared = {id(p) for p in model.shared_parameters()}
    assert all(id(p) in shared for p in model.shared_pair.parameters())
    assert not any(id(p) in shared for t in model.tasks for p in model.task_parameters(t))


def test_no_shared_pair_layer_by_default_and_none_for_the_cosine_head():
    assert tiny_model().pair_layer("para", "concat") is None
    model = tiny_model(pair_mode="separate", shared_pair_layer=True, sts_head="cosine")
    # The cosine head reads u and v, not a pair representation: only para uses the layer.
    assert model.pair_layer("sts", "separate") is None
    assert isinstance(model.pair_layer("para", "separate"), SharedPairLayer)


def test_both_tasks_train_the_shared_pair_layer():
    model = tiny_model(pair_mode="concat", shared_pair_layer=True)
    ids = torch.tensor([[101, 7592, 102, 2088, 102]])
    inputs = [
        {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    ]
    weight = model.pair_layer("para", "concat").net[1].weight
    for task in ("para", "sts"):
        model.zero_grad()
        model(task, inputs).sum().backward()
        assert weight.grad is not None and weight.grad.abs().sum() > 0, task


def test_task_dropout_overrides_head_dropout_per_task():
    model = tiny_model(head="mlp", head_dropout=0.1, task_dropout={"sts": 0.3}, pair_mode="ensemble")
    assert model.heads["sst"].dropout.p == model.heads["para"].dropout.p == 0.1
    assert model.heads["sts"].dropout.p == model.separate_heads["sts"].dropout.p == 0.3
    assert all(m.p == 0.3 for m in model.heads["sts"].hidden if isinstance(m, nn.Dropout))
