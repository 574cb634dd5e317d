r"""A class-conditional flow :math:`p(x \mid y)` on images: sample a chosen class.

A conditional flow is a flow whose layers read a context :math:`c` besides their input,
:math:`z = f(x; c)`, with :math:`f(\cdot\,; c)` invertible for every :math:`c`:

.. math::

    \log p_X(x \mid c) = \log p_Z\big(f(x; c)\big) + \log|\det D_x f(x; c)| ,
    \qquad x = f^{-1}(z; c),\ z \sim p_Z .

Here :math:`c` is the one-hot label of the image's class, and :math:`f` is: uniform
dequantization :math:`y = (x+u)/K`, the logit transform, flattening, then a masked
autoregressive flow whose MADEs read :math:`c` (:func:`~flowlab.models.maf.maf`).  The
conditioners depend on :math:`c`; the Jacobian's triangular structure (in :math:`x`) does not,
so nothing else changes.  Training maximises :math:`\log p(x_i \mid y_i)` over image-label
pairs; ``sample_class(n, k)`` draws images of class :math:`k`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..distributions import StandardNormal
from ..flow import Flow
from ..transforms.autoregressive import MaskedAffineAutoregressive, MaskedRQSplineAutoregressive
from ..transforms.base import Transform
from ..transforms.dequantize import dequantization_layers

__all__ = ["ClassConditionalFlow", "Flatten"]


class Flatten(Transform):
    r"""Reshape ``(batch, *shape)`` to ``(batch, prod(shape))``: a permutation-free relabelling
    of the coordinates, :math:`\log|\det| = 0`.

    Args:
        shape: the event shape of the input, e.g. ``(1, 8, 8)``.

    Example:
        >>> Flatten((1, 2, 2))(torch.zeros(3, 1, 2, 2))[0].shape
        torch.Size([3, 4])
    """

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.reshape(x.shape[0], -1), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z.reshape(z.shape[0], *self.shape), z.new_zeros(z.shape[0])

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class ClassConditionalFlow(Flow):
    r"""Class-conditional MAF for images of discrete levels: :math:`p(x \mid \text{class})`.

    Args:
        shape: ``(C, H, W)``; the defaults suit the 8x8 digits.
        num_levels: :math:`K` (17 for the digits).
        num_classes: number of classes; the context is the one-hot label.
        transforms: number of autoregressive layers (alternating orders).
        hidden: hidden sizes of each MADE.
        kind: ``"affine"`` (MAF) or ``"spline"``.
        logit_alpha: margin of the logit transform after dequantization.
        validate: check inputs (finite, integer levels).

    ``log_prob(x, context)`` takes the one-hot context (:meth:`one_hot`) or, for convenience,
    the integer labels themselves (``labels=``).

    Example:
        >>> model = ClassConditionalFlow(transforms=1, hidden=(32,))
        >>> x = torch.randint(0, 17, (4, 1, 8, 8)).float()
        >>> model.log_prob(x, labels=torch.tensor([0, 1, 2, 3])).shape
        torch.Size([4])
        >>> model.sample_class(6, 7).shape               # six images of the digit 7
        torch.Size([6, 1, 8, 8])
    """

    def __init__(
        self,
        shape: Sequence[int] = (1, 8, 8),
        num_levels: int | None = 17,
        num_classes: int = 10,
        transforms: int = 5,
        hidden: Sequence[int] = (256, 256),
        kind: str = "affine",
        logit_alpha: float | None = 0.05,
        validate: bool = True,
    ) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {shape!r}")
        if kind not in ("affine", "spline"):
            raise ValueError(f"kind must be 'affine' or 'spline', got {kind!r}")
        dims = shape[0] * shape[1] * shape[2]
        layers: list[Transform] = dequantization_layers(
            shape, num_levels, "uniform", logit_alpha, validate=validate
        )
        layers.append(Flatten(shape))
        cls = MaskedAffineAutoregressive if kind == "affine" else MaskedRQSplineAutoregressive
        for i in range(int(transforms)):
            layers.append(cls(dims, hidden, num_classes, "input" if i % 2 == 0 else "reversed"))
        super().__init__(StandardNormal(dims), layers, validate=validate,
                         context_shape=(int(num_classes),))
        self.image_shape = shape
        self.num_levels = num_levels
        self.num_classes = int(num_classes)

    def one_hot(self, labels: Tensor | int) -> Tensor:
        """The context of ``labels``: one-hot vectors ``(batch, num_classes)`` (or one vector
        for a single ``int``), in the model's dtype."""
        labels = torch.as_tensor(labels, dtype=torch.long, device=self.base._ref.device)
        if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < self.num_classes):
            raise ValueError(
                f"labels must lie in 0..{self.num_classes - 1}, got {labels.unique().tolist()}"
            )
        return F.one_hot(labels, self.num_classes).to(self.base._ref.dtype)

    def log_prob(
        self, x: Tensor, context: Tensor | None = None, labels: Tensor | None = None
    ) -> Tensor:
        r""":math:`\log p(x \mid c)`; give the one-hot ``context`` or the integer ``labels``."""
        if (context is None) == (labels is None):
            raise ValueError(
                "ClassConditionalFlow.log_prob needs the class of every image: pass "
                "context=<one-hot (batch, num_classes)> or labels=<(batch,) integers>"
            )
        return super().log_prob(x, self.one_hot(labels) if labels is not None else context)

    def sample_class(self, n: int, label: int, temperature: float = 1.0) -> Tensor:
        """``n`` images of class ``label`` (discrete levels as floats)."""
        return self.sample(n, temperature=temperature, context=self.one_hot(int(label)))
