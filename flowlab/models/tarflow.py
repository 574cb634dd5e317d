r"""TarFlow: a transformer autoregressive flow on image patches (Zhai et al. 2024).

"Normalizing Flows are Capable Generative Models", https://arxiv.org/abs/2412.06329, written
here from the paper.  Four ideas:

1. **Patches as a sequence.**  An image :math:`(C, H, W)` is cut into :math:`T = HW/p^2`
   patches of :math:`d = Cp^2` values: :math:`x = (x_1, \dots, x_T)`, :math:`x_t \in \mathbb{R}^d`.
2. **A block is an affine autoregressive flow over the sequence** (MAF on patches) whose
   conditioner is a *causal* transformer:

   .. math::

       z_t = \big(x_t - \mu_t(x_{<t})\big) \odot e^{-\alpha_t(x_{<t})}, \qquad
       \log|\det Df(x)| = -\sum_{t=1}^{T} \sum_{i=1}^{d} \alpha_{t,i}(x_{<t}),

   with :math:`\mu_1 = \alpha_1 = 0`.  The transformer reads :math:`x_1..x_{T-1}`, attends
   causally, and its output at position :math:`t-1` gives :math:`(\mu_t, \alpha_t)` (the
   outputs are shifted by one).  The Jacobian is block lower triangular over the patches, with
   diagonal blocks :math:`\operatorname{diag}(e^{-\alpha_t})`.  Density: one transformer pass;
   sampling: :math:`T` passes per block (:math:`x_t` needs :math:`x_{<t}`).
3. **The order flips between blocks** (:math:`t = 1..T`, then :math:`T..1`, ...), so every patch
   is eventually conditioned on every other one.
4. **Noise augmentation and denoising.**  Training on :math:`\tilde y = y + \sigma\epsilon`
   (Gaussian, small :math:`\sigma`) smooths the data density and makes sampling much better;
   the samples are then *denoised* with one step of Tweedie's formula using the model's own
   score, :math:`y \leftarrow \tilde y + \sigma^2 \nabla_{\tilde y} \log p_\theta(\tilde y)`
   (:meth:`TarFlow.denoise`).

:class:`TarFlow` puts this core into flowlab's image frame
(:class:`~flowlab.models.image_flow.ImageFlow`): uniform dequantization :math:`y = (x+u)/K`,
then (in training only) the Gaussian noise, then the blocks, then :math:`\mathcal N(0, I)`.
``log_prob`` in ``eval()`` mode has no Gaussian noise, so its bits/dim is the same
dequantization bound that Glow and RealNVP report.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_input
from ..distributions import check_temperature
from ..transforms.base import Compose, Transform
from ..transforms.bounds import bound_expansion
from ..transforms.image import check_image
from .image_flow import ImageFlow

__all__ = [
    "patchify",
    "unpatchify",
    "CausalTransformer",
    "TarFlowBlock",
    "TarFlowTransform",
    "NoiseAugmentation",
    "TarFlow",
]


def patchify(x: Tensor, patch_size: int) -> Tensor:
    r"""``(B, C, H, W) -> (B, T, C p^2)``, patches in raster order, :math:`T = HW/p^2`."""
    b, c, h, w = x.shape
    p = int(patch_size)
    if h % p or w % p:
        raise ValueError(
            f"patch_size {p} must divide the image size {h}x{w}; choose a divisor (e.g. 2 for "
            "8x8 digits, 4 or 7 for 28x28 MNIST)"
        )
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def unpatchify(seq: Tensor, shape: Sequence[int], patch_size: int) -> Tensor:
    """The inverse of :func:`patchify`: ``(B, T, C p^2) -> (B, C, H, W)``."""
    c, h, w = (int(s) for s in shape)
    p = int(patch_size)
    b = seq.shape[0]
    x = seq.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, w)


class _CausalLayer(nn.Module):
    """Pre-norm transformer layer: causal multi-head self-attention, then an MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width)
        )

    def forward(self, h: Tensor) -> Tensor:
        b, t, w = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, t, 3, self.heads, w // self.heads).permute(
            2, 0, 3, 1, 4
        )
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.proj(a.transpose(1, 2).reshape(b, t, w))
        return h + self.mlp(self.norm2(h))


