r"""The three layers of one Glow step (Kingma & Dhariwal 2018): ActNorm, an invertible 1x1
convolution, and an affine coupling over channels.

For an image batch ``(batch, C, H, W)`` each layer acts on the ``C`` channels of every pixel
with the same parameters, so each log-determinant is a per-pixel term times the number of
pixels :math:`H W`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_input
from ..nets.resnet import ResNet
from .base import Transform, sum_except_batch
from .masks import MaskLike, as_mask
from .univariate import SCALE_BOUND, Affine, params_last

__all__ = ["ActNorm", "InvertibleConv1x1", "LUInvertibleConv1x1", "GlowCoupling"]


def _check_channels(x: object, layer: Transform, name: str, channels: int) -> Tensor:
    """Accept ``(batch, C)`` or ``(batch, C, *spatial)`` with the layer's ``C``."""
    x = check_input(x, name=name, layer=type(layer).__name__, like=layer)
    if x.dim() < 2 or x.shape[1] != channels:
        raise ValueError(
            f"{type(layer).__name__} was built for {channels} channels and expects {name} of "
            f"shape (batch, {channels}, ...), got {tuple(x.shape)}"
        )
    return x


def _pixels(x: Tensor) -> int:
    """Number of positions that share the per-channel parameters: :math:`H W` (1 for vectors)."""
    n = 1
    for s in x.shape[2:]:
        n *= s
    return n


