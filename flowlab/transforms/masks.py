r"""Masks: which coordinates a coupling layer keeps and which it transforms.

A coupling layer splits each sample :math:`x` into two parts with a fixed binary mask
:math:`b` over the event (``True`` = 1):

* :math:`x_A = x[b]` — *kept*: passed through unchanged and fed to the conditioner
  :math:`\theta(x_A)`;
* :math:`x_B = x[\lnot b]` — *transformed*: :math:`z_B = \hat f(x_B \mid \theta(x_A))`.

A :class:`Mask` is an explicit object holding :math:`b` over an event of any shape (vectors
here, images in :mod:`flowlab.transforms.image`), with two operations:

* ``split(x) -> (x_A, x_B)``, both flattened to ``(batch, n_A)`` and ``(batch, n_B)``;
* ``merge(x_A, x_B) -> x`` back to ``(batch, *event_shape)``.

The index bookkeeping is done once, in the constructor: contiguous or strided parts become
Python slices (views, no copy, no indexing kernel), anything else becomes precomputed index
tensors.  Nothing in ``split``/``merge`` inspects the mask's values, so there is no boolean
indexing (and no host-device synchronisation) in the training loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch
from torch import Tensor, nn

__all__ = ["AlternatingMask", "HalfMask", "Mask", "MaskLike", "as_mask"]


def _as_slice(idx: Tensor) -> slice | None:
    """``idx`` (sorted, distinct) as an equivalent slice if it is an arithmetic progression."""
    n = idx.numel()
    if n == 1:
        start = int(idx[0])
        return slice(start, start + 1, 1)
    steps = idx[1:] - idx[:-1]
    step = int(steps[0])
    if bool((steps == step).all()):
        return slice(int(idx[0]), int(idx[-1]) + 1, step)
    return None


class Mask(nn.Module):
    r"""A fixed binary mask :math:`b` over an event; ``True`` marks :math:`x_A` (kept,
    conditioning) and ``False`` marks :math:`x_B` (transformed).

    .. math::

        x_A = (x_i)_{i:\, b_i = 1}, \qquad x_B = (x_i)_{i:\, b_i = 0}, \qquad
        x = \operatorname{merge}(x_A, x_B).

    Args:
        mask: boolean tensor (or nested list) of shape ``event_shape`` with at least one
            ``True`` and one ``False``.

    Attributes:
        mask: the boolean mask, shape ``event_shape`` (a buffer: it moves with ``.to()``).
        event_shape: the shape of one sample.
        features_kept: :math:`n_A`, the number of ``True`` entries.
        features_transformed: :math:`n_B`, the number of ``False`` entries.

    Example:
        >>> m = Mask(torch.tensor([True, False, False, True]))
        >>> x_A, x_B = m.split(torch.arange(4.).reshape(1, 4))   # [[0., 3.]], [[1., 2.]]
        >>> m.merge(x_A, x_B)
        tensor([[0., 1., 2., 3.]])
    """

    def __init__(self, mask: Tensor | Sequence) -> None:
        """Build the mask; the arguments are described in the class docstring."""
        super().__init__()
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool:
            if not bool(((mask == 0) | (mask == 1)).all()):
                raise ValueError("a Mask must be boolean (or 0/1): True = kept x_A, False = x_B")
            mask = mask.bool()
        if mask.dim() == 0:
            raise ValueError("a Mask needs at least one axis (the event shape), got a scalar")
        mask = mask.detach().cpu().clone()
        flat = mask.flatten()
        n_a = int(flat.sum())
        if n_a == 0 or n_a == flat.numel():
            raise ValueError(
                f"a Mask must keep at least one coordinate and transform at least one, got "
                f"{n_a} kept of {flat.numel()}: a coupling layer with an empty part is the "
                "identity (or has no conditioner input)."
            )
        self.register_buffer("mask", mask)
        self.event_shape: tuple[int, ...] = tuple(mask.shape)
        self.features = flat.numel()
        self.features_kept = n_a
        self.features_transformed = self.features - n_a

        idx_a = torch.nonzero(flat).flatten()
        idx_b = torch.nonzero(~flat).flatten()
        slice_a, slice_b = _as_slice(idx_a), _as_slice(idx_b)
        # How to split: a slice (a view) where possible, otherwise an index tensor.
        self._slice_a = slice_a
        self._slice_b = slice_b
        self.register_buffer("_index_a", idx_a, persistent=False)
        self.register_buffer("_index_b", idx_b, persistent=False)
        # Merge of two contiguous blocks is a single concatenation.
        self._a_first = bool(flat[:n_a].all())
        self._b_first = bool((~flat[: self.features_transformed]).all())

    # -- the two operations ---------------------------------------------------------------------
    def _part(self, x: Tensor, s: slice | None, idx: Tensor) -> Tensor:
        return x[:, s] if s is not None else x.index_select(1, idx)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_A, x_B)`` of shapes ``(batch, n_A)`` and ``(batch, n_B)``."""
        flat = x.reshape(x.shape[0], self.features)
        return (
            self._part(flat, self._slice_a, self._index_a),
            self._part(flat, self._slice_b, self._index_b),
        )

    def merge(self, x_a: Tensor, x_b: Tensor) -> Tensor:
        """Put ``x_A`` and ``x_B`` back in place: shape ``(batch, *event_shape)``."""
        batch = x_a.shape[0]
        if self._a_first:
            flat = torch.cat([x_a, x_b], dim=1)
        elif self._b_first:
            flat = torch.cat([x_b, x_a], dim=1)
        else:
            flat = x_a.new_empty(batch, self.features)
            for part, s, idx in ((x_a, self._slice_a, self._index_a), (x_b, self._slice_b,
                                                                     self._index_b)):
                if s is not None:
                    flat[:, s] = part
                else:
                    flat[:, idx] = part
        if len(self.event_shape) == 1:
            return flat
        return flat.reshape(batch, *self.event_shape)

    # -- helpers ------------------------------------------------------------------------------
    def complement(self) -> Mask:
        r"""The mask with the two parts swapped, :math:`1 - b`."""
        return Mask(~self.mask)

    def __invert__(self) -> Mask:
        return self.complement()

    def as_float(self, like: Tensor) -> Tensor:
        """The mask as 0./1. in ``like``'s dtype and device (for :math:`b \\odot x` forms)."""
        return self.mask.to(dtype=like.dtype, device=like.device)

    def extra_repr(self) -> str:
        if self.features <= 16:
            pattern = "".join("A" if v else "B" for v in self.mask.flatten().tolist())
            return f"event_shape={self.event_shape}, pattern={pattern}"
        return (
            f"event_shape={self.event_shape}, kept={self.features_kept}, "
            f"transformed={self.features_transformed}"
        )


