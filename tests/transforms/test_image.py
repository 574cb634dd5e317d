"""Tests of flowlab.transforms.image: Squeeze, masks, MaskedAffineCoupling."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from flowlab.testing import brute_force_logabsdet, check_transform
from flowlab.transforms.base import Transform
from flowlab.transforms.image import (
    squeezed_checkerboard_mask,
    MaskedAffineCoupling,
    Squeeze,
    channel_mask,
    checkerboard_mask,
)


def perturb(module: nn.Module, std: float = 0.1, seed: int = 0) -> nn.Module:
    """Move every weight away from its (zero) initialisation so that the checks can fail."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


class SqueezeSameShape(Transform):
    """Squeeze followed by a reshape back to the input's shape, so that check_transform (which
    wants z.shape == x.shape) applies. The reshape is a fixed permutation of coordinates."""

    def __init__(self) -> None:
        super().__init__()
        self.squeeze = Squeeze()

    def forward(self, x):
        z, ld = self.squeeze(x)
        return z.reshape(x.shape), ld

    def inverse(self, z):
        b, c, h, w = z.shape
        return self.squeeze.inverse(z.reshape(b, 4 * c, h // 2, w // 2))


def test_squeeze_layout():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    z, ld = Squeeze()(x)
    assert z.shape == (1, 4, 2, 2)
    # channel 2i + j holds pixel (2h + i, 2w + j)
    assert torch.equal(z[0, 0], torch.tensor([[0.0, 2.0], [8.0, 10.0]]))
    assert torch.equal(z[0, 1], torch.tensor([[1.0, 3.0], [9.0, 11.0]]))
    assert torch.equal(z[0, 2], torch.tensor([[4.0, 6.0], [12.0, 14.0]]))
    assert torch.equal(ld, torch.zeros(1))


@pytest.mark.parametrize("shape", [(2, 1, 4, 4), (2, 3, 4, 4)])
def test_squeeze_contract(shape):
    x = torch.randn(*shape, dtype=torch.float64)
    check_transform(SqueezeSameShape(), x)
    assert torch.allclose(brute_force_logabsdet(Squeeze(), x), torch.zeros(shape[0], dtype=x.dtype))


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3),
    c=st.integers(1, 4),
    h=st.integers(1, 5).map(lambda k: 2 * k),
    w=st.integers(1, 5).map(lambda k: 2 * k),
)
def test_squeeze_round_trip_any_shape(b, c, h, w):
    x = torch.randn(b, c, h, w)
    sq = Squeeze()
    z, _ = sq(x)
    assert z.shape == (b, 4 * c, h // 2, w // 2)
    assert torch.equal(sq.inverse(z)[0], x)
    # a permutation: the same multiset of values
    assert torch.equal(z.flatten().sort().values, x.flatten().sort().values)


def test_squeeze_rejects_odd_sizes_and_non_images():
    with pytest.raises(ValueError, match="even"):
        Squeeze()(torch.randn(2, 1, 5, 4))
    with pytest.raises(ValueError, match="axes"):
        Squeeze()(torch.randn(2, 16))
    with pytest.raises(ValueError, match="divisible by 4"):
        Squeeze().inverse(torch.randn(2, 3, 2, 2))


def test_checkerboard_mask():
    m0 = checkerboard_mask(3, 4)
    m1 = checkerboard_mask(3, 4, parity=1)
    assert m0.shape == (1, 1, 3, 4)
    assert m0[0, 0, 0, 0] == 1 and m0[0, 0, 0, 1] == 0 and m0[0, 0, 1, 0] == 0
    assert torch.equal(m0 + m1, torch.ones_like(m0))
    assert m0.sum() == 6
    assert checkerboard_mask(2, 2, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError):
        checkerboard_mask(2, 2, parity=2)


@settings(max_examples=10, deadline=None)
@given(c=st.integers(1, 3), h=st.integers(1, 3), w=st.integers(1, 3), parity=st.integers(0, 1))
def test_squeezed_checkerboard_mask_is_the_squeezed_checkerboard(c, h, w, parity):
    """Squeeze(checkerboard) == the channel mask, for every channel count and image size."""
    full = checkerboard_mask(2 * h, 2 * w, parity).expand(1, c, 2 * h, 2 * w)
    squeezed, _ = Squeeze()(full)
    mask = squeezed_checkerboard_mask(c, parity)
    assert mask.shape == (1, 4 * c, 1, 1)
    assert torch.equal(squeezed, mask.expand_as(squeezed))
    with pytest.raises(ValueError, match="parity"):
        squeezed_checkerboard_mask(c, 2)


def test_channel_mask():
    m = channel_mask(4)
    assert m.shape == (1, 4, 1, 1)
    assert m.flatten().tolist() == [1.0, 1.0, 0.0, 0.0]
    assert channel_mask(4, parity=1).flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    assert channel_mask(3).flatten().tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="at least 2 channels"):
        channel_mask(1)


