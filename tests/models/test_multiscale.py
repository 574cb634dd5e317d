"""Tests of flowlab.models.multiscale: the multi-scale RealNVP."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from flowlab.distributions import StandardNormal
from flowlab.models.multiscale import FactorOut, MultiScaleFlow, MultiScaleTransform
from flowlab.transforms.image import Squeeze, checkerboard_mask
from flowlab.testing import check_transform


def perturb(module: nn.Module, std: float = 0.05, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def small(c: int, h: int, w: int, scales: int) -> MultiScaleTransform:
    torch.manual_seed(0)
    return perturb(MultiScaleTransform(c, h, w, scales, hidden_channels=8, blocks=0).double())


@pytest.mark.parametrize("channels", [1, 3])
def test_multiscale_contract(channels):
    layer = small(channels, 4, 4, scales=2)
    check_transform(layer, torch.randn(2, channels, 4, 4, dtype=torch.float64))


@pytest.mark.parametrize("shape, scales", [((1, 8, 8), 3), ((3, 16, 8), 3), ((2, 4, 12), 2)])
def test_multiscale_inverts_exactly(shape, scales):
    layer = small(*shape, scales=scales)
    x = torch.randn(3, *shape, dtype=torch.float64)
    z, ld = layer(x)
    assert z.shape == x.shape
    assert ld.abs().min() > 0
    x_back, ld_inv = layer.inverse(z)
    assert torch.allclose(x_back, x, atol=1e-10)
    assert torch.allclose(ld + ld_inv, torch.zeros_like(ld), atol=1e-10)


@settings(max_examples=8, deadline=None)
@given(scales=st.integers(1, 3), h=st.integers(1, 3), w=st.integers(1, 3), c=st.integers(1, 2))
def test_multiscale_any_divisible_size(scales, h, w, c):
    factor = 2**scales
    shape = (c, h * factor, w * factor)
    layer = perturb(MultiScaleTransform(*shape, scales, hidden_channels=4, blocks=0))
    x = torch.randn(2, *shape)
    z, ld = layer(x)
    x_back, ld_inv = layer.inverse(z)
    assert torch.allclose(x_back, x, atol=1e-4)
    assert torch.allclose(ld, -ld_inv, atol=1e-3)


def test_multiscale_factors_out_half_at_each_scale():
    layer = MultiScaleTransform(1, 8, 8, scales=3, hidden_channels=4, blocks=0)
    assert isinstance(layer.transforms[0], Squeeze)
    factor_out = layer.transforms[-2]
    assert isinstance(factor_out, FactorOut) and factor_out.factored == 2  # of (4, 4, 4)
    assert layer.next_scale.shape == (2, 4, 4)
    assert layer.next_scale.next_scale.shape == (4, 2, 2)
    assert layer.next_scale.next_scale.next_scale is None
    assert [len(s.couplings) for s in (layer, layer.next_scale)] == [6, 6]
    assert len(layer.next_scale.next_scale.couplings) == 4


def test_checkerboard_couplings_on_the_squeezed_grid_keep_checkerboard_pixels():
    """The first coupling (run after the squeeze) leaves the parity-0 pixels of the original
    image unchanged and changes the others: it is a checkerboard coupling."""
    layer = perturb(MultiScaleTransform(2, 8, 8, scales=2, hidden_channels=4, blocks=0).double())
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    squeeze, first = layer.transforms[0], layer.transforms[1]
    y, _ = squeeze.inverse(first(squeeze(x)[0])[0])
    kept = checkerboard_mask(8, 8, parity=0, dtype=torch.float64).bool().expand_as(x)
    assert torch.equal(y[kept], x[kept])
    assert not torch.allclose(y[~kept], x[~kept])


def test_multiscale_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="divisible by 8"):
        MultiScaleTransform(1, 12, 8, scales=3)
    layer = MultiScaleTransform(1, 8, 8, scales=2, hidden_channels=4, blocks=0)
    with pytest.raises(ValueError, match=r"\(1, 8, 8\)"):
        layer(torch.randn(2, 1, 4, 4))


def test_multiscale_flow_on_levels():
    torch.manual_seed(1)
    flow = MultiScaleFlow((1, 8, 8), num_levels=17, scales=2, hidden_channels=8, blocks=1)
    assert isinstance(flow.base, StandardNormal) and flow.event_shape == (1, 8, 8)
    x = torch.randint(0, 17, (6, 1, 8, 8)).float()
    log_prob = flow.log_prob(x)
    assert log_prob.shape == (6,) and torch.isfinite(log_prob).all()
    with pytest.raises(ValueError, match="discrete levels"):
        flow.log_prob(x / 16)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_multiscale_sampling(temperature):
    torch.manual_seed(2)
    flow = perturb(MultiScaleFlow((1, 8, 8), 17, scales=2, hidden_channels=8, blocks=0))
    x = flow.sample(5, temperature=temperature)
    assert x.shape == (5, 1, 8, 8)
    assert torch.equal(x, x.floor()) and x.min() >= 0 and x.max() <= 16


def test_zero_temperature_gives_the_mode_image():
    torch.manual_seed(3)
    flow = perturb(MultiScaleFlow((1, 8, 8), None, scales=2, hidden_channels=8, blocks=0))
    a = flow.sample(2, temperature=0.0)
    assert torch.equal(a[0], a[1])
    b = flow.sample(2, temperature=1.0)
    assert not torch.equal(b[0], b[1])


def test_multiscale_learns():
    """A few Adam steps on a fixed batch lower the negative log-likelihood."""
    torch.manual_seed(4)
    flow = MultiScaleFlow((1, 8, 8), 17, scales=2, hidden_channels=8, blocks=0)
    x = torch.randint(0, 17, (32, 1, 8, 8)).float()
    x[:, :, :, :4] = 0  # structure to learn: the left half is black
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    torch.manual_seed(5)
    before = flow.nll(x).item()
    for _ in range(15):
        opt.zero_grad()
        loss = flow.nll(x)
        loss.backward()
        opt.step()
    torch.manual_seed(5)
    after = flow.nll(x).item()
    assert after < before - 0.1 * 64 * math.log(2)  # at least 0.1 bit/dim better


def test_variational_dequantization_model():
    torch.manual_seed(6)
    flow = MultiScaleFlow(
        (1, 4, 4), 17, scales=2, hidden_channels=8, blocks=0, dequantization="variational"
    )
    x = torch.randint(0, 17, (4, 1, 4, 4)).float()
    flow.nll(x).backward()
    with pytest.raises(ValueError, match="uniform"):
        MultiScaleFlow((1, 4, 4), 17, dequantization="gaussian")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_multiscale_on_cuda_matches_the_cpu():
    layer = perturb(MultiScaleTransform(1, 8, 8, scales=2, hidden_channels=8, blocks=1))
    x = torch.randn(5, 1, 8, 8)
    z, ld = layer(x)
    z_gpu, ld_gpu = layer.cuda()(x.cuda())
    assert torch.allclose(z, z_gpu.cpu(), atol=1e-4) and torch.allclose(ld, ld_gpu.cpu(), atol=1e-3)
    x_back, _ = layer.inverse(z_gpu)
    assert torch.allclose(x_back.cpu(), x, atol=1e-4)
