r"""The layer contract that every flowlab transform follows.

A normalizing flow is an invertible map :math:`f: \mathcal{X} \to \mathcal{Z}` (the
*normalizing* direction, data to latent) with inverse :math:`g = f^{-1}` (the *generative*
direction).  By the change-of-variables formula

.. math::

    \log p_X(x) = \log p_Z(f(x)) + \log \left| \det Df(x) \right| .

Every layer is an :class:`torch.nn.Module` with two methods:

* ``forward(x) -> (z, logabsdet)`` computes :math:`z = f(x)` and
  :math:`\log|\det Df(x)|`, one number per sample;
* ``inverse(z) -> (x, logabsdet)`` computes :math:`x = g(z)` and
  :math:`\log|\det Dg(z)| = -\log|\det Df(x)|`.

``logabsdet`` always has shape ``(batch,)``.  Composition sums the log-determinants
(:class:`Compose`), because the determinant of a product of Jacobians is the product of the
determinants.
"""

from __future__ import annotations

import inspect
from typing import Iterable

import torch
from torch import Tensor, nn

__all__ = ["Transform", "Compose", "Inverse", "accepts_context"]


class Transform(nn.Module):
    r"""Base class of an invertible layer :math:`f` with a tractable :math:`\log|\det Df|`.

    Subclasses implement :meth:`forward` and :meth:`inverse`.  Both take a batch whose first
    axis indexes samples and return the transformed batch together with the log absolute
    Jacobian determinant of the map they applied, of shape ``(batch,)``.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """Normalizing direction: ``z = f(x)`` and ``log|det Df(x)|``."""
        raise NotImplementedError

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """Generative direction: ``x = g(z) = f^{-1}(z)`` and ``log|det Dg(z)|``."""
        raise NotImplementedError

    def inv(self) -> "Transform":
        """This layer with its two directions swapped (shares parameters)."""
        return Inverse(self)


class Compose(Transform):
    r"""The composition :math:`f = f_N \circ \dots \circ f_2 \circ f_1`.

    ``forward`` applies :math:`f_1` first and accumulates

    .. math::

        \log|\det Df(x)| = \sum_{i=1}^{N} \log|\det Df_i(y_{i-1})|, \qquad
        y_0 = x,\; y_i = f_i(y_{i-1}),

    and ``inverse`` applies :math:`f_N^{-1}` first, i.e.
    :math:`g = f_1^{-1} \circ \dots \circ f_N^{-1}`.

    **Context.**  ``forward(x, context=c)`` and ``inverse(z, context=c)`` hand ``c`` to every
    layer whose ``forward`` takes a ``context`` argument (a conditional layer
    :math:`f_i(\cdot \mid c)`); the other layers are called as usual.  Without a context
    nothing changes.
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
        self._takes_context = [accepts_context(t) for t in flat]

    @property
    def takes_context(self) -> bool:
        """Whether any layer is conditional (takes a ``context``)."""
        return any(self._takes_context)

    def _with_context(self, context: Tensor) -> list[tuple[Transform, dict]]:
        if len(self._takes_context) != len(self.transforms):  # the list was edited
            self._takes_context = [accepts_context(t) for t in self.transforms]
        if not any(self._takes_context):
            raise ValueError(
                "a context was given but no layer of this flow takes one: build conditional "
                "layers (e.g. MaskedAffineAutoregressive(..., context_features=c)) or drop "
                "the context"
            )
        return [
            (t, {"context": context} if takes else {})
            for t, takes in zip(self.transforms, self._takes_context)
        ]

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Transform:
        return self.transforms[i]

    @staticmethod
    def _zeros(x: Tensor) -> Tensor:
        # Accumulate in at least float32: under bf16 autocast the layers' log-dets may be bf16.
        return x.new_zeros(x.shape[0], dtype=torch.promote_types(x.dtype, torch.float32))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = self._zeros(x)
        if context is not None:
            for t, kw in self._with_context(context):
                x, ld = t(x, **kw)
                total = total + ld
            return x, total
        for t in self.transforms:
            x, ld = t(x)
            total = total + ld
        return x, total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = self._zeros(z)
        if context is not None:
            for t, kw in reversed(self._with_context(context)):
                z, ld = t.inverse(z, **kw)
                total = total + ld
            return z, total
        for t in reversed(self.transforms):
            z, ld = t.inverse(z)
            total = total + ld
        return z, total

    def trajectory(self, x: Tensor) -> list[Tensor]:
        """All intermediate values ``[x, f_1(x), f_2(f_1(x)), ..., f(x)]`` (for plots)."""
        out = [x]
        for t in self.transforms:
            x, _ = t(x)
            out.append(x)
        return out


class Inverse(Transform):
    """Swap the directions of ``transform``: ``forward`` is its ``inverse`` and vice versa."""

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if context is None:
            return self.transform.inverse(x)
        return self.transform.inverse(x, context=context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if context is None:
            return self.transform(z)
        return self.transform(z, context=context)

    def inv(self) -> Transform:
        return self.transform


def accepts_context(layer: nn.Module) -> bool:
    """Whether ``layer`` is conditional: its ``forward`` takes a ``context`` argument
    (for :class:`Compose` and :class:`Inverse`: whether a layer inside does)."""
    if isinstance(layer, Compose):
        return layer.takes_context
    if isinstance(layer, Inverse):
        return accepts_context(layer.transform)
    for size in ("context_features", "context_channels"):  # declared unconditional
        if getattr(layer, size, None) == 0:
            return False
    try:
        return "context" in inspect.signature(layer.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False


def sum_except_batch(x: Tensor) -> Tensor:
    """Sum all axes but the first: per-sample totals of shape ``(batch,)``."""
    return x.reshape(x.shape[0], -1).sum(dim=1)
