"""Poolings: shapes, masking (padding never leaks in), attention weights, hand-worked values."""

import math

import pytest
import torch
from torch import nn

from mtsearch.errors import ConfigError
from mtsearch.pooling import POOLING

H = 8
ARGS = {
    "cls": {},
    "mean": {},
    "attention": {},
    "attention_proj": {"projection": True},
    "cnn_bilstm": {"kernel_sizes": [2, 3, 4], "filters": 5, "lstm_hidden": 6},
}


def make(key: str, seed: int = 0):
    name = key.removesuffix("_proj")
    torch.manual_seed(seed)
    pool = POOLING.create(name, POOLING.parse_args(name, ARGS[key], "pooling_args"), hidden_size=H)
    if name == "attention":
        # A trained query, not the zero init (which would make attention a plain mean).
        with torch.no_grad():
            pool.query.normal_(0, 1.0, generator=torch.Generator().manual_seed(seed + 1))
    return pool.eval()


def batch(lengths, width, seed=0):
    """Right-padded hidden states whose padded positions hold large garbage, not zeros."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(len(lengths), width, H, generator=g)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        hidden[i, n:] = 50.0 * torch.randn(width - n, H, generator=g)
    return hidden, mask


def test_shapes_and_out_dim():
    hidden, mask = batch([5, 2, 7], 7)
    for key in ARGS:
        pool = make(key)
        assert pool(hidden, mask).shape == (3, pool.out_dim), key
    assert make("cnn_bilstm").out_dim == H + 3 * 5 + 2 * 6
    assert make("mean").out_dim == make("attention").out_dim == H


@pytest.mark.parametrize("key", list(ARGS))
def test_padding_never_changes_the_output(key):
    pool = make(key)
    hidden, mask = batch([5, 1, 3], 5)
    with torch.no_grad():
        base = pool(hidden, mask)
        # Other garbage in the padded positions.
        other = hidden.clone()
        other[mask == 0] = -30.0
        # Twelve more padding positions (a wider batch), with garbage too.
        extra = torch.cat([hidden, 40.0 * torch.ones(3, 12, H)], dim=1)
        extra_mask = torch.cat([mask, torch.zeros(3, 12, dtype=torch.long)], dim=1)
        # The same row alone, without any padding.
        alone = pool(hidden[1:2, :1], mask[1:2, :1])
    # Tolerance: the same real values go through kernels of other widths (float32 sums).
    assert torch.allclose(pool(other, mask), base, atol=1e-5)
    assert torch.allclose(pool(extra, extra_mask), base, atol=1e-5)
    assert torch.allclose(alone, base[1:2], atol=1e-5)


def test_mean_is_hand_checked():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    pool = POOLING.create("mean", POOLING.get("mean").Args(), hidden_size=2)
    assert pool(hidden, mask).tolist() == [[2.0, 3.0], [7.0, 8.0]]


@pytest.mark.parametrize("key", ["attention", "attention_proj"])
def test_attention_weights_sum_to_one_over_real_tokens(key):
    pool = make(key)
    hidden, mask = batch([4, 1, 6], 6)
    w = pool.weights(hidden, mask)
    assert torch.allclose(w.sum(-1), torch.ones(3), atol=1e-6)
    assert torch.all(w[mask == 0] == 0) and torch.all(w[mask == 1] > 0)
    # The output is that weighted sum of the states.
    assert torch.allclose(pool(hidden, mask), torch.einsum("bl,blh->bh", w, hidden), atol=1e-5)


def test_attention_is_hand_checked():
    pool = POOLING.create("attention", POOLING.get("attention").Args(), hidden_size=2)
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # Zero query (the init): uniform over the two real tokens = the mean.
    assert torch.allclose(pool(hidden, mask), torch.tensor([[0.5, 0.5]]))
    # q = [ln 3 * sqrt(2), 0]: scores (q . h / sqrt 2) are ln 3 and 0 -> weights 3/4, 1/4.
    with torch.no_grad():
        pool.query.copy_(torch.tensor([math.log(3) * math.sqrt(2), 0.0]))
    assert torch.allclose(pool.weights(hidden, mask), torch.tensor([[0.75, 0.25, 0.0]]), atol=1e-6)
    assert torch.allclose(pool(hidden, mask), torch.tensor([[0.75, 0.25]]), atol=1e-6)


def test_attention_query_is_per_task_and_learned():
    a, b = make("attention"), make("attention")
    assert a.query is not b.query and a.query.requires_grad
    hidden, mask = batch([3, 2], 3)
    a.train()
    a(hidden, mask).sum().backward()
    assert a.query.grad is not None and a.query.grad.abs().sum() > 0


def test_cnn_part_is_a_masked_max_over_ngrams():
    # kernel 1, identity filters, no bias: the CNN part is max over real tokens of relu(h).
    pool = POOLING.create(
        "cnn_bilstm",
        POOLING.parse_args("cnn_bilstm", {"kernel_sizes": [1], "filters": 2, "lstm_hidden": 1}, "x"),
        hidden_size=2,
    )
    with torch.no_grad():
        pool.convs[0].weight.copy_(torch.eye(2).unsqueeze(-1))
        pool.convs[0].bias.zero_()
    hidden = torch.tensor([[[1.0, -2.0], [3.0, 0.5], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0]])
    out = pool(hidden, mask)
    assert out[0, :2].tolist() == [2.0, -0.75]  # the mean part
    assert out[0, 2:4].tolist() == [3.0, 0.5]  # the padded [9, 9] is not the max


def test_cnn_handles_inputs_shorter_than_the_kernel():
    pool = make("cnn_bilstm")
    hidden, mask = batch([1, 2], 2)
    assert torch.isfinite(pool(hidden, mask)).all()


def test_bilstm_part_matches_the_lstm_run_on_the_unpadded_sequence():
    pool = make("cnn_bilstm")
    hidden, mask = batch([4, 2], 6)
    out = pool(hidden, mask)
    lstm_part = out[:, H + 3 * 5 :]
    for i, n in enumerate([4, 2]):
        _, (h_n, _) = pool.lstm(hidden[i : i + 1, :n])
        assert torch.allclose(lstm_part[i], torch.cat([h_n[0, 0], h_n[1, 0]]), atol=1e-6)


def test_left_padding_is_refused_where_order_matters():
    pool = make("cnn_bilstm")
    hidden = torch.randn(1, 3, H)
    with pytest.raises(ValueError, match="right-padded"):
        pool(hidden, torch.tensor([[0, 1, 1]]))


@pytest.mark.parametrize(
    "args, match",
    [
        ({"kernel_sizes": []}, "at least one kernel"),
        ({"kernel_sizes": [2, 0]}, "between 1 and 16"),
        ({"kernel_sizes": [3, 3]}, "listed twice"),
        ({"filters": 0}, "pooling_args.filters"),
        ({"hidden": 3}, "does not apply to pooling 'cnn_bilstm'"),
    ],
)
def test_cnn_bilstm_args_are_validated(args, match):
    with pytest.raises(ConfigError, match=match):
        POOLING.parse_args("cnn_bilstm", args, "pooling_args")


def test_config_takes_pooling_args():
    from mtsearch.config import make_config

    cfg = make_config({"pooling": "cnn_bilstm", "pooling_args": {"kernel_sizes": [2, 5]}})
    assert cfg.args("pooling").kernel_sizes == (2, 5)
    with pytest.raises(ConfigError, match="pooling_args.projection does not apply to pooling 'mean'"):
        make_config({"pooling": "mean", "pooling_args": {"projection": True}})
    assert isinstance(make("attention_proj").proj, nn.Linear)
