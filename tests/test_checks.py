"""Input checks and the brute-force contract checks: they must catch what they promise."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from flowlab.checks import check_finite, check_input
from flowlab.testing import (
    assert_batch_independent,
    assert_inverse_round_trip,
    assert_logabsdet_matches_jacobian,
    brute_force_logabsdet,
    check_transform,
)
from flowlab.transforms.base import Transform
from flowlab.transforms.linear import FullLinear


class Scale(Transform):
    """z = 2x with a configurable mistake."""

    def __init__(self, bug: str = "") -> None:
        super().__init__()
        self.bug = bug

    def forward(self, x: Tensor):
        ld = x.new_full((x.shape[0],), x.shape[1] * torch.log(torch.tensor(2.0)).item())
        if self.bug == "sign":
            ld = -ld
        if self.bug == "batch_sum":
            ld = ld.sum().expand(x.shape[0])
        z = 2 * x
        if self.bug == "mix":  # invisible for a batch of one sample
            z = z + (x.sum(dim=0, keepdim=True) - x)
        return z, ld

    def inverse(self, z: Tensor):
        ld = z.new_full((z.shape[0],), -z.shape[1] * torch.log(torch.tensor(2.0)).item())
        if self.bug == "inverse":
            return z / 3, ld
        if self.bug == "inverse_sign":
            ld = -ld
        return z / 2, ld


def test_correct_layer_passes():
    check_transform(Scale(), torch.randn(4, 3, dtype=torch.float64))


@pytest.mark.parametrize(
    "bug, match",
    [
        ("sign", "wrong sign"),
        ("batch_sum", "summed over the whole batch"),
        ("inverse", "does not undo f"),
        ("inverse_sign", "should be 0"),
    ],
)
def test_each_mistake_is_caught_with_a_hint(bug, match):
    with pytest.raises(AssertionError, match=match):
        check_transform(Scale(bug), torch.randn(4, 3, dtype=torch.float64))


def test_mixing_the_batch_is_caught():
    x = torch.randn(4, 3, dtype=torch.float64)
    assert_logabsdet_matches_jacobian(Scale("mix"), x)  # per-sample Jacobians look right ...
    with pytest.raises(AssertionError, match="mixes the batch"):
        assert_batch_independent(Scale("mix"), x)  # ... but sample 0 moves the others


def test_brute_force_logabsdet_of_a_linear_map():
    layer = FullLinear(4).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    expected = torch.linalg.slogdet(layer.weight())[1].expand(3)
    assert torch.allclose(brute_force_logabsdet(layer, x), expected)
    assert_logabsdet_matches_jacobian(layer, x)
    assert_inverse_round_trip(layer, x)
    assert_batch_independent(layer, x)


def test_contract_output_shapes_are_checked():
    class NoLogdet(Transform):
        def forward(self, x):
            return x

    with pytest.raises(AssertionError, match="pair"):
        assert_logabsdet_matches_jacobian(NoLogdet(), torch.randn(2, 2, dtype=torch.float64))

    class PerDimension(Transform):
        def forward(self, x):
            return x, torch.zeros_like(x)

    with pytest.raises(AssertionError, match="shape \\(batch,\\)"):
        assert_logabsdet_matches_jacobian(PerDimension(), torch.randn(2, 2, dtype=torch.float64))


def test_check_input_messages():
    ref = torch.zeros((), dtype=torch.float32)
    x = torch.randn(4, 3)
    assert check_input(x, event_shape=(3,), like=ref) is x
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_input([1.0, 2.0])
    with pytest.raises(TypeError, match="dequantize"):
        check_input(torch.ones(2, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"shape \(batch, 5\), got \(4, 3\)"):
        check_input(x, event_shape=(5,))
    with pytest.raises(ValueError, match="4 axes"):
        check_input(x, event_dim=3)
    with pytest.raises(TypeError, match=r"x.to\(torch.float32\)"):
        check_input(x.double(), name="x", like=ref)
    if torch.device("meta") != x.device:  # a second device that needs no accelerator
        with pytest.raises(TypeError, match="lives on"):
            check_input(torch.empty(4, 3, device="meta"), like=ref)



def test_check_input_accepts_the_autocast_dtype_only_under_autocast():
    ref = torch.zeros((), dtype=torch.float32)
    low = torch.randn(4, 3).bfloat16()
    with pytest.raises(TypeError, match="bfloat16"):
        check_input(low, like=ref)  # a bf16 batch for a float32 model: a real mistake
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert check_input(low, like=ref) is low  # mixed precision: the point of autocast
        with pytest.raises(TypeError, match="float64"):
            check_input(low.double(), like=ref)  # not the autocast dtype: still refused

def test_check_finite_names_the_bad_rows():
    x = torch.zeros(8, 2)
    check_finite(x)
    x[3, 0] = float("inf")
    x[6, 1] = float("nan")
    with pytest.raises(ValueError, match=r"sample\(s\) \[3, 6\]"):
        check_finite(x, name="x", layer="Flow")


def test_an_empty_batch_is_a_clear_error() -> None:
    import flowlab as fl

    flow = fl.Flow(fl.StandardNormal(2), [fl.AffineCoupling(fl.HalfMask(2))])
    with pytest.raises(ValueError, match="empty"):
        flow.log_prob(torch.zeros(0, 2))
