r"""Elementwise transformers: the invertible scalar map inside every coupling and MAF/IAF layer.

A coupling layer and an autoregressive layer are the same construction (zuko's ``univariate``
design): a *conditioner* computes parameters :math:`\theta_i` for every transformed coordinate
from the coordinates it may read, and a *transformer* :math:`\tau` maps each coordinate on its
own,

.. math::

    z_i = \tau(x_i;\ \theta_i), \qquad
    \log|\det Df(x)| = \sum_i \log\Big|\frac{\partial \tau}{\partial x_i}(x_i;\ \theta_i)\Big| .

The conditioner decides the structure: in an **autoregressive** layer (MADE,
:mod:`~flowlab.transforms.autoregressive`) :math:`\theta_i = \theta_i(x_{<i})`; a **coupling**
layer (:mod:`~flowlab.transforms.coupling`) is autoregression with **two blocks**: the kept
block :math:`A` is transformed by the identity and :math:`\theta_i = \theta_i(x_A)` for every
:math:`i` in the transformed block :math:`B`.  Either way the Jacobian is triangular and its
log-determinant is the sum of the transformer's elementwise log-derivatives, which is what a
transformer returns.  The same transformer objects serve both (``AffineCoupling`` and
``MaskedAffineAutoregressive`` both hold an :class:`Affine`).

**The protocol** (:class:`Univariate`).  ``forward(x, params) -> (y, ladj)`` and
``inverse(y, params) -> (x, ladj)``, where ``params.shape == x.shape + (P,)`` (the parameter
index **last**, :math:`P` = ``params_per_feature``) and ``ladj`` has the shape of ``x``: the
elementwise :math:`\log|\partial y / \partial x|` (forward) or :math:`\log|\partial x / \partial
y|` (inverse); the layer sums it over the event.  A conditioner returns its parameters
parameter-major, ``(batch, P * n, ...)`` (a linear or conv head's natural output); one shared
helper, :func:`params_last`, turns that into ``(batch, n, ..., P)`` with views only (no copy).

**Zero parameters are the identity.**  Every transformer here maps ``params = 0`` to the
identity with ``ladj = 0``, so a conditioner with a zero-initialised output layer starts its layer
as the identity (:func:`identity_params` returns those zeros).

=================  ===  ==========================================================================
transformer        P    :math:`\tau(x; \theta)`
=================  ===  ==========================================================================
:class:`Additive`  1    :math:`x + t` (NICE; volume preserving)
:class:`Affine`    2    :math:`x e^{s} + t` with :math:`\theta = (t, \tilde s)`, :math:`s = B
                        \tanh(\tilde s / B)` (RealNVP, MAF, masked image coupling); Glow's sigmoid
                        scale and shift-first order as options
``RQSpline``       3K-1 a monotone rational-quadratic spline with :math:`K` bins
                        (:class:`~flowlab.transforms.splines.RQSpline`, in the spline file)
=================  ===  ==========================================================================

**One affine parameterization for the whole library** (``decisions/0009-one-univariate-protocol.md``):
the parameters are ordered **(shift, raw log-scale)** and the log-scale is soft-clamped by
**one** function, :func:`soft_clamp` :math:`s = B\tanh(\tilde s/B)`, with **one** default bound
:data:`SCALE_BOUND` :math:`= 3` (so one layer scales by at most :math:`e^{\pm 3}`).

Example:
    A coupling's transformer applied by hand to a conditioner's output:

    >>> import torch
    >>> affine = Affine()
    >>> x = torch.tensor([[1.0, 2.0]])
    >>> head = torch.tensor([[0.5, -0.5, 0.0, 0.0]])   # (batch, P * n): shifts, then raw scales
    >>> y, ladj = affine(x, params_last(head, 2))
    >>> y, ladj
    (tensor([[1.5000, 1.5000]]), tensor([[0., 0.]]))
    >>> affine.inverse(y, params_last(head, 2))[0]
    tensor([[1., 2.]])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bounds import bound_expansion

__all__ = [
    "SCALE_BOUND", "soft_clamp", "params_last", "identity_params",
    "Univariate", "Additive", "Affine",
]  # fmt: skip

#: :math:`B`, the one default bound of every affine log-scale in flowlab (the bound the shipped
#: image checkpoints were trained with).
SCALE_BOUND = 3.0


def soft_clamp(raw: Tensor, bound: float | None = SCALE_BOUND) -> Tensor:
    r""":math:`s = B \tanh(\tilde s / B)`: the soft clamp of every affine log-scale in flowlab.

    Smooth, slope 1 at zero (so :math:`s \approx \tilde s` for small values and a
    zero-initialised layer behaves like the plain formula), and :math:`|s| < B`: one layer scales
    by a factor in :math:`(e^{-B}, e^{B})`, in both directions, so neither the density pass nor
    sampling (:math:`e^{-s}`) can overflow.  ``bound=None`` returns ``raw`` (the textbook,
    unbounded layer).

    Example:
        >>> soft_clamp(torch.tensor([0.0, 1e-3, 100.0]))
        tensor([0.0000e+00, 1.0000e-03, 3.0000e+00])
    """
    if bound is None:
        return raw
    return bound * torch.tanh(raw / bound)


def params_last(params: Tensor, params_per_feature: int) -> Tensor:
    r"""A conditioner's parameter-major output ``(batch, P * n, ...)`` as ``(batch, n, ..., P)``.

    Parameter :math:`p` of coordinate :math:`i` is ``params[:, p * n + i]`` (a linear head's or a
    MADE's output, or a conv head's channels), and comes out at ``[:, i, ..., p]``: the layout
    :class:`Univariate` expects.  Views only (``unflatten`` and ``movedim``), no copy.

    Example:
        >>> params_last(torch.arange(6.0).reshape(1, 6), 2)     # shifts 0, 1, 2; scales 3, 4, 5
        tensor([[[0., 3.],
                 [1., 4.],
                 [2., 5.]]])
    """
    return params.unflatten(1, (params_per_feature, -1)).movedim(1, -1)


def identity_params(transformer: Univariate, x: Tensor) -> Tensor:
    r"""Parameters for which ``transformer`` is the identity on ``x``: zeros of shape
    ``x.shape + (P,)`` (what a zero-initialised conditioner outputs).

    Example:
        >>> x = torch.randn(2, 3)
        >>> y, ladj = Affine()(x, identity_params(Affine(), x))
        >>> torch.equal(y, x), torch.equal(ladj, torch.zeros(2, 3))
        (True, True)
    """
    return x.new_zeros(*x.shape, transformer.params_per_feature)


class Univariate(nn.Module):
    r"""Base class of an elementwise transformer :math:`y_i = \tau(x_i; \theta_i)`.

    Subclasses set ``params_per_feature`` (:math:`P`) and implement ``forward(x, params)`` and
    ``inverse(y, params)``, each returning the output and the **elementwise** log-absolute
    derivative (same shape as ``x``; the inverse's is :math:`-\log|\tau'|` at the preimage).
    ``params`` has shape ``x.shape + (P,)`` (see :func:`params_last`); zero parameters must give
    the identity.  A transformer holds no learnt weights of its own (the conditioner does), so the
    same object can be shared, copied or saved freely.

    Example:
        A transformer that doubles its input (no parameters):

        >>> import math
        >>> class Double(Univariate):
        ...     params_per_feature = 0
        ...     def forward(self, x, params):
        ...         return 2 * x, torch.full_like(x, math.log(2))
        ...     def inverse(self, y, params):
        ...         return y / 2, torch.full_like(y, -math.log(2))
        >>> Double()(torch.ones(1, 2), None)[0]
        tensor([[2., 2.]])
    """

    #: :math:`P`, how many parameters the transformer reads per coordinate.
    params_per_feature: int = 1

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`y = \tau(x; \theta)` and :math:`\log|\partial y/\partial x|`, elementwise."""
        raise NotImplementedError  # pragma: no cover - abstract

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`x = \tau^{-1}(y; \theta)` and :math:`\log|\partial x/\partial y|`, elementwise."""
        raise NotImplementedError  # pragma: no cover - abstract


class Additive(Univariate):
    r"""NICE's shift, :math:`y = x + t` with :math:`\theta = (t)`: volume preserving.

    .. math:: y = x + t, \qquad \log\Big|\frac{\partial y}{\partial x}\Big| = 0,
        \qquad x = y - t .

    Example:
        >>> y, ladj = Additive()(torch.tensor([1.0, 2.0]), torch.tensor([[0.5], [-1.0]]))
        >>> y, ladj
        (tensor([1.5000, 1.0000]), tensor([0., 0.]))
    """

    params_per_feature = 1

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return x + params[..., 0], torch.zeros_like(x)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return y - params[..., 0], torch.zeros_like(y)


class Affine(Univariate):
    r"""The affine transformer of RealNVP, MAF/IAF, the masked image coupling and Glow.

    :math:`\theta = (t, \tilde s)`: **shift first, raw log-scale second** (one order for the whole
    library, so ``params[..., 0]`` is the shift and ``params[..., 1]`` the raw log-scale):

    .. math::

        y = x\, e^{s} + t, \qquad \log\Big|\frac{\partial y}{\partial x}\Big| = s, \qquad
        x = (y - t)\, e^{-s} .

    **The log-scale** :math:`s` (``scale``):

    * ``"tanh"`` (default): :math:`s = B \tanh(\tilde s / B)` (:func:`soft_clamp`, ``bound``
      :math:`= B`, default :data:`SCALE_BOUND` = 3), a symmetric soft clamp: one layer scales by
      at most :math:`e^{\pm B}` in both directions.  ``bound=None``: :math:`s = \tilde s`, the
      textbook unbounded layer (the course compares students' layers with it; its sampling can
      overflow).
    * ``"sigmoid"``: Glow's :math:`s = \log\operatorname{sigmoid}(\tilde s + 2) -
      \log\operatorname{sigmoid}(2)`, divided by its value at :math:`\tilde s = 0` so that zero
      parameters are the identity; the scale lies in :math:`(0, 1/\operatorname{sigmoid}(2))
      \approx (0, 1.14)`: it can shrink a lot and barely expand.  It has no lower bound of its own,
      so :math:`s \ge -5` (:func:`~flowlab.transforms.bounds.bound_expansion`, in both directions:
      the map stays a bijection with an exact log-determinant); ``bound`` is not used.

    **Shift first** (``shift_first=True``): :math:`y = (x + t)\, e^{s}` and
    :math:`x = y\, e^{-s} - t`, the order of Glow's published code (``z2 += shift; z2 *= scale``).
    Same log-determinant :math:`s` and the same family of maps (:math:`(x + t)e^{s} = x e^{s} +
    t e^{s}`); the option exists so that Glow's shipped checkpoints compute what they were trained
    to compute.

    Args:
        bound: :math:`B` of the ``tanh`` log-scale; ``None`` leaves it unbounded.
        scale: ``"tanh"`` or ``"sigmoid"``.
        shift_first: add the shift before scaling (Glow's code) instead of after (RealNVP).

    Example:
        >>> affine = Affine()
        >>> x = torch.tensor([1.0, 1.0])
        >>> params = torch.tensor([[0.0, 1.0], [1.0, 0.0]])   # (shift, raw log-scale) per value
        >>> y, ladj = affine(x, params)
        >>> y, ladj
        (tensor([2.6236, 2.0000]), tensor([0.9645, 0.0000]))
        >>> torch.allclose(affine.inverse(y, params)[0], x)
        True
    """

    params_per_feature = 2

    def __init__(
        self, bound: float | None = SCALE_BOUND, scale: str = "tanh", shift_first: bool = False
    ) -> None:
        """Build the transformer; the arguments are described in the class docstring."""
        super().__init__()
        if scale not in ("tanh", "sigmoid"):
            raise ValueError(f"scale must be 'tanh' or 'sigmoid', got {scale!r}")
        if bound is not None and not bound > 0:
            raise ValueError(
                f"scale_bound must be positive (or None for an unbounded log-scale), got {bound!r}"
            )
        self.bound = None if bound is None else float(bound)
        self.scale = scale
        self.shift_first = bool(shift_first)

    def log_scale(self, raw: Tensor) -> Tensor:
        r"""The log-scale :math:`s` from the raw parameter :math:`\tilde s` (see above)."""
        if self.scale == "sigmoid":
            s = F.logsigmoid(raw + 2.0) - F.logsigmoid(raw.new_tensor(2.0))
            return -bound_expansion(-s)
        return soft_clamp(raw, self.bound)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = params.unbind(-1)
        s = self.log_scale(raw)
        if self.shift_first:
            return (x + shift) * torch.exp(s), s
        return x * torch.exp(s) + shift, s

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = params.unbind(-1)
        s = self.log_scale(raw)
        if self.shift_first:  # unscale, then unshift
            return y * torch.exp(-s) - shift, -s
        return (y - shift) * torch.exp(-s), -s

    def extra_repr(self) -> str:
        order = ", shift_first=True" if self.shift_first else ""
        bound = "" if self.scale == "sigmoid" else f", bound={self.bound}"
        return f"scale={self.scale!r}{bound}{order}"
