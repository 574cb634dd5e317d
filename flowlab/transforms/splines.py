r"""Rational-quadratic spline coupling (Durkan et al. 2019, "Neural Spline Flows").

A monotone rational-quadratic (RQ) spline maps :math:`[-B, B]` onto itself through
:math:`K` bins with knots :math:`(x^{(k)}, y^{(k)})_{k=0}^{K}` and positive derivatives
:math:`\delta^{(k)}` at the knots; outside :math:`[-B, B]` it is the identity (linear tails,
so the boundary derivatives are :math:`\delta^{(0)} = \delta^{(K)} = 1`).  In bin :math:`k`,
with width :math:`w_k`, height :math:`h_k`, slope :math:`s_k = h_k / w_k` and
:math:`\xi = (x - x^{(k)}) / w_k \in [0, 1]`:

.. math::

    y = y^{(k)} + \frac{h_k \left[s_k \xi^2 + \delta^{(k)} \xi(1-\xi)\right]}
                      {s_k + \left[\delta^{(k+1)} + \delta^{(k)} - 2 s_k\right] \xi(1-\xi)},

    \frac{dy}{dx} = \frac{s_k^2 \left[\delta^{(k+1)} \xi^2 + 2 s_k \xi(1-\xi)
                    + \delta^{(k)} (1-\xi)^2\right]}
                   {\left(s_k + \left[\delta^{(k+1)} + \delta^{(k)} - 2 s_k\right]
                    \xi(1-\xi)\right)^2}.

The inverse solves a quadratic :math:`a\xi^2 + b\xi + c = 0` for :math:`\xi` in closed form
(the numerically stable root :math:`\xi = 2c / (-b - \sqrt{b^2 - 4ac})`).

The parameters of each transformed coordinate are :math:`3K - 1` unconstrained numbers:
:math:`K` for the widths and :math:`K` for the heights (softmax, then a minimum size),
:math:`K - 1` for the interior derivatives (softplus plus a minimum).  Everything is
vectorised: the bin of each input is found with :func:`torch.searchsorted`, and the tails are
selected with :func:`torch.where` (no boolean indexing, no host synchronisation).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .coupling import Coupling
from .masks import Mask

__all__ = ["rational_quadratic_spline", "RQSplineCoupling"]


def _knots(
    unnormalized: Tensor, bound: float, min_size: float
) -> tuple[Tensor, Tensor]:
    """Bin sizes (softmax, at least ``min_size`` of the range) and knot positions on [-B, B]."""
    bins = unnormalized.shape[-1]
    sizes = min_size + (1.0 - min_size * bins) * torch.softmax(unnormalized, dim=-1)
    knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0), value=0.0)
    knots = (2.0 * bound) * knots - bound
    # Pin the end knots exactly to -B and B (the cumulative sum may round).
    knots = torch.cat([knots.new_full(knots.shape[:-1] + (1,), -bound), knots[..., 1:-1],
                       knots.new_full(knots.shape[:-1] + (1,), bound)], dim=-1)
    return knots[..., 1:] - knots[..., :-1], knots


def _gather(t: Tensor, idx: Tensor) -> Tensor:
    return t.gather(-1, idx).squeeze(-1)


def rational_quadratic_spline(
    inputs: Tensor,
    unnormalized_widths: Tensor,
    unnormalized_heights: Tensor,
    unnormalized_derivatives: Tensor,
    inverse: bool = False,
    bound: float = 3.0,
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    r"""Monotone RQ spline on :math:`[-B, B]` with identity tails, applied elementwise.

    Args:
        inputs: any shape ``S``.
        unnormalized_widths: shape ``S + (K,)``; bin widths are
            :math:`w = 2B\,[m_w + (1 - K m_w)\operatorname{softmax}(\cdot)]`.
        unnormalized_heights: shape ``S + (K,)``, likewise for the heights.
        unnormalized_derivatives: shape ``S + (K-1,)``; the interior knot derivatives are
            :math:`m_\delta + \operatorname{softplus}(\cdot)`; the two boundary derivatives are 1.
        inverse: evaluate :math:`g = f^{-1}` instead of :math:`f`.
        bound: :math:`B`, the half-width of the spline's interval.
        min_bin_width, min_bin_height, min_derivative: lower limits that keep the map
            well conditioned.

    Returns:
        ``(outputs, logabsdet)``, both of shape ``S``: the elementwise
        :math:`\log|dy/dx|` (forward) or :math:`\log|dx/dy|` (inverse).
    """
    bins = unnormalized_widths.shape[-1]
    if unnormalized_heights.shape[-1] != bins or unnormalized_derivatives.shape[-1] != bins - 1:
        raise ValueError(
            f"a spline with K={bins} bins needs K widths, K heights and K-1 derivatives, got "
            f"{bins}, {unnormalized_heights.shape[-1]}, {unnormalized_derivatives.shape[-1]}"
        )
    if min_bin_width * bins > 1.0 or min_bin_height * bins > 1.0:
        raise ValueError("min_bin_width/min_bin_height times the number of bins must be <= 1")

    widths, cum_widths = _knots(unnormalized_widths, bound, min_bin_width)
    heights, cum_heights = _knots(unnormalized_heights, bound, min_bin_height)
    derivatives = F.pad(min_derivative + F.softplus(unnormalized_derivatives), (1, 1), value=1.0)

    inside = (inputs >= -bound) & (inputs <= bound)
    # Evaluate the spline at the clamped input everywhere (the tails are chosen below), so
    # that every element is finite and gradients through torch.where stay clean.
    x = inputs.clamp(-bound, bound)
    knots = cum_heights if inverse else cum_widths
    idx = torch.searchsorted(knots[..., 1:-1].contiguous(), x.unsqueeze(-1).contiguous(),
                             right=True)

    x_k = _gather(cum_widths, idx)
    w_k = _gather(widths, idx)
    y_k = _gather(cum_heights, idx)
    h_k = _gather(heights, idx)
    d_k = _gather(derivatives, idx)
    d_k1 = _gather(derivatives[..., 1:], idx)
    s_k = h_k / w_k
    d_sum = d_k + d_k1 - 2.0 * s_k

    if not inverse:
        xi = (x - x_k) / w_k
        xi_1mxi = xi * (1.0 - xi)
        denominator = s_k + d_sum * xi_1mxi
        out = y_k + h_k * (s_k * xi * xi + d_k * xi_1mxi) / denominator
    else:
        dy = x - y_k
        a = h_k * (s_k - d_k) + dy * d_sum
        b = h_k * d_k - dy * d_sum
        c = -s_k * dy
        discriminant = (b * b - 4.0 * a * c).clamp_min(0.0)
        xi = (2.0 * c) / (-b - torch.sqrt(discriminant))
        xi_1mxi = xi * (1.0 - xi)
        denominator = s_k + d_sum * xi_1mxi
        out = x_k + xi * w_k

    one_m_xi = 1.0 - xi
    derivative_numerator = (s_k * s_k) * (
        d_k1 * xi * xi + 2.0 * s_k * xi_1mxi + d_k * one_m_xi * one_m_xi
    )
    logabsdet = torch.log(derivative_numerator) - 2.0 * torch.log(denominator)
    if inverse:
        logabsdet = -logabsdet

    outputs = torch.where(inside, out, inputs)
    logabsdet = torch.where(inside, logabsdet, torch.zeros_like(logabsdet))
    return outputs, logabsdet


class RQSplineCoupling(Coupling):
    r"""Coupling layer whose transform :math:`\hat f` is a rational-quadratic spline per
    coordinate of :math:`x_B` (Durkan et al. 2019):

    .. math::

        z_B^{(i)} = \operatorname{RQS}\big(x_B^{(i)};\, \theta_i(x_A)\big), \qquad
        \log|\det Df(x)| = \sum_i \log \frac{d z_B^{(i)}}{d x_B^{(i)}} ,

    with :math:`K` = ``bins`` bins on :math:`[-B, B]` (``bound``) and the identity outside.
    One conditioner head outputs all :math:`3K - 1` spline parameters of every transformed
    coordinate at once.  The derivative parameters are offset so that a zero conditioner
    output gives equal bins and unit derivatives: the zero-initialised layer is the identity.

    Args:
        mask: which coordinates are kept and transformed.
        bins: :math:`K`.
        bound: :math:`B`; data should mostly lie inside :math:`[-B, B]` (standardise it).
        conditioner: maps ``(batch, n_A)`` to ``(batch, n_B * (3K - 1))``; ``None`` builds an
            MLP with a zero-initialised output layer.
        hidden: hidden sizes of the default MLP.
        min_bin_width, min_bin_height, min_derivative: see :func:`rational_quadratic_spline`.
    """

    def __init__(
        self,
        mask: Mask,
        bins: int = 8,
        bound: float = 3.0,
        conditioner: nn.Module | None = None,
        hidden: Sequence[int] = (256, 256),
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
    ) -> None:
        if int(bins) != bins or bins < 2:
            raise ValueError(f"RQSplineCoupling needs at least 2 bins, got {bins!r}")
        if not bound > 0:
            raise ValueError(f"bound must be positive, got {bound}")
        super().__init__(mask, conditioner, hidden, params_per_feature=3 * int(bins) - 1)
        self.bins = int(bins)
        self.bound = float(bound)
        self.min_bin_width = float(min_bin_width)
        self.min_bin_height = float(min_bin_height)
        self.min_derivative = float(min_derivative)
        # softplus(offset) + min_derivative = 1, so a zero parameter means derivative 1.
        self._derivative_offset = math.log(math.expm1(1.0 - self.min_derivative))

    def _spline(self, inputs: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        k = self.bins
        params = params.reshape(inputs.shape[0], inputs.shape[1], 3 * k - 1)
        outputs, logabsdet = rational_quadratic_spline(
            inputs,
            params[..., :k],
            params[..., k : 2 * k],
            params[..., 2 * k :] + self._derivative_offset,
            inverse=inverse,
            bound=self.bound,
            min_bin_width=self.min_bin_width,
            min_bin_height=self.min_bin_height,
            min_derivative=self.min_derivative,
        )
        return outputs, logabsdet.sum(dim=1)

    def transform_b(self, x_b: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return self._spline(x_b, params, inverse=False)

    def inverse_transform_b(self, z_b: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return self._spline(z_b, params, inverse=True)

    def extra_repr(self) -> str:
        return f"bins={self.bins}, bound={self.bound}"
