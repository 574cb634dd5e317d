r"""Coupling layers (NICE, RealNVP): split, condition, transform, concatenate.

With a :class:`~flowlab.transforms.masks.Mask` that splits :math:`x` into a kept part
:math:`x_A` and a transformed part :math:`x_B`,

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

:class:`Coupling` implements split / conditioner / concat once; a coupling *transform*
:math:`\hat f` is a subclass with two methods (``transform_b`` and ``inverse_transform_b``)
acting on ``(batch, n_B)`` tensors given the conditioner's output.

Performance: the split and merge are slices and one concatenation for the usual half masks
(see :mod:`~flowlab.transforms.masks`), the input check compares shapes and dtypes only, and
nothing synchronises with the device, so a coupling layer costs the same as a hand-written one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..checks import check_input, reference_tensor
from ..nets.mlp import MLP
from .base import Transform
from .masks import Mask

__all__ = ["AdditiveCoupling", "AffineCoupling", "Coupling"]


class Coupling(Transform):
    r"""Base class: :math:`z_A = x_A`, :math:`z_B = \hat f(x_B \mid \theta(x_A))`.

    Args:
        mask: which coordinates are kept (:math:`x_A`, ``True``) and transformed (:math:`x_B`).
        conditioner: any module mapping ``(batch, n_A)`` to ``(batch, n_B * params_per_feature)``.
            ``None`` builds an :class:`~flowlab.nets.mlp.MLP` with ``hidden`` layers and a
            zero-initialised output layer, so the coupling starts as the identity (a custom
            conditioner is used as given).
        hidden: hidden sizes of the default MLP conditioner.
        params_per_feature: how many parameters :math:`\hat f` needs per transformed coordinate.

    Subclasses implement ``transform_b(x_b, params) -> (z_b, logabsdet)`` and
    ``inverse_transform_b(z_b, params) -> (x_b, logabsdet)``.
    """

    def __init__(
        self,
        mask: Mask,
        conditioner: nn.Module | None = None,
        hidden: Sequence[int] = (256, 256),
        params_per_feature: int = 1,
    ) -> None:
        super().__init__()
        if not isinstance(mask, Mask):
            raise TypeError(
                f"{type(self).__name__} expects a flowlab Mask (e.g. HalfMask(features)), got "
                f"{type(mask).__name__}; wrap a boolean tensor as Mask(tensor)."
            )
        self.mask = mask
        self.params_per_feature = int(params_per_feature)
        self._n_params = mask.features_transformed * self.params_per_feature
        if conditioner is None:
            conditioner = MLP(mask.features_kept, self._n_params, hidden=hidden)
        self.conditioner = conditioner
        # A 0-d buffer that follows .to()/.double(): the dtype and device inputs must have
        # (those of the conditioner's parameters, if it has any).
        first = reference_tensor(conditioner)
        ref = torch.zeros(()) if first is None else first.new_zeros(())
        self.register_buffer("_ref", ref, persistent=False)

    def transform_b(self, x_b: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`z_B = \hat f(x_B \mid \theta)` and :math:`\log|\det D\hat f|` (batch,)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def inverse_transform_b(self, z_b: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`x_B = \hat f^{-1}(z_B \mid \theta)` and :math:`\log|\det D\hat f^{-1}|`."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _conditioner(self, x_a: Tensor) -> Tensor:
        params = self.conditioner(x_a)
        if params.shape[-1] != self._n_params:
            raise ValueError(
                f"{type(self).__name__}: the conditioner returned {params.shape[-1]} values per "
                f"sample, expected n_B * params_per_feature = {self.mask.features_transformed} "
                f"* {self.params_per_feature} = {self._n_params}."
            )
        return params

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_input(
            x, name="x", layer=type(self).__name__, event_shape=self.mask.event_shape,
            like=self._ref,
        )
        x_a, x_b = self.mask.split(x)
        z_b, logabsdet = self.transform_b(x_b, self._conditioner(x_a))
        return self.mask.merge(x_a, z_b), logabsdet

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        check_input(
            z, name="z", layer=type(self).__name__, event_shape=self.mask.event_shape,
            like=self._ref,
        )
        z_a, z_b = self.mask.split(z)
        x_b, logabsdet = self.inverse_transform_b(z_b, self._conditioner(z_a))
        return self.mask.merge(z_a, x_b), logabsdet


class AdditiveCoupling(Coupling):
    r"""NICE's additive coupling (Dinh et al. 2014): a shift computed from :math:`x_A`.

    .. math::

        z_B = x_B + t(x_A), \qquad \log|\det Df(x)| = 0, \qquad x_B = z_B - t(z_A).

    Volume preserving: a stack of these needs a scaling layer (e.g.
    :class:`~flowlab.transforms.linear.DiagonalLinear`) to change the density's spread.
    """

    def __init__(
        self, mask: Mask, conditioner: nn.Module | None = None, hidden: Sequence[int] = (256, 256)
    ) -> None:
        super().__init__(mask, conditioner, hidden, params_per_feature=1)

    def transform_b(self, x_b: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return x_b + params, x_b.new_zeros(x_b.shape[0])

    def inverse_transform_b(self, z_b: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return z_b - params, z_b.new_zeros(z_b.shape[0])


class AffineCoupling(Coupling):
    r"""RealNVP's affine coupling (Dinh et al. 2016) with a bounded log-scale.

    The conditioner outputs :math:`(\tilde s, t) = \theta(x_A)`; then

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
    """

    def __init__(
        self,
        mask: Mask,
        conditioner: nn.Module | None = None,
        hidden: Sequence[int] = (256, 256),
        scale_bound: float | None = 2.0,
    ) -> None:
        super().__init__(mask, conditioner, hidden, params_per_feature=2)
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
        return x_b * torch.exp(s) + t, s.sum(dim=1)

    def inverse_transform_b(self, z_b: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        raw, t = params.chunk(2, dim=1)
        minus_s = -self.log_scale(raw)
        return (z_b - t) * torch.exp(minus_s), minus_s.sum(dim=1)

    def extra_repr(self) -> str:
        return f"scale_bound={self.scale_bound}"
