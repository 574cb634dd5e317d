"""Tests of flowlab.metrics: bits per dimension."""

from __future__ import annotations

import math

import pytest
import torch

from flowlab.distributions import StandardNormal, UniformBox
from flowlab.flow import Flow
from flowlab.metrics import bits_per_dim, dataset_bits_per_dim
from flowlab.transforms.dequantize import UniformDequantization


@pytest.mark.parametrize("K", [2, 17, 256])
def test_uniform_noise_costs_log2_K_bits(K):
    """Uniform noise on K levels: the uniform model spends exactly log2 K bits per dimension."""
    torch.manual_seed(0)
    shape = (1, 4, 4)
    x = torch.randint(0, K, (50, *shape)).float()
    # (a) a flow with dequantization in front and a uniform density on [0, 1)^D: the -D log K
    #     of the dequantizer is inside log_prob, so no correction
    flow = Flow(UniformBox(shape), [UniformDequantization(K)])
    bpd = bits_per_dim(flow.log_prob(x), shape)
    assert torch.allclose(bpd, torch.full_like(bpd, math.log2(K)), atol=1e-5)
    # (b) a density fitted to data scaled to [0, 1): log p = 0, the correction adds log2 K
    assert bits_per_dim(torch.zeros(3), 16, num_levels=K).allclose(torch.full((3,), math.log2(K)))
    # (c) a density on the levels' scale [0, K)^D: log p = -D log K
    lp = UniformBox(shape, 0.0, float(K)).log_prob(x + torch.rand_like(x))
    assert torch.allclose(bits_per_dim(lp, shape), torch.full((50,), math.log2(K)), atol=1e-5)


def test_bits_per_dim_formula():
    lp = torch.tensor([-100.0, -50.0], dtype=torch.float64)
    d = 3 * 8 * 8
    expected = (-lp + d * math.log(256)) / (d * math.log(2))
    assert torch.allclose(bits_per_dim(lp, (3, 8, 8), num_levels=256), expected)
    assert torch.allclose(bits_per_dim(lp, d), -lp / (d * math.log(2)))
    assert bits_per_dim(-math.log(2) * 10, 10).item() == pytest.approx(1.0)


def test_dataset_bits_per_dim_is_the_mean():
    torch.manual_seed(1)
    base = StandardNormal(5)
    data = torch.randn(37, 5)
    expected = bits_per_dim(base.log_prob(data), 5).double().mean().item()
    assert dataset_bits_per_dim(base.log_prob, data, batch_size=8) == pytest.approx(expected)
    # num_levels shifts by exactly log2 K
    shifted = dataset_bits_per_dim(base.log_prob, data, batch_size=8, num_levels=4)
    assert shifted == pytest.approx(expected + 2.0)


def test_bits_per_dim_errors():
    with pytest.raises(ValueError, match="dims"):
        bits_per_dim(torch.zeros(2), 0)
    with pytest.raises(ValueError, match="num_levels"):
        bits_per_dim(torch.zeros(2), 4, num_levels=1)
    with pytest.raises(ValueError, match="at least one"):
        dataset_bits_per_dim(lambda x: x.sum(1), torch.zeros(0, 3))
