"""Coupling layers: identity at initialisation, contract checks after perturbation, bounds."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from flowlab.testing import check_transform
from flowlab.transforms.coupling import AdditiveCoupling, AffineCoupling
from flowlab.transforms.glow import GlowCoupling
from flowlab.transforms.image import MaskedAffineCoupling, channel_mask, checkerboard_mask
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
    t, s = layer.conditioner(x[:, :2]).chunk(2, dim=1)   # flowlab's one order: shift first
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
    with pytest.raises(TypeError, match="boolean tensor .* or as a flowlab Mask"):
        AffineCoupling(4)
    with pytest.raises(ValueError, match="boolean \\(or 0/1\\)"):
        AffineCoupling(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="at least one"):
        AffineCoupling(torch.tensor([True, True]))
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


# ---------------------------------------------------------------- one mask convention (issue 16)
# Every coupling takes the course's boolean mask (True = kept x_A, fed to the conditioner) or a
# Mask, and the two spellings build the same layer.
BOOL = torch.tensor([True, False, False, True, False])


@pytest.mark.parametrize("kind", list(KINDS))
def test_vector_couplings_accept_a_boolean_mask(kind, perturb):
    torch.manual_seed(0)
    from_bool = perturb(KINDS[kind](BOOL).double(), scale=0.4)
    torch.manual_seed(0)
    from_mask = perturb(KINDS[kind](Mask(BOOL)).double(), scale=0.4)
    assert torch.equal(from_bool.mask.mask, BOOL)
    x = 1.5 * torch.randn(4, 5, dtype=torch.float64)
    check_transform(from_bool, x)
    z, ld = from_bool(x)
    assert torch.equal(z[:, BOOL], x[:, BOOL])  # True = kept
    assert not torch.allclose(z[:, ~BOOL], x[:, ~BOOL])
    z2, ld2 = from_mask(x)
    assert torch.equal(z, z2) and torch.equal(ld, ld2)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_list_mask_works_too(kind):
    layer = KINDS[kind]([True, False, True])
    assert layer.mask.features_kept == 2 and layer.mask.features_transformed == 1


IMAGE_MASKS = {
    "checkerboard_bool": lambda: checkerboard_mask(4, 4).bool(),
    "checkerboard_float": lambda: checkerboard_mask(4, 4),
    "checkerboard_no_batch_axis": lambda: checkerboard_mask(4, 4)[0].bool(),
    "checkerboard_Mask": lambda: Mask(checkerboard_mask(4, 4)[0].bool()),
    "channel_bool": lambda: channel_mask(2).bool(),
    "channel_Mask": lambda: Mask(channel_mask(2)[0].bool()),
}


@pytest.mark.parametrize("mask", list(IMAGE_MASKS))
def test_masked_affine_coupling_accepts_every_mask_form(mask, perturb):
    torch.manual_seed(1)
    m = IMAGE_MASKS[mask]()
    layer = perturb(MaskedAffineCoupling(m, 2, hidden_channels=4, blocks=0).double(), scale=0.3)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    check_transform(layer, x)
    kept = layer.mask.expand(1, 2, 4, 4)[0].bool()
    z, _ = layer(x)
    assert torch.equal(z[:, kept], x[:, kept])
    assert not torch.allclose(z[:, ~kept], x[:, ~kept])


GLOW_MASKS = {
    "default": lambda: None,
    "first_half_bool": lambda: torch.tensor([True, True, False, False]),
    "odd_bool": lambda: torch.tensor([False, True, False, True]),
    "channel_mask": lambda: channel_mask(4, parity=1),
    "Mask": lambda: Mask(torch.tensor([True, False, False, True])),
}


@pytest.mark.parametrize("mask", list(GLOW_MASKS))
def test_glow_coupling_accepts_a_channel_mask(mask, perturb):
    torch.manual_seed(2)
    m = GLOW_MASKS[mask]()
    layer = GlowCoupling(4, hidden_channels=4, mask=m).double()
    x = torch.randn(3, 4, 2, 2, dtype=torch.float64)
    z, ld = layer(x)
    assert torch.equal(z, x) and torch.equal(ld, torch.zeros(3, dtype=x.dtype))  # identity
    perturb(layer, scale=0.3)
    check_transform(layer, x)
    keep = (torch.arange(4) < 2) if m is None else torch.as_tensor(
        m.mask if isinstance(m, Mask) else m).flatten().bool()
    z, _ = layer(x)
    assert torch.equal(z[:, keep], x[:, keep])
    assert not torch.allclose(z[:, ~keep], x[:, ~keep])


def test_glow_coupling_rejects_a_pixel_mask():
    with pytest.raises(ValueError, match="over the 2 channels.*MaskedAffineCoupling"):
        GlowCoupling(2, mask=checkerboard_mask(4, 4).bool())


def test_glow_coupling_shift_then_scale(perturb):
    # Glow's code order (z = (x_B + t) * s); the log-det is sum log s either way.
    torch.manual_seed(3)
    layer = perturb(GlowCoupling(2, hidden_channels=4, scale="tanh").double(), scale=0.5)
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    t, raw = layer.conditioner(x[:, :1]).chunk(2, dim=1)
    log_s = 3.0 * torch.tanh(raw / 3.0)
    z, ld = layer(x)
    assert torch.allclose(z[:, 1:], (x[:, 1:] + t) * torch.exp(log_s))
    assert torch.allclose(ld, log_s.sum(dim=(1, 2, 3)))
