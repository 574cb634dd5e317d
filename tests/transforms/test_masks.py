"""Masks: split/merge semantics, fast paths, validation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlab.transforms.masks import AlternatingMask, HalfMask, Mask


def _reference_split(x: torch.Tensor, mask: torch.Tensor):
    flat, m = x.reshape(x.shape[0], -1), mask.flatten()
    return flat[:, m], flat[:, ~m]


@pytest.mark.parametrize(
    "mask",
    [
        HalfMask(5),
        HalfMask(5, flip=True),
        HalfMask(2),
        AlternatingMask(6),
        AlternatingMask(7, parity=1),
        Mask(torch.tensor([True, False, False, True, True])),
        Mask(torch.tensor([[True, False], [False, True]])),
        Mask(torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(0)) < 0.5),
    ],
    ids=repr,
)
def test_split_merge(mask):
    x = torch.randn(3, *mask.event_shape)
    x_a, x_b = mask.split(x)
    ref_a, ref_b = _reference_split(x, mask.mask)
    assert torch.equal(x_a, ref_a) and torch.equal(x_b, ref_b)
    assert x_a.shape == (3, mask.features_kept) and x_b.shape == (3, mask.features_transformed)
    assert torch.equal(mask.merge(x_a, x_b), x)


@settings(max_examples=20, deadline=None)
@given(bits=st.lists(st.booleans(), min_size=2, max_size=12), batch=st.integers(1, 4))
def test_split_merge_hypothesis(bits, batch):
    if all(bits) or not any(bits):
        with pytest.raises(ValueError, match="at least one"):
            Mask(torch.tensor(bits))
        return
    mask = Mask(torch.tensor(bits))
    x = torch.randn(batch, len(bits))
    x_a, x_b = mask.split(x)
    ref_a, ref_b = _reference_split(x, mask.mask)
    assert torch.equal(x_a, ref_a) and torch.equal(x_b, ref_b)
    assert torch.equal(mask.merge(x_a, x_b), x)
    # Gradients flow through merge to both parts.
    a, b = x_a.clone().requires_grad_(), x_b.clone().requires_grad_()
    mask.merge(a, b).sum().backward()
    assert torch.equal(a.grad, torch.ones_like(a)) and torch.equal(b.grad, torch.ones_like(b))


def test_half_and_alternating_patterns():
    assert HalfMask(4).mask.tolist() == [True, True, False, False]
    assert HalfMask(4, flip=True).mask.tolist() == [False, False, True, True]
    assert HalfMask(5).features_kept == 2
    assert AlternatingMask(5).mask.tolist() == [True, False, True, False, True]
    assert AlternatingMask(4, parity=1).mask.tolist() == [False, True, False, True]
    assert (~HalfMask(4)).mask.tolist() == HalfMask(4, flip=True).mask.tolist()


@pytest.mark.parametrize("mask", [HalfMask(8), HalfMask(8, flip=True), AlternatingMask(8)])
def test_structured_masks_split_without_copies(mask):
    x = torch.randn(4, 8)
    x_a, x_b = mask.split(x)
    for part in (x_a, x_b):
        assert part._base is x  # a view of the input, no indexing kernel, no copy


def test_mask_accepts_01_and_moves_with_module():
    m = Mask(torch.tensor([1, 0, 1]))
    assert m.mask.dtype == torch.bool
    m.double()
    assert m.mask.dtype == torch.bool  # a boolean buffer is not cast by .double()
    assert m.as_float(torch.zeros(1, dtype=torch.float64)).tolist() == [1.0, 0.0, 1.0]


def test_bad_masks():
    with pytest.raises(ValueError, match="at least one"):
        Mask(torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="boolean"):
        Mask(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="at least 2"):
        HalfMask(1)
    with pytest.raises(ValueError, match="parity"):
        AlternatingMask(4, parity=2)
