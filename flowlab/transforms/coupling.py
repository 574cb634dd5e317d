r"""Coupling layers (NICE, RealNVP): split, condition, transform, concatenate.

With a mask that splits :math:`x` into a kept part :math:`x_A` and a transformed part
:math:`x_B`,

.. math::

    f(x) = \begin{bmatrix} x_A \\ \tau\big(x_B;\ \theta(x_A)\big) \end{bmatrix},
    \qquad
    Df(x) = \begin{bmatrix} I & 0 \\
            \frac{\partial}{\partial x_A}\tau & D\tau\big(x_B;\ \theta(x_A)\big)
            \end{bmatrix},

so the Jacobian is block triangular and
:math:`\log|\det Df(x)| = \sum_{i \in B} \log|\tau'(x_i;\ \theta_i(x_A))|`, whatever the
conditioner :math:`\theta` is (an MLP, a CNN, ...: it never has to be inverted).  The inverse
reuses :math:`\theta` on the unchanged part: :math:`z_A = x_A`, so
:math:`x_B = \tau^{-1}(z_B;\ \theta(z_A))`.

**A coupling is autoregression with two blocks.**  An autoregressive layer
(:mod:`~flowlab.transforms.autoregressive`) computes :math:`z_i = \tau(x_i;\ \theta_i(x_{<i}))`;
order the coordinates :math:`A` first, then :math:`B`, and let every :math:`\theta_i` read only
the first block: that is this layer.  Both hold the same elementwise transformer :math:`\tau`
(:mod:`~flowlab.transforms.univariate`: :class:`~flowlab.transforms.univariate.Additive`,
:class:`~flowlab.transforms.univariate.Affine`,
:class:`~flowlab.transforms.splines.RQSpline`); only the conditioner differs (an MLP that reads
:math:`x_A`, or a MADE that reads :math:`x_{<i}`), and :class:`Coupling` is
``Coupling(mask, transformer)``.

**One mask convention everywhere.**  Every coupling takes its mask as a boolean tensor over one
sample (``True`` = kept, :math:`x_A`, fed to the conditioner; ``False`` = transformed,
:math:`x_B`: the course's convention) or as a :class:`~flowlab.transforms.masks.Mask`, which
is the same tensor with the split precomputed.

**Which coupling when** (every one takes the mask as above):

========================  =======  =============================================================
layer                     data     use it for
========================  =======  =============================================================
``AdditiveCoupling``      vectors  NICE: :math:`z_B = x_B + t(x_A)`; volume preserving, so add a
                                   scaling layer (``DiagonalLinear``)
``AffineCoupling``        vectors  RealNVP: :math:`z_B = x_B \odot e^{s(x_A)} + t(x_A)`; the
                                   default, cheap and stable
``RQSplineCoupling``      vectors  neural spline flow (:mod:`~flowlab.transforms.splines`): a
                                   monotone spline per coordinate, the most expressive per layer
                                   (about 3x an affine step)
``MaskedAffineCoupling``  images   RealNVP on images (:mod:`~flowlab.transforms.image`):
                                   checkerboard or channel masks, a conv conditioner that sees
                                   :math:`b \odot x`, optional context
``GlowCoupling``          images   Glow (:mod:`~flowlab.transforms.glow`): channel halves (or a
                                   channel mask); only the kept channels enter the conv net,
                                   half the work of a masked coupling
========================  =======  =============================================================

:class:`Coupling` implements split / conditioner / concat once, around any
:class:`~flowlab.transforms.univariate.Univariate` transformer; ``AdditiveCoupling``,
``AffineCoupling`` and ``RQSplineCoupling`` only pick one (and build a default conditioner).

Performance: the split and merge are slices and one concatenation for the usual half masks
(see :mod:`~flowlab.transforms.masks`), the input check compares shapes and dtypes only, and
nothing synchronises with the device, so a coupling layer costs the same as a hand-written one.

References: NICE, Dinh et al. 2014, https://arxiv.org/abs/1410.8516; RealNVP, Dinh et al.
2016, https://arxiv.org/abs/1605.08803.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..checks import check_input, reference_tensor
from ..nets.mlp import MLP
from .base import Transform, sum_except_batch
from .masks import MaskLike, as_mask
from .univariate import SCALE_BOUND, Additive, Affine, Univariate, params_last

__all__ = ["AdditiveCoupling", "AffineCoupling", "Coupling"]


class Coupling(Transform):
    r"""A coupling layer: :math:`z_A = x_A`, :math:`z_B = \tau(x_B;\ \theta(x_A))`, with any
    elementwise transformer :math:`\tau`.

    This is an autoregressive layer (:class:`~flowlab.transforms.autoregressive.MaskedAutoregressive`)
    with two blocks: the same ``transformer`` object works in both; here its parameters for every
    coordinate of :math:`x_B` come from :math:`x_A` alone (one conditioner pass in both
    directions), there from all earlier coordinates.

    Args:
        mask: which coordinates are kept (:math:`x_A`, ``True``) and transformed (:math:`x_B`,
            ``False``): a boolean tensor of shape ``event_shape`` (e.g.
            ``torch.tensor([True, False, True, False])``) or a
            :class:`~flowlab.transforms.masks.Mask` (e.g. ``HalfMask(4)``).
        transformer: the elementwise map :math:`\tau`, a
            :class:`~flowlab.transforms.univariate.Univariate` such as
            :class:`~flowlab.transforms.univariate.Affine` (``params_per_feature`` :math:`P`).
        conditioner: any module mapping ``(batch, n_A)`` to ``(batch, P * n_B)``,
            parameter-major (the first :math:`n_B` outputs are parameter 0 of every transformed
            coordinate, and so on; :func:`~flowlab.transforms.univariate.params_last`).
            ``None`` builds an :class:`~flowlab.nets.mlp.MLP` with ``hidden`` layers and a
            zero-initialised output layer, so the coupling starts as the identity (a custom
            conditioner is used as given).
        hidden: hidden sizes of the default MLP conditioner (ignored with a ``conditioner``).
        context_features: size of an optional context vector :math:`c` (a conditional flow):
            the conditioner reads :math:`[x_A, c]`, i.e. :math:`\theta(x_A, c)`; pass
            ``context=`` to ``forward``/``inverse`` then.  0: unconditional.

    Example:
        RealNVP's coupling is ``Coupling`` with an affine transformer:

        >>> from flowlab.transforms.univariate import Affine
        >>> layer = Coupling(torch.tensor([True, False, False]), Affine(), hidden=(8,))
        >>> z, logabsdet = layer(torch.ones(1, 3))     # zero-initialised: the identity
        >>> z.tolist(), logabsdet.tolist()
        ([[1.0, 1.0, 1.0]], [0.0])
    """

    def __init__(
        self,
        mask: MaskLike,
        transformer: Univariate,
        conditioner: nn.Module | None = None,
        hidden: Sequence[int] = (256, 256),
        context_features: int = 0,
    ) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__()
        mask = as_mask(mask, layer=type(self).__name__)
        if not isinstance(transformer, Univariate):
            raise TypeError(
                f"{type(self).__name__}: transformer must be a flowlab.transforms.univariate."
                f"Univariate (e.g. Affine()), got {type(transformer).__name__}"
            )
        self.mask = mask
        self.transformer = transformer
        self.params_per_feature = int(transformer.params_per_feature)
        self.context_features = int(context_features)
        self._n_params = mask.features_transformed * self.params_per_feature
        if conditioner is None:
            conditioner = MLP(
                mask.features_kept + self.context_features, self._n_params, hidden=hidden
            )
        self.conditioner = conditioner
        # A 0-d buffer that follows .to()/.double(): the dtype and device inputs must have
        # (those of the conditioner's parameters, if it has any).
        first = reference_tensor(conditioner)
        ref = torch.zeros(()) if first is None else first.new_zeros(())
        self.register_buffer("_ref", ref, persistent=False)

    @property
    def conditional(self) -> bool:
        """Whether the layer reads a context (built with ``context_features > 0``)."""
        return self.context_features > 0

    def _params(self, x_a: Tensor, context: Tensor | None = None) -> Tensor:
        """The transformer's parameters ``(batch, n_B, P)`` from :math:`x_A` (and the context)."""
        if self.context_features:
            if context is None or context.shape != (x_a.shape[0], self.context_features):
                raise ValueError(
                    f"{type(self).__name__} was built with context_features="
                    f"{self.context_features}: pass context=<tensor of shape (batch, "
                    f"{self.context_features})>, got "
                    f"{None if context is None else tuple(context.shape)}"
                )
            x_a = torch.cat([x_a, context], dim=1)
        params = self.conditioner(x_a)
        if params.shape[-1] != self._n_params:
            raise ValueError(
                f"{type(self).__name__}: the conditioner returned {params.shape[-1]} values per "
                f"sample, expected n_B * params_per_feature = {self.mask.features_transformed} "
                f"* {self.params_per_feature} = {self._n_params}."
            )
        return params_last(params, self.params_per_feature)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_input(
            x, name="x", layer=type(self).__name__, event_shape=self.mask.event_shape,
            like=self._ref,
        )
        x_a, x_b = self.mask.split(x)
        z_b, ladj = self.transformer(x_b, self._params(x_a, context))
        return self.mask.merge(x_a, z_b), sum_except_batch(ladj)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_input(
            z, name="z", layer=type(self).__name__, event_shape=self.mask.event_shape,
            like=self._ref,
        )
        z_a, z_b = self.mask.split(z)
        x_b, ladj = self.transformer.inverse(z_b, self._params(z_a, context))
        return self.mask.merge(z_a, x_b), sum_except_batch(ladj)


