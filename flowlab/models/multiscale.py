r"""The multi-scale RealNVP architecture for images (Dinh, Sohl-Dickstein & Bengio 2016,
`arXiv:1605.08803 <https://arxiv.org/abs/1605.08803>`_).

One *scale* acting on an image :math:`(C, H, W)` is

1. three affine couplings with alternating **checkerboard** masks,
2. a :class:`~flowlab.transforms.image.Squeeze` to :math:`(4C, H/2, W/2)`,
3. three affine couplings with alternating **channel** masks,
4. **factoring out** half of the channels: :math:`2C` channels are declared final latent
   variables and go straight to the base distribution; the other :math:`2C` go on to the
   next scale.

The last scale only has four checkerboard couplings.  Factoring out keeps the cost down
(deeper scales see fewer dimensions) and gives a hierarchy of latents from fine to coarse.

**Checkerboards on the squeezed grid.**  A checkerboard mask on :math:`(C, H, W)` *is* a
channel mask on the squeezed :math:`(4C, H/2, W/2)`: pixel :math:`(2h+i, 2w+j)` becomes channel
:math:`4c + 2i + j`, and :math:`(2h+i+2w+j) \bmod 2 = (i+j) \bmod 2`, so parity 0 keeps
channels :math:`4c` and :math:`4c+3` (:func:`~flowlab.transforms.image.squeezed_checkerboard_mask`).
flowlab therefore squeezes *first* and runs the checkerboard couplings there: the same masks,
the same triangular Jacobians, the same factorisation, but each conditioner convolves a grid
with 4x fewer positions (its 3x3 kernel sees a 6x6 patch of the original image).  Profiled on
1x28x28 images, the convolutions are 96 % of a training step, and this cuts the step ~3x
(``decisions/0005-squeeze-first.md``).  Height and width must be divisible by
:math:`2^{\text{scales}}`.

**Same-shape latent.**  The factored-out channels are not collected in a list: after the
next scale has transformed the remaining half, the two halves are concatenated again and
un-squeezed (:class:`FactorOut`), so the whole map :math:`f: (C,H,W) \to (C,H,W)` is one
:class:`~flowlab.transforms.base.Compose` with

.. math::

    \log|\det Df(x)| = \sum_{\text{scales}} \sum_{\text{couplings}} \log|\det(\cdot)|,

and the base is a :class:`~flowlab.distributions.StandardNormal` over the image shape.  This is
exactly the factorisation of Dinh et al.: each factored-out block is independent
:math:`\mathcal N(0, I)` under the base, and un-squeezing is a fixed permutation of the latent
coordinates (:math:`\log|\det| = 0`).  It also makes the model an ordinary
:class:`~flowlab.flow.Flow`: ``log_prob``, ``sample(n, temperature=...)`` and exact inversion
come for free, and ``flowlab.testing.check_transform`` applies to the whole stack.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..transforms.base import Compose, Inverse, Transform
from ..transforms.image import (
    MaskedAffineCoupling,
    Squeeze,
    channel_mask,
    check_image,
    squeezed_checkerboard_mask,
)
from .image_flow import ImageFlow

__all__ = ["FactorOut", "MultiScaleTransform", "MultiScaleFlow"]


class FactorOut(Transform):
    r"""Let the first ``factored`` channels leave and send the rest through ``inner``.

    .. math::

        f(x) = \big(x_{:k},\; f_\text{inner}(x_{k:})\big), \qquad
        \log|\det Df(x)| = \log|\det Df_\text{inner}(x_{k:})| .

    Args:
        factored: :math:`k`, the number of channels that are final latents.
        inner: the transform (the next scale) for the other channels.

    Example:
        >>> from flowlab.transforms.image import MaskedAffineCoupling, channel_mask
        >>> inner = MaskedAffineCoupling(channel_mask(2), 2, hidden_channels=4, blocks=0)
        >>> z, logdet = FactorOut(2, inner)(torch.randn(3, 4, 4, 4))
        >>> z.shape, logdet.shape
        (torch.Size([3, 4, 4, 4]), torch.Size([3]))
    """

    def __init__(self, factored: int, inner: Transform) -> None:
        super().__init__()
        if int(factored) != factored or factored < 1:
            raise ValueError(f"factored must be a positive integer, got {factored!r}")
        self.factored = int(factored)
        self.inner = inner

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z_out, h = x[:, : self.factored], x[:, self.factored :]
        h, logdet = self.inner(h)
        return torch.cat([z_out, h], dim=1), logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z_out, h = z[:, : self.factored], z[:, self.factored :]
        h, logdet = self.inner.inverse(h)
        return torch.cat([z_out, h], dim=1), logdet

    def extra_repr(self) -> str:
        return f"factored={self.factored}"


class MultiScaleTransform(Compose):
    r"""The multi-scale coupling stack :math:`f: (C, H, W) \to (C, H, W)` (see the module
    docstring): per scale ``Squeeze``, checkerboard couplings, channel couplings,
    :class:`FactorOut` (the next scale), un-squeeze.

    Args:
        channels, height, width: image shape; ``height`` and ``width`` must be divisible by
            :math:`2^{\text{scales}}` (every scale squeezes once).
        scales: number of scales (1 = only the four final checkerboard couplings).
        hidden_channels, blocks: size of each coupling's :class:`~flowlab.nets.resnet.ResNet`.
        scale_bound: soft clamp of the couplings' log-scales.
        dropout: dropout in the couplings' conv nets, training mode only (0 = none).

    Example:
        >>> f = MultiScaleTransform(1, 8, 8, scales=2, hidden_channels=8, blocks=0)
        >>> z, logdet = f(torch.randn(5, 1, 8, 8))
        >>> z.shape, logdet.shape
        (torch.Size([5, 1, 8, 8]), torch.Size([5]))
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        scales: int = 2,
        hidden_channels: int = 64,
        blocks: int = 2,
        scale_bound: float | None = 3.0,
        dropout: float = 0.0,
    ) -> None:
        if int(scales) != scales or scales < 1:
            raise ValueError(f"scales must be a positive integer, got {scales!r}")
        factor = 2**scales
        if height % factor or width % factor:
            raise ValueError(
                f"a multi-scale flow with {scales} scale(s) squeezes {scales} time(s), so the "
                f"image height and width must be divisible by {factor}; got {height}x{width}. "
                "Use fewer scales or pad the images."
            )
        c4 = 4 * int(channels)
        last = scales == 1

        def coupling(mask: Tensor) -> MaskedAffineCoupling:
            return MaskedAffineCoupling(mask, c4, None, hidden_channels, blocks, scale_bound,
                                        dropout=dropout)

        layers: list[Transform] = [Squeeze()]
        layers += [
            coupling(squeezed_checkerboard_mask(channels, parity=k % 2))
            for k in range(4 if last else 3)
        ]
        if not last:
            layers += [coupling(channel_mask(c4, parity=k % 2)) for k in range(3)]
            factored = c4 // 2
            inner = MultiScaleTransform(
                c4 - factored, height // 2, width // 2, scales - 1, hidden_channels, blocks,
                scale_bound, dropout,
            )
            layers.append(FactorOut(factored, inner))
        layers.append(Inverse(Squeeze()))
        super().__init__(layers)
        self.shape = (int(channels), int(height), int(width))
        self.scales = int(scales)

    @property
    def next_scale(self) -> "MultiScaleTransform | None":
        """The transform of the next (coarser) scale, ``None`` at the last one."""
        last = self.transforms[-2]
        return last.inner if isinstance(last, FactorOut) else None

    @property
    def couplings(self) -> list[MaskedAffineCoupling]:
        """This scale's coupling layers (checkerboard first, then channel)."""
        return [t for t in self.transforms if isinstance(t, MaskedAffineCoupling)]

    def _check(self, x: Tensor, name: str) -> Tensor:
        x = check_image(x, name=name, layer="MultiScaleTransform", like=self)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"MultiScaleTransform was built for images of shape {self.shape} (C, H, W), got "
                f"{tuple(x.shape[1:])}"
            )
        return x

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return super().forward(self._check(x, "x"), context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return super().inverse(self._check(z, "z"), context)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, scales={self.scales}"


class MultiScaleFlow(ImageFlow):
    r"""The multi-scale RealNVP for images of discrete levels (one name: class and builder).

    The normalizing direction is

    .. math::

        x \in \{0..K-1\}^{C\times H\times W}
        \xrightarrow{\text{dequantize}} y = \tfrac{x+u}{K}
        \xrightarrow{\text{logit}_\alpha} \mathbb{R}^{C\times H\times W}
        \xrightarrow{\text{multi-scale couplings}} z \sim \mathcal{N}(0, I),

    so ``log_prob(x)`` (on integer levels stored as floats) is an estimate of a lower bound on
    the discrete :math:`\log P(x)` in nats, and ``-log_prob(x) / (D log 2)`` the bits per
    dimension (:func:`flowlab.metrics.bits_per_dim` with ``num_levels=None``).
    ``sample(n, temperature=T)`` returns discrete images (levels as floats).

    With ``num_levels=None`` the model has no preprocessing and works on real-valued images.

    Args:
        shape: ``(C, H, W)``.
        num_levels: :math:`K` (17 for the digits, 256 for 8-bit images), or ``None`` for
            continuous data.
        scales, hidden_channels, blocks, scale_bound: see :class:`MultiScaleTransform`.
        logit_alpha: the boundary margin :math:`\alpha` of the logit transform after
            dequantization (:class:`~flowlab.transforms.pointwise.Logit`), or ``None`` for
            no logit.  The default :math:`10^{-6}` is RealNVP's for MNIST (0.05 on natural
            images), measured best on MNIST-5k and on the digits; the same argument, and the
            same default, as :class:`~flowlab.models.Glow`'s, which gives the measurement.
        dequantization: ``"uniform"`` or ``"variational"`` (Ho et al. 2019,
            `arXiv:1902.00275 <https://arxiv.org/abs/1902.00275>`_).
        validate: check inputs (finite, integer levels); switch off for speed.
        dropout: dropout in the couplings' conv nets, in training mode only: a regulariser
            for small data sets (``decisions/0008-dropout.md``); sample in ``eval()``.

    Example:
        >>> flow = MultiScaleFlow((1, 8, 8), num_levels=17, hidden_channels=8, blocks=0)
        >>> flow.log_prob(torch.randint(0, 17, (3, 1, 8, 8)).float()).shape
        torch.Size([3])
    """

    def __init__(
        self,
        shape: Sequence[int],
        num_levels: int | None,
        scales: int = 2,
        hidden_channels: int = 64,
        blocks: int = 2,
        scale_bound: float | None = 3.0,
        logit_alpha: float | None = 1e-6,
        dequantization: str = "uniform",
        validate: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            shape, num_levels,
            lambda c, h, w: MultiScaleTransform(c, h, w, scales, hidden_channels, blocks,
                                                scale_bound, dropout),
            dequantization, logit_alpha, validate,
        )  # fmt: skip
