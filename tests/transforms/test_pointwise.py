"""Elementwise bijections: contract checks, numerics, the one-line extension."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlab.testing import check_transform
from flowlab.transforms.linear import DiagonalLinear
from flowlab.transforms.pointwise import Elementwise, LeakyReLU, Logit, Sigmoid, Tanh

REALS = lambda shape: torch.randn(*shape, dtype=torch.float64) * 2
UNIT = lambda shape: torch.rand(*shape, dtype=torch.float64) * 0.98 + 0.01

CASES = {
    "leaky_relu": (lambda: LeakyReLU(0.2), REALS),
    "sigmoid": (Sigmoid, REALS),
    "logit": (Logit, UNIT),
    "logit_margin": (lambda: Logit(alpha=0.05), UNIT),
    "tanh": (Tanh, REALS),
    "affine": (lambda: DiagonalLinear(3), REALS),  # the elementwise scale-and-shift layer
}


@pytest.mark.parametrize("name", list(CASES))
def test_contract(name, perturb):
    make, sample = CASES[name]
    layer = perturb(make().double(), scale=0.5)
    check_transform(layer, sample((6, 3)))


@pytest.mark.parametrize("name", ["leaky_relu", "sigmoid", "logit", "logit_margin", "tanh"])
def test_any_event_shape(name):
    make, sample = CASES[name]
    check_transform(make().double(), sample((3, 2, 2)))


def test_elementwise_affine_event_shape(perturb):
    layer = perturb(DiagonalLinear((2, 3)).double(), scale=0.5)
    check_transform(layer, torch.randn(4, 2, 3, dtype=torch.float64))


@settings(max_examples=8, deadline=None)
@given(features=st.integers(1, 6), batch=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_affine_hypothesis(features, batch, seed):
    torch.manual_seed(seed)
    layer = DiagonalLinear(features).double()
    with torch.no_grad():
        layer.log_diagonal.normal_()
        layer.bias.normal_()
    check_transform(layer, torch.randn(batch, features, dtype=torch.float64))


def test_formulas_match_torch():
    x = torch.linspace(-4, 4, 41, dtype=torch.float64).reshape(1, -1)
    assert torch.allclose(Sigmoid()(x)[0], torch.sigmoid(x))
    assert torch.allclose(Tanh()(x)[0], torch.tanh(x))
    assert torch.allclose(LeakyReLU(0.3)(x)[0], torch.nn.functional.leaky_relu(x, 0.3))
    # LeakyReLU's log-det counts log(a) once per negative input.
    n_neg = int((x < 0).sum())
    assert LeakyReLU(0.3)(x)[1].item() == pytest.approx(n_neg * math.log(0.3))


def test_sigmoid_logit_are_inverse():
    x = torch.randn(5, 4, dtype=torch.float64)
    u, ld_s = Sigmoid()(x)
    back, ld_l = Logit()(u)
    assert torch.allclose(back, x)
    assert torch.allclose(ld_s + ld_l, torch.zeros(5, dtype=torch.float64))


def test_tanh_log_derivative_stays_finite_for_large_inputs():
    x = torch.tensor([[30.0, -30.0, 0.0]], dtype=torch.float32)
    _, ld = Tanh()(x)
    expected = 2 * (2 * (math.log(2) - 30.0)) + 0.0  # two saturated entries, one at 0 (log 1)
    assert torch.isfinite(ld).all()
    assert ld.item() == pytest.approx(expected, rel=1e-5)


def test_one_line_extension():
    Sinh = Elementwise.from_functions(
        torch.sinh, torch.asinh, lambda x: torch.log(torch.cosh(x)), name="Sinh"
    )
    layer = Sinh()
    assert isinstance(layer, Elementwise) and type(layer).__name__ == "Sinh"
    check_transform(layer, torch.randn(4, 3, dtype=torch.float64))


def test_broken_extension_is_caught():
    # A wrong derivative must be detected by the contract checks.
    Wrong = Elementwise.from_functions(torch.sinh, torch.asinh, lambda x: torch.sinh(x))
    with pytest.raises(AssertionError, match="log\\|det\\|"):
        check_transform(Wrong(), torch.randn(4, 3, dtype=torch.float64))


def test_bad_inputs():
    with pytest.raises(ValueError, match="positive negative_slope"):
        LeakyReLU(0.0)
    with pytest.raises(TypeError, match="floating-point"):
        Sigmoid()(torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        DiagonalLinear(3)(torch.randn(4, 2))
    with pytest.raises(TypeError, match="float32 parameters"):
        DiagonalLinear(3)(torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 0.5\)"):
        Logit(alpha=0.5)


def test_logit_margin_formula():
    # RealNVP's logit transform: p = alpha + (1 - 2 alpha) y, z = logit(p).
    alpha = 0.05
    y = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    z, ld = Logit(alpha)(y)
    assert torch.allclose(
        z, torch.tensor([[math.log(0.05 / 0.95), 0.0, math.log(0.95 / 0.05)]], dtype=torch.float64)
    )
    p = torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)
    assert torch.allclose(ld, (math.log(0.9) - torch.log(p) - torch.log(1 - p)).sum().reshape(1))
    back, ld_inv = Logit(alpha).inverse(z)
    assert torch.allclose(back, y) and torch.allclose(ld + ld_inv, torch.zeros(1, dtype=y.dtype))


def test_one_name_per_concept():
    # Merged in issue 16: the old names are gone from the package (no silent duplicates).
    import flowlab
    import flowlab.transforms as T

    for old in ("ElementwiseAffine", "LogitTransform"):
        assert not hasattr(T, old) and not hasattr(flowlab, old), old
