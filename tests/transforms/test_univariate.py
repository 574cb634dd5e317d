"""Elementwise transformers: the contract (float64 brute-force Jacobian, inverse, batch
independence) at shapes hypothesis picks, zero parameters = identity, the one affine order and
bound, views only, and a coupling = an autoregressive layer with two blocks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from flowlab.testing import check_transform
from flowlab.transforms import (
    Additive,
    Affine,
    AffineCoupling,
    Coupling,
    GlowCoupling,
    MaskedAffineAutoregressive,
    MaskedAffineCoupling,
    MaskedAutoregressive,
    RQSpline,
    Transform,
    Univariate,
)
from flowlab.transforms.base import sum_except_batch
from flowlab.transforms.image import checkerboard_mask
from flowlab.transforms.masks import Mask
from flowlab.transforms.univariate import SCALE_BOUND, identity_params, params_last, soft_clamp

TRANSFORMERS = {
    "additive": Additive,
    "affine": Affine,
    "affine_unbounded": lambda: Affine(None),
    "affine_shift_first": lambda: Affine(shift_first=True),
    "affine_sigmoid": lambda: Affine(scale="sigmoid", shift_first=True),  # Glow's
    "spline": lambda: RQSpline(bins=4, bound=2.0),
    "spline_scaled": lambda: RQSpline(bins=3, bound=1.5, param_scale=0.5),
}


class Elementwise(Transform):
    """A transformer as a layer whose parameters are the context (one per sample), so that
    ``check_transform`` holds them fixed while it differentiates in ``x``."""

    def __init__(self, transformer: Univariate) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, ladj = self.transformer(x, context)
        return y, sum_except_batch(ladj)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, ladj = self.transformer.inverse(z, context)
        return x, sum_except_batch(ladj)


@settings(max_examples=15, deadline=None)
@given(
    kind=st.sampled_from(sorted(TRANSFORMERS)),
    event=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    batch=st.integers(2, 4),
    scale=st.sampled_from([0.3, 1.0, 3.0]),
    seed=st.integers(0, 2**16),
)
def test_contract_at_any_shape(kind, event, batch, scale, seed):
    g = torch.Generator().manual_seed(seed)
    transformer = TRANSFORMERS[kind]()
    x = 1.5 * torch.randn(batch, *event, generator=g, dtype=torch.float64)  # some off the spline
    params = scale * torch.randn(batch, *event, transformer.params_per_feature, generator=g,
                                 dtype=torch.float64)
    check_transform(Elementwise(transformer), x, context=params)
    y, ladj = transformer(x, params)
    assert y.shape == x.shape and ladj.shape == x.shape   # elementwise log-derivatives


@pytest.mark.parametrize("kind", sorted(TRANSFORMERS))
def test_zero_parameters_are_the_identity(kind):
    transformer = TRANSFORMERS[kind]()
    x = torch.randn(5, 3, 2)
    y, ladj = transformer(x, identity_params(transformer, x))
    assert torch.allclose(y, x, atol=1e-6) and ladj.abs().max() < 1e-5
    if not kind.startswith("spline"):   # exactly, for the closed-form maps
        assert torch.equal(y, x) and torch.equal(ladj, torch.zeros_like(x))


def test_affine_order_is_shift_then_raw_log_scale_with_one_bound():
    x = torch.tensor([2.0])
    shift, raw = torch.tensor([0.5]), torch.tensor([100.0])
    y, ladj = Affine()(x, torch.stack([shift, raw], dim=-1))
    assert SCALE_BOUND == 3.0 and Affine().bound == 3.0
    assert torch.allclose(ladj, torch.tensor([3.0]))                 # |s| < B = 3
    assert torch.allclose(y, x * math.exp(3.0) + shift)
    # Glow's order: shift first, then scale
    y, _ = Affine(shift_first=True)(x, torch.stack([shift, torch.zeros(1)], dim=-1))
    assert torch.equal(y, x + shift)
    # every affine layer in the library has the same default bound and the same clamp
    for layer in (AffineCoupling(Mask(torch.tensor([True, False])), hidden=(4,)),
                  MaskedAffineAutoregressive(2, hidden=(4,)),
                  MaskedAffineCoupling(checkerboard_mask(2, 2), 1, hidden_channels=2, blocks=0)):
        assert layer.scale_bound == SCALE_BOUND and layer.transformer.scale == "tanh"
    raw = torch.linspace(-20, 20, 9)
    assert torch.equal(Affine().log_scale(raw), soft_clamp(raw))
    assert torch.equal(Affine(None).log_scale(raw), raw)


def test_bad_settings_say_what_to_do():
    with pytest.raises(ValueError, match="scale_bound must be positive"):
        Affine(0.0)
    with pytest.raises(ValueError, match="'tanh' or 'sigmoid'"):
        Affine(scale="exp")
    with pytest.raises(ValueError, match="at least 2 bins"):
        RQSpline(bins=1)
    with pytest.raises(TypeError, match="transformer must be a flowlab.transforms.univariate"):
        Coupling(Mask(torch.tensor([True, False])), nn.Identity())
    with pytest.raises(TypeError, match="transformer must be a flowlab.transforms.univariate"):
        MaskedAutoregressive(3, "affine")


def test_params_last_is_a_view_of_the_conditioners_output():
    head = torch.randn(4, 2 * 6)  # (batch, P * n), parameter-major
    p = params_last(head, 2)
    assert p.shape == (4, 6, 2) and p.data_ptr() == head.data_ptr()
    assert torch.equal(p[..., 0], head[:, :6]) and torch.equal(p[..., 1], head[:, 6:])
    conv = torch.randn(3, 2 * 5, 4, 4)  # a conv head's channels
    p = params_last(conv, 2)
    assert p.shape == (3, 5, 4, 4, 2) and p.data_ptr() == conv.data_ptr()
    assert torch.equal(p[..., 1], conv[:, 5:])


class _TwoBlocks(nn.Module):
    """An autoregressive conditioner with two blocks: the kept block's parameters are zero (the
    identity), the transformed block's come from the kept block only, through ``net``."""

    def __init__(self, mask: Tensor, net: nn.Module, params_per_feature: int) -> None:
        super().__init__()
        self.mask, self.net, self.p = mask, net, params_per_feature

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        out = x.new_zeros(x.shape[0], self.p, x.shape[1])
        out[:, :, ~self.mask] = self.net(x[:, self.mask]).unflatten(1, (self.p, -1))
        return out.flatten(1)


