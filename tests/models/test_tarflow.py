"""TarFlow: the layer contract in float64, causality over patches, noise and denoising."""

from __future__ import annotations

import pytest
import torch

from flowlab.models.tarflow import (
    CausalTransformer,
    NoiseAugmentation,
    TarFlow,
    TarFlowBlock,
    TarFlowTransform,
    patchify,
    unpatchify,
)
from flowlab.testing import check_transform


def tiny(**kw) -> TarFlowTransform:
    return TarFlowTransform(1, 4, 4, patch_size=2, blocks=2, width_model=16, depth=1, heads=2, **kw)


def test_patchify_round_trip_and_layout():
    x = torch.arange(2 * 2 * 4 * 4.0).reshape(2, 2, 4, 4)
    seq = patchify(x, 2)
    assert seq.shape == (2, 4, 8)
    assert seq[0, 1].tolist() == [2, 3, 6, 7, 18, 19, 22, 23]  # top-right patch, both channels
    assert torch.equal(unpatchify(seq, (2, 4, 4), 2), x)
    with pytest.raises(ValueError, match="must divide"):
        patchify(x, 3)


def test_contract_float64(perturb):
    f = perturb(tiny().double(), scale=0.1)
    check_transform(f, torch.randn(3, 1, 4, 4, dtype=torch.float64))


def test_block_contract_with_context_float64(perturb):
    block = perturb(TarFlowBlock(3, 5, width=16, depth=1, heads=2, flip=True,
                                 context_features=2).double(), scale=0.1)
    c = torch.randn(4, 2, dtype=torch.float64)
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    z, ld = block(x, context=c)
    x_back, ld_back = block.inverse(z, context=c)
    assert torch.allclose(x_back, x, atol=1e-9) and torch.allclose(ld + ld_back, 0 * ld, atol=1e-9)
    assert not torch.allclose(block(x, context=-c)[0], z)


def test_transformer_is_causal():
    net = CausalTransformer(3, 4, max_len=6, width=16, depth=2, heads=2, zero_init_last=False)
    x = torch.randn(1, 6, 3)
    jac = torch.autograd.functional.jacobian(lambda v: net(v)[0], x)[:, :, 0]  # (6, 4, 6, 3)
    for i in range(6):
        for j in range(6):
            moved = jac[i, :, j].abs().sum()
            assert (moved == 0) if j > i else (moved > 0), (i, j)


@pytest.mark.parametrize("flip", [False, True])
def test_block_jacobian_is_block_triangular_over_patches(perturb, flip):
    block = perturb(TarFlowBlock(2, 5, width=16, depth=1, heads=2, flip=flip).double(), scale=0.1)
    x = torch.randn(1, 5, 2, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: block(v)[0][0], x)[:, :, 0]  # (5,2,5,2)
    order = list(range(5))[::-1] if flip else list(range(5))
    for a, i in enumerate(order):
        for b, j in enumerate(order):
            block_ij = jac[i, :, j]
            if b > a:  # a later patch in this block's order never moves an earlier one
                assert torch.count_nonzero(block_ij) == 0
            elif b == a:  # diagonal block: diag(exp(-alpha_i))
                assert torch.count_nonzero(block_ij - torch.diag(torch.diagonal(block_ij))) == 0
    first = order[0]
    assert torch.allclose(jac[first, :, first], torch.eye(2, dtype=torch.float64))  # mu_1 = 0


def test_identity_at_initialisation():
    f = tiny()
    x = torch.randn(2, 1, 4, 4)
    z, ld = f(x)
    assert torch.allclose(z, x) and torch.allclose(ld, torch.zeros(2))


def test_noise_only_in_training():
    noise = NoiseAugmentation(0.5)
    y = torch.rand(3, 1, 4, 4)
    assert not torch.equal(noise.train()(y)[0], y)
    assert torch.equal(noise.eval()(y)[0], y)
    assert torch.equal(noise.inverse(y)[0], y)
    with pytest.raises(ValueError, match=">= 0"):
        NoiseAugmentation(-1.0)


def test_model_log_prob_sample_and_denoise(perturb):
    torch.manual_seed(0)
    model = TarFlow((1, 4, 4), 17, patch_size=2, blocks=2, width=16, depth=1, heads=2,
                    noise_std=0.1)
    perturb(model.core, scale=0.05)
    model.eval()
    x = torch.randint(0, 17, (5, 1, 4, 4)).float()
    assert model.log_prob(x).shape == (5,)
    samples = model.sample(3)
    assert samples.shape == (3, 1, 4, 4)
    assert bool(((samples >= 0) & (samples <= 16) & (samples == samples.round())).all())
    # The denoising step moves y along the score and increases the model's density
    # for a small enough step (first order: sigma^2 |score|^2 > 0).
    y = torch.rand(4, 1, 4, 4, dtype=torch.float32)
    y_denoised = model.denoise(y)
    assert y_denoised.shape == y.shape
    with torch.enable_grad():
        yy = y.clone().requires_grad_(True)
        (score,) = torch.autograd.grad(model.log_prob_continuous(yy).sum(), yy)
    assert torch.allclose(y_denoised - y, 0.1**2 * score, atol=1e-6)
    small = y + 1e-3 * (y_denoised - y) / 0.01
    with torch.no_grad():
        assert bool((model.log_prob_continuous(small) > model.log_prob_continuous(y)).all())
    model_no_noise = TarFlow((1, 4, 4), 17, patch_size=2, blocks=1, width=16, depth=1, heads=2,
                             noise_std=0.0)
    assert torch.equal(model_no_noise.denoise(y), y)


def test_training_noise_changes_log_prob_only_in_train_mode():
    model = TarFlow((1, 4, 4), None, patch_size=2, blocks=1, width=16, depth=1, heads=2,
                    noise_std=0.3)
    y = torch.rand(4, 1, 4, 4)
    model.eval()
    assert torch.equal(model.log_prob(y), model.log_prob(y))
    model.train()
    assert not torch.equal(model.log_prob(y), model.log_prob(y))


def test_class_conditional_tarflow():
    model = TarFlow((1, 4, 4), 17, patch_size=2, blocks=2, width=16, depth=1, heads=2,
                    context_features=3)
    torch.nn.init.normal_(model.core.blocks[0].net.proj_out.weight, std=0.1)
    x = torch.randint(0, 17, (2, 1, 4, 4)).float()
    model.eval()
    c = torch.eye(3)[[0, 2]]
    torch.manual_seed(1)
    a = model.log_prob(x, context=c)
    torch.manual_seed(1)
    b = model.log_prob(x, context=c.flip(0))
    assert not torch.allclose(a, b)
    assert model.sample(4, context=torch.eye(3)[1]).shape == (4, 1, 4, 4)
    with pytest.raises(ValueError, match="context_features=3"):
        model.log_prob(x)


def test_bad_inputs():
    with pytest.raises(ValueError, match="must divide"):
        TarFlowTransform(1, 5, 5, patch_size=2)
    f = tiny()
    with pytest.raises(ValueError, match=r"\(1, 4, 4\)"):
        f(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="divisible by heads"):
        CausalTransformer(2, 2, 4, width=10, heads=3)
