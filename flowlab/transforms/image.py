r"""Layers for images: squeezing and masked convolutional coupling (RealNVP, Dinh et al. 2016).

An image batch has shape ``(batch, C, H, W)``.  Two ideas make coupling layers work on images:

* **Masks with spatial structure.**  A binary mask :math:`b` (1 = kept, the conditioning part
  :math:`x_A`; 0 = transformed, :math:`x_B`) is either a *checkerboard* over pixels or a split
  of the *channels* in two halves.  A convolutional net sees :math:`b \odot x`, so every
  transformed pixel is predicted from its kept neighbours.
* **Squeezing.**  :class:`Squeeze` trades space for channels: each 2x2 block of pixels becomes 4
  channels, :math:`(C, H, W) \to (4C, H/2, W/2)`.  It only moves numbers around (a
  permutation), so :math:`\log|\det| = 0`, and it lets a channel mask mix pixels that a
  checkerboard kept apart.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..checks import check_input
from ..nets.resnet import ResNet
from .base import Transform, sum_except_batch
from .masks import Mask
from .univariate import SCALE_BOUND, Affine, params_last

__all__ = [
    "Squeeze",
    "checkerboard_mask",
    "squeezed_checkerboard_mask",
    "channel_mask",
    "MaskedAffineCoupling",
    "check_image",
]


def check_image(
    x: object,
    *,
    name: str = "x",
    layer: str = "layer",
    channels: int | None = None,
    like: nn.Module | Tensor | None = None,
) -> Tensor:
    """Validate a batch of images ``(batch, C, H, W)`` (optionally with ``C == channels``)."""
    x = check_input(x, name=name, layer=layer, event_dim=3, like=like)
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{layer} was built for {channels} channel(s) but {name} has shape "
            f"{tuple(x.shape)} (batch, C, H, W) with C = {x.shape[1]}."
        )
    return x


class Squeeze(Transform):
    r"""Space-to-depth: :math:`(C, H, W) \to (4C, H/2, W/2)`, :math:`\log|\det| = 0`.

    Output channel :math:`4c + 2i + j` holds pixel :math:`(2h + i, 2w + j)` of input channel
    :math:`c`, for :math:`i, j \in \{0, 1\}`:

    .. math:: z[b, 4c + 2i + j, h, w] = x[b, c, 2h + i, 2w + j].

    The inverse (depth-to-space) undoes the reshaping exactly.  ``H`` and ``W`` must be even.
    """

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = check_image(x, layer="Squeeze")
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(
                f"Squeeze needs an even height and width, got an image of {h}x{w}. Pad or crop "
                "the images (a model with L squeezes needs sizes divisible by 2**L)."
            )
        z = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return z.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = check_image(z, name="z", layer="Squeeze (inverse)")
        b, c4, h, w = z.shape
        if c4 % 4:
            raise ValueError(
                f"Squeeze.inverse needs a channel count divisible by 4, got {c4} channels"
            )
        x = z.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c4 // 4, 2 * h, 2 * w), z.new_zeros(b)


def checkerboard_mask(
    height: int,
    width: int,
    parity: int = 0,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Checkerboard mask of shape ``(1, 1, H, W)``: :math:`b_{ij} = 1` iff
    :math:`(i + j) \bmod 2 = \text{parity}`.

    Returns 1 on the kept pixels (:math:`x_A`) and 0 on the transformed ones (:math:`x_B`); it
    broadcasts over the batch and the channels.  Alternate ``parity=0`` and ``parity=1`` so that
    every pixel gets transformed.
    """
    if parity not in (0, 1):
        raise ValueError(f"checkerboard_mask: parity must be 0 or 1, got {parity!r}")
    i = torch.arange(height, device=device).reshape(-1, 1)
    j = torch.arange(width, device=device).reshape(1, -1)
    mask = ((i + j) % 2 == parity).to(dtype or torch.get_default_dtype())
    return mask.reshape(1, 1, height, width)