def _coupling(mask, c, **kw):
    return MaskedAffineCoupling(mask, c, hidden_channels=8, blocks=1, **kw).double()


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("parity", [0, 1])
def test_checkerboard_coupling_contract(c, parity):
    torch.manual_seed(0)
    layer = perturb(_coupling(checkerboard_mask(4, 4, parity), c))
    x = torch.randn(3, c, 4, 4, dtype=torch.float64)
    check_transform(layer, x)
    # the kept pixels pass unchanged, the others change
    z, ld = layer(x)
    keep = checkerboard_mask(4, 4, parity, dtype=torch.float64).bool().expand_as(x)
    assert torch.equal(z[keep], x[keep])
    assert not torch.allclose(z[~keep], x[~keep])
    assert ld.abs().min() > 0


@pytest.mark.parametrize("parity", [0, 1])
def test_channel_coupling_contract(parity):
    torch.manual_seed(1)
    layer = perturb(_coupling(channel_mask(4, parity), 4))
    x = torch.randn(3, 4, 2, 2, dtype=torch.float64)
    check_transform(layer, x)


def test_coupling_starts_as_identity():
    layer = _coupling(checkerboard_mask(4, 4), 3)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    z, ld = layer(x)
    assert torch.equal(z, x)
    assert torch.equal(ld, torch.zeros(2, dtype=x.dtype))


def test_coupling_scale_is_bounded():
    layer = _coupling(checkerboard_mask(4, 4), 1, scale_bound=2.0)
    perturb(layer, std=50.0)
    x = 10 * torch.randn(4, 1, 4, 4, dtype=torch.float64)
    z, ld = layer(x)
    assert torch.isfinite(z).all()
    # 8 transformed pixels, each with |s| <= 2
    assert (ld.abs() <= 8 * 2.0 + 1e-9).all()


def test_coupling_with_context():
    torch.manual_seed(2)
    layer = perturb(_coupling(checkerboard_mask(4, 4), 2, context_channels=3))
    context = torch.randn(3, 3, 4, 4, dtype=torch.float64)
    fixed = context[:1]  # one context shared by every sample (the Jacobian checks use batch 1)

    class WithContext(Transform):
        def forward(self, x):
            return layer(x, context=fixed.expand(x.shape[0], -1, -1, -1))

        def inverse(self, z):
            return layer.inverse(z, context=fixed.expand(z.shape[0], -1, -1, -1))

    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    check_transform(WithContext(), x)
    # the output depends on the context
    assert not torch.allclose(layer(x, context=context)[0], layer(x, context=2 * context)[0])
    with pytest.raises(ValueError, match="context"):
        layer(x)


def test_coupling_input_errors():
    layer = _coupling(checkerboard_mask(4, 4), 2)
    with pytest.raises(ValueError, match="2 channel"):
        layer(torch.randn(2, 3, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="4x4 checkerboard"):
        layer(torch.randn(2, 2, 6, 6, dtype=torch.float64))
    with pytest.raises(TypeError, match="float64"):
        layer(torch.randn(2, 2, 4, 4))
    with pytest.raises(ValueError, match="only 0"):
        MaskedAffineCoupling(0.5 * checkerboard_mask(4, 4), 1)
    with pytest.raises(ValueError, match="keep some"):
        MaskedAffineCoupling(torch.ones(1, 1, 4, 4), 1)