def _per_channel(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a ``(C,)`` vector to broadcast against ``x`` of shape ``(batch, C, ...)``."""
    return v.reshape(1, -1, *([1] * (x.dim() - 2)))


class ActNorm(Transform):
    r"""Per-channel affine normalisation with data-dependent initialisation.

    .. math::

        z_{c,ij} = (x_{c,ij} - \mu_c)\, e^{-\log\sigma_c}, \qquad
        \log|\det Df(x)| = -H W \sum_c \log\sigma_c .

    The first batch that goes through :meth:`forward` sets :math:`\mu_c` and
    :math:`\sigma_c` to the mean and standard deviation of channel :math:`c` over the batch
    **and** the spatial axes, so that this batch comes out with zero mean and unit variance
    per channel; afterwards both are ordinary trainable parameters (one call, then no more
    batch statistics: unlike batch normalisation, the layer never mixes samples).  The flag
    lives in the state dict, so a loaded checkpoint is not re-initialised.  Calling
    :meth:`inverse` before any forward pass uses the identity initialisation.

    Works on ``(batch, C)`` vectors as well (then :math:`HW = 1`).  Compared with
    :class:`~flowlab.transforms.linear.DiagonalLinear` (a learnable scale and shift per value,
    starting as the identity), ActNorm shares one scale and shift per *channel* across all
    pixels and initialises them from the data.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.channels = int(channels)
        self.eps = float(eps)
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))
        # Python mirror of the buffer so that the hot path never reads a device tensor.
        self._known_initialized = False

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: D401 - torch hook
        super()._load_from_state_dict(*args, **kwargs)
        self._known_initialized = False  # re-read the loaded flag on the next call

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set :math:`\\mu, \\sigma` from the batch ``x`` (per channel, over batch and space)."""
        dims = [0, *range(2, x.dim())]
        mean = x.mean(dim=dims)
        std = x.std(dim=dims, correction=0) if x.numel() > x.shape[1] else torch.ones_like(mean)
        self.loc.copy_(mean)
        self.log_scale.copy_(torch.log(std.clamp_min(self.eps)))
        self.initialized.fill_(True)
        self._known_initialized = True

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = _check_channels(x, self, "x", self.channels)
        if not self._known_initialized:
            if bool(self.initialized):
                self._known_initialized = True
            else:
                self.initialize(x)
        z = (x - _per_channel(self.loc, x)) * torch.exp(-_per_channel(self.log_scale, x))
        logdet = -_pixels(x) * self.log_scale.sum()
        return z, logdet.expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = _check_channels(z, self, "z", self.channels)
        x = z * torch.exp(_per_channel(self.log_scale, z)) + _per_channel(self.loc, z)
        logdet = _pixels(z) * self.log_scale.sum()
        return x, logdet.expand(z.shape[0])

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


def _apply_channel_matrix(x: Tensor, weight: Tensor) -> Tensor:
    """:math:`z_{:,ij} = W x_{:,ij}` at every position (a 1x1 convolution)."""
    if x.dim() == 4:
        return F.conv2d(x, weight[:, :, None, None])
    if x.dim() == 2:
        return x @ weight.T
    return torch.einsum("ij,bj...->bi...", weight, x)


def _random_orthogonal(channels: int) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(channels, channels))
    # Fix the signs so that Q is uniformly distributed (Haar) rather than QR-convention biased.
    return q * torch.sign(torch.diagonal(r)).reshape(1, -1)


def _initial_weight(channels: int, weight: Tensor | None) -> Tensor:
    """A copy of ``weight`` (checked to be ``channels x channels``), or a random rotation."""
    w = _random_orthogonal(channels) if weight is None else weight.detach().clone()
    if tuple(w.shape) != (channels, channels):
        raise ValueError(f"weight must have shape ({channels}, {channels}), got {tuple(w.shape)}")
    return w


class InvertibleConv1x1(Transform):
    r"""Invertible 1x1 convolution: the same learnable :math:`C \times C` matrix :math:`W` mixes
    the channels of every pixel.

    .. math::

        z_{:,ij} = W x_{:,ij}, \qquad \log|\det Df(x)| = H W \log|\det W| .

    :math:`W` starts as a random rotation (:math:`\log|\det W| = 0`), a learnable
    generalisation of a channel permutation.  Costs :math:`O(C^3)` per call for the
    determinant and the inverse; :class:`LUInvertibleConv1x1` brings that to :math:`O(C)`.
    """

    def __init__(self, channels: int, weight: Tensor | None = None) -> None:
        super().__init__()
        self.channels = int(channels)
        w = _initial_weight(channels, weight)
        self.weight = nn.Parameter(w.to(torch.get_default_dtype()))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = _check_channels(x, self, "x", self.channels)
        logdet = _pixels(x) * torch.linalg.slogdet(self.weight)[1]
        return _apply_channel_matrix(x, self.weight), logdet.expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = _check_channels(z, self, "z", self.channels)
        logdet = -_pixels(z) * torch.linalg.slogdet(self.weight)[1]
        return _apply_channel_matrix(z, torch.linalg.inv(self.weight)), logdet.expand(z.shape[0])

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class LUInvertibleConv1x1(Transform):
    r"""Invertible 1x1 convolution with an LU-parameterised weight.

    .. math::

        W = P L \big(U + \operatorname{diag}(\mathrm{sign} \odot e^{\log|u|})\big), \qquad
        \log|\det Df(x)| = H W \sum_c \log|u_c| ,

    with :math:`P` a fixed permutation, :math:`L` unit lower triangular, :math:`U` strictly upper
    triangular, and the diagonal of the upper factor split into a fixed sign and a learnable
    log-magnitude.  The determinant is now a sum instead of an :math:`O(C^3)` ``slogdet``, and
    the inverse needs two triangular solves.  :meth:`from_weight` factors a given
    :math:`W`, so that this layer computes exactly what :class:`InvertibleConv1x1` does with
    the same weight.
    """

    def __init__(self, channels: int, weight: Tensor | None = None) -> None:
        super().__init__()
        self.channels = int(channels)
        w = _initial_weight(channels, weight)
        p, lower, upper = torch.linalg.lu(w)
        diag = torch.diagonal(upper)
        if bool((diag == 0).any()):
            raise ValueError(
                "the weight is singular: an invertible 1x1 convolution needs det W != 0"
            )
        dtype = w.dtype if w.is_floating_point() else torch.get_default_dtype()
        self.register_buffer("permutation", p.to(dtype))
        self.register_buffer("sign", torch.sign(diag).to(dtype))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1).to(dtype))
        self.register_buffer("eye", torch.eye(channels, dtype=dtype))
        self.lower = nn.Parameter(lower.to(dtype))
        self.upper = nn.Parameter(torch.triu(upper, 1).to(dtype))
        self.log_abs_diag = nn.Parameter(torch.log(diag.abs()).to(dtype))

    @classmethod
    def from_weight(cls, weight: Tensor) -> "LUInvertibleConv1x1":
        """The LU layer whose matrix equals ``weight``."""
        return cls(weight.shape[0], weight=weight)

    def _factors(self) -> tuple[Tensor, Tensor]:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(
            self.sign * torch.exp(self.log_abs_diag)
        )
        return lower, upper

    @property
    def weight(self) -> Tensor:
        """The matrix :math:`W = P L U` (recomputed from the factors)."""
        lower, upper = self._factors()
        return self.permutation @ lower @ upper

    def _inverse_weight(self) -> Tensor:
        # W^{-1} = U^{-1} L^{-1} P^T, with two triangular solves.
        lower, upper = self._factors()
        a = torch.linalg.solve_triangular(
            lower, self.permutation.T, upper=False, unitriangular=True
        )
        return torch.linalg.solve_triangular(upper, a, upper=True)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = _check_channels(x, self, "x", self.channels)
        logdet = _pixels(x) * self.log_abs_diag.sum()
        return _apply_channel_matrix(x, self.weight), logdet.expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = _check_channels(z, self, "z", self.channels)
        logdet = -_pixels(z) * self.log_abs_diag.sum()
        return _apply_channel_matrix(z, self._inverse_weight()), logdet.expand(z.shape[0])

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class GlowCoupling(Transform):
    r"""Glow's affine coupling over channels (Kingma & Dhariwal 2018,
    https://arxiv.org/abs/1807.03039).

    The channels are split into a kept part :math:`x_A` (by default the first
    :math:`\lceil C/2\rceil`) and a transformed part :math:`x_B`; a conv net reads :math:`x_A`
    and returns a shift :math:`t` and a raw scale :math:`\tilde s` for :math:`x_B`:

    .. math::

        z_A = x_A, \qquad z_B = \big(x_B + t(x_A)\big) \odot \sigma_s(x_A), \qquad
        \log|\det Df(x)| = \sum \log \sigma_s(x_A),

    and the inverse is :math:`x_B = z_B \odot \sigma_s(z_A)^{-1} - t(z_A)`.

    **Shift then scale, or scale then shift?**  This layer adds the shift *first* and scales
    after, :math:`(x_B + t) \odot \sigma_s`, which is what Glow's published code does
    (``z2 += shift; z2 *= scale`` in openai/glow's ``model.py``).  The paper's Table 1 and
    RealNVP (:class:`~flowlab.transforms.coupling.AffineCoupling`) write the other order,
    :math:`x_B \odot \sigma_s + t`.  Both are correct: each is an invertible affine map of
    :math:`x_B` whose scale and shift depend only on :math:`x_A`, so the Jacobian is triangular
    with the same diagonal :math:`\sigma_s` and the **log-determinant is the same**,
    :math:`\sum \log \sigma_s`.  They even describe the same family of layers, because
    :math:`(x_B + t) \odot \sigma_s = x_B \odot \sigma_s + t'` with :math:`t' = t \odot \sigma_s`,
    another function of :math:`x_A`.  What must match is the inverse: undo the steps in
    reverse order (here divide by the scale first, then subtract the shift).

    The map of :math:`x_B` is flowlab's one affine transformer,
    :class:`~flowlab.transforms.univariate.Affine` ``(scale=..., shift_first=True)``, with the
    parameters :math:`(t, \tilde s)` in flowlab's one order.  Two bounded scales are offered
    (``scale="sigmoid"`` or ``"tanh"``):

    * ``sigmoid``: :math:`\log \sigma_s = \log\operatorname{sigmoid}(\tilde s + 2) -
      \log\operatorname{sigmoid}(2)` -- Glow's sigmoid scale, divided by its value at
      :math:`\tilde s = 0` so that a zero-initialised net gives exactly the identity; the scale
      lies in :math:`(0, 1/\operatorname{sigmoid}(2)) \approx (0, 1.14)`, it can shrink a lot but
      barely expand, which keeps deep stacks stable.
    * ``tanh``: :math:`\log \sigma_s = B \tanh(\tilde s / B)`, a symmetric soft clamp to
      :math:`[e^{-B}, e^{B}]`.

    Unlike :class:`~flowlab.transforms.image.MaskedAffineCoupling`, only the kept channels
    enter the net and only the transformed ones come out: half the work of a channel mask.

    Args:
        channels: the number of channels :math:`C` of the images ``(batch, C, H, W)``.
        conditioner: a module mapping ``(batch, n_A, H, W)`` to ``(batch, 2 n_B, H, W)`` (the
            shift :math:`t`, then :math:`\tilde s`); ``None`` builds a
            :class:`~flowlab.nets.resnet.ResNet` with a zero-initialised last layer (the layer
            starts as the identity).
        hidden_channels: width of the default conditioner.
        blocks: residual blocks of the default conditioner (0: Glow's conv-ReLU-conv net).
        scale: ``"sigmoid"`` or ``"tanh"``, see above.
        scale_bound: :math:`B` of the ``tanh`` scale.
        mask: which channels are kept (:math:`x_A`, ``True``), as everywhere in flowlab: a
            boolean tensor of shape ``(C,)`` (or a ``(1, C, 1, 1)`` channel mask such as
            :func:`~flowlab.transforms.image.channel_mask`, or a
            :class:`~flowlab.transforms.masks.Mask`); ``None`` keeps the first
            :math:`\lceil C/2\rceil` channels.
        dropout: dropout of the default conditioner's hidden features, in training mode
            only (:class:`~flowlab.nets.resnet.ResNet`); invert and sample in ``eval()`` mode.

    Example:
        >>> layer = GlowCoupling(4, hidden_channels=16)
        >>> x = torch.randn(2, 4, 8, 8)
        >>> z, logabsdet = layer(x)                 # zero-initialised: the identity
        >>> torch.equal(z, x), logabsdet.tolist()
        (True, [0.0, 0.0])
        >>> odd = GlowCoupling(4, hidden_channels=16, mask=torch.tensor([False, True, False, True]))
        >>> odd.conditioner.in_channels, odd.conditioner.out_channels
        (2, 4)
    """

    def __init__(
        self,
        channels: int,
        conditioner: nn.Module | None = None,
        hidden_channels: int = 128,
        blocks: int = 0,
        scale: str = "sigmoid",
        scale_bound: float = SCALE_BOUND,
        mask: MaskLike | None = None,
        dropout: float = 0.0,
    ) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__()
        if channels < 2:
            raise ValueError(f"GlowCoupling needs at least 2 channels to split, got {channels}")
        if scale not in ("sigmoid", "tanh"):
            raise ValueError(f"scale must be 'sigmoid' or 'tanh', got {scale!r}")
        self.transformer = Affine(scale_bound, scale=scale, shift_first=True)
        self.channels = int(channels)
        if mask is None:
            keep = torch.arange(self.channels) < (self.channels + 1) // 2
        else:
            keep = as_mask(mask, layer="GlowCoupling").mask.flatten()
            if keep.numel() != self.channels:
                raise ValueError(
                    f"GlowCoupling's mask is over the {self.channels} channels (shape "
                    f"({self.channels},) or (1, {self.channels}, 1, 1)), got one with "
                    f"{keep.numel()} entries; for a checkerboard over pixels use "
                    "MaskedAffineCoupling."
                )
        self.kept = int(keep.sum())
        idx_a, idx_b = torch.nonzero(keep).flatten(), torch.nonzero(~keep).flatten()
        # The default (first channels kept) splits with two slices and merges with one cat.
        self._halves = bool(keep[: self.kept].all())
        self.register_buffer("_index_a", idx_a, persistent=False)
        self.register_buffer("_index_b", idx_b, persistent=False)
        self.register_buffer("_merge", torch.argsort(torch.cat([idx_a, idx_b])), persistent=False)
        changed = self.channels - self.kept
        self.conditioner = conditioner or ResNet(
            self.kept, 2 * changed, hidden_channels, blocks, dropout=dropout
        )

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self._halves:
            return x[:, : self.kept], x[:, self.kept :]
        return x.index_select(1, self._index_a), x.index_select(1, self._index_b)

    def _cat(self, a: Tensor, b: Tensor) -> Tensor:
        out = torch.cat([a, b], dim=1)
        return out if self._halves else out.index_select(1, self._merge)

    @property
    def scale(self) -> str:
        """``"sigmoid"`` or ``"tanh"``: the log-scale parameterization of the transformer."""
        return self.transformer.scale

    @property
    def scale_bound(self) -> float:
        """:math:`B` of the ``tanh`` log-scale."""
        return self.transformer.bound

    def _params(self, kept: Tensor) -> Tensor:
        """The transformer's parameters ``(batch, n_B, H, W, 2)``: (shift, raw scale)."""
        return params_last(self.conditioner(kept), 2)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = _check_channels(x, self, "x", self.channels)
        if x.dim() != 4:
            raise ValueError(f"GlowCoupling expects images (batch, C, H, W), got {tuple(x.shape)}")
        x_a, x_b = self._split(x)
        z_b, ladj = self.transformer(x_b, self._params(x_a))  # shift, then scale (as Glow's code)
        return self._cat(x_a, z_b), sum_except_batch(ladj)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = _check_channels(z, self, "z", self.channels)
        if z.dim() != 4:
            raise ValueError(f"GlowCoupling expects images (batch, C, H, W), got {tuple(z.shape)}")
        z_a, z_b = self._split(z)
        x_b, ladj = self.transformer.inverse(z_b, self._params(z_a))  # unscale, then unshift
        return self._cat(z_a, x_b), sum_except_batch(ladj)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kept={self.kept}, scale={self.scale!r}"