class AdditiveCoupling(Coupling):
    r"""NICE's additive coupling (Dinh et al. 2014, https://arxiv.org/abs/1410.8516): a shift
    computed from :math:`x_A` (a :class:`Coupling` with the
    :class:`~flowlab.transforms.univariate.Additive` transformer).

    .. math::

        z_B = x_B + t(x_A), \qquad \log|\det Df(x)| = 0, \qquad x_B = z_B - t(z_A).

    Volume preserving: a stack of these needs a scaling layer (e.g.
    :class:`~flowlab.transforms.linear.DiagonalLinear`) to change the density's spread.

    Args:
        mask: boolean tensor over one sample (``True`` = kept :math:`x_A`) or a
            :class:`~flowlab.transforms.masks.Mask`.
        conditioner: a module mapping ``(batch, n_A)`` to the shift, ``(batch, n_B)``; ``None``
            builds a zero-initialised :class:`~flowlab.nets.mlp.MLP` (the layer starts as the
            identity).
        hidden: hidden sizes of that default MLP.
        context_features: size of an optional context vector (see :class:`Coupling`).

    Example:
        >>> layer = AdditiveCoupling(torch.tensor([True, False, True, False]), hidden=(16,))
        >>> x = torch.randn(5, 4)
        >>> z, logabsdet = layer(x)                 # zero-initialised: the identity
        >>> torch.equal(z, x), logabsdet.shape
        (True, torch.Size([5]))
    """

    def __init__(
        self,
        mask: MaskLike,
        conditioner: nn.Module | None = None,
        hidden: Sequence[int] = (256, 256),
        context_features: int = 0,
    ) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__(mask, Additive(), conditioner, hidden, context_features)


