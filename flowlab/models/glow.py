r"""Glow (Kingma & Dhariwal 2018): a multi-scale flow of learnable-permutation steps.

One **step of flow** on :math:`(C, H, W)` is

.. math::

    \text{ActNorm} \;\to\; \text{invertible } 1\times 1 \text{ conv (LU)}
    \;\to\; \text{affine coupling over channels},

and one **level** is a squeeze, :math:`K` steps, and a split.  At the split, half of the
channels, :math:`z_{\text{out}}`, leave the flow with a *learned conditional prior*
:math:`z_{\text{out}} \sim \mathcal{N}(\mu(h), \operatorname{diag}\sigma(h)^2)`, where
:math:`h` is the half that continues and :math:`(\mu, \log\sigma)` come from a
zero-initialised 3x3 convolution.

**The prior as a layer.**  Writing that Gaussian as the affine map
:math:`\tilde z = (z_{\text{out}} - \mu(h)) / \sigma(h)` (a coupling conditioned on :math:`h`)
with :math:`\tilde z \sim \mathcal N(0, I)`,

.. math::

    \log \mathcal{N}(z_{\text{out}}; \mu, \sigma^2) =
    \log \mathcal{N}(\tilde z; 0, I) - \textstyle\sum \log \sigma ,

the whole model becomes one :class:`~flowlab.transforms.base.Transform` from images to a latent
of the same shape with a standard normal base (the factored-out parts are re-assembled as in
:mod:`flowlab.models.multiscale`).  **Temperature** sampling draws
:math:`\tilde z \sim \mathcal N(0, T^2 I)`, i.e.
:math:`z_{\text{out}} \sim \mathcal{N}(\mu(h), T^2 \sigma(h)^2)` at every level -- Glow's
reduced-temperature samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..transforms.base import Compose, Transform, sum_except_batch
from ..transforms.bounds import bound_expansion
from ..transforms.glow import ActNorm, GlowCoupling, InvertibleConv1x1, LUInvertibleConv1x1
from ..transforms.image import Squeeze, check_image
from .image_flow import ImageFlow

__all__ = ["glow_step", "per_level", "GlowTransform", "Glow"]


def per_level(value: int | Sequence[int], levels: int, name: str) -> tuple[int, ...]:
    """``value`` for each of ``levels`` levels: one positive integer for all, or one per level.

    >>> per_level(8, 2, "steps"), per_level([4, 12], 2, "steps")
    ((8, 8), (4, 12))
    """
    values = (value,) * int(levels) if not isinstance(value, Sequence) else tuple(value)
    if len(values) != levels or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values
    ):
        raise ValueError(
            f"{name} must be a positive integer or {levels} positive integers (one per level, "
            f"finest first), got {value!r}"
        )
    return values


def glow_step(
    channels: int,
    hidden_channels: int = 128,
    blocks: int = 0,
    scale: str = "sigmoid",
    lu: bool = True,
    dropout: float = 0.0,
) -> Compose:
    """One step of flow: ActNorm -> invertible 1x1 conv -> channel affine coupling."""
    conv = LUInvertibleConv1x1(channels) if lu else InvertibleConv1x1(channels)
    coupling = GlowCoupling(channels, hidden_channels=hidden_channels, blocks=blocks, scale=scale,
                            dropout=dropout)
    return Compose(ActNorm(channels), conv, coupling)


class GlowTransform(Transform):
    r"""Glow's levels as one map :math:`f: (C, H, W) \to (C, H, W)` (see the module docstring).

    Args:
        channels, height, width: image shape; ``height`` and ``width`` must be divisible by
            :math:`2^{\text{levels}}` (each level starts with a squeeze).
        levels: :math:`L`, the number of levels.
        steps: :math:`K`, the number of steps of flow per level; or one number per level,
            finest first (e.g. ``(8, 16)``: a level at a quarter of the pixels costs about a
            quarter as much per step).
        hidden_channels, blocks, scale: the couplings' conv nets and scale function
            (:class:`~flowlab.transforms.glow.GlowCoupling`); ``hidden_channels`` may also
            be one width per level, finest first.
        lu: LU-parameterised 1x1 convolutions (default) or plain ones.
        dropout: dropout in the couplings' conv nets, training mode only (0 = none).
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        levels: int = 3,
        steps: int | Sequence[int] = 8,
        hidden_channels: int | Sequence[int] = 128,
        blocks: int = 0,
        scale: str = "sigmoid",
        lu: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if int(levels) != levels or levels < 1:
            raise ValueError(f"levels must be a positive integer, got {levels!r}")
        steps_per_level = per_level(steps, levels, "steps")
        hidden_per_level = per_level(hidden_channels, levels, "hidden_channels")
        factor = 2**levels
        if height % factor or width % factor:
            raise ValueError(
                f"Glow with {levels} level(s) squeezes {levels} time(s): the image height and "
                f"width must be divisible by {factor}; got {height}x{width}."
            )
        self.shape = (int(channels), int(height), int(width))
        self.squeeze = Squeeze()
        c = 4 * channels
        self.steps = Compose(
            glow_step(c, hidden_per_level[0], blocks, scale, lu, dropout)
            for _ in range(steps_per_level[0])
        )
        self.last = levels == 1
        if not self.last:
            self.factored = c // 2
            kept = c - self.factored
            # Learned conditional prior: (mu, log sigma) of the factored-out half given the rest.
            self.prior = nn.Conv2d(kept, 2 * self.factored, kernel_size=3, padding=1)
            nn.init.zeros_(self.prior.weight)
            nn.init.zeros_(self.prior.bias)
            self.next_level = GlowTransform(
                kept, height // 2, width // 2, levels - 1, steps_per_level[1:],
                hidden_per_level[1:], blocks, scale, lu, dropout,
            )

    def _check(self, x: Tensor, name: str) -> Tensor:
        x = check_image(x, name=name, layer="GlowTransform", like=self)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"GlowTransform was built for images of shape {self.shape} (C, H, W), got "
                f"{tuple(x.shape[1:])}"
            )
        return x

    def _prior(self, h: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.prior(h).chunk(2, dim=1)
        # the learnt standard deviation has no upper bound: one bound, both directions (.bounds)
        return mean, bound_expansion(log_std)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, _ = self.squeeze(self._check(x, "x"))
        x, logdet = self.steps(x)
        if not self.last:
            z_out, h = x[:, : self.factored], x[:, self.factored :]
            mean, log_std = self._prior(h)
            z_out = (z_out - mean) * torch.exp(-log_std)
            h, ld = self.next_level(h)
            logdet = logdet + ld - sum_except_batch(log_std)
            x = torch.cat([z_out, h], dim=1)
        z, _ = self.squeeze.inverse(x)
        return z, logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z, _ = self.squeeze(self._check(z, "z"))
        logdet = z.new_zeros(z.shape[0])
        if not self.last:
            z_out, h = z[:, : self.factored], z[:, self.factored :]
            h, logdet = self.next_level.inverse(h)
            mean, log_std = self._prior(h)
            z_out = z_out * torch.exp(log_std) + mean
            logdet = logdet + sum_except_batch(log_std)
            z = torch.cat([z_out, h], dim=1)
        x, ld = self.steps.inverse(z)
        x, _ = self.squeeze.inverse(x)
        return x, logdet + ld

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Glow(ImageFlow):
    r"""A ready Glow model for images of discrete levels (Kingma & Dhariwal 2018,
    `arXiv:1807.03039 <https://arxiv.org/abs/1807.03039>`_); one name, class and builder.

    Normalizing direction: dequantize :math:`y = (x + u)/K` (optionally followed by the logit
    transform), then :class:`GlowTransform`, base :math:`\mathcal N(0, I)` over the image shape.
    ``log_prob(x)`` on integer levels (as floats) is then the dequantization bound on the
    discrete :math:`\log P(x)` in nats; ``sample(n, temperature=0.7)`` gives Glow's
    reduced-temperature samples as discrete images.  The ActNorm layers initialise themselves
    on the first batch passed through ``log_prob``/``forward``: make it a large, representative
    batch.

    Args:
        shape: ``(C, H, W)``.
        num_levels: :math:`K` (17 for the digits, 256 for 8-bit images), or ``None`` for
            real-valued images (no preprocessing).
        levels, steps, hidden_channels, blocks, scale, lu: see :class:`GlowTransform`; the
            default two levels suit 28x28 MNIST (28 -> 14 -> 7) and 8x8 digits alike;
            ``steps`` and ``hidden_channels`` may be given per level, finest first.
        logit_alpha: the margin :math:`\alpha` of a
            :class:`~flowlab.transforms.pointwise.Logit` after dequantization, or ``None``
            for none (as Glow itself).  The default :math:`10^{-6}` (RealNVP's for MNIST) was
            measured best at the book's live budget on MNIST-5k and on the digits, against
            0.05, which squeezes a black pixel's dequantization noise into a sliver the flow
            must stretch, and on MNIST-5k against ``None`` (``decisions/0004-logit-margin.md``).
        dequantization: ``"uniform"`` or ``"variational"``.
        validate: check inputs (finite, integer levels).
        dropout: dropout in the couplings' conv nets, in training mode only: a regulariser
            for small data sets (``decisions/0008-dropout.md``); sample in ``eval()``.

    Example:
        >>> flow = Glow((1, 8, 8), num_levels=17, steps=2, hidden_channels=8)
        >>> flow.log_prob(torch.randint(0, 17, (4, 1, 8, 8)).float()).shape
        torch.Size([4])
    """

    def __init__(
        self,
        shape: Sequence[int],
        num_levels: int | None,
        levels: int = 2,
        steps: int | Sequence[int] = 8,
        hidden_channels: int | Sequence[int] = 128,
        blocks: int = 0,
        scale: str = "sigmoid",
        lu: bool = True,
        logit_alpha: float | None = 1e-6,
        dequantization: str = "uniform",
        validate: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            shape, num_levels,
            lambda c, h, w: GlowTransform(c, h, w, levels, steps, hidden_channels, blocks, scale, lu,
                                          dropout),
            dequantization, logit_alpha, validate,
        )

