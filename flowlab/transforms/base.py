r"""The layer contract that every flowlab transform follows.

A normalizing flow is an invertible map :math:`f: \mathcal{X} \to \mathcal{Z}` (the
*normalizing* direction, data to latent) with inverse :math:`g = f^{-1}` (the *generative*
direction).  By the change-of-variables formula

.. math::

    \log p_X(x) = \log p_Z(f(x)) + \log \left| \det Df(x) \right| .

Every layer is an :class:`torch.nn.Module` with two methods:

* ``forward(x, context=None) -> (z, logabsdet)`` computes :math:`z = f(x)` and
  :math:`\log|\det Df(x)|`, one number per sample;
* ``inverse(z, context=None) -> (x, logabsdet)`` computes :math:`x = g(z)` and
  :math:`\log|\det Dg(z)| = -\log|\det Df(x)|`.

``logabsdet`` always has shape ``(batch,)``.  ``context`` is the :math:`c` of a conditional
layer :math:`f(\cdot \mid c)` (a conditional flow :math:`p(x \mid c)`): one row per sample,
``(batch, ...)``.  Every flowlab layer accepts it; a layer that does not read it (a
permutation, ActNorm, an unconditional coupling) ignores it, and a conditional layer (built
with ``context_features=k > 0``) says so through :attr:`Transform.conditional` and asks for it
when it is missing.  Composition sums the log-determinants
(:class:`Compose`), because the determinant of a product of Jacobians is the product of the
determinants.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

__all__ = ["Transform", "Compose", "Inverse", "accepts_context"]


class Transform(nn.Module):
    r"""Base class of an invertible layer :math:`f` with a tractable :math:`\log|\det Df|`.

    Subclasses implement :meth:`forward` and :meth:`inverse`.  Both take a batch whose first
    axis indexes samples (and an optional ``context``, one row per sample) and return the
    transformed batch together with the log absolute Jacobian determinant of the map they
    applied, of shape ``(batch,)``.

    A conditional subclass overrides :attr:`conditional` (e.g. ``return
    self.context_features > 0``); the other layers inherit ``False`` and ignore a context.
    """

    def forward(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """Normalizing direction: ``z = f(x | context)`` and ``log|det Df(x)|``."""
        raise NotImplementedError

    def inverse(
        self, z: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """Generative direction: ``x = g(z | context) = f^{-1}(z)`` and ``log|det Dg(z)|``."""
        raise NotImplementedError

    @property
    def conditional(self) -> bool:
        """Whether this layer reads a context (``False``: a context is accepted and ignored)."""
        return False

    def inv(self) -> "Transform":
        """This layer with its two directions swapped (shares parameters)."""
        return Inverse(self)


def _context_kwargs(context: Tensor | None) -> dict[str, Tensor]:
    # Without a context, layers are called as f(x): a layer written against the plain
    # contract ``forward(self, x)`` (a course notebook, user code) still composes.
    return {} if context is None else {"context": context}


class Compose(Transform):
    r"""The composition :math:`f = f_N \circ \dots \circ f_2 \circ f_1`.

    ``forward`` applies :math:`f_1` first and accumulates

    .. math::

        \log|\det Df(x)| = \sum_{i=1}^{N} \log|\det Df_i(y_{i-1})|, \qquad
        y_0 = x,\; y_i = f_i(y_{i-1}),

    and ``inverse`` applies :math:`f_N^{-1}` first, i.e.
    :math:`g = f_1^{-1} \circ \dots \circ f_N^{-1}`.

    **Context.**  ``forward(x, context=c)`` and ``inverse(z, context=c)`` hand ``c`` to every
    layer, :math:`f_i(\cdot \mid c)`; the layers that are not conditional ignore it.  Without a
    context every layer is called as ``f_i(x)``.

    Example:
        >>> from flowlab.transforms import AffineCoupling, HalfMask, Reverse
        >>> f = Compose(AffineCoupling(HalfMask(2), hidden=(8,), context_features=1), Reverse(2))
        >>> f.conditional, f(torch.randn(3, 2), context=torch.randn(3, 1))[1].shape
        (True, torch.Size([3]))
    """

    def __init__(self, *transforms: Transform | Iterable[Transform]) -> None:
        super().__init__()
        flat: list[Transform] = []
        for t in transforms:
            if isinstance(t, nn.Module):
                flat.append(t)
            else:
                flat.extend(t)
        for i, t in enumerate(flat):
            if not isinstance(t, Transform):
                raise TypeError(
                    f"Compose expects flowlab Transforms, but item {i} is a {type(t).__name__}; "
                    "wrap plain modules in a Transform that returns (output, logabsdet)."
                )
        self.transforms = nn.ModuleList(flat)

    @property
    def conditional(self) -> bool:
        """Whether any layer is conditional (reads a ``context``)."""
        return any(t.conditional for t in self.transforms)

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Transform:
        return self.transforms[i]

    @staticmethod
    def _zeros(x: Tensor) -> Tensor:
        # Accumulate in at least float32: under bf16 autocast the layers' log-dets may be bf16.
        return x.new_zeros(x.shape[0], dtype=torch.promote_types(x.dtype, torch.float32))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total, kw = self._zeros(x), _context_kwargs(context)
        for t in self.transforms:
            x, ld = t(x, **kw)
            total = total + ld
        return x, total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total, kw = self._zeros(z), _context_kwargs(context)
        for t in reversed(self.transforms):
            z, ld = t.inverse(z, **kw)
            total = total + ld
        return z, total

    def trajectory(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        """All intermediate values ``[x, f_1(x), f_2(f_1(x)), ..., f(x)]`` (for plots)."""
        out, kw = [x], _context_kwargs(context)
        for t in self.transforms:
            x, _ = t(x, **kw)
            out.append(x)
        return out


class Inverse(Transform):
    """Swap the directions of ``transform``: ``forward`` is its ``inverse`` and vice versa."""

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        self.transform = transform

    @property
    def conditional(self) -> bool:
        return bool(getattr(self.transform, "conditional", False))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.inverse(x, **_context_kwargs(context))

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(z, **_context_kwargs(context))

    def inv(self) -> Transform:
        return self.transform


def accepts_context(layer: nn.Module) -> bool:
    """Whether ``layer`` is conditional (reads a ``context``): its :attr:`Transform.conditional`
    (for :class:`Compose` and :class:`Inverse`: whether a layer inside is)."""
    return bool(getattr(layer, "conditional", False))


def sum_except_batch(x: Tensor) -> Tensor:
    """Sum all axes but the first: per-sample totals of shape ``(batch,)``."""
    return x.reshape(x.shape[0], -1).sum(dim=1)