class AffineCoupling(Coupling):
    r"""RealNVP's affine coupling (Dinh et al. 2016, https://arxiv.org/abs/1605.08803) with a
    bounded log-scale (a :class:`Coupling` with the
    :class:`~flowlab.transforms.univariate.Affine` transformer).

    The conditioner outputs :math:`(t, \tilde s) = \theta(x_A)` (in this order, flowlab's one
    affine order: the first :math:`n_B` outputs are the shifts, the last :math:`n_B` the raw
    log-scales); then

    .. math::

        s = B \tanh(\tilde s / B), \qquad z_B = x_B \odot e^{s} + t, \qquad
        \log|\det Df(x)| = \sum_i s_i, \qquad x_B = (z_B - t) \odot e^{-s}.

    Why bound :math:`s` to :math:`(-B, B)` (``scale_bound``, default 3, the one bound of every
    affine layer in flowlab): an unbounded :math:`e^{\tilde s}` can overflow, and early in
    training a single large :math:`\tilde s` blows up the loss, its gradient and, above all, the
    inverse :math:`e^{-s}` used for sampling.  The soft clamp
    (:func:`~flowlab.transforms.univariate.soft_clamp`) is smooth, equals :math:`\tilde s` near
    zero (slope 1, so the zero-initialised layer behaves like the plain formula), and limits
    every layer's scale factor to :math:`(e^{-B}, e^{B})`; stacking layers still reaches any
    scale.  ``scale_bound=None`` gives the unbounded :math:`s = \tilde s`.

    Args:
        mask: boolean tensor over one sample (``True`` = kept :math:`x_A`, fed to the
            conditioner) or a :class:`~flowlab.transforms.masks.Mask` such as
            :class:`~flowlab.transforms.masks.HalfMask`.
        conditioner: a module mapping ``(batch, n_A)`` to ``(batch, 2 n_B)``
            (:math:`t` then :math:`\tilde s`); ``None`` builds a zero-initialised
            :class:`~flowlab.nets.mlp.MLP`, so the layer starts as the identity.
        hidden: hidden sizes of that default MLP (ignored with a ``conditioner``).
        scale_bound: :math:`B`, the bound of the log-scale; ``None`` leaves it unbounded.
        context_features: size of an optional context vector (see :class:`Coupling`).

    Example:
        >>> layer = AffineCoupling(torch.tensor([True, True, False, False]), hidden=(32, 32))
        >>> x = torch.randn(8, 4)
        >>> z, logabsdet = layer(x)
        >>> x_back, minus_logabsdet = layer.inverse(z)
        >>> torch.allclose(x_back, x), torch.allclose(logabsdet + minus_logabsdet, torch.zeros(8))
        (True, True)
    """

    def __init__(
        self,
        mask: MaskLike,
        conditioner: nn.Module | None = None,
        hidden: Sequence[int] = (256, 256),
        scale_bound: float | None = SCALE_BOUND,
        context_features: int = 0,
    ) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__(mask, Affine(scale_bound), conditioner, hidden, context_features)

    @property
    def scale_bound(self) -> float | None:
        """:math:`B`, the bound of the log-scale (``None``: unbounded)."""
        return self.transformer.bound

    def log_scale(self, raw: Tensor) -> Tensor:
        r"""The bounded log-scale :math:`s = B \tanh(\tilde s / B)`."""
        return self.transformer.log_scale(raw)

    def extra_repr(self) -> str:
        return f"scale_bound={self.scale_bound}"
