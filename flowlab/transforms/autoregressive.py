r"""Autoregressive flows (MAF, IAF): every coordinate transformed given the ones before it.

Choose an order of the :math:`D` coordinates (here written :math:`1..D`).  An autoregressive
layer transforms each coordinate with an invertible scalar map whose parameters depend on the
*previous* coordinates only:

.. math::

    z_d = \hat f\big(x_d \mid \theta_d(x_{<d})\big), \qquad d = 1, \dots, D .

**Triangular Jacobian.**  :math:`z_d` does not depend on :math:`x_j` for :math:`j > d`, so
:math:`Df(x)` is lower triangular in that order and its determinant is the product of the
diagonal:

.. math::

    \log|\det Df(x)| = \sum_{d=1}^{D} \log\Big|\frac{\partial \hat f}{\partial x_d}
    \big(x_d \mid \theta_d(x_{<d})\big)\Big| ;
    \quad \text{affine } z_d = x_d e^{s_d} + t_d: \ \log|\det Df(x)| = \sum_d s_d .

A coupling layer is the special case with two blocks; an autoregressive layer is the finest
triangular structure, so one layer already lets every coordinate depend on all earlier ones.

**The cost asymmetry.**  A MADE (:class:`~flowlab.nets.made.MADE`) computes all
:math:`\theta_d(x_{<d})` in *one* pass, so the direction that reads :math:`x` is parallel.  The
other direction is sequential: :math:`x_d = \hat f^{-1}(z_d \mid \theta_d(x_{<d}))` needs
:math:`x_{<d}` first, i.e. :math:`D` passes of the network.

=================================  =======================  =========================
layer                              density :math:`x \to z`   sampling :math:`z \to x`
=================================  =======================  =========================
:class:`MaskedAffineAutoregressive`  1 pass (MAF)             :math:`D` passes
:class:`InverseAffineAutoregressive` :math:`D` passes         1 pass (IAF)
=================================  =======================  =========================

MAF (Papamakarios et al. 2017, https://arxiv.org/abs/1705.07057) is the density estimator;
IAF (Kingma et al. 2016, https://arxiv.org/abs/1606.04934) is the same map used the other
way round, for fast sampling (variational posteriors, distillation).  Both take an optional
``context`` (a conditional flow :math:`p(x \mid c)`): the MADE reads it in every output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..checks import check_input
from ..nets.made import MADE
from .base import Transform
from .splines import rational_quadratic_spline

__all__ = [
    "MaskedAutoregressive",
    "MaskedAffineAutoregressive",
    "InverseAffineAutoregressive",
    "MaskedRQSplineAutoregressive",
]


class MaskedAutoregressive(Transform):
    r"""Base class: :math:`z_d = \hat f(x_d \mid \theta_d(x_{<d}, c))` with a MADE conditioner.

    ``forward`` (:math:`x \to z`) is one MADE pass; ``inverse`` (:math:`z \to x`) is
    :math:`D` passes: after pass :math:`k` the first :math:`k` coordinates in the order are
    exact, because their parameters only read coordinates already recovered.

    Args:
        features: :math:`D`.
        params_per_feature: parameters of :math:`\hat f` per coordinate.
        hidden: hidden sizes of the MADE.
        context_features: size of an optional context vector (0 = unconditional).
        order: ``"input"``, ``"reversed"``, ``"random"`` or a permutation of ``range(D)``.
        seed: seed of a random order.

    Subclasses implement ``elementwise(inputs, params, inverse) -> (outputs, logabsdet)``
    with ``params`` of shape ``(batch, params_per_feature, D)``.

    Example:
        An additive autoregressive layer, :math:`z_d = x_d + t_d(x_{<d})` (volume preserving):

        >>> class AdditiveAutoregressive(MaskedAutoregressive):
        ...     def __init__(self, features):
        ...         super().__init__(features, params_per_feature=1, hidden=(16,))
        ...     def elementwise(self, inputs, params, inverse):
        ...         t = params[:, 0]
        ...         return (inputs - t if inverse else inputs + t), inputs.new_zeros(len(inputs))
        >>> layer = AdditiveAutoregressive(3)
        >>> x = torch.randn(2, 3)
        >>> torch.allclose(layer.inverse(layer(x)[0])[0], x)
        True
    """

    def __init__(
        self,
        features: int,
        params_per_feature: int,
        hidden: Sequence[int] = (128, 128),
        context_features: int = 0,
        order: str | Sequence[int] | Tensor = "input",
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        self.features = int(features)
        self.params_per_feature = int(params_per_feature)
        self.context_features = int(context_features)
        self.made = MADE(
            self.features, self.params_per_feature, hidden, self.context_features, order, seed
        )
        self.register_buffer("_ref", self.made.net[0].weight.new_zeros(()), persistent=False)

    @property
    def order(self) -> Tensor:
        """The coordinates in the order of the autoregression (``order[0]`` comes first)."""
        return self.made.order

    def elementwise(
        self, inputs: Tensor, params: Tensor, inverse: bool
    ) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def conditional(self) -> bool:
        """Whether the layer reads a context (built with ``context_features > 0``)."""
        return self.context_features > 0

    def _params(self, x: Tensor, context: Tensor | None) -> Tensor:
        return self.made(x, context).view(x.shape[0], self.params_per_feature, self.features)

    def _check(self, x: Tensor, name: str) -> Tensor:
        return check_input(
            x, name=name, layer=type(self).__name__, event_shape=(self.features,), like=self._ref
        )

    def _one_pass(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """``x -> z``: every parameter from one network evaluation."""
        return self.elementwise(x, self._params(x, context), inverse=False)

    def _sequential(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """``z -> x``: :math:`D` network evaluations, one coordinate fixed per pass."""
        x = torch.zeros_like(z)
        logabsdet = z.new_zeros(z.shape[0])
        for _ in range(self.features):
            x, logabsdet = self.elementwise(z, self._params(x, context), inverse=True)
        return x, logabsdet

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._one_pass(self._check(x, "x"), context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._sequential(self._check(z, "z"), context)

    def extra_repr(self) -> str:
        return f"features={self.features}, context_features={self.context_features}"


class MaskedAffineAutoregressive(MaskedAutoregressive):
    r"""MAF layer (Papamakarios et al. 2017, https://arxiv.org/abs/1705.07057): an affine map
    per coordinate with a bounded log-scale, parameters from a MADE.

    .. math::

        (\tilde s_d, t_d) = \mathrm{MADE}(x_{<d}, c)_d, \quad s_d = B \tanh(\tilde s_d / B),
        \quad z_d = x_d e^{s_d} + t_d, \quad \log|\det Df(x)| = \sum_{d=1}^{D} s_d .

    :math:`Df(x)` is lower triangular in the order with diagonal :math:`e^{s_d}`.  The inverse
    :math:`x_d = (z_d - t_d) e^{-s_d}` is sequential (:math:`D` MADE passes).  The MADE starts
    with a zero output layer, so the layer starts as the identity.

    Args:
        features: :math:`D`.
        hidden: hidden sizes of the MADE.
        context_features: size of an optional context vector :math:`c` (0 = unconditional).
        order: ``"input"``, ``"reversed"``, ``"random"`` or a permutation of ``range(D)``;
            stack layers with alternating orders (what :func:`flowlab.models.maf` does).
        seed: seed of a random order.
        scale_bound: :math:`B` (soft clamp of the log-scale); ``None`` switches it off.

    Example:
        >>> layer = MaskedAffineAutoregressive(3, hidden=(16,))
        >>> z, logabsdet = layer(torch.randn(4, 3))
        >>> z.shape, logabsdet.shape
        (torch.Size([4, 3]), torch.Size([4]))
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (128, 128),
        context_features: int = 0,
        order: str | Sequence[int] | Tensor = "input",
        seed: int | None = 0,
        scale_bound: float | None = 2.0,
    ) -> None:
        super().__init__(features, 2, hidden, context_features, order, seed)
        if scale_bound is not None and not scale_bound > 0:
            raise ValueError(f"scale_bound must be positive (or None), got {scale_bound}")
        self.scale_bound = None if scale_bound is None else float(scale_bound)

    def elementwise(self, inputs: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        raw, shift = params.unbind(1)
        s = raw if self.scale_bound is None else torch.tanh(raw / self.scale_bound) * self.scale_bound
        if inverse:
            return (inputs - shift) * torch.exp(-s), -s.sum(dim=1)
        return inputs * torch.exp(s) + shift, s.sum(dim=1)


class InverseAffineAutoregressive(MaskedAffineAutoregressive):
    r"""IAF layer (Kingma et al. 2016, https://arxiv.org/abs/1606.04934): the inverse of
    :class:`MaskedAffineAutoregressive`, with the autoregression on the *latent* side.

    .. math::

        x_d = z_d e^{s_d} + t_d,\ \ (\tilde s_d, t_d) = \mathrm{MADE}(z_{<d}, c)_d, \qquad
        \log|\det Df(x)| = -\sum_{d=1}^{D} s_d .

    Sampling (``inverse``, :math:`z \to x`) is one MADE pass; the density (``forward``,
    :math:`x \to z`) needs :math:`D` sequential passes.  Use it when you sample far more than
    you evaluate densities of given data.

    Args:
        features, hidden, context_features, order, seed, scale_bound: as for
            :class:`MaskedAffineAutoregressive`.

    Example:
        >>> layer = InverseAffineAutoregressive(3, hidden=(16,))
        >>> x, logabsdet = layer.inverse(torch.randn(4, 3))   # one pass: fast sampling
        >>> x.shape
        torch.Size([4, 3])
    """

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._sequential(self._check(x, "x"), context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._one_pass(self._check(z, "z"), context)


class MaskedRQSplineAutoregressive(MaskedAutoregressive):
    r"""Autoregressive neural spline flow layer (Durkan et al. 2019,
    https://arxiv.org/abs/1906.04032): a rational-quadratic spline per coordinate.

    .. math::

        z_d = \operatorname{RQS}\big(x_d;\ \mathrm{MADE}(x_{<d}, c)_d\big), \qquad
        \log|\det Df(x)| = \sum_{d=1}^{D} \log \frac{\partial z_d}{\partial x_d},

    with :math:`K` bins on :math:`[-B, B]` and the identity outside
    (:func:`~flowlab.transforms.splines.rational_quadratic_spline`).  A zero MADE output gives
    equal bins and unit derivatives: the layer starts as the identity.

    Args:
        features, hidden, context_features, order, seed: as for
            :class:`MaskedAffineAutoregressive`.
        bins: :math:`K`.
        bound: :math:`B`.

    Example:
        >>> layer = MaskedRQSplineAutoregressive(2, hidden=(16,), bins=4)
        >>> x = torch.randn(5, 2)
        >>> torch.allclose(layer(x)[0], x)          # the identity at initialisation
        True
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (128, 128),
        context_features: int = 0,
        order: str | Sequence[int] | Tensor = "input",
        seed: int | None = 0,
        bins: int = 8,
        bound: float = 3.0,
    ) -> None:
        if int(bins) != bins or bins < 2:
            raise ValueError(f"a spline needs at least 2 bins, got {bins!r}")
        if not bound > 0:
            raise ValueError(f"bound must be positive, got {bound}")
        super().__init__(features, 3 * int(bins) - 1, hidden, context_features, order, seed)
        self.bins = int(bins)
        self.bound = float(bound)
        # softplus(offset) + min_derivative = 1: a zero parameter means derivative 1.
        self._derivative_offset = math.log(math.expm1(1.0 - 1e-3))

    def elementwise(self, inputs: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        k = self.bins
        p = params.transpose(1, 2)  # (batch, D, 3K - 1)
        widths, heights, derivatives = p.split([k, k, k - 1], dim=-1)
        out, logabsdet = rational_quadratic_spline(
            inputs, widths, heights, derivatives + self._derivative_offset,
            inverse=inverse, bound=self.bound,
        )
        return out, logabsdet.sum(dim=1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bins={self.bins}, bound={self.bound}"
