r"""From discrete pixels to a continuous density: dequantization (the logit transform that
usually follows is :class:`~flowlab.transforms.pointwise.Logit` with a margin ``alpha``).

Images are discrete: every value is one of :math:`K` levels :math:`x \in \{0, \dots, K-1\}^D`
(:math:`K = 256` for 8-bit images).  A flow is a *density* on :math:`\mathbb{R}^D`; fitted to
discrete points it could put arbitrarily high density on them and its likelihood would diverge.
Dequantization fixes this (Theis et al. 2016; Ho et al. 2019).

**The discrete model behind a density.**  Give the image :math:`x` the probability mass of its
unit cell,

.. math::

    P(x) = \int_{[0,1)^D} p_V(x + u)\, du ,

where :math:`p_V` is a density on :math:`[0, K)^D`.  For any noise distribution
:math:`q(u \mid x)` on the cell, Jensen's inequality gives the bound

.. math::

    \log P(x) \;\ge\; \mathbb{E}_{u \sim q(\cdot \mid x)}
    \big[\log p_V(x + u) - \log q(u \mid x)\big] ,

tight when :math:`q(u \mid x) = p_V(x+u)/P(x)`.  With uniform noise, :math:`\log q = 0` and the
bound is :math:`\mathbb{E}_u \log p_V(x+u)` (:class:`UniformDequantization`); a learned noise
flow tightens it (:class:`VariationalDequantization`).

**Convention in flowlab.**  Both dequantization layers map :math:`x` to
:math:`y = (x + u)/K \in [0,1)^D` and count the scaling's Jacobian :math:`-D \log K` in their
``logabsdet``, so for ``flow = Flow(base, [dequantizer, ...])``

.. math::

    \texttt{flow.log\_prob}(x) = \log p_V(x + u) - \log q(u \mid x),

a one-sample, unbiased estimate of the lower bound above on the **discrete** log-probability
:math:`\log P(x)` in nats (the uniform layer has :math:`\log q = 0`).  Bits per dimension are
then :math:`-\texttt{log\_prob}/(D \log 2)` with no further correction
(:func:`flowlab.metrics.bits_per_dim`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_input
from ..nets.resnet import ResNet
from .base import Transform, sum_except_batch
from .image import MaskedAffineCoupling, check_image, checkerboard_mask
from .pointwise import Logit

__all__ = [
    "UniformDequantization",
    "VariationalDequantization",
    "dequantization_layers",
]


def _check_levels(x: Tensor, num_levels: int, layer: str) -> None:
    bad = (x < 0) | (x > num_levels - 1) | (x != torch.floor(x))
    if bool(bad.any()):
        raise ValueError(
            f"{layer} expects discrete levels 0, 1, ..., {num_levels - 1} (as floats), but got "
            f"values in [{x.min().item():.4g}, {x.max().item():.4g}] that are not all such "
            "integers. Pass the raw integer levels (e.g. data.images.float()), not data "
            "already scaled to [0, 1]; or build the layer with validate=False."
        )


def _check_num_levels(num_levels: int) -> int:
    if int(num_levels) != num_levels or num_levels < 2:
        raise ValueError(f"num_levels must be an integer >= 2, got {num_levels!r}")
    return int(num_levels)


def _quantize(y: Tensor, num_levels: int) -> Tensor:
    """The generative direction of a dequantizer: :math:`x = \\lfloor K y \\rfloor`."""
    return torch.floor(y * num_levels).clamp_(0, num_levels - 1)


def _scaling_logdet(x: Tensor, num_levels: int) -> Tensor:
    r""":math:`D \log K` per sample: minus the log-determinant of :math:`v \mapsto v / K`."""
    return x.new_full((x.shape[0],), math.prod(x.shape[1:]) * math.log(num_levels))


class UniformDequantization(Transform):
    r"""Uniform dequantization :math:`y = (x + u)/K`, :math:`u \sim U[0,1)^D`.

    .. math::

        \log|\det Df| = -D \log K \quad\text{(the scaling } v \mapsto v/K\text{)}.

    With this layer first, ``flow.log_prob(x)`` is :math:`\log p_V(x+u)`, the log-density
    of the dequantized image on :math:`[0, K)^D` -- an unbiased one-sample estimate of a lower
    bound on the discrete :math:`\log P(x)` (see the module docstring).

    The inverse is the quantizer :math:`x = \lfloor K y \rfloor` (clamped to the valid
    levels); it reports :math:`+D\log K`, the inverse scaling, so that the two directions'
    log-determinants cancel.  (It is piecewise constant, so it has no Jacobian in the usual
    sense: the generative direction produces discrete images.  In float32, :math:`x + u` can
    round up to :math:`x + 1` when :math:`u` is within :math:`10^{-7}` of 1, so the round trip
    is exact only up to such rare cell-edge roundings.)

    Args:
        num_levels: :math:`K`, the number of discrete levels (17 for the 8x8 digits, 256 for
            8-bit images).
        validate: check that every input is an integer level in :math:`[0, K-1]` (one
            reduction per call; switch off for speed once the pipeline is known to be right).

    In ``eval()`` mode the noise is still random: evaluation averages over it.
    """

    def __init__(self, num_levels: int, validate: bool = True) -> None:
        super().__init__()
        self.num_levels = _check_num_levels(num_levels)
        self.validate = bool(validate)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = check_input(x, name="x", layer="UniformDequantization")
        if self.validate:
            _check_levels(x, self.num_levels, "UniformDequantization")
        y = (x + torch.rand_like(x)) / self.num_levels
        return y, -_scaling_logdet(x, self.num_levels)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = check_input(z, name="z", layer="UniformDequantization (inverse)")
        return _quantize(z, self.num_levels), _scaling_logdet(z, self.num_levels)

    def extra_repr(self) -> str:
        return f"num_levels={self.num_levels}"


class VariationalDequantization(Transform):
    r"""Variational dequantization (Ho et al. 2019, Flow++): learned noise :math:`q(u \mid x)`.

    The noise comes from a small conditional flow on the unit cell,

    .. math::

        \varepsilon \sim \mathcal{N}(0, I), \qquad
        v = h_x(\varepsilon) \text{ (checkerboard couplings conditioned on } x\text{)}, \qquad
        u = \operatorname{sigmoid}(v) \in (0, 1)^D,

    .. math::

        \log q(u \mid x) = \log \mathcal{N}(\varepsilon; 0, I) - \log|\det Dh_x(\varepsilon)|
        - \sum_i \big[\log\operatorname{sigmoid}(v_i) + \log\operatorname{sigmoid}(-v_i)\big].

    ``forward(x)`` returns :math:`y = (x + u)/K` together with
    :math:`-D\log K - \log q(u \mid x)`, so that ``flow.log_prob(x)`` becomes
    :math:`\log p_V(x+u) - \log q(u\mid x)`: a one-sample estimate of the variational lower
    bound (ELBO) on the discrete :math:`\log P(x)`.  Maximising it trains the model *and* the
    noise flow; the gap to :math:`\log P(x)` is :math:`\mathrm{KL}(q(u\mid x) \,\|\, p(u\mid x))`.
    The inverse quantizes, :math:`x = \lfloor K y \rfloor`, exactly as
    :class:`UniformDequantization` does (exact unless the sigmoid saturates to 1 in floating
    point, i.e. :math:`v \gtrsim 17` in float32).  Because ``logabsdet`` contains
    :math:`-\log q`, this is not a bijection with a Jacobian: test it with
    :meth:`noise_from` and :meth:`noise_with_log_prob` instead.

    Args:
        num_levels: :math:`K`.
        channels: image channels :math:`C` (inputs are ``(batch, C, H, W)``).
        height, width: image size (the checkerboard masks are built for it).
        couplings: number of checkerboard couplings in :math:`h_x`.
        hidden_channels, blocks: size of the conv nets (context encoder and couplings).
        validate: check that inputs are integer levels.
    """

    def __init__(
        self,
        num_levels: int,
        channels: int,
        height: int,
        width: int,
        couplings: int = 4,
        hidden_channels: int = 32,
        blocks: int = 1,
        context_channels: int = 16,
        validate: bool = True,
    ) -> None:
        super().__init__()
        self.num_levels = _check_num_levels(num_levels)
        self.channels = int(channels)
        self.image_size = (int(height), int(width))
        self.validate = bool(validate)
        # Encodes the image into features that every coupling of the noise flow reads.
        self.context_net = ResNet(
            channels, context_channels, hidden_channels, blocks, zero_init_last=False
        )
        self.couplings = nn.ModuleList(
            MaskedAffineCoupling(
                checkerboard_mask(height, width, parity=k % 2),
                channels,
                hidden_channels=hidden_channels,
                blocks=blocks,
                context_channels=context_channels,
            )
            for k in range(couplings)
        )

    def _context(self, x: Tensor) -> Tensor:
        return self.context_net(x / (self.num_levels - 1) - 0.5)

    def noise_from(self, eps: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""The deterministic part :math:`\varepsilon \mapsto u` for the image ``x`` and
        :math:`\log|\det \partial u / \partial \varepsilon|`."""
        context = self._context(x)
        v, logdet = eps, eps.new_zeros(eps.shape[0])
        for coupling in self.couplings:
            v, ld = coupling(v, context=context)
            logdet = logdet + ld
        log_sigmoid_grad = -F.softplus(-v) - F.softplus(v)
        logdet = logdet + sum_except_batch(log_sigmoid_grad)
        return torch.sigmoid(v), logdet

    def noise_with_log_prob(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""Draw :math:`u \sim q(\cdot \mid x)` and return it with :math:`\log q(u \mid x)`."""
        eps = torch.randn_like(x)
        u, logdet = self.noise_from(eps, x)
        log_normal = -0.5 * eps.square() - 0.5 * math.log(2 * math.pi)
        return u, sum_except_batch(log_normal) - logdet

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = check_image(x, layer="VariationalDequantization", channels=self.channels, like=self)
        if tuple(x.shape[2:]) != self.image_size:
            raise ValueError(
                f"VariationalDequantization was built for {self.image_size[0]}x"
                f"{self.image_size[1]} images, got {x.shape[2]}x{x.shape[3]}"
            )
        if self.validate:
            _check_levels(x, self.num_levels, "VariationalDequantization")
        u, log_q = self.noise_with_log_prob(x)
        return (x + u) / self.num_levels, -_scaling_logdet(x, self.num_levels) - log_q

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = check_image(z, name="z", layer="VariationalDequantization (inverse)", like=self)
        return _quantize(z, self.num_levels), _scaling_logdet(z, self.num_levels)

    def extra_repr(self) -> str:
        return f"num_levels={self.num_levels}, couplings={len(self.couplings)}"


def dequantization_layers(
    shape: tuple[int, int, int],
    num_levels: int | None,
    dequantization: str = "uniform",
    logit_alpha: float | None = None,
    validate: bool = True,
) -> list[Transform]:
    """The preprocessing layers of an image flow: dequantize ``num_levels`` discrete levels
    (``"uniform"`` or ``"variational"``), then optionally the logit transform.

    ``num_levels=None`` means the data are already continuous: no layers are returned.
    """
    if num_levels is None:
        return []
    if dequantization == "uniform":
        layers: list[Transform] = [UniformDequantization(num_levels, validate=validate)]
    elif dequantization == "variational":
        layers = [VariationalDequantization(num_levels, *shape, validate=validate)]
    else:
        raise ValueError(
            f"dequantization must be 'uniform' or 'variational', got {dequantization!r}"
        )
    if logit_alpha is not None:
        layers.append(Logit(alpha=logit_alpha))
    return layers
