r"""The frame shared by the ready image models: dequantize, transform, standard normal.

For images of :math:`K` discrete levels, the normalizing direction is

.. math::

    x \in \{0..K-1\}^{C\times H\times W}
    \xrightarrow{\text{dequantize}} y = \tfrac{x+u}{K}
    \;[\xrightarrow{\text{logit}_\alpha}]\;
    \xrightarrow{\ f_\text{core}\ } z \sim \mathcal{N}(0, I),

so ``log_prob(x)`` on integer levels (stored as floats) bounds the discrete
:math:`\log P(x)` from below, and ``sample(n)`` returns discrete images.  The multi-scale
RealNVP and Glow differ only in :math:`f_\text{core}`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..distributions import StandardNormal
from ..flow import Flow
from ..transforms.base import Transform
from ..transforms.dequantize import dequantization_layers

__all__ = ["ImageFlow"]


class ImageFlow(Flow):
    """Dequantization (and an optional logit) layers, then ``core(C, H, W)``, then
    :math:`\\mathcal N(0, I)` over the image shape.

    Args:
        shape: ``(C, H, W)``.
        num_levels: :math:`K`, or ``None`` for real-valued images (no preprocessing).
        core: builds the model's own transform from the image shape.
        dequantization: ``"uniform"`` or ``"variational"``.
        logit_alpha: :math:`\\alpha` of the logit transform after dequantization, or ``None``.
        validate: check inputs (finite, integer levels).
    """

    def __init__(
        self,
        shape: Sequence[int],
        num_levels: int | None,
        core: Callable[[int, int, int], Transform],
        dequantization: str = "uniform",
        logit_alpha: float | None = None,
        validate: bool = True,
    ) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {shape!r}")
        layers: list[Transform] = dequantization_layers(
            shape, num_levels, dequantization, logit_alpha, validate=validate
        )
        layers.append(core(*shape))
        super().__init__(StandardNormal(shape), layers, validate=validate)
        self.image_shape = shape
        self.num_levels = num_levels