MaskLike = Union["Mask", Tensor, Sequence]
"""What a coupling accepts as its mask: a :class:`Mask`, or a boolean (or 0/1) tensor or nested
list of shape ``event_shape`` with ``True`` on the kept part :math:`x_A`."""


def as_mask(mask: MaskLike, layer: str = "this coupling") -> Mask:
    r"""``mask`` as a :class:`Mask`: a ``Mask`` is returned as it is, a boolean tensor (``True`` =
    kept :math:`x_A`, the course's convention) or 0/1 tensor or nested list is wrapped.

    Args:
        mask: the mask, over one sample (no batch axis).
        layer: the layer's name for the error message.

    Example:
        >>> as_mask(torch.tensor([True, False, False, True]))
        Mask(event_shape=(4,), pattern=ABBA)
    """
    if isinstance(mask, Mask):
        return mask
    if isinstance(mask, (Tensor, list, tuple)):
        try:
            return Mask(mask)
        except (TypeError, RuntimeError) as err:
            raise TypeError(f"{layer}: cannot read the mask as a boolean tensor ({err})") from err
    raise TypeError(
        f"{layer} expects its mask as a boolean tensor over one sample (True = kept x_A, fed "
        f"to the conditioner; False = transformed x_B), e.g. torch.tensor([True, False]), or "
        f"as a flowlab Mask such as HalfMask(features); got {type(mask).__name__}."
    )


class HalfMask(Mask):
    r"""Keep the first half of a vector, transform the second (``flip=True``: the reverse).

    With :math:`d = \lfloor n/2 \rfloor`: :math:`x_A = x_{1:d}`, :math:`x_B = x_{d+1:n}`
    (RealNVP's split, https://arxiv.org/abs/1605.08803).  Both parts are contiguous, so
    ``split`` is two slices (views) and ``merge`` one concatenation.

    Args:
        features: the length :math:`n` of the vectors (at least 2).
        flip: keep the second half and transform the first instead.

    Example:
        >>> HalfMask(4), HalfMask(4, flip=True)
        (HalfMask(event_shape=(4,), pattern=AABB), HalfMask(event_shape=(4,), pattern=BBAA))
    """

    def __init__(self, features: int, flip: bool = False) -> None:
        """Build the mask; the arguments are described in the class docstring."""
        if int(features) != features or features < 2:
            raise ValueError(f"HalfMask needs at least 2 features, got {features!r}")
        d = int(features) // 2
        mask = torch.arange(int(features)) < d
        super().__init__(~mask if flip else mask)
        self.flip = bool(flip)


class AlternatingMask(Mask):
    r"""Keep every other coordinate: :math:`b_i = 1` iff :math:`i \equiv \text{parity}
    \pmod 2` (0-based), e.g. ``ABAB...`` for parity 0 and ``BABA...`` for parity 1.

    Both parts are strided slices, so ``split`` makes views.

    Args:
        features: the length :math:`n` of the vectors (at least 2).
        parity: 0 keeps the even positions, 1 the odd ones.

    Example:
        >>> AlternatingMask(5, parity=1).mask
        tensor([False,  True, False,  True, False])
    """

    def __init__(self, features: int, parity: int = 0) -> None:
        """Build the mask; the arguments are described in the class docstring."""
        if int(features) != features or features < 2:
            raise ValueError(f"AlternatingMask needs at least 2 features, got {features!r}")
        if parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1, got {parity!r}")
        super().__init__(torch.arange(int(features)) % 2 == parity)
        self.parity = int(parity)

