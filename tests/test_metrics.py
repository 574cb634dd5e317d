"""Tests of flowlab.metrics: bits per dimension."""

from __future__ import annotations

import math

import pytest
import torch

from flowlab.distributions import StandardNormal, UniformBox
from flowlab.flow import Flow
from flowlab.metrics import (
    baselines,
    bits_per_dim,
    dataset_bits_per_dim,
    histogram_bits_per_dim,
    uniform_bits_per_dim,
)
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


def test_importance_weighting_is_the_log_mean_exp_and_tightens_the_bound():
    """S draws combined inside the log: log (1/S) sum exp(l_s), never below the mean of l_s."""
    torch.manual_seed(2)
    shape = (1, 2, 2)
    x = torch.randint(0, 4, (30, *shape)).float()
    flow = Flow(StandardNormal(shape), [UniformDequantization(4)])
    torch.manual_seed(3)
    iw = dataset_bits_per_dim(flow.log_prob, x, importance_samples=8, batch_size=30)
    torch.manual_seed(3)
    draws = torch.stack([flow.log_prob(x).double() for _ in range(8)])  # same noise order: (S, N)
    expected = bits_per_dim((torch.logsumexp(draws, 0) - math.log(8)).mean(), shape).item()
    plain = bits_per_dim(draws.mean(0).mean(), shape).item()
    assert iw == pytest.approx(expected, rel=1e-9)
    assert iw < plain  # Jensen: log-mean-exp >= mean, so fewer bits
    # a deterministic log_prob gains nothing from importance weighting
    det = dataset_bits_per_dim(StandardNormal(3).log_prob, torch.zeros(5, 3), importance_samples=4)
    assert det == pytest.approx(dataset_bits_per_dim(StandardNormal(3).log_prob, torch.zeros(5, 3)))


def test_uniform_baseline():
    assert uniform_bits_per_dim(256) == 8.0
    assert uniform_bits_per_dim(17) == pytest.approx(math.log2(17))
    with pytest.raises(ValueError, match="num_levels"):
        uniform_bits_per_dim(1)


def test_histogram_baseline_by_hand():
    """Two pixels, K = 3, add-one smoothing: P_d(k) = (n_d(k) + 1) / (N + 3)."""
    train = torch.tensor([[0, 2], [0, 2], [1, 2], [0, 0]], dtype=torch.uint8)
    test = torch.tensor([[0, 2], [2, 1]])
    p = [[4 / 7, 4 / 7], [1 / 7, 1 / 7]]  # P_1(0), P_2(2); P_1(2), P_2(1)
    expected = -sum(math.log2(v) for row in p for v in row) / 4
    assert histogram_bits_per_dim(train, test, 3) == pytest.approx(expected)
    # less smoothing: a level seen in training gets more mass
    assert histogram_bits_per_dim(train, train, 3, smoothing=0.01) < histogram_bits_per_dim(
        train, train, 3
    )


def test_histogram_baseline_is_the_uniform_one_for_uniform_counts_and_beats_it_on_structure():
    K = 4
    every_level = torch.arange(K).repeat(25).reshape(-1, 1).expand(-1, 6)  # each level equally
    assert histogram_bits_per_dim(every_level, every_level, K) == pytest.approx(2.0)
    structured = torch.zeros(50, 6, dtype=torch.long)  # always black
    assert histogram_bits_per_dim(structured, structured, K) < 0.1


def test_baselines_on_the_digits_use_17_levels():
    from flowlab.data.images import load_digits

    train, test = load_digits("train"), load_digits("test")
    b = baselines(train.images, test.images, train.num_levels)
    assert train.num_levels == 17 and int(train.images.max()) == 16
    assert b["uniform"] == pytest.approx(math.log2(17))
    assert 2.0 < b["per-pixel histogram"] < b["uniform"]


def test_baselines_reject_rescaled_data():
    x = torch.rand(4, 1, 2, 2)
    with pytest.raises(ValueError, match="integer levels"):
        histogram_bits_per_dim(x, x, 256)
    with pytest.raises(ValueError, match="differ in size"):
        histogram_bits_per_dim(torch.zeros(3, 4), torch.zeros(3, 5), 2)
    with pytest.raises(ValueError, match="smoothing"):
        histogram_bits_per_dim(torch.zeros(3, 4), torch.zeros(3, 4), 2, smoothing=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_dataset_bits_per_dim_on_cuda_matches_the_cpu():
    data = torch.randn(40, 3)
    base = StandardNormal(3)
    cpu = dataset_bits_per_dim(base.log_prob, data, batch_size=16, importance_samples=2)
    gpu = dataset_bits_per_dim(base.cuda().log_prob, data, batch_size=16, device="cuda",
                               importance_samples=2)
    assert gpu == pytest.approx(cpu, rel=1e-5)