class CausalTransformer(nn.Module):
    r"""Causal transformer :math:`(B, T, d) \to (B, T, d_\text{out})`: output :math:`t` reads
    inputs :math:`1..t` only (learned positional embedding, optional context embedding).

    Args:
        in_features: :math:`d`.
        out_features: output size per position.
        max_len: :math:`T`, the longest sequence.
        width: model width.
        depth: number of transformer layers.
        heads: attention heads.
        context_features: size of an optional context vector, embedded and added to every
            position (class-conditional TarFlow).
        zero_init_last: start with a zero output layer.

    Example:
        >>> net = CausalTransformer(4, 8, max_len=5, width=16, depth=1, heads=2)
        >>> net(torch.randn(3, 5, 4)).shape
        torch.Size([3, 5, 8])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_len: int,
        width: int = 128,
        depth: int = 2,
        heads: int = 4,
        context_features: int = 0,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        self.context_features = int(context_features)
        self.proj_in = nn.Linear(in_features, width)
        self.pos = nn.Parameter(0.02 * torch.randn(int(max_len), width))
        self.context_embed = (
            nn.Linear(self.context_features, width) if self.context_features else None
        )
        self.layers = nn.ModuleList(_CausalLayer(width, heads) for _ in range(int(depth)))
        self.norm = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, out_features)
        if zero_init_last:
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.proj_in(x) + self.pos[: x.shape[1]]
        if self.context_embed is not None:
            if context is None:
                raise ValueError(
                    f"this TarFlow was built with context_features={self.context_features}: "
                    f"pass context=<tensor of shape (batch, {self.context_features})>"
                )
            h = h + self.context_embed(context).unsqueeze(1)
        for layer in self.layers:
            h = layer(h)
        return self.proj_out(self.norm(h))


class TarFlowBlock(Transform):
    r"""One TarFlow block on a patch sequence ``(B, T, d)``: an affine autoregressive map whose
    conditioner is a :class:`CausalTransformer` (see the module docstring for the maths).

    .. math::

        z_t = (x_t - \mu_t) \odot e^{-\alpha_t}, \quad (\mu_t, \alpha_t) = \mathrm{NN}(x_{<t}),
        \quad \log|\det Df(x)| = -\sum_{t,i} \alpha_{t,i} .

    Args:
        features: :math:`d`, values per patch.
        seq_len: :math:`T`.
        width, depth, heads: size of the transformer.
        flip: run the autoregression from the last patch to the first.
        context_features: size of an optional context vector (0 = unconditional).

    Example:
        >>> block = TarFlowBlock(4, 6, width=16, depth=1, heads=2)
        >>> x = torch.randn(2, 6, 4)
        >>> z, logabsdet = block(x)
        >>> torch.allclose(block.inverse(z)[0], x, atol=1e-6)
        True
    """

    def __init__(
        self,
        features: int,
        seq_len: int,
        width: int = 128,
        depth: int = 2,
        heads: int = 4,
        flip: bool = False,
        context_features: int = 0,
    ) -> None:
        super().__init__()
        self.features = int(features)
        self.seq_len = int(seq_len)
        self.flip = bool(flip)
        self.context_features = int(context_features)
        self.net = CausalTransformer(
            self.features, 2 * self.features, self.seq_len, width, depth, heads, context_features
        )
        self.register_buffer("_ref", self.net.proj_in.weight.new_zeros(()), persistent=False)

    def _check(self, x: Tensor, name: str) -> Tensor:
        return check_input(
            x, name=name, layer="TarFlowBlock", event_shape=(self.seq_len, self.features),
            like=self._ref,
        )

    @property
    def conditional(self) -> bool:
        """Whether the layer reads a context (built with ``context_features > 0``)."""
        return self.context_features > 0

    def _params(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """:math:`(\\mu_t, \\alpha_t)` for every :math:`t` from :math:`x_{<t}` (shifted by one)."""
        out = self.net(x[:, :-1], context)
        out = torch.cat([out.new_zeros(out.shape[0], 1, out.shape[2]), out], dim=1)
        mu, alpha = out.chunk(2, dim=-1)
        return mu, bound_expansion(alpha)  # alpha has no bound of its own (.bounds)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self._check(x, "x")
        if self.flip:
            x = x.flip(1)
        mu, alpha = self._params(x, context)
        z = (x - mu) * torch.exp(-alpha)
        if self.flip:
            z = z.flip(1)
        return z, -alpha.sum(dim=(1, 2))

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = self._check(z, "z")
        if self.flip:
            z = z.flip(1)
        xs = [z[:, 0]]  # mu_1 = alpha_1 = 0
        logabsdet = z.new_zeros(z.shape[0])
        for t in range(1, self.seq_len):
            # T sequential passes: position t needs x_1..x_{t-1} (recomputed, no KV cache).
            out = self.net(torch.stack(xs, dim=1), context)[:, -1]
            mu, alpha = out.chunk(2, dim=-1)
            alpha = bound_expansion(alpha)  # as in _params: the same bound in both directions
            xs.append(z[:, t] * torch.exp(alpha) + mu)
            logabsdet = logabsdet + alpha.sum(dim=1)
        x = torch.stack(xs, dim=1)
        if self.flip:
            x = x.flip(1)
        return x, logabsdet

    def extra_repr(self) -> str:
        return f"features={self.features}, seq_len={self.seq_len}, flip={self.flip}"


class TarFlowTransform(Transform):
    r"""The TarFlow core on images: patchify, ``blocks`` :class:`TarFlowBlock` with the order
    flipped between consecutive blocks, unpatchify.  :math:`(C, H, W) \to (C, H, W)`.

    Args:
        channels, height, width: image shape.
        patch_size: :math:`p` (must divide ``height`` and ``width``).
        blocks: number of flow blocks.
        width_model: transformer width.
        depth: transformer layers per block.
        heads: attention heads.
        context_features: size of an optional context vector (class-conditional TarFlow).

    Example:
        >>> f = TarFlowTransform(1, 4, 4, patch_size=2, blocks=2, width_model=16, depth=1, heads=2)
        >>> z, logabsdet = f(torch.randn(3, 1, 4, 4))
        >>> z.shape, logabsdet.shape
        (torch.Size([3, 1, 4, 4]), torch.Size([3]))
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        patch_size: int = 2,
        blocks: int = 4,
        width_model: int = 128,
        depth: int = 2,
        heads: int = 4,
        context_features: int = 0,
    ) -> None:
        super().__init__()
        p = int(patch_size)
        if height % p or width % p:
            raise ValueError(
                f"patch_size {p} must divide the image size {height}x{width}; choose a divisor"
            )
        if int(blocks) != blocks or blocks < 1:
            raise ValueError(f"blocks must be a positive integer, got {blocks!r}")
        self.shape = (int(channels), int(height), int(width))
        self.patch_size = p
        self.context_features = int(context_features)
        seq_len, features = (height // p) * (width // p), channels * p * p
        self.blocks = Compose(
            TarFlowBlock(features, seq_len, width_model, depth, heads, flip=bool(i % 2),
                         context_features=context_features)
            for i in range(int(blocks))
        )

    @property
    def conditional(self) -> bool:
        """Whether the blocks read a context (built with ``context_features > 0``)."""
        return self.context_features > 0

    def _check(self, x: Tensor, name: str) -> Tensor:
        x = check_image(x, name=name, layer="TarFlowTransform", channels=self.shape[0])
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"TarFlowTransform was built for images of shape {self.shape}, got {name} of "
                f"shape {tuple(x.shape)}"
            )
        return x

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        seq = patchify(self._check(x, "x"), self.patch_size)
        z, logabsdet = self.blocks(seq, context=context)
        return unpatchify(z, self.shape, self.patch_size), logabsdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        seq = patchify(self._check(z, "z"), self.patch_size)
        x, logabsdet = self.blocks.inverse(seq, context=context)
        return unpatchify(x, self.shape, self.patch_size), logabsdet

    def extra_repr(self) -> str:
        return f"shape={self.shape}, patch_size={self.patch_size}"


