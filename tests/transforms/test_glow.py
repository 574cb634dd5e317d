"""Tests of flowlab.transforms.glow: ActNorm, invertible 1x1 convolutions, GlowCoupling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flowlab.testing import check_transform
from flowlab.transforms.glow import ActNorm, GlowCoupling, InvertibleConv1x1, LUInvertibleConv1x1

SHAPES = [(3, 1, 4, 4), (3, 3, 4, 4)]


def perturb(module: nn.Module, std: float = 0.1, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def test_actnorm_data_dependent_init():
    torch.manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(16, 3, 4, 4, dtype=torch.float64)
    x[:, 1] *= 5.0
    layer = ActNorm(3).double()
    z, ld = layer(x)
    # per channel, over the batch AND the spatial axes
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=x.dtype), atol=1e-12)
    assert torch.allclose(z.std(dim=(0, 2, 3), correction=0), torch.ones(3, dtype=x.dtype))
    assert bool(layer.initialized)
    # log|det| = -H W sum log sigma
    sigma = x.std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(ld, -16 * torch.log(sigma).sum().expand(16))
    # a second batch does not re-initialise
    loc = layer.loc.detach().clone()
    layer(10 + x)
    assert torch.equal(layer.loc.detach(), loc)


def test_actnorm_state_dict_keeps_initialisation():
    a = ActNorm(2)
    a(torch.randn(8, 2, 3, 3) * 4 + 1)
    b = ActNorm(2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 2, 3, 3)
    assert torch.equal(a(x)[0], b(x)[0])  # b did not re-initialise on x


def test_actnorm_inverse_before_init_is_identity():
    z = torch.randn(2, 3, 2, 2)
    assert torch.equal(ActNorm(3).inverse(z)[0], z)


@pytest.mark.parametrize("shape", SHAPES + [(3, 5)])
def test_actnorm_contract(shape):
    torch.manual_seed(1)
    x = torch.randn(*shape, dtype=torch.float64)
    layer = ActNorm(shape[1]).double()
    layer(2 * x + 1)
    perturb(layer)
    check_transform(layer, x)


@pytest.mark.parametrize("shape", SHAPES + [(3, 5)])
def test_invertible_conv_contract(shape):
    torch.manual_seed(2)
    layer = perturb(InvertibleConv1x1(shape[1]).double(), std=0.3)
    x = torch.randn(*shape, dtype=torch.float64)
    check_transform(layer, x)
    hw = shape[2] * shape[3] if len(shape) == 4 else 1
    expected = hw * torch.linalg.slogdet(layer.weight)[1]
    assert torch.allclose(layer(x)[1], expected.expand(shape[0]))


def test_invertible_conv_starts_as_rotation():
    layer = InvertibleConv1x1(6).double()
    w = layer.weight.detach()
    assert torch.allclose(w @ w.T, torch.eye(6, dtype=w.dtype), atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_lu_conv_contract(shape):
    torch.manual_seed(3)
    layer = perturb(LUInvertibleConv1x1(shape[1]).double(), std=0.3)
    check_transform(layer, torch.randn(*shape, dtype=torch.float64))


def test_lu_agrees_with_plain_conv():
    torch.manual_seed(4)
    w = torch.randn(5, 5, dtype=torch.float64)  # a generic matrix, negative det allowed
    plain = InvertibleConv1x1(5, weight=w).double()
    lu = LUInvertibleConv1x1.from_weight(w)
    assert lu.lower.dtype == torch.float64
    assert torch.allclose(lu.weight, w, atol=1e-12)
    x = torch.randn(4, 5, 3, 3, dtype=torch.float64)
    z_plain, ld_plain = plain(x)
    z_lu, ld_lu = lu(x)
    assert torch.allclose(z_lu, z_plain, atol=1e-12)
    assert torch.allclose(ld_lu, ld_plain, atol=1e-10)
    x_plain, ild_plain = plain.inverse(z_plain)
    x_lu, ild_lu = lu.inverse(z_plain)
    assert torch.allclose(x_lu, x_plain, atol=1e-10)
    assert torch.allclose(ild_lu, ild_plain, atol=1e-10)
    # after a gradient step the LU layer is still consistent with its own weight
    (z_lu.square().sum() + ld_lu.sum()).backward()
    with torch.no_grad():
        for p in lu.parameters():
            p.sub_(1e-3 * p.grad)
    plain2 = InvertibleConv1x1(5, weight=lu.weight.detach()).double()
    assert torch.allclose(lu(x)[0], plain2(x)[0], atol=1e-10)
    assert torch.allclose(lu(x)[1], plain2(x)[1], atol=1e-10)


def test_lu_rejects_singular_weight():
    with pytest.raises(ValueError, match="singular"):
        LUInvertibleConv1x1.from_weight(torch.zeros(3, 3))


@pytest.mark.parametrize("scale", ["sigmoid", "tanh"])
@pytest.mark.parametrize("channels", [2, 3])
def test_glow_coupling_contract(scale, channels):
    torch.manual_seed(5)
    layer = GlowCoupling(channels, hidden_channels=8, scale=scale).double()
    x = torch.randn(3, channels, 4, 4, dtype=torch.float64)
    z, ld = layer(x)
    assert torch.equal(z, x) and torch.equal(ld, torch.zeros(3, dtype=x.dtype))  # identity
    perturb(layer, std=0.2)
    check_transform(layer, x)
    z, _ = layer(x)
    kept = (channels + 1) // 2
    assert torch.equal(z[:, :kept], x[:, :kept])
    assert not torch.allclose(z[:, kept:], x[:, kept:])


def test_glow_coupling_sigmoid_scale_is_bounded():
    layer = perturb(GlowCoupling(2, hidden_channels=8).double(), std=30.0)
    x = torch.randn(4, 2, 4, 4, dtype=torch.float64)
    _, ld = layer(x)
    # log scale <= -log sigmoid(2) per transformed value (16 of them)
    bound = -torch.nn.functional.logsigmoid(torch.tensor(2.0, dtype=x.dtype))
    assert (ld <= 16 * bound + 1e-9).all()


def test_channel_errors():
    with pytest.raises(ValueError, match="3 channels"):
        ActNorm(3)(torch.randn(2, 4, 2, 2))
    with pytest.raises(ValueError, match="at least 2"):
        GlowCoupling(1)
    with pytest.raises(ValueError, match="sigmoid"):
        GlowCoupling(2, scale="exp")
