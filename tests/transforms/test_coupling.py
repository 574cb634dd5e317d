"""Coupling layers: identity at initialisation, contract checks after perturbation, bounds."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from flowlab.testing import check_transform
from flowlab.transforms.coupling import AdditiveCoupling, AffineCoupling
from flowlab.transforms.masks import AlternatingMask, HalfMask, Mask
from flowlab.transforms.splines import RQSplineCoupling

KINDS = {
    "additive": lambda m: AdditiveCoupling(m, hidden=(16, 16)),
    "affine": lambda m: AffineCoupling(m, hidden=(16, 16)),
    "affine_unbounded": lambda m: AffineCoupling(m, hidden=(16, 16), scale_bound=None),
    "spline": lambda m: RQSplineCoupling(m, bins=5, bound=2.0, hidden=(16, 16)),
}
MASKS = {
    "half": lambda: HalfMask(5),
    "half_flip": lambda: HalfMask(5, flip=True),
    "alternating": lambda: AlternatingMask(5, parity=1),
    "arbitrary": lambda: Mask(torch.tensor([False, True, True, False, True])),
    "image": lambda: Mask(torch.tensor([[True, False], [False, True], [True, True]])),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("mask", list(MASKS))
def test_contract(kind, mask, perturb):
    m = MASKS[mask]()
    layer = perturb(KINDS[kind](m).double(), scale=0.4)
    x = 1.5 * torch.randn(4, *m.event_shape, dtype=torch.float64)  # some beyond the spline bound
    check_transform(layer, x)


@pytest.mark.parametrize("kind", list(KINDS))
def test_starts_as_identity(kind):
    layer = KINDS[kind](HalfMask(6))
    x = torch.randn(5, 6)
    z, ld = layer(x)
    assert torch.allclose(z, x, atol=1e-6) and torch.allclose(ld, torch.zeros(5), atol=1e-6)


@pytest.mark.parametrize("kind", list(KINDS))
def test_kept_part_is_untouched(kind, perturb):
    mask = AlternatingMask(6)
    layer = perturb(KINDS[kind](mask), scale=0.5)
    x = torch.randn(5, 6)
    z, _ = layer(x)
    assert torch.equal(z[:, mask.mask], x[:, mask.mask])
    assert not torch.allclose(z[:, ~mask.mask], x[:, ~mask.mask])  # the perturbation acts


def test_affine_matches_the_lecture_formula(perturb):
    mask = HalfMask(4)
    layer = perturb(AffineCoupling(mask, hidden=(8,), scale_bound=None).double())
    x = torch.randn(3, 4, dtype=torch.float64)
    s, t = layer.conditioner(x[:, :2]).chunk(2, dim=1)
    z, ld = layer(x)
    assert torch.allclose(z[:, 2:], x[:, 2:] * torch.exp(s) + t)
    assert torch.allclose(ld, s.sum(dim=1))


def test_affine_scale_is_bounded():
    layer = AffineCoupling(HalfMask(4), hidden=(8,), scale_bound=2.0)
    with torch.no_grad():
        layer.conditioner[-1].bias.fill_(1e4)  # an absurd raw log-scale
    x = torch.randn(3, 4)
    z, ld = layer(x)
    assert torch.isfinite(z).all()
    assert torch.all(ld <= 2 * 2.0 + 1e-5)  # two transformed coordinates, |s| <= 2 each
    x_back, _ = layer.inverse(z)
    assert torch.isfinite(x_back).all()
    # Near zero the bound is invisible: s = c tanh(raw / c) ~ raw.
    raw = torch.tensor([1e-3, -2e-3])
    assert torch.allclose(layer.log_scale(raw), raw, rtol=1e-5)


def test_custom_conditioner_any_module():
    class Quadratic(nn.Module):  # not an MLP: any module mapping x_A to the parameters works
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(0.3 * torch.randn(2, 4, dtype=torch.float64))

        def forward(self, a):
            return (a * a) @ self.w

    layer = AffineCoupling(HalfMask(4), conditioner=Quadratic())
    check_transform(layer, torch.randn(4, 4, dtype=torch.float64))


def test_conditioner_of_the_wrong_size_is_reported():
    layer = AffineCoupling(HalfMask(4), conditioner=nn.Linear(2, 3))
    with pytest.raises(ValueError, match="expected n_B \\* params_per_feature = 2 \\* 2 = 4"):
        layer(torch.randn(2, 4))


def test_bad_inputs():
    layer = AffineCoupling(HalfMask(4), hidden=(8,))
    with pytest.raises(TypeError, match="Mask"):
        AffineCoupling(torch.tensor([True, False]))
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        layer(torch.randn(3, 5))
    with pytest.raises(TypeError, match="float32 parameters"):
        layer(torch.randn(3, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating-point"):
        layer.inverse(torch.ones(3, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="scale_bound"):
        AffineCoupling(HalfMask(4), scale_bound=0.0)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    bits=st.lists(st.booleans(), min_size=2, max_size=7).filter(lambda b: 0 < sum(b) < len(b)),
    batch=st.integers(2, 4),
    seed=st.integers(0, 2**16),
)
def test_contract_hypothesis(perturb, kind, bits, batch, seed):
    torch.manual_seed(seed)
    layer = perturb(KINDS[kind](Mask(torch.tensor(bits))).double(), scale=0.4, seed=seed)
    check_transform(layer, torch.randn(batch, len(bits), dtype=torch.float64))