@pytest.mark.parametrize("transformer", [Affine(), Additive(), RQSpline(bins=4)],
                         ids=["affine", "additive", "spline"])
def test_a_coupling_is_autoregression_with_two_blocks(transformer, perturb):
    """The same transformer object in a coupling and in a MaskedAutoregressive whose conditioner
    has two blocks: the same map, log-determinant and inverse (the latter in D passes)."""
    mask = torch.tensor([True, False, True, False, False])
    coupling = perturb(Coupling(mask, transformer, hidden=(8,)).double(), scale=0.5)
    autoregressive = MaskedAutoregressive(5, transformer, hidden=(8,)).double()
    autoregressive.made = _TwoBlocks(mask, coupling.conditioner, transformer.params_per_feature)
    assert autoregressive.transformer is coupling.transformer
    x = torch.randn(6, 5, dtype=torch.float64)
    z, ld = coupling(x)
    z_ar, ld_ar = autoregressive(x)
    assert not torch.allclose(z, x)
    torch.testing.assert_close(z_ar, z)
    torch.testing.assert_close(ld_ar, ld)
    x_back, ld_inv = autoregressive.inverse(z)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(ld_inv, coupling.inverse(z)[1])


def test_glow_coupling_is_the_affine_transformer_shift_first(perturb):
    layer = perturb(GlowCoupling(4, hidden_channels=8).double(), scale=0.3)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    shift, raw = layer.conditioner(x[:, :2]).chunk(2, dim=1)   # (shift, raw): the one order
    s = torch.nn.functional.logsigmoid(raw + 2) - torch.nn.functional.logsigmoid(
        torch.tensor(2.0, dtype=torch.float64))
    z, ld = layer(x)
    torch.testing.assert_close(z[:, 2:], (x[:, 2:] + shift) * torch.exp(s))
    torch.testing.assert_close(ld, s.sum(dim=(1, 2, 3)))
