r"""Elementwise (pointwise) bijections.

A map that acts on every coordinate separately, :math:`z_i = h(x_i)`, has a *diagonal*
Jacobian :math:`Df(x) = \operatorname{diag}(h'(x_1), \dots, h'(x_D))`, so

.. math::

    \log|\det Df(x)| = \sum_{i=1}^{D} \log|h'(x_i)| ,

an :math:`\mathcal{O}(D)` computation.  Any strictly monotone scalar function with a known
inverse and derivative gives such a layer; :class:`Elementwise` turns the three scalar
functions into a :class:`~flowlab.transforms.base.Transform`, so a new layer is one line::

    Sinh = Elementwise.from_functions(torch.sinh, torch.asinh, lambda x: torch.log(torch.cosh(x)))

The layers here work on batches of any event shape ``(batch, ...)``: the sum runs over every
axis except the first.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_input
from .base import Transform, sum_except_batch

__all__ = ["Elementwise", "ElementwiseAffine", "LeakyReLU", "Logit", "Sigmoid", "Tanh"]

ScalarFn = Callable[[Tensor], Tensor]


class Elementwise(Transform):
    r"""Base class of elementwise bijections :math:`z_i = h(x_i)`.

    .. math::

        z = h(x), \qquad \log|\det Df(x)| = \sum_i \log|h'(x_i)|, \qquad
        x = h^{-1}(z), \qquad \log|\det Dg(z)| = -\sum_i \log|h'(h^{-1}(z_i))| .

    Subclasses implement three methods acting on plain tensors: :meth:`h` (the map),
    :meth:`h_inv` (its inverse) and :meth:`log_abs_dh` (:math:`\log|h'(x)|`, evaluated at the
    *input* ``x``).  They may override :meth:`log_abs_dh_inv` (:math:`\log|(h^{-1})'(z)|` at
    ``z``) when that is more accurate than :math:`-\log|h'(h^{-1}(z))|`.
    Alternatively build a layer class from three functions with :meth:`from_functions`.
    """

    def h(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The scalar map, applied elementwise."""
        raise NotImplementedError

    def h_inv(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Its inverse, applied elementwise."""
        raise NotImplementedError

    def log_abs_dh(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        r""":math:`\log|h'(x)|` elementwise (same shape as ``x``)."""
        raise NotImplementedError

    def log_abs_dh_inv(self, z: Tensor, x: Tensor) -> Tensor:
        r""":math:`\log|(h^{-1})'(z)| = -\log|h'(x)|` at :math:`x = h^{-1}(z)`."""
        return -self.log_abs_dh(x)

    def _check(self, x: Tensor, name: str) -> Tensor:
        ref = next(iter(self.parameters()), None)
        return check_input(x, name=name, layer=type(self).__name__, like=ref)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self._check(x, "x")
        return self.h(x), sum_except_batch(self.log_abs_dh(x))

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        z = self._check(z, "z")
        x = self.h_inv(z)
        return x, sum_except_batch(self.log_abs_dh_inv(z, x))

    @staticmethod
    def from_functions(
        h: ScalarFn, h_inv: ScalarFn, log_abs_dh: ScalarFn, name: str = "CustomElementwise"
    ) -> type[Elementwise]:
        r"""A new parameter-free :class:`Elementwise` *class* from three scalar functions.

        Args:
            h: the strictly monotone map :math:`h`.
            h_inv: its inverse :math:`h^{-1}`.
            log_abs_dh: :math:`x \mapsto \log|h'(x)|`.
            name: the class name (shown in ``repr`` and error messages).

        Example:
            >>> Sinh = Elementwise.from_functions(
            ...     torch.sinh, torch.asinh, lambda x: torch.log(torch.cosh(x)), name="Sinh")
            >>> z, logabsdet = Sinh()(torch.randn(4, 3))
        """
        return type(
            name,
            (Elementwise,),
            {
                "h": lambda self, x: h(x),
                "h_inv": lambda self, z: h_inv(z),
                "log_abs_dh": lambda self, x: log_abs_dh(x),
                "__doc__": f"Elementwise bijection built from functions ({name}).",
            },
        )


class LeakyReLU(Elementwise):
    r"""Leaky ReLU with slope :math:`a > 0` for negative inputs:

    .. math::

        h(x) = \begin{cases} x & x \ge 0 \\ a x & x < 0 \end{cases}, \qquad
        \log|h'(x)| = \begin{cases} 0 & x \ge 0 \\ \log a & x < 0 \end{cases}, \qquad
        h^{-1}(z) = \begin{cases} z & z \ge 0 \\ z / a & z < 0 \end{cases}.

    Piecewise linear, so a stack of them with linear layers is a piecewise-linear flow.
    """

    def __init__(self, negative_slope: float = 0.1) -> None:
        super().__init__()
        if not negative_slope > 0:
            raise ValueError(
                f"LeakyReLU needs a positive negative_slope to be invertible, got {negative_slope}"
            )
        self.negative_slope = float(negative_slope)

    def h(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def h_inv(self, z: Tensor) -> Tensor:
        return F.leaky_relu(z, 1.0 / self.negative_slope)

    def log_abs_dh(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, x.new_zeros(()), x.new_full((), math.log(self.negative_slope)))

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Elementwise):
    r"""The logistic sigmoid :math:`h(x) = \sigma(x) = 1 / (1 + e^{-x})`, mapping
    :math:`\mathbb{R} \to (0, 1)`:

    .. math::

        \log h'(x) = \log\sigma(x) + \log\sigma(-x)
        = -\operatorname{softplus}(-x) - \operatorname{softplus}(x), \qquad
        h^{-1}(z) = \log z - \log(1 - z).
    """

    def h(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)

    def h_inv(self, z: Tensor) -> Tensor:
        return torch.log(z) - torch.log1p(-z)

    def log_abs_dh(self, x: Tensor) -> Tensor:
        return -F.softplus(-x) - F.softplus(x)

    def log_abs_dh_inv(self, z: Tensor, x: Tensor) -> Tensor:
        return -torch.log(z) - torch.log1p(-z)


class Logit(Elementwise):
    r"""The logit :math:`h(x) = \log x - \log(1 - x)`, mapping :math:`(0, 1) \to \mathbb{R}`
    (the inverse of :class:`Sigmoid`; used to move data from a box to the real line):

    .. math::

        \log h'(x) = -\log x - \log(1 - x), \qquad h^{-1}(z) = \sigma(z).
    """

    def h(self, x: Tensor) -> Tensor:
        return torch.log(x) - torch.log1p(-x)

    def h_inv(self, z: Tensor) -> Tensor:
        return torch.sigmoid(z)

    def log_abs_dh(self, x: Tensor) -> Tensor:
        return -torch.log(x) - torch.log1p(-x)

    def log_abs_dh_inv(self, z: Tensor, x: Tensor) -> Tensor:
        return -F.softplus(-z) - F.softplus(z)


class Tanh(Elementwise):
    r"""The hyperbolic tangent, :math:`\mathbb{R} \to (-1, 1)`:

    .. math::

        h(x) = \tanh x, \qquad \log h'(x) = \log(1 - \tanh^2 x)
        = 2\,(\log 2 - x - \operatorname{softplus}(-2x)), \qquad
        h^{-1}(z) = \operatorname{artanh} z .

    The softplus form stays accurate for large :math:`|x|`, where :math:`1 - \tanh^2 x`
    rounds to zero.
    """

    def h(self, x: Tensor) -> Tensor:
        return torch.tanh(x)

    def h_inv(self, z: Tensor) -> Tensor:
        return torch.atanh(z)

    def log_abs_dh(self, x: Tensor) -> Tensor:
        return 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))

    def log_abs_dh_inv(self, z: Tensor, x: Tensor) -> Tensor:
        return -torch.log1p(-z * z)


class ElementwiseAffine(Elementwise):
    r"""Learnable elementwise scale and shift over an event of shape ``shape``:

    .. math::

        h(x) = e^{a} \odot x + b, \qquad \log|\det Df(x)| = \sum_i a_i, \qquad
        h^{-1}(z) = (z - b) \odot e^{-a} .

    The scale is parameterised by its logarithm :math:`a` so that it stays positive (the map
    stays invertible) whatever the optimiser does.  Initialised as the identity
    (:math:`a = 0, b = 0`).
    """

    def __init__(self, shape: int | tuple[int, ...]) -> None:
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.shape = shape
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.shift = nn.Parameter(torch.zeros(shape))

    def _check(self, x: Tensor, name: str) -> Tensor:
        return check_input(
            x, name=name, layer="ElementwiseAffine", event_shape=self.shape, like=self.log_scale
        )

    def h(self, x: Tensor) -> Tensor:
        return x * torch.exp(self.log_scale) + self.shift

    def h_inv(self, z: Tensor) -> Tensor:
        return (z - self.shift) * torch.exp(-self.log_scale)

    def log_abs_dh(self, x: Tensor) -> Tensor:
        return self.log_scale.expand_as(x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self._check(x, "x")
        return self.h(x), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        z = self._check(z, "z")
        return self.h_inv(z), (-self.log_scale.sum()).expand(z.shape[0])

    def extra_repr(self) -> str:
        return f"shape={self.shape}"
