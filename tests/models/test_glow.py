"""Tests of flowlab.models.glow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flowlab.models.glow import Glow, GlowTransform
from flowlab.transforms.glow import GlowCoupling
from flowlab.testing import check_transform


def perturb(module: nn.Module, std: float = 0.05, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def initialised(layer: nn.Module, x: torch.Tensor) -> nn.Module:
    """Run the ActNorm data-dependent initialisation on ``x``, then perturb every weight."""
    with torch.no_grad():
        layer(x)
    return perturb(layer)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("lu", [True, False])
def test_glow_transform_contract(channels, lu):
    torch.manual_seed(0)
    layer = GlowTransform(channels, 4, 4, levels=2, steps=2, hidden_channels=8, lu=lu).double()
    x = torch.randn(2, channels, 4, 4, dtype=torch.float64)
    initialised(layer, 3 * torch.randn(16, channels, 4, 4, dtype=torch.float64) + 1)
    check_transform(layer, x)


@pytest.mark.parametrize("shape, levels", [((1, 8, 8), 3), ((3, 16, 8), 2)])
def test_glow_inverts_exactly(shape, levels):
    torch.manual_seed(1)
    layer = GlowTransform(*shape, levels=levels, steps=2, hidden_channels=8).double()
    x = torch.randn(3, *shape, dtype=torch.float64)
    initialised(layer, x)
    z, ld = layer(x)
    x_back, ld_inv = layer.inverse(z)
    assert torch.allclose(x_back, x, atol=1e-9)
    assert torch.allclose(ld + ld_inv, torch.zeros_like(ld), atol=1e-8)


def test_glow_actnorm_initialises_on_first_batch():
    torch.manual_seed(2)
    layer = GlowTransform(1, 8, 8, levels=2, steps=2, hidden_channels=8).double()
    x = 5 + 3 * torch.randn(64, 1, 8, 8, dtype=torch.float64)
    layer(x)
    first_actnorm = layer.steps[0][0]
    squeezed, _ = layer.squeeze(x)
    z, _ = first_actnorm(squeezed)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(4, dtype=x.dtype), atol=1e-10)
    assert torch.allclose(z.std(dim=(0, 2, 3), correction=0), torch.ones(4, dtype=x.dtype))
    assert bool(layer.next_level.steps[0][0].initialized)  # the deeper level too


def test_glow_conditional_prior_is_used():
    torch.manual_seed(3)
    layer = GlowTransform(1, 8, 8, levels=2, steps=1, hidden_channels=8).double()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    _, ld0 = layer(x)
    with torch.no_grad():
        layer.prior.bias[layer.factored :] += 0.3  # log sigma of the factored-out half
    _, ld1 = layer(x)
    # log|det| gains -sum log sigma = -0.3 per factored-out value (2 channels of 4x4)
    assert torch.allclose(ld1 - ld0, torch.full_like(ld0, -0.3 * 2 * 16))


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_glow_temperature_sampling(temperature):
    torch.manual_seed(4)
    flow = Glow((1, 8, 8), num_levels=17, levels=2, steps=2, hidden_channels=8)
    data = torch.randint(0, 17, (32, 1, 8, 8)).float()
    flow.log_prob(data)  # ActNorm initialisation
    x = flow.sample(6, temperature=temperature)
    assert x.shape == (6, 1, 8, 8)
    assert torch.equal(x, x.floor()) and x.min() >= 0 and x.max() <= 16
    if temperature == 0.0:
        assert torch.equal(x[0], x[1])


def test_glow_flow_log_prob_and_training_step():
    torch.manual_seed(5)
    flow = Glow((3, 8, 8), num_levels=256, levels=2, steps=2, hidden_channels=8, logit_alpha=0.05)
    x = torch.randint(0, 256, (8, 3, 8, 8)).float()
    loss = flow.nll(x)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in flow.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


def size(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_glow_steps_and_widths_per_level():
    torch.manual_seed(4)
    layer = GlowTransform(1, 8, 8, levels=2, steps=(1, 3), hidden_channels=(4, 12)).double()
    assert len(layer.steps) == 1 and len(layer.next_level.steps) == 3
    assert size(layer.steps[0][2]) == size(GlowCoupling(4, hidden_channels=4))
    assert size(layer.next_level.steps[0][2]) == size(GlowCoupling(8, hidden_channels=12))
    initialised(layer, 3 * torch.randn(16, 1, 8, 8, dtype=torch.float64))
    check_transform(layer, torch.randn(2, 1, 8, 8, dtype=torch.float64))
    same = GlowTransform(1, 8, 8, levels=2, steps=(2, 2), hidden_channels=(8, 8))
    assert size(same) == size(GlowTransform(1, 8, 8, levels=2, steps=2, hidden_channels=8))


@pytest.mark.parametrize("steps", [0, (2,), (2, 0), (2, 2, 2), 2.5, (2, True)])
def test_glow_rejects_bad_steps_per_level(steps):
    with pytest.raises(ValueError, match="one per level, finest first"):
        GlowTransform(1, 8, 8, levels=2, steps=steps)


def test_glow_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="divisible by 8"):
        GlowTransform(1, 12, 12, levels=3)
    with pytest.raises(ValueError, match="C, H, W"):
        Glow((8, 8), 256)


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@requires_cuda
def test_glow_on_cuda_matches_the_cpu_and_trains_under_bf16():
    torch.manual_seed(7)
    flow = Glow((1, 8, 8), num_levels=17, steps=2, hidden_channels=8)
    x = torch.randint(0, 17, (16, 1, 8, 8)).float()
    flow.log_prob(x)  # ActNorm initialisation on the CPU
    perturb(flow)
    gpu = Glow((1, 8, 8), num_levels=17, steps=2, hidden_channels=8)
    gpu.load_state_dict(flow.state_dict())
    gpu = gpu.cuda()
    y = torch.randn(16, 1, 8, 8)  # the core transform is deterministic: compare it directly
    with torch.no_grad():
        z_cpu, ld_cpu = flow.transform[-1](y)
        z_gpu, ld_gpu = gpu.transform[-1](y.cuda())
    assert torch.allclose(z_cpu, z_gpu.cpu(), atol=1e-4)
    assert torch.allclose(ld_cpu, ld_gpu.cpu(), rtol=1e-4, atol=1e-2)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = gpu.nll(x.cuda())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in gpu.parameters() if p.grad is not None)
    samples = gpu.sample(4, temperature=0.7)
    assert samples.is_cuda and samples.shape == (4, 1, 8, 8)