def squeezed_checkerboard_mask(
    channels: int,
    parity: int = 0,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""The checkerboard mask of a ``channels``-channel image, seen after a :class:`Squeeze`:
    a ``(1, 4C, 1, 1)`` channel mask.

    Squeezing moves pixel :math:`(2h+i, 2w+j)` of channel :math:`c` to channel
    :math:`4c + 2i + j`, and :math:`(2h+i+2w+j) \bmod 2 = (i+j) \bmod 2`, so

    .. math:: \operatorname{Squeeze}(\texttt{checkerboard\_mask}(H, W, p)) =
        \texttt{squeezed\_checkerboard\_mask}(C, p) \text{ (broadcast)},

    with 1 (kept) on channels :math:`4c + 2i + j` where :math:`(i + j) \bmod 2 = p`.  A
    coupling with this mask on the squeezed image computes the checkerboard coupling with
    a conditioner that works at half the resolution (4x fewer positions).

    Example:
        >>> squeezed_checkerboard_mask(1, parity=0).flatten()
        tensor([1., 0., 0., 1.])
    """
    if parity not in (0, 1):
        raise ValueError(f"squeezed_checkerboard_mask: parity must be 0 or 1, got {parity!r}")
    if int(channels) != channels or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    k = torch.arange(4 * int(channels), device=device) % 4
    i, j = k // 2, k % 2
    mask = ((i + j) % 2 == parity).to(dtype or torch.get_default_dtype())
    return mask.reshape(1, 4 * int(channels), 1, 1)


def channel_mask(
    channels: int,
    parity: int = 0,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Channel mask of shape ``(1, C, 1, 1)``: the first :math:`\lceil C/2 \rceil` channels are
    kept (:math:`b = 1`) for ``parity=0``, the others for ``parity=1``."""
    if parity not in (0, 1):
        raise ValueError(f"channel_mask: parity must be 0 or 1, got {parity!r}")
    if channels < 2:
        raise ValueError(
            f"channel_mask needs at least 2 channels to split, got {channels}; squeeze the "
            "image first or use checkerboard_mask."
        )
    first = torch.arange(channels, device=device) < (channels + 1) // 2
    mask = first if parity == 0 else ~first
    return mask.to(dtype or torch.get_default_dtype()).reshape(1, channels, 1, 1)


class MaskedAffineCoupling(Transform):
    r"""Affine coupling with a binary mask :math:`b` and a convolutional conditioner.

    .. math::

        y = b \odot x + (1 - b) \odot \big(x \odot e^{s(b \odot x)} + t(b \odot x)\big),
        \qquad
        \log|\det Df(x)| = \sum_{c,i,j} (1 - b_{cij})\, s_{cij}(b \odot x).

    The Jacobian is triangular (kept values pass unchanged, each transformed value only
    depends on itself and on kept values), so the log-determinant is the sum of the log-scales
    on the transformed positions.  The inverse reads :math:`s, t` from the unchanged part:
    :math:`x = b \odot y + (1-b) \odot (y - t(b \odot y)) \odot e^{-s(b \odot y)}`.

    **The transformer.**  Each value is mapped by flowlab's one affine transformer
    (:class:`~flowlab.transforms.univariate.Affine`, the one of
    :class:`~flowlab.transforms.coupling.AffineCoupling` and MAF), whose parameters
    :math:`(t, \tilde s)` are the conv net's two channel halves multiplied by :math:`1 - b`
    (zero parameters are the identity, so the kept values pass unchanged).

    **Bounded scale.**  The raw network output :math:`\tilde s` passes through a soft clamp
    :math:`s = B \tanh(\tilde s / B)` (``scale_bound`` :math:`= B`, default 3), so one layer can
    scale by at most :math:`e^{\pm B}`: no overflow early in training, and
    :math:`s \approx \tilde s` for small values.  With a zero-initialised last layer,
    :math:`s = t = 0` and the layer starts as the identity.

    Args:
        mask: a ``(1, 1, H, W)`` checkerboard, a ``(1, C, 1, 1)`` channel mask, or any boolean
            or 0/1 tensor broadcastable to ``(1, C, H, W)`` (``True``/1 = kept), with or
            without the leading batch axis, or a :class:`~flowlab.transforms.masks.Mask`.
        channels: number of image channels ``C``.
        conditioner: a module mapping ``(batch, C + context_channels, H, W)`` to
            ``(batch, 2C, H, W)`` (shift, then raw log-scale); default a :class:`ResNet`.
        hidden_channels, blocks: size of the default conditioner.
        scale_bound: :math:`B`; ``None`` switches the clamp off.
        context_channels: extra channels that the conditioner also reads (a conditional flow,
            e.g. the noise flow of variational dequantization); pass ``context=`` then.
        dropout: dropout of the default conditioner's hidden features, in training mode
            only (:class:`~flowlab.nets.resnet.ResNet`); invert and sample in ``eval()`` mode.
    """

    def __init__(
        self,
        mask: Tensor,
        channels: int,
        conditioner: nn.Module | None = None,
        hidden_channels: int = 64,
        blocks: int = 2,
        scale_bound: float | None = SCALE_BOUND,
        context_channels: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(mask, Mask):  # flowlab's Mask over one image, (C, H, W) or (1, H, W)
            mask = mask.mask
        if isinstance(mask, Tensor) and mask.dim() == 3:  # one sample: add the batch axis
            mask = mask.unsqueeze(0)
        if not isinstance(mask, Tensor) or mask.dim() != 4 or mask.shape[0] != 1:
            raise ValueError(
                "MaskedAffineCoupling expects a mask of shape (1, C or 1, H or 1, W or 1), e.g. "
                "checkerboard_mask(H, W) or channel_mask(C)"
            )
        if mask.shape[1] not in (1, channels):
            raise ValueError(f"the mask has {mask.shape[1]} channels but the layer has {channels}")
        values = mask.detach().float()
        if not bool(((values == 0) | (values == 1)).all()):
            raise ValueError("the mask must hold only 0 (transformed) and 1 (kept)")
        if bool(values.all()) or not bool(values.any()):
            raise ValueError("the mask must keep some values and transform others")
        self.transformer = Affine(scale_bound)
        self.register_buffer("mask", mask.detach().to(torch.get_default_dtype()).clone())
        self.channels = int(channels)
        self.context_channels = int(context_channels)
        self.conditioner = conditioner or ResNet(
            channels + context_channels, 2 * channels, hidden_channels, blocks, dropout=dropout
        )

    @property
    def conditional(self) -> bool:
        """Whether the layer reads a context (built with ``context_channels > 0``)."""
        return self.context_channels > 0

    @property
    def scale_bound(self) -> float | None:
        """:math:`B`, the bound of the log-scale (``None``: unbounded)."""
        return self.transformer.bound

    def _params(self, kept: Tensor, context: Tensor | None) -> Tensor:
        """The transformer's parameters ``(batch, C, H, W, 2)``, zero on the kept values."""
        if self.context_channels:
            if context is None:
                raise ValueError(
                    f"this coupling was built with context_channels={self.context_channels}: "
                    "call it with context=<tensor of shape (batch, context_channels, H, W)>"
                )
            kept = torch.cat([kept, context], dim=1)
        params = self.conditioner(kept)
        if params.shape[1] != 2 * self.channels:
            raise ValueError(
                f"the conditioner returned {params.shape[1]} channels; it must return "
                f"2 * C = {2 * self.channels} (shift and log-scale)"
            )
        # zero parameters (the identity) on the kept values
        return params_last(params, 2) * (1.0 - self.mask).unsqueeze(-1)

    def _check(self, x: Tensor, name: str) -> Tensor:
        x = check_image(
            x, name=name, layer=type(self).__name__, channels=self.channels, like=self.mask
        )
        if self.mask.shape[2:] != (1, 1) and x.shape[2:] != self.mask.shape[2:]:
            raise ValueError(
                f"{type(self).__name__} was built with a {self.mask.shape[2]}x"
                f"{self.mask.shape[3]} checkerboard mask but {name} is "
                f"{x.shape[2]}x{x.shape[3]}: build the mask for the image size at this scale."
            )
        return x

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self._check(x, "x")
        y, ladj = self.transformer(x, self._params(x * self.mask, context))
        return y, sum_except_batch(ladj)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = self._check(z, "z")
        x, ladj = self.transformer.inverse(z, self._params(z * self.mask, context))
        return x, sum_except_batch(ladj)

    def extra_repr(self) -> str:
        kind = "checkerboard" if self.mask.shape[1] == 1 else "channel"
        return f"channels={self.channels}, mask={kind}, scale_bound={self.scale_bound}"
