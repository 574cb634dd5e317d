r"""The multi-scale RealNVP architecture for images (Dinh, Sohl-Dickstein & Bengio 2016).

One *scale* acting on an image :math:`(C, H, W)` is

1. three affine couplings with alternating **checkerboard** masks,
2. a :class:`~flowlab.transforms.image.Squeeze` to :math:`(4C, H/2, W/2)`,
3. three affine couplings with alternating **channel** masks,
4. **factoring out** half of the channels: :math:`2C` channels are declared final latent
   variables and go straight to the base distribution; the other :math:`2C` go on to the
   next scale.

The last scale only has four checkerboard couplings.  Factoring out keeps the cost down
(deeper scales see fewer dimensions) and gives a hierarchy of latents from fine to coarse.

**Same-shape latent.**  Here the factored-out channels are not collected in a list: after the
next scale has transformed the remaining half, the two halves are concatenated again and
un-squeezed, so the whole map :math:`f: (C,H,W) \to (C,H,W)` is one ordinary
:class:`~flowlab.transforms.base.Transform` with

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
from torch import Tensor, nn

from ..transforms.base import Transform
from ..transforms.image import (
    MaskedAffineCoupling,
    Squeeze,
    channel_mask,
    check_image,
    checkerboard_mask,
)
from .image_flow import ImageFlow

__all__ = ["MultiScaleTransform", "MultiScaleFlow", "multiscale_realnvp"]


class MultiScaleTransform(Transform):
    r"""The multi-scale coupling stack :math:`f: (C, H, W) \to (C, H, W)` (see the module
    docstring).

    Args:
        channels, height, width: image shape; ``height`` and ``width`` must be divisible by
            :math:`2^{\text{scales}-1}` (one squeeze between consecutive scales).
        scales: number of scales (1 = only the four final checkerboard couplings).
        hidden_channels, blocks: size of each coupling's :class:`~flowlab.nets.resnet.ResNet`.
        scale_bound: soft clamp of the couplings' log-scales.
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
    ) -> None:
        super().__init__()
        if int(scales) != scales or scales < 1:
            raise ValueError(f"scales must be a positive integer, got {scales!r}")
        factor = 2 ** (scales - 1)
        if height % factor or width % factor:
            raise ValueError(
                f"a multi-scale flow with {scales} scales squeezes {scales - 1} time(s), so the "
                f"image height and width must be divisible by {factor}; got {height}x{width}. "
                "Use fewer scales or pad the images."
            )
        self.shape = (int(channels), int(height), int(width))
        self.last = scales == 1

        def coupling(mask: Tensor, c: int) -> MaskedAffineCoupling:
            return MaskedAffineCoupling(mask, c, None, hidden_channels, blocks, scale_bound)

        n_checker = 4 if self.last else 3
        self.checker_couplings = nn.ModuleList(
            coupling(checkerboard_mask(height, width, parity=k % 2), channels)
            for k in range(n_checker)
        )
        if not self.last:
            c4 = 4 * channels
            self.squeeze = Squeeze()
            self.channel_couplings = nn.ModuleList(
                coupling(channel_mask(c4, parity=k % 2), c4) for k in range(3)
            )
            self.factored = c4 // 2
            self.next_scale = MultiScaleTransform(
                c4 - self.factored,
                height // 2,
                width // 2,
                scales - 1,
                hidden_channels,
                blocks,
                scale_bound,
            )

    def _check(self, x: Tensor, name: str) -> Tensor:
        x = check_image(x, name=name, layer="MultiScaleTransform", like=self)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"MultiScaleTransform was built for images of shape {self.shape} (C, H, W), got "
                f"{tuple(x.shape[1:])}"
            )
        return x

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self._check(x, "x")
        logdet = x.new_zeros(x.shape[0])
        for layer in self.checker_couplings:
            x, ld = layer(x)
            logdet = logdet + ld
        if self.last:
            return x, logdet
        x, _ = self.squeeze(x)
        for layer in self.channel_couplings:
            x, ld = layer(x)
            logdet = logdet + ld
        z_out, h = x[:, : self.factored], x[:, self.factored :]
        h, ld = self.next_scale(h)
        z, _ = self.squeeze.inverse(torch.cat([z_out, h], dim=1))
        return z, logdet + ld

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        z = self._check(z, "z")
        logdet = z.new_zeros(z.shape[0])
        if not self.last:
            z, _ = self.squeeze(z)
            z_out, h = z[:, : self.factored], z[:, self.factored :]
            h, logdet = self.next_scale.inverse(h)
            z = torch.cat([z_out, h], dim=1)
            for layer in reversed(self.channel_couplings):
                z, ld = layer.inverse(z)
                logdet = logdet + ld
            z, _ = self.squeeze.inverse(z)
        for layer in reversed(self.checker_couplings):
            z, ld = layer.inverse(z)
            logdet = logdet + ld
        return z, logdet

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class MultiScaleFlow(ImageFlow):
    r"""A ready multi-scale RealNVP for images of discrete levels.

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
        num_levels: :math:`K`, or ``None`` for continuous data.
        scales, hidden_channels, blocks, scale_bound: see :class:`MultiScaleTransform`.
        alpha: the logit transform's boundary margin (:class:`~flowlab.transforms.dequantize.LogitTransform`).
        dequantization: ``"uniform"`` or ``"variational"`` (Ho et al. 2019).
        validate: check inputs (finite, integer levels); switch off for speed.
    """

    def __init__(
        self,
        shape: Sequence[int],
        num_levels: int | None = 256,
        scales: int = 2,
        hidden_channels: int = 64,
        blocks: int = 2,
        scale_bound: float | None = 3.0,
        alpha: float = 0.05,
        dequantization: str = "uniform",
        validate: bool = True,
    ) -> None:
        super().__init__(
            shape, num_levels,
            lambda c, h, w: MultiScaleTransform(c, h, w, scales, hidden_channels, blocks, scale_bound),
            dequantization, alpha, validate,
        )


def multiscale_realnvp(
    shape: Sequence[int] = (1, 8, 8),
    num_levels: int | None = 17,
    scales: int = 2,
    hidden_channels: int = 64,
    blocks: int = 2,
    **kwargs,
) -> MultiScaleFlow:
    """A :class:`MultiScaleFlow`; the defaults suit the 8x8 digits (17 levels)."""
    return MultiScaleFlow(shape, num_levels, scales, hidden_channels, blocks, **kwargs)
