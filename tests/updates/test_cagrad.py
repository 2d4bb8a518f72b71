"""CAGrad: hand-worked directions, the dual against the primal, and the rule's scale."""

import math

import numpy as np
import pytest
import torch

from mtsearch.errors import ConfigError
from mtsearch.updates import UPDATES
from mtsearch.updates.cagrad import cagrad_coefficients, cagrad_combine, cagrad_weights


def test_c_zero_is_the_average_gradient():
    g = torch.tensor([[1.0, 0.0, 2.0], [-3.0, 1.0, 0.0], [0.5, 0.5, -1.0]])
    assert torch.allclose(cagrad_combine(g, 0.0), g.mean(0))


def test_two_orthogonal_unit_gradients():
    # g0 = (1/2, 1/2), |g0| = 1/sqrt(2). By symmetry w* = (1/2, 1/2): g_w = g0, |g_w| = |g0|,
    # so lambda = c |g0| / |g_w| = c = 0.5 and d = (1 + c) g0 = (0.75, 0.75); / (1 + c^2) = 1.25.
    g = torch.eye(2)
    assert np.allclose(cagrad_weights((g @ g.T).numpy(), 0.5), [0.5, 0.5], atol=1e-6)
    assert torch.allclose(cagrad_combine(g, 0.5), torch.tensor([0.6, 0.6]), atol=1e-6)


def test_the_dual_optimum_on_a_corner():
    # g1 = (2, 0), g2 = (0, 1), c = 0.5, w = (a, 1 - a):
    #   F(a) = g_w . g0 + c |g0| |g_w| = 0.5 + 1.5 a + 0.5 sqrt(1.25) sqrt(5a^2 - 2a + 1)
    #   F'(0) = 1.5 - 0.5 sqrt(1.25) = 0.94 > 0 and F is convex, so w* = (0, 1): g_w = g2.
    #   lambda = 0.5 sqrt(1.25) / 1; d = (1, 0.5) + lambda (0, 1) = (1, 1.0590170); / 1.25.
    g = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert np.allclose(cagrad_weights((g @ g.T).numpy(), 0.5), [0.0, 1.0], atol=1e-6)
    expected = torch.tensor([1.0, 0.5 + 0.5 * math.sqrt(1.25)]) / 1.25
    assert torch.allclose(cagrad_combine(g, 0.5), expected, atol=1e-6)
    assert torch.allclose(expected, torch.tensor([0.8, 0.8472136]), atol=1e-6)


@pytest.mark.parametrize("c", [0.2, 0.5, 0.9])
def test_the_dual_solution_solves_the_primal(c):
    """max_d min_i g_i . d over |d - g0| <= c |g0|: no point of the ball does better than CAGrad."""
    rng = np.random.default_rng(int(c * 10))
    g = rng.normal(size=(3, 6))
    g[1] = -0.7 * g[0] + 0.3 * g[1]  # make two tasks conflict
    g0 = g.mean(0)
    d = cagrad_coefficients(g @ g.T, c) * (1 + c * c) @ g  # undo the 1/(1+c^2) rescale
    radius = c * np.linalg.norm(g0)
    assert np.linalg.norm(d - g0) == pytest.approx(radius, rel=1e-6)  # on the ball's surface
    best = (g @ d).min()
    u = rng.normal(size=(20000, 6))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    samples = g0 + radius * u * rng.uniform(0, 1, size=(20000, 1)) ** (1 / 6)
    assert (samples @ g.T).min(axis=1).max() <= best + 1e-6
    assert best > (g @ g0).min()  # and it helps the worst task more than the plain average


def test_degenerate_gradients():
    zeros = torch.zeros(3, 4)
    assert torch.equal(cagrad_combine(zeros, 0.5), torch.zeros(4))
    opposite = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])  # g0 = 0: the ball is a point
    assert torch.allclose(cagrad_combine(opposite, 0.5), torch.zeros(2), atol=1e-7)


def test_rule_scales_to_the_summed_loss_and_needs_two_tasks():
    g = torch.tensor([[1.0, 0.0], [-0.5, 1.0], [0.2, 0.3]])
    rule = UPDATES.create("cagrad", UPDATES.get("cagrad").Args(c=0.3), tasks=["sst", "para", "sts"])
    assert torch.allclose(rule.combine(g, ["sst", "para", "sts"]), 3 * cagrad_combine(g, 0.3))
    from mtsearch.config import make_config

    with pytest.raises(ConfigError, match=r"update 'cagrad'.*tasks has only one"):
        make_config({"update": "cagrad", "tasks": ["sts"]})
    with pytest.raises(ConfigError, match=r"update_args\.c"):
        make_config({"update": "cagrad", "update_args": {"c": 1.0}})
