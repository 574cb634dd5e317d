r"""Coupling layers (NICE, RealNVP): split, condition, transform, concatenate.

With a mask that splits :math:`x` into a kept part :math:`x_A` and a transformed part
:math:`x_B`,

.. math::

    f(x) = \begin{bmatrix} x_A \\ \hat f\big(x_B \mid \theta(x_A)\big) \end{bmatrix},
    \qquad
    Df(x) = \begin{bmatrix} I & 0 \\
            \frac{\partial}{\partial x_A}\hat f & D\hat f\big(x_B \mid \theta(x_A)\big)
            \end{bmatrix},

so the Jacobian is block triangular and
:math:`\log|\det Df(x)| = \log|\det D\hat f(x_B \mid \theta(x_A))|`, whatever the conditioner
:math:`\theta` is (an MLP, a CNN, ...: it never has to be inverted).  The inverse reuses
:math:`\theta` on the unchanged part: :math:`z_A = x_A`, so
:math:`x_B = \hat f^{-1}(z_B \mid \theta(z_A))`.

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

:class:`Coupling` implements split / conditioner / concat once; a coupling *transform*
:math:`\hat f` is a subclass with two methods (``transform_b`` and ``inverse_transform_b``)
acting on ``(batch, n_B)`` tensors given the conditioner's output.

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

__all__ = ["AdditiveCoupling", "AffineCoupling", "Coupling"]


class Coupling(Transform):
    r"""Base class: :math:`z_A = x_A`, :math:`z_B = \hat f(x_B \mid \theta(x_A))`.

    Args:
        mask: which coordinates are kept (:math:`x_A`, ``True``) and transformed (:math:`x_B`,
            ``False``): a boolean tensor of shape ``event_shape`` (e.g.
            ``torch.tensor([True, False, True, False])``) or a
            :class:`~flowlab.transforms.masks.Mask` (e.g. ``HalfMask(4)``).
        conditioner: any module mapping ``(batch, n_A)`` to ``(batch, n_B * params_per_feature)``.
            ``None`` builds an :class:`~flowlab.nets.mlp.MLP` with ``hidden`` layers and a
            zero-initialised output layer, so the coupling starts as the identity (a custom
            conditioner is used as given).
        hidden: hidden sizes of the default MLP conditioner (ignored with a ``conditioner``).
        params_per_feature: how many parameters :math:`\hat f` needs per transformed coordinate.
        context_features: size of an optional context vector :math:`c` (a conditional flow):
            the conditioner reads :math:`[x_A, c]`, i.e. :math:`\theta(x_A, c)`; pass
            ``context=`` to ``forward``/``inverse`` then.  0: unconditional.

    Subclasses implement ``transform_b(x_b, params) -> (z_b, logabsdet)`` and
    ``inverse_transform_b(z_b, params) -> (x_b, logabsdet)``.

    Example:
        A coupling whose :math:`\hat f` multiplies :math:`x_B` by 2:

        >>> import math
        >>> class Double(Coupling):
        ...     def transform_b(self, x_b, params):
        ...         return 2 * x_b, x_b.new_full((x_b.shape[0],), x_b.shape[1] * math.log(2))
        ...     def inverse_transform_b(self, z_b, params):
        ...         return z_b / 2, z_b.new_full((z_b.shape[0],), -z_b.shape[1] * math.log(2))
        >>> layer = Double(torch.tensor([True, False, False]), hidden=(8,))
        >>> z, logabsdet = layer(torch.ones(1, 3))
        >>> z, logabsdet
        (tensor([[1., 2., 2.]]), tensor([1.3863]))
    """

    def __init__(
        self,
        mask: MaskLike,
        conditioner: nn.Module | None = None,
        hidden: Sequence[int] = (256, 256),
        params_per_feature: int = 1,
        context_features: int = 0,
    ) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__()
        mask = as_mask(mask, layer=type(self).__name__)
        self.mask = mask
        self.params_per_feature = int(params_per_feature)
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

    def transform_b(self, x_b: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`z_B = \hat f(x_B \mid \theta)` and :math:`\log|\det D\hat f|` (batch,)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def inverse_transform_b(self, z_b: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`x_B = \hat f^{-1}(z_B \mid \theta)` and :math:`\log|\det D\hat f^{-1}|`."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _conditioner(self, x_a: Tensor, context: Tensor | None = None) -> Tensor:
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
        return params

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_input(
            x, name="x", layer=type(self).__name__, event_shape=self.mask.event_shape,
            like=self._ref,
        )
        x_a, x_b = self.mask.split(x)
        z_b, logabsdet = self.transform_b(x_b, self._conditioner(x_a, context))
        return self.mask.merge(x_a, z_b), logabsdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_input(
            z, name="z", layer=type(self).__name__, event_shape=self.mask.event_shape,
            like=self._ref,
        )
        z_a, z_b = self.mask.split(z)
        x_b, logabsdet = self.inverse_transform_b(z_b, self._conditioner(z_a, context))
        return self.mask.merge(z_a, x_b), logabsdet


class AdditiveCoupling(Coupling):
    r"""NICE's additive coupling (Dinh et al. 2014, https://arxiv.org/abs/1410.8516): a shift
    computed from :math:`x_A`.

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
        super().__init__(mask, conditioner, hidden, params_per_feature=1,
                         context_features=context_features)

    def transform_b(self, x_b: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return x_b + params, x_b.new_zeros(x_b.shape[0])

    def inverse_transform_b(self, z_b: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return z_b - params, z_b.new_zeros(z_b.shape[0])


class AffineCoupling(Coupling):
    r"""RealNVP's affine coupling (Dinh et al. 2016, https://arxiv.org/abs/1605.08803) with a
    bounded log-scale.

    The conditioner outputs :math:`(\tilde s, t) = \theta(x_A)` (in this order: the first
    :math:`n_B` outputs are the raw log-scales, the last :math:`n_B` the shifts); then

    .. math::

        s = c \tanh(\tilde s / c), \qquad z_B = x_B \odot e^{s} + t, \qquad
        \log|\det Df(x)| = \sum_i s_i, \qquad x_B = (z_B - t) \odot e^{-s}.

    Why bound :math:`s` to :math:`(-c, c)` (``scale_bound``, default 2): an unbounded
    :math:`e^{\tilde s}` can overflow, and early in training a single large :math:`\tilde s`
    blows up the loss, its gradient and, above all, the inverse :math:`e^{-s}` used for
    sampling.  The soft clamp :math:`c\tanh(\tilde s/c)` is smooth, equals :math:`\tilde s`
    near zero (slope 1, so the zero-initialised layer behaves like the plain formula), and
    limits every layer's scale factor to :math:`(e^{-c}, e^{c})`; stacking layers still
    reaches any scale.  ``scale_bound=None`` gives the unbounded :math:`s = \tilde s`.

    Args:
        mask: boolean tensor over one sample (``True`` = kept :math:`x_A`, fed to the
            conditioner) or a :class:`~flowlab.transforms.masks.Mask` such as
            :class:`~flowlab.transforms.masks.HalfMask`.
        conditioner: a module mapping ``(batch, n_A)`` to ``(batch, 2 n_B)``
            (:math:`\tilde s` then :math:`t`); ``None`` builds a zero-initialised
            :class:`~flowlab.nets.mlp.MLP`, so the layer starts as the identity.
        hidden: hidden sizes of that default MLP (ignored with a ``conditioner``).
        scale_bound: :math:`c`, the bound of the log-scale; ``None`` leaves it unbounded.
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
        scale_bound: float | None = 2.0,
        context_features: int = 0,
    ) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__(mask, conditioner, hidden, params_per_feature=2,
                         context_features=context_features)
        if scale_bound is not None and not scale_bound > 0:
            raise ValueError(f"scale_bound must be positive (or None), got {scale_bound}")
        self.scale_bound = None if scale_bound is None else float(scale_bound)

    def log_scale(self, raw: Tensor) -> Tensor:
        r"""The bounded log-scale :math:`s = c \tanh(\tilde s / c)`."""
        if self.scale_bound is None:
            return raw
        return torch.tanh(raw * (1.0 / self.scale_bound)) * self.scale_bound

    def transform_b(self, x_b: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        raw, t = params.chunk(2, dim=1)
        s = self.log_scale(raw)
        return x_b * torch.exp(s) + t, sum_except_batch(s)

    def inverse_transform_b(self, z_b: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        raw, t = params.chunk(2, dim=1)
        s = self.log_scale(raw)
        return (z_b - t) * torch.exp(-s), -sum_except_batch(s)

    def extra_repr(self) -> str:
        return f"scale_bound={self.scale_bound}"
