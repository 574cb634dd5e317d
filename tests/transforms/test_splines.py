"""The rational-quadratic spline: monotone, exact inverse, exact derivative, identity tails."""

from __future__ import annotations

import pytest
import torch

from flowlab.testing import check_transform
from flowlab.transforms.masks import HalfMask
from flowlab.transforms.splines import RQSplineCoupling, rational_quadratic_spline

K, B = 6, 3.0


def _params(n: int, scale: float = 1.5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    w, h, d = (scale * torch.randn(k, generator=gen, dtype=torch.float64) for k in (K, K, K - 1))
    return w.expand(n, K), h.expand(n, K), d.expand(n, K - 1)


def _knots(unnormalized: torch.Tensor, m: float = 1e-3) -> torch.Tensor:
    """The knots built independently of the library: minimum size ``m``, cumulative sum."""
    sizes = m + (1 - K * m) * torch.softmax(unnormalized, -1)
    return torch.cat([torch.tensor([-B], dtype=sizes.dtype), -B + 2 * B * sizes.cumsum(-1)])


def test_monotone_bijection_on_the_interval_with_identity_tails():
    x = torch.linspace(-5, 5, 2001, dtype=torch.float64)
    y, ld = rational_quadratic_spline(x, *_params(x.numel()), bound=B)
    assert (y[1:] > y[:-1]).all()  # strictly increasing
    outside = x.abs() > B
    assert torch.equal(y[outside], x[outside])
    assert torch.equal(ld[outside], torch.zeros_like(ld[outside]))
    ends = rational_quadratic_spline(torch.tensor([-B, B], dtype=torch.float64),
                                     *_params(2), bound=B)[0]
    assert torch.allclose(ends, torch.tensor([-B, B], dtype=torch.float64))


def test_passes_through_the_knots():
    w, h, d = _params(K + 1)
    y, _ = rational_quadratic_spline(_knots(w[0]), w, h, d, bound=B)
    assert torch.allclose(y, _knots(h[0]), atol=1e-10)


def test_inverse_and_log_derivative_are_exact():
    x = torch.linspace(-4, 4, 801, dtype=torch.float64).requires_grad_()
    params = _params(x.numel(), scale=3.0)  # far from uniform bins
    y, ld = rational_quadratic_spline(x, *params, bound=B)
    (dy_dx,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(ld, torch.log(dy_dx), atol=1e-9)
    x_back, ld_inv = rational_quadratic_spline(y.detach(), *params, bound=B, inverse=True)
    assert torch.allclose(x_back, x.detach(), atol=1e-9)
    assert torch.allclose(ld_inv, -ld.detach(), atol=1e-9)


def test_inverse_at_the_knots():
    w, h, d = _params(K + 1, seed=3)
    x, _ = rational_quadratic_spline(_knots(h[0]), w, h, d, bound=B, inverse=True)
    assert torch.allclose(x, _knots(w[0]), atol=1e-10)


def test_zero_parameters_give_identity_with_unit_derivatives():
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    zeros = torch.zeros(101, K, dtype=torch.float64)
    # softplus(0) + min_derivative != 1, so pass the offset RQSplineCoupling uses.
    offset = torch.log(torch.expm1(torch.tensor(1 - 1e-3, dtype=torch.float64)))
    y, ld = rational_quadratic_spline(x, zeros, zeros, zeros[:, 1:] + offset, bound=B)
    assert torch.allclose(y, x, atol=1e-12) and torch.allclose(ld, torch.zeros_like(ld), atol=1e-12)


def test_gradients_are_finite_everywhere():
    x = torch.tensor([-10.0, -3.0, -1.0, 0.0, 2.999, 3.0, 10.0], dtype=torch.float64)
    params = [p.clone().requires_grad_() for p in _params(x.numel())]
    xr = x.clone().requires_grad_()
    y, ld = rational_quadratic_spline(xr, *params, bound=B)
    (y.sum() + ld.sum()).backward()
    for t in (xr, *params):
        assert torch.isfinite(t.grad).all()


def test_batched_parameter_shapes():
    x = torch.randn(4, 3, dtype=torch.float64)
    w, h, d = (torch.randn(4, 3, k, dtype=torch.float64) for k in (K, K, K - 1))
    y, ld = rational_quadratic_spline(x, w, h, d, bound=B)
    assert y.shape == ld.shape == (4, 3)
    # each element only sees its own parameters
    y0, _ = rational_quadratic_spline(x[1, 2:3], w[1, 2:3], h[1, 2:3], d[1, 2:3], bound=B)
    assert torch.allclose(y[1, 2], y0[0])


def test_wrong_parameter_counts():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="K-1 derivatives"):
        rational_quadratic_spline(x, torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="at least 2 bins"):
        RQSplineCoupling(HalfMask(4), bins=1)


@pytest.mark.parametrize("bins", [2, 8])
def test_coupling_contract(bins, perturb):
    layer = perturb(RQSplineCoupling(HalfMask(4), bins=bins, bound=2.0, hidden=(16,)).double(), 0.5)
    x = torch.tensor([[0.1, -0.3, 0.5, 2.5], [1.0, 0.2, -1.9, -0.7], [3.0, -3.0, 0.0, 1.2]],
                     dtype=torch.float64)
    check_transform(layer, x)


def test_different_minimum_widths_and_heights_pass_through_their_knots():
    w, h, d = _params(K + 1, scale=4.0, seed=5)
    mw, mh = 0.05, 0.01
    y, _ = rational_quadratic_spline(_knots(w[0], mw), w, h, d, bound=B,
                                     min_bin_width=mw, min_bin_height=mh)
    assert torch.allclose(y, _knots(h[0], mh), atol=1e-10)


def test_end_knots_hold_in_float32_even_for_extreme_parameters():
    # The interval's ends map to themselves up to rounding (the end knots are pinned, not
    # summed), so the spline meets its identity tails without a jump.
    gen = torch.Generator().manual_seed(0)
    n = 64
    w, h = (20 * torch.randn(n, K, generator=gen) for _ in range(2))
    d = 5 * torch.randn(n, K - 1, generator=gen)
    x = torch.tensor([-B, B]).repeat(n // 2)
    y, _ = rational_quadratic_spline(x, w, h, d, bound=B)
    assert torch.allclose(y, x, rtol=0, atol=2e-6)


# ------------------------------------------------------------------ parameter scale (issue 13)
def test_default_param_scale_is_one_over_sqrt_of_the_last_hidden_width():
    assert RQSplineCoupling(HalfMask(4), hidden=(256, 256)).param_scale == pytest.approx(1 / 16)
    assert RQSplineCoupling(HalfMask(4), hidden=(32, 64)).param_scale == pytest.approx(1 / 8)
    assert RQSplineCoupling(HalfMask(4), hidden=()).param_scale == 1.0  # a single linear layer
    custom = torch.nn.Linear(2, 2 * (3 * 8 - 1))
    assert RQSplineCoupling(HalfMask(4), conditioner=custom).param_scale == 1.0
    assert RQSplineCoupling(HalfMask(4), conditioner=custom, param_scale=0.5).param_scale == 0.5
    with pytest.raises(ValueError, match="param_scale must be positive"):
        RQSplineCoupling(HalfMask(4), param_scale=0.0)


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_the_coupling_is_the_spline_of_the_scaled_conditioner_output(scale):
    # Written out with the functional spline, independently of the layer's parameter layout.
    torch.manual_seed(0)
    bins, n_b = 4, 2
    layer = RQSplineCoupling(HalfMask(4), bins=bins, bound=B, hidden=(8,),
                             param_scale=scale).double()
    with torch.no_grad():
        for p in layer.conditioner.parameters():
            p.normal_()
    x = torch.randn(5, 4, dtype=torch.float64)
    raw = scale * layer.conditioner(x[:, :2]).detach().reshape(5, 3 * bins - 1, n_b)
    w, h, d = raw.transpose(1, 2).split([bins, bins, bins - 1], dim=-1)
    offset = torch.log(torch.expm1(torch.tensor(1 - 1e-3, dtype=torch.float64)))
    y, ld = rational_quadratic_spline(x[:, 2:], w, h, d + offset, bound=B)
    z, logabsdet = layer(x)
    assert torch.allclose(z[:, 2:], y) and torch.allclose(logabsdet, ld.sum(dim=1))
    check_transform(layer, x)