class NoiseAugmentation(Transform):
    r"""Training-time Gaussian noise :math:`\tilde y = y + \sigma \epsilon`,
    :math:`\epsilon \sim \mathcal N(0, I)` (TarFlow's noise augmentation).

    Only in ``train()`` mode; in ``eval()`` mode and in the inverse it is the identity.  It
    reports :math:`\log|\det| = 0`: the model is then trained on the smoothed density
    :math:`p_\sigma = p * \mathcal N(0, \sigma^2 I)`, which is what makes its samples clean
    after denoising.  Like dequantization it is a stochastic layer, not a bijection.

    Args:
        std: :math:`\sigma` (``0`` switches it off).

    Example:
        >>> noise = NoiseAugmentation(0.1).eval()
        >>> y = torch.rand(2, 1, 4, 4)
        >>> torch.equal(noise(y)[0], y)
        True
    """

    def __init__(self, std: float) -> None:
        super().__init__()
        if not std >= 0:
            raise ValueError(f"the noise std must be >= 0, got {std!r}")
        self.std = float(std)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and self.std > 0:
            x = x + self.std * torch.randn_like(x)
        return x, x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z, z.new_zeros(z.shape[0])

    def extra_repr(self) -> str:
        return f"std={self.std}"


class TarFlow(ImageFlow):
    r"""A ready TarFlow for images of discrete levels (see the module docstring).

    Normalizing direction: :math:`x \to y = (x+u)/K \to \tilde y = y + \sigma\epsilon`
    (training only) :math:`\to` :class:`TarFlowTransform` :math:`\to z \sim \mathcal N(0, I)`.
    ``sample(n)`` draws :math:`z`, inverts the blocks (sequentially), denoises with the score
    step (:meth:`denoise`) and quantizes.

    Args:
        shape: ``(C, H, W)``.
        num_levels: :math:`K`, or ``None`` for real-valued images.
        patch_size, blocks, width, depth, heads: see :class:`TarFlowTransform` (``width`` is
            the transformer width).  The defaults suit the 8x8 digits on a CPU (16 patches
            of 2x2); for 28x28 MNIST use ``patch_size=4`` (49 patches of 16 values).
        noise_std: :math:`\sigma` of the training noise, in units of :math:`y \in [0, 1]`.
        context_features: size of an optional context vector (one-hot class for a
            class-conditional model); pass ``context=`` to ``log_prob`` and ``sample``.
        logit_alpha: add a logit transform after dequantization (``None``: none).
        validate: check inputs (finite, integer levels).

    Example:
        >>> model = TarFlow((1, 4, 4), num_levels=17, patch_size=2, blocks=2, width=16,
        ...                 depth=1, heads=2)
        >>> model.log_prob(torch.randint(0, 17, (3, 1, 4, 4)).float()).shape
        torch.Size([3])
        >>> model.sample(2).shape
        torch.Size([2, 1, 4, 4])
    """

    def __init__(
        self,
        shape: Sequence[int],
        num_levels: int | None,
        patch_size: int = 2,
        blocks: int = 4,
        width: int = 64,
        depth: int = 2,
        heads: int = 4,
        noise_std: float = 0.05,
        context_features: int = 0,
        logit_alpha: float | None = None,
        validate: bool = True,
    ) -> None:
        def core(c: int, h: int, w: int) -> Transform:
            return Compose(
                NoiseAugmentation(noise_std),
                TarFlowTransform(c, h, w, patch_size, blocks, width, depth, heads,
                                 context_features),
            )

        super().__init__(shape, num_levels, core, "uniform", logit_alpha, validate)
        self.noise_std = float(noise_std)
        self.context_features = int(context_features)

    @property
    def core(self) -> TarFlowTransform:
        """The transformer flow (after the preprocessing and the noise)."""
        return self.transform[-1][-1]

    def log_prob_continuous(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        r""":math:`\log p_\theta(y)` of the continuous variable the blocks see (after
        dequantization), the density whose score :meth:`denoise` uses."""
        z, logabsdet = self.core(y, context=context)
        return self.base.log_prob(z) + logabsdet

    def denoise(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        r"""One score step :math:`y + \sigma^2 \nabla_y \log p_\theta(y)` (Tweedie's formula:
        the posterior mean of the clean :math:`y` under the smoothed model)."""
        if self.noise_std == 0:
            return y
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            (score,) = torch.autograd.grad(self.log_prob_continuous(y, context).sum(), y)
        return (y + self.noise_std**2 * score).detach()

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        context: Tensor | None = None,
        denoise: bool = True,
    ) -> Tensor:
        """``n`` images: invert the blocks, denoise (``denoise=True``) and quantize.  Draws
        that are not finite are reported with a warning, as :meth:`Flow.sample` does."""
        from ..flow import _warn_if_not_finite

        temperature = check_temperature(temperature)
        z = self.base.sample(n, temperature=temperature)
        context = self._context(context, n)
        y, _ = self.core.inverse(z, context=context)
        if denoise:
            y = self.denoise(y, context)
        for layer in reversed(list(self.transform)[:-1]):
            y, _ = layer.inverse(y)
        _warn_if_not_finite(y, temperature)
        return y

