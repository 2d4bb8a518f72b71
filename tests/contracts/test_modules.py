"""Contracts of every registered pooling and head: shapes, padding, determinism, gradients."""

import pytest
import torch

from mtsearch.heads import HEADS
from mtsearch.pooling import POOLING

H = 8


def _pooling(name: str):
    torch.manual_seed(0)
    return POOLING.create(name, POOLING.get(name).Args(), hidden_size=H)


def _batch(lengths: list[int], width: int):
    """Right-padded hidden states whose padded positions hold large garbage, not zeros."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(len(lengths), width, H, generator=g)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        hidden[i, n:] = 50.0 * torch.randn(width - n, H, generator=g)
    return hidden, mask


@pytest.mark.parametrize("name", POOLING.names())
def test_pooling_gives_one_vector_per_input_whatever_the_padding(name):
    pool = _pooling(name).eval()
    hidden, mask = _batch([5, 1, 3], 5)
    with torch.no_grad():
        out = pool(hidden, mask)
        assert out.shape == (3, pool.out_dim) and torch.isfinite(out).all()
        assert torch.equal(pool(hidden, mask), out)  # no randomness in eval mode
        wider = torch.cat([hidden, -40.0 * torch.ones(3, 4, H)], dim=1)
        wider_mask = torch.cat([mask, torch.zeros(3, 4, dtype=torch.long)], dim=1)
        assert torch.allclose(pool(wider, wider_mask), out, atol=1e-5)


@pytest.mark.parametrize("name", POOLING.names())
def test_pooling_sends_gradient_to_real_tokens_only(name):
    pool = _pooling(name).train()
    hidden, mask = _batch([4, 2], 6)
    hidden.requires_grad_(True)
    pool(hidden, mask).sum().backward()
    grad = hidden.grad.abs().sum(-1)
    assert float(grad[mask == 0].max()) == 0.0
    assert float(grad[mask == 1].max()) > 0.0


@pytest.mark.parametrize("name", HEADS.names())
def test_head_maps_features_to_outputs_with_dropout_only_in_training(name):
    torch.manual_seed(0)
    head = HEADS.create(name, HEADS.get(name).Args(), in_dim=16, out_dim=5, dropout=0.5)
    features = torch.randn(4, 16, requires_grad=True)
    out = head.eval()(features)
    assert out.shape == (4, 5) and torch.equal(head(features), out)
    head.train()
    torch.manual_seed(1)
    noisy = head(features)
    assert not torch.equal(noisy, out)  # dropout of 0.5 on 16 features changes something
    noisy.sum().backward()
    assert features.grad is not None and float(features.grad.abs().sum()) > 0
