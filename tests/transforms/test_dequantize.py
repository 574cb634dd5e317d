"""Tests of flowlab.transforms.dequantize: uniform and variational dequantization, logit."""

from __future__ import annotations

import math

import pytest
import torch

from flowlab.distributions import UniformBox
from flowlab.flow import Flow
from flowlab.testing import brute_force_logabsdet, check_transform
from flowlab.transforms.base import Transform
from flowlab.transforms.dequantize import UniformDequantization, VariationalDequantization
from flowlab.transforms.pointwise import Logit

K = 17


def levels(*shape: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, K, shape, generator=gen).double()


class SameNoise(Transform):
    """Re-seeds the global RNG before each call: common random numbers, so that the batch
    independence check compares like with like."""

    def __init__(self, layer: Transform) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        torch.manual_seed(123)
        return self.layer(x)

    def inverse(self, z):
        return self.layer.inverse(z)


@pytest.mark.parametrize("shape", [(3, 1, 4, 4), (3, 3, 4, 4), (3, 5)])
def test_uniform_dequantization(shape):
    x = levels(*shape)
    layer = UniformDequantization(K)
    y, ld = layer(x)
    d = math.prod(shape[1:])
    # y lies in the cell [x/K, (x+1)/K) and log|det| is the scaling's -D log K
    assert ((y >= x / K) & (y < (x + 1) / K)).all()
    assert torch.allclose(ld, torch.full((shape[0],), -d * math.log(K), dtype=x.dtype))
    # the inverse quantizes back exactly; the Jacobian is the scaling's (the inverse is a
    # step function, so only the forward Jacobian is checked)
    # (validate=False: the batch-independence check perturbs x off the integer grid)
    check_transform(
        SameNoise(UniformDequantization(K, validate=False)), x, check_inverse_jacobian=False
    )
    assert torch.equal(layer.inverse(y)[0], x)


def test_uniform_dequantization_noise_is_uniform():
    torch.manual_seed(0)
    x = torch.zeros(20000, 1)
    u = UniformDequantization(K)(x)[0] * K
    assert abs(u.mean().item() - 0.5) < 0.01
    assert abs(u.var().item() - 1 / 12) < 0.005


def test_uniform_dequantization_rejects_scaled_data():
    layer = UniformDequantization(K)
    with pytest.raises(ValueError, match="discrete levels 0, 1, ..., 16"):
        layer(levels(2, 1, 4, 4) / 16)
    with pytest.raises(ValueError, match="discrete levels"):
        layer(torch.full((2, 3), float(K)))
    UniformDequantization(K, validate=False)(levels(2, 3) / 16)  # allowed when switched off
    with pytest.raises(ValueError, match="num_levels"):
        UniformDequantization(1)
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.zeros(2, 3, dtype=torch.long))


def test_sampling_gives_valid_levels():
    layer = UniformDequantization(K)
    y = torch.rand(4, 1, 3, 3) * 1.2 - 0.1  # slightly outside [0, 1)
    x, _ = layer.inverse(y)
    assert torch.equal(x, x.floor()) and x.min() >= 0 and x.max() <= K - 1


@pytest.mark.parametrize("alpha", [0.05, 1e-6, 0.0])
@pytest.mark.parametrize("shape", [(3, 1, 4, 4), (3, 3, 4, 4)])
def test_logit_contract(alpha, shape):
    torch.manual_seed(1)
    y = torch.rand(*shape, dtype=torch.float64).clamp(1e-3, 1 - 1e-3)
    check_transform(Logit(alpha), y)


def test_logit_formula():
    alpha = 0.05
    y = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    z, ld = Logit(alpha)(y)
    assert torch.allclose(
        z, torch.tensor([[math.log(0.05 / 0.95), 0.0, math.log(0.95 / 0.05)]], dtype=torch.float64)
    )
    p = torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)
    expected = (math.log(0.9) - torch.log(p) - torch.log(1 - p)).sum()
    assert torch.allclose(ld, expected.reshape(1))
    with pytest.raises(ValueError):
        Logit(0.5)


def _variational(seed: int = 0) -> VariationalDequantization:
    torch.manual_seed(seed)
    layer = VariationalDequantization(K, 1, 4, 4, couplings=2, hidden_channels=8).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return layer


def test_variational_round_trip_and_range():
    layer = _variational()
    x = levels(5, 1, 4, 4)
    y, _ = layer(x)
    assert ((y > x / K) & (y < (x + 1) / K)).all()
    assert torch.equal(layer.inverse(y)[0], x)


def test_variational_log_q_matches_jacobian():
    """log q(u|x) = log N(eps) - log|det du/deps|, checked against autograd."""
    layer = _variational(1)
    x = levels(2, 1, 4, 4, seed=1)
    eps = torch.randn(2, 1, 4, 4, dtype=torch.float64)

    ld = layer.noise_from(eps, x)[1]
    assert ld.abs().min() > 0.1  # not the identity
    # brute force per sample, with the matching image
    for b in range(2):

        def single(e, b=b):
            return layer.noise_from(e, x[b : b + 1])

        expected = brute_force_logabsdet(single, eps[b : b + 1])
        assert torch.allclose(ld[b : b + 1], expected, atol=1e-8)


def test_variational_elbo_is_below_the_true_log_likelihood():
    """With a uniform model on [0,1)^D the discrete log P(x) is exactly -D log K; the ELBO
    E_q[log p(x+u) - log q(u|x)] = -D log K + H(q) lies below it (H(q) <= 0 on the unit cube)."""
    layer = _variational(2)
    flow = Flow(UniformBox((1, 4, 4)).double(), [layer])
    x = levels(1, 1, 4, 4, seed=2).expand(2000, -1, -1, -1)
    with torch.no_grad():
        elbo = flow.log_prob(x).mean()
    log_p = -16 * math.log(K)
    assert elbo < log_p - 0.05  # a perturbed q is clearly not uniform: a visible gap
    # and the gap is trainable: the ELBO's gradient reaches the noise flow
    flow.log_prob(x[:8]).mean().backward()
    assert layer.couplings[0].conditioner.conv_out.weight.grad.abs().sum() > 0


def test_variational_shape_errors():
    layer = VariationalDequantization(K, 1, 4, 4, couplings=2, hidden_channels=8)
    with pytest.raises(ValueError, match="4x4"):
        layer(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="channel"):
        layer(torch.zeros(2, 3, 4, 4))
