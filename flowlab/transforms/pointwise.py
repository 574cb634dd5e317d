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
axis except the first.  The learnable elementwise scale and shift,
:math:`z = e^{a} \odot x + b`, is :class:`~flowlab.transforms.linear.DiagonalLinear` (a diagonal
linear map; any event shape), and its data-initialised per-channel version for images is
:class:`~flowlab.transforms.glow.ActNorm`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_input
from .base import Transform, sum_except_batch

__all__ = ["Elementwise", "LeakyReLU", "Logit", "Sigmoid", "Tanh"]

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

    Example:
        >>> class Cube(Elementwise):          # h(x) = x^3 + x, strictly increasing
        ...     def h(self, x):
        ...         return x ** 3 + x
        ...     def h_inv(self, z):           # (a real root of x^3 + x - z; for the example)
        ...         x = z.clone()
        ...         for _ in range(50):
        ...             x = x - (x ** 3 + x - z) / (3 * x ** 2 + 1)
        ...         return x
        ...     def log_abs_dh(self, x):
        ...         return torch.log(3 * x ** 2 + 1)
        >>> z, logabsdet = Cube()(torch.tensor([[1.0, 2.0]]))
        >>> z, logabsdet
        (tensor([[ 2., 10.]]), tensor([3.9512]))
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

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self._check(x, "x")
        return self.h(x), sum_except_batch(self.log_abs_dh(x))

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
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

    Args:
        negative_slope: :math:`a > 0`, the slope for negative inputs.

    Example:
        >>> LeakyReLU(0.5)(torch.tensor([[-2.0, 3.0]]))
        (tensor([[-1.,  3.]]), tensor([-0.6931]))
    """

    def __init__(self, negative_slope: float = 0.1) -> None:
        """Build the layer; the arguments are described in the class docstring."""
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

    No arguments.  Its inverse is :class:`Logit` (with ``alpha=0``).

    Example:
        >>> z, logabsdet = Sigmoid()(torch.zeros(1, 2))
        >>> z, logabsdet                                   # sigma'(0) = 1/4 per coordinate
        (tensor([[0.5000, 0.5000]]), tensor([-2.7726]))
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
    r"""The logit with an optional boundary margin :math:`\alpha` (RealNVP's logit transform),
    mapping :math:`(0, 1) \to \mathbb{R}`:

    .. math::

        p = \alpha + (1 - 2\alpha)\, x, \qquad z = \operatorname{logit}(p) = \log p - \log(1-p),
        \qquad \log\frac{dz}{dx} = \log(1 - 2\alpha) - \log p - \log(1 - p),

    with inverse :math:`x = (\sigma(z) - \alpha) / (1 - 2\alpha)` and
    :math:`\log\frac{dx}{dz} = \log\sigma(z) + \log\sigma(-z) - \log(1 - 2\alpha)`.

    With :math:`\alpha = 0` (the default) it is the plain logit, the inverse of
    :class:`Sigmoid`.  For images in :math:`[0, 1)` (after dequantization) a margin pulls the
    data away from 0 and 1, where the logit explodes: RealNVP
    (https://arxiv.org/abs/1605.08803) used :math:`\alpha = 0.05` on natural images (and
    :math:`10^{-6}` on MNIST).  With :math:`\alpha > 0` the image of :math:`(0, 1)` is the
    bounded interval :math:`(\operatorname{logit}\alpha, \operatorname{logit}(1-\alpha))`;
    base samples outside it map outside :math:`(0, 1)`: clamp them for display.

    **Choosing** :math:`\alpha`.  A pixel at level 0 of :math:`K` dequantizes to
    :math:`x \in [0, 1/K)`, whose logit spans about :math:`\log(1 + 1/(K\alpha))`: with
    :math:`K = 256`, 0.075 for :math:`\alpha = 0.05` but 8.3 for :math:`10^{-6}`, where the
    noise has roughly unit spread (the logarithm of a uniform variable).  The flow has to map
    that noise to :math:`\mathcal N(0, 1)`, so a margin too large for :math:`K` leaves it a
    sliver, here 110 times narrower, to stretch; on MNIST-5k this cost Glow and RealNVP more than a tenth of a
    bit per dimension (``decisions/0004-logit-margin.md``).

    Args:
        alpha: the margin :math:`\alpha \in [0, 0.5)`.

    Example:
        >>> z, logabsdet = Logit(alpha=0.05)(torch.tensor([[0.0, 0.5, 1.0]]))
        >>> z
        tensor([[-2.9444,  0.0000,  2.9444]])
    """

    def __init__(self, alpha: float = 0.0) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"Logit: alpha must lie in [0, 0.5), got {alpha!r}")
        self.alpha = float(alpha)
        self._log_1m2a = math.log1p(-2.0 * self.alpha)

    def h(self, x: Tensor) -> Tensor:
        p = self.alpha + (1.0 - 2.0 * self.alpha) * x if self.alpha else x
        return torch.log(p) - torch.log1p(-p)

    def h_inv(self, z: Tensor) -> Tensor:
        p = torch.sigmoid(z)
        return (p - self.alpha) / (1.0 - 2.0 * self.alpha) if self.alpha else p

    def log_abs_dh(self, x: Tensor) -> Tensor:
        p = self.alpha + (1.0 - 2.0 * self.alpha) * x if self.alpha else x
        return self._log_1m2a - torch.log(p) - torch.log1p(-p)

    def log_abs_dh_inv(self, z: Tensor, x: Tensor) -> Tensor:
        return -F.softplus(-z) - F.softplus(z) - self._log_1m2a

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self._check(x, "x")
        p = self.alpha + (1.0 - 2.0 * self.alpha) * x if self.alpha else x
        log_p, log_1mp = torch.log(p), torch.log1p(-p)
        return log_p - log_1mp, sum_except_batch(self._log_1m2a - log_p - log_1mp)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Tanh(Elementwise):
    r"""The hyperbolic tangent, :math:`\mathbb{R} \to (-1, 1)`:

    .. math::

        h(x) = \tanh x, \qquad \log h'(x) = \log(1 - \tanh^2 x)
        = 2\,(\log 2 - x - \operatorname{softplus}(-2x)), \qquad
        h^{-1}(z) = \operatorname{artanh} z .

    The softplus form stays accurate for large :math:`|x|`, where :math:`1 - \tanh^2 x`
    rounds to zero.  No arguments.

    Example:
        >>> z, logabsdet = Tanh()(torch.tensor([[0.0, 30.0]]))
        >>> logabsdet                                      # finite although tanh(30) == 1.0
        tensor([-58.6137])
    """

    def h(self, x: Tensor) -> Tensor:
        return torch.tanh(x)

    def h_inv(self, z: Tensor) -> Tensor:
        return torch.atanh(z)

    def log_abs_dh(self, x: Tensor) -> Tensor:
        return 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))

    def log_abs_dh_inv(self, z: Tensor, x: Tensor) -> Tensor:
        return -torch.log1p(-z * z)
