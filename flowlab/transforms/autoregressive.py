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

The scalar map :math:`\hat f` is an elementwise transformer
(:mod:`~flowlab.transforms.univariate`: :class:`~flowlab.transforms.univariate.Affine`,
:class:`~flowlab.transforms.splines.RQSpline`, ...), the very objects the coupling layers use: a
coupling layer (:class:`~flowlab.transforms.coupling.Coupling`) is the special case with two
blocks (every :math:`\theta_d` of the second block reads the first block only); an autoregressive
layer is the finest triangular structure, so one layer already lets every coordinate depend on
all earlier ones.  ``MaskedAutoregressive(features, transformer)`` is the general layer.

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

from collections.abc import Sequence

import torch
from torch import Tensor

from ..checks import check_input
from ..nets.made import MADE
from .base import Transform, sum_except_batch
from .splines import RQSpline, SplineSettings
from .univariate import SCALE_BOUND, Affine, Univariate, params_last

__all__ = [
    "MaskedAutoregressive",
    "MaskedAffineAutoregressive",
    "InverseAffineAutoregressive",
    "MaskedRQSplineAutoregressive",
]


class MaskedAutoregressive(Transform):
    r""":math:`z_d = \tau(x_d;\ \theta_d(x_{<d}, c))`: an elementwise transformer :math:`\tau`
    with a MADE conditioner.

    ``forward`` (:math:`x \to z`) is one MADE pass; ``inverse`` (:math:`z \to x`) is
    :math:`D` passes: after pass :math:`k` the first :math:`k` coordinates in the order are
    exact, because their parameters only read coordinates already recovered.

    Args:
        features: :math:`D`.
        transformer: the elementwise map :math:`\tau`, a
            :class:`~flowlab.transforms.univariate.Univariate` (``Affine()``, ``RQSpline()``,
            ...); the MADE outputs its ``params_per_feature`` parameters per coordinate.
        hidden: hidden sizes of the MADE.
        context_features: size of an optional context vector (0 = unconditional).
        order: ``"input"``, ``"reversed"``, ``"random"`` or a permutation of ``range(D)``.
        seed: seed of a random order.

    Example:
        An additive autoregressive layer, :math:`z_d = x_d + t_d(x_{<d})` (volume preserving):

        >>> from flowlab.transforms.univariate import Additive
        >>> layer = MaskedAutoregressive(3, Additive(), hidden=(16,))
        >>> x = torch.randn(2, 3)
        >>> torch.allclose(layer.inverse(layer(x)[0])[0], x)
        True
    """

    def __init__(
        self,
        features: int,
        transformer: Univariate,
        hidden: Sequence[int] = (128, 128),
        context_features: int = 0,
        order: str | Sequence[int] | Tensor = "input",
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        if not isinstance(transformer, Univariate):
            raise TypeError(
                f"{type(self).__name__}: transformer must be a flowlab.transforms.univariate."
                f"Univariate (e.g. Affine()), got {type(transformer).__name__}"
            )
        self.features = int(features)
        self.transformer = transformer
        self.params_per_feature = int(transformer.params_per_feature)
        self.context_features = int(context_features)
        self.made = MADE(
            self.features, self.params_per_feature, hidden, self.context_features, order, seed
        )
        self.register_buffer("_ref", self.made.net[0].weight.new_zeros(()), persistent=False)

    @property
    def order(self) -> Tensor:
        """The coordinates in the order of the autoregression (``order[0]`` comes first)."""
        return self.made.order

    @property
    def conditional(self) -> bool:
        """Whether the layer reads a context (built with ``context_features > 0``)."""
        return self.context_features > 0

    def _params(self, x: Tensor, context: Tensor | None) -> Tensor:
        """The transformer's parameters ``(batch, D, P)`` (the MADE is parameter-major)."""
        return params_last(self.made(x, context), self.params_per_feature)

    def _check(self, x: Tensor, name: str) -> Tensor:
        return check_input(
            x, name=name, layer=type(self).__name__, event_shape=(self.features,), like=self._ref
        )

    def _one_pass(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """``x -> z``: every parameter from one network evaluation."""
        z, ladj = self.transformer(x, self._params(x, context))
        return z, sum_except_batch(ladj)

    def _sequential(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """``z -> x``: :math:`D` network evaluations, one coordinate fixed per pass."""
        x = torch.zeros_like(z)
        ladj = torch.zeros_like(z)
        for _ in range(self.features):
            x, ladj = self.transformer.inverse(z, self._params(x, context))
        return x, sum_except_batch(ladj)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._one_pass(self._check(x, "x"), context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._sequential(self._check(z, "z"), context)

    def extra_repr(self) -> str:
        return f"features={self.features}, context_features={self.context_features}"


class MaskedAffineAutoregressive(MaskedAutoregressive):
    r"""MAF layer (Papamakarios et al. 2017, https://arxiv.org/abs/1705.07057): an affine map
    per coordinate with a bounded log-scale, parameters from a MADE (a
    :class:`MaskedAutoregressive` with the :class:`~flowlab.transforms.univariate.Affine`
    transformer, the one of the affine couplings).

    .. math::

        (t_d, \tilde s_d) = \mathrm{MADE}(x_{<d}, c)_d, \quad s_d = B \tanh(\tilde s_d / B),
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
        scale_bound: :math:`B` (soft clamp of the log-scale, default 3 as every affine layer);
            ``None`` switches it off.

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
        scale_bound: float | None = SCALE_BOUND,
    ) -> None:
        super().__init__(features, Affine(scale_bound), hidden, context_features, order, seed)

    @property
    def scale_bound(self) -> float | None:
        """:math:`B`, the bound of the log-scale (``None``: unbounded)."""
        return self.transformer.bound


class InverseAffineAutoregressive(MaskedAffineAutoregressive):
    r"""IAF layer (Kingma et al. 2016, https://arxiv.org/abs/1606.04934): the inverse of
    :class:`MaskedAffineAutoregressive`, with the autoregression on the *latent* side.

    .. math::

        x_d = z_d e^{s_d} + t_d,\ \ (t_d, \tilde s_d) = \mathrm{MADE}(z_{<d}, c)_d, \qquad
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


class MaskedRQSplineAutoregressive(SplineSettings, MaskedAutoregressive):
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
        >>> torch.allclose(layer(x)[0], x, atol=1e-6)   # the identity at initialisation
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
        super().__init__(features, RQSpline(bins, bound), hidden, context_features, order, seed)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bins={self.bins}, bound={self.bound}"
