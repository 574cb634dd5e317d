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

from typing import Iterable

import torch
from torch import Tensor, nn

__all__ = ["Transform", "Compose", "Inverse"]


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

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Transform:
        return self.transforms[i]

    @staticmethod
    def _zeros(x: Tensor) -> Tensor:
        # Accumulate in at least float32: under bf16 autocast the layers' log-dets may be bf16.
        return x.new_zeros(x.shape[0], dtype=torch.promote_types(x.dtype, torch.float32))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = self._zeros(x)
        for t in self.transforms:
            x, ld = t(x)
            total = total + ld
        return x, total

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        total = self._zeros(z)
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

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.transform.inverse(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.transform(z)

    def inv(self) -> Transform:
        return self.transform


def sum_except_batch(x: Tensor) -> Tensor:
    """Sum all axes but the first: per-sample totals of shape ``(batch,)``."""
    return x.reshape(x.shape[0], -1).sum(dim=1)
