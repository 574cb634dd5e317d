# %% [markdown]
# # Assignment 3 — Image flows
#
# Images are tensors of shape `(batch, C, H, W)`. Flows for images reuse the coupling idea with
# masks that respect the image's structure, reshape space into channels (*squeeze*), turn
# discrete pixel values into a density problem (*dequantization*), and stop transforming half of
# the dimensions after each scale (*multi-scale* flows). Notation as in the lecture: $f$
# normalizing, $g = f^{-1}$ generative, layers return `(output, log|det|)` with one log-det per
# sample. Write everything yourself with torch operations (no flowlab image layers).
# *flowlab while grading:* you may use `Transform`, `Flow` and the distributions; its image
# layers and masks, couplings (autoregressive layers and the `Affine` transformer too),
# dequantization, metrics, multi-scale
# models and `flowlab.testing` are stubs while your notebook is graded.
#
# Total: 15 points.

# %% [setup]
# Setup (do not edit).
import math
import os
import warnings

import matplotlib.pyplot as plt
import torch
from torch import Tensor, nn

from flowlab.transforms.base import Transform

warnings.filterwarnings("ignore", category=UserWarning, module=r"torch(\.|$)")
GRADING = bool(os.environ.get("NBGRADER_EXECUTION"))
if GRADING:
    torch.set_num_threads(1)  # graders run many kernels side by side: one thread each
torch.manual_seed(0)


def random_conditioner(channels: int) -> nn.Module:
    """A small random CNN (batch, C, H, W) -> (batch, 2C, H, W), for testing."""
    net = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 2 * channels, 3, padding=1))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net

# %% [markdown]
# ## Part 1 — Squeeze (2 points)
#
# *Squeeze* trades space for channels: every $2\times2$ block of a channel becomes 4 channels,
# $(C, H, W) \to (4C, H/2, W/2)$. It only moves numbers around, so $\log|\det| = 0$.
# **Convention:** output channel $4c + 2i + j$ holds pixel $(2h + i, 2w + j)$ of input channel
# $c$:
# $$z[b, 4c + 2i + j, h, w] = x[b, c, 2h + i, 2w + j], \qquad i, j \in \{0, 1\}.$$
# Write `squeeze(x)` and its inverse `unsqueeze(z)` (1 point each; `reshape` and `permute`).

# %% [solution] id=squeeze_solution
def squeeze(x: Tensor) -> Tensor:
    ### BEGIN SOLUTION
    b, c, h, w = x.shape
    z = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return z.reshape(b, 4 * c, h // 2, w // 2)
    ### END SOLUTION


def unsqueeze(z: Tensor) -> Tensor:
    ### BEGIN SOLUTION
    b, c4, h, w = z.shape
    x = z.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c4 // 4, 2 * h, 2 * w)
    ### END SOLUTION

# %% [tests] id=squeeze points=1
x = torch.arange(16.0).reshape(1, 1, 4, 4)
z = squeeze(x)
assert z.shape == (1, 4, 2, 2), "(C, H, W) -> (4C, H/2, W/2)"
assert z[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0], "channel 2i + j holds pixel (2h + i, 2w + j)"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment3.squeeze
### END HIDDEN TESTS

# %% [tests] id=unsqueeze points=1
z = torch.tensor([0.0, 1.0, 4.0, 5.0]).reshape(1, 4, 1, 1)
assert unsqueeze(z).flatten().tolist() == [0.0, 1.0, 4.0, 5.0], "unsqueeze puts the 2x2 block back"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment3.unsqueeze
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 — Masks (2 points)
#
# A mask $b$ holds 1 on the kept part $x_A$ and 0 on the transformed part $x_B$.
#
# * `checkerboard_mask(height, width, parity)`: float tensor of shape `(1, 1, H, W)` with
#   $b_{ij} = 1$ iff $(i + j) \bmod 2 = \text{parity}$;
# * `channel_mask(channels, parity)`: float tensor of shape `(1, C, 1, 1)`; for parity 0 the
#   first $\lceil C/2 \rceil$ channels are kept (1), for parity 1 the others.

# %% [solution] id=masks_solution
def checkerboard_mask(height: int, width: int, parity: int = 0) -> Tensor:
    ### BEGIN SOLUTION
    i = torch.arange(height).reshape(-1, 1)
    j = torch.arange(width).reshape(1, -1)
    return ((i + j) % 2 == parity).float().reshape(1, 1, height, width)
    ### END SOLUTION


def channel_mask(channels: int, parity: int = 0) -> Tensor:
    ### BEGIN SOLUTION
    first = torch.arange(channels) < (channels + 1) // 2
    mask = first if parity == 0 else ~first
    return mask.float().reshape(1, channels, 1, 1)
    ### END SOLUTION

# %% [tests] id=masks points=2
assert checkerboard_mask(2, 2, 0).flatten().tolist() == [1.0, 0.0, 0.0, 1.0], "b_ij = 1 where (i + j) % 2 == parity"
assert channel_mask(4, 1).flatten().tolist() == [0.0, 0.0, 1.0, 1.0], "parity 1 keeps the second half of the channels"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment3.masks
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 — Masked affine coupling (5 points)
#
# RealNVP's coupling for images keeps the masked values and transforms the rest, with the
# conditioner reading only $b \odot x$:
# $$y = b \odot x + (1 - b) \odot \big(x \odot e^{s(b \odot x)} + t(b \odot x)\big), \qquad
#   \log|\det Df(x)| = \sum_{c,i,j} (1 - b_{cij})\, s_{cij}(b \odot x).$$
# **Convention:** `MaskedAffineCoupling(mask, conditioner)`; the conditioner maps
# `(batch, C, H, W)` to `(batch, 2C, H, W)`, split as `t, s = conditioner(b * x).chunk(2, dim=1)`
# (shift first). `forward` 3 points, `inverse` 2 points.

# %% [solution] id=masked_solution
class MaskedAffineCoupling(Transform):
    def __init__(self, mask: Tensor, conditioner: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mask", mask.clone())
        self.conditioner = conditioner

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        b = self.mask
        t, s = self.conditioner(b * x).chunk(2, dim=1)
        y = b * x + (1 - b) * (x * torch.exp(s) + t)
        logdet = ((1 - b) * s).reshape(x.shape[0], -1).sum(dim=1)
        return y, logdet
        ### END SOLUTION

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        b = self.mask
        t_inv, s_inv = self.conditioner(b * y).chunk(2, dim=1)
        x = b * y + (1 - b) * (y - t_inv) * torch.exp(-s_inv)
        logdet = -((1 - b) * s_inv).reshape(y.shape[0], -1).sum(dim=1)
        return x, logdet
        ### END SOLUTION

# %% [tests] id=masked_forward points=3
layer = MaskedAffineCoupling(checkerboard_mask(4, 4, 0), random_conditioner(2))
x = torch.randn(3, 2, 4, 4)
y, ld = layer(x)
keep = checkerboard_mask(4, 4, 0).bool().expand_as(x)
assert torch.equal(y[keep], x[keep]), "the kept values (b = 1) pass through unchanged"
assert ld.shape == (3,), "one log|det| per sample"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment3.masked_forward
### END HIDDEN TESTS

# %% [tests] id=masked_inverse points=2
b = checkerboard_mask(4, 4, 0)
t, s = layer.conditioner(b * x).detach().chunk(2, dim=1)
y = b * x + (1 - b) * (x * torch.exp(s) + t)  # y = f(x), written out
x_back, ld_inv = layer.inverse(y)
assert torch.allclose(x_back, x, atol=1e-5), "the inverse must give x back"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment3.masked_inverse
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4 — Dequantization and bits per dimension (4 points)
#
# Pixels are integers $x \in \{0, \dots, K-1\}^D$ ($K = 256$ for 8-bit images). A density on
# them is meaningless, so we add uniform noise and rescale: $y = (x + u)/K$,
# $u \sim U[0, 1)^D$, which lies in $[0, 1)^D$. A flow models $p_Y$; since $x + u = K y$,
# $\log p(x + u) = \log p_Y(y) - D \log K$, a lower bound (in expectation) on $\log P(x)$.
# Results are reported in **bits per dimension**:
# $$\text{bpd} = \frac{-\big(\log p_Y(y) - D\log K\big)}{D \log 2}.$$
#
# Write `dequantize(x, num_levels=256)` (returns $y$, a float tensor of the shape of `x`) and
# `bits_per_dim(log_prob_y, num_dims, num_levels=256)` (a tensor of the same shape as
# `log_prob_y`). 2 points each.

# %% [solution] id=dequantize_solution
def dequantize(x: Tensor, num_levels: int = 256) -> Tensor:
    ### BEGIN SOLUTION
    x = x.float() if not x.is_floating_point() else x
    return (x + torch.rand_like(x)) / num_levels
    ### END SOLUTION


def bits_per_dim(log_prob_y: Tensor, num_dims: int, num_levels: int = 256) -> Tensor:
    ### BEGIN SOLUTION
    log_prob_x = log_prob_y - num_dims * math.log(num_levels)
    return -log_prob_x / (num_dims * math.log(2))
    ### END SOLUTION

# %% [tests] id=dequantize points=2
y = dequantize(torch.tensor([0.0, 255.0, 17.0]))
assert bool(((y >= torch.tensor([0.0, 255.0, 17.0]) / 256) & (y < torch.tensor([1.0, 256.0, 18.0]) / 256)).all()), \
    "y = (x + u)/K lies in [x/K, (x+1)/K)"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment3.dequantize
### END HIDDEN TESTS

# %% [tests] id=bits_per_dim points=2
assert abs(float(bits_per_dim(torch.tensor([0.0]), 10)) - 8.0) < 1e-5, "a uniform p_Y on [0,1)^D gives 8 bits/dim"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment3.bits_per_dim
### END HIDDEN TESTS

# %% [markdown]
# ## Part 5 — The multi-scale split (2 points)
#
# Flows keep the dimension, but after each scale we can *stop transforming* half of it:
# after block $i$ (which ends with a squeeze), **factor out the first half of the channels** as a
# latent $z_i$ and continue with the other half. The final block's whole output is the last
# latent. The log-density is $\log p_X(x) = \sum_i \log p_Z(z_i) + \sum_i \log|\det Df_i|$.
#
# Write `multiscale_forward(x, blocks)` returning `(latents, logabsdet)`: the list
# $[z_1, \dots, z_L]$ and the total log-det of shape `(batch,)`.

# %% [solution] id=multiscale_solution
def multiscale_forward(x: Tensor, blocks: list) -> tuple[list, Tensor]:
    ### BEGIN SOLUTION
    latents = []
    total = x.new_zeros(x.shape[0])
    h = x
    for i, block in enumerate(blocks):
        h, logdet = block(h)
        total = total + logdet
        if i < len(blocks) - 1:
            half = h.shape[1] // 2
            latents.append(h[:, :half])
            h = h[:, half:]
    latents.append(h)
    return latents, total
    ### END SOLUTION

# %% [tests] id=multiscale points=2
class _SqueezeBlock(Transform):
    def forward(self, x):
        return squeeze(x), x.new_zeros(x.shape[0])

zs, ld = multiscale_forward(torch.randn(2, 1, 4, 4), [_SqueezeBlock(), _SqueezeBlock()])
assert [tuple(z.shape) for z in zs] == [(2, 2, 2, 2), (2, 8, 1, 1)], "factor out half the channels after each block but the last"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment3.multiscale
### END HIDDEN TESTS

# %% [markdown]
# **Check visually.** A digit, its squeezed channels, and the two checkerboard masks.

# %% [code]
from sklearn.datasets import load_digits

digit = torch.tensor(load_digits().images[0], dtype=torch.float32).reshape(1, 1, 8, 8)
fig, axes = plt.subplots(1, 7, figsize=(12, 2))
axes[0].imshow(digit[0, 0], cmap="gray")
axes[0].set_title("x")
for k in range(4):
    axes[k + 1].imshow(squeeze(digit)[0, k], cmap="gray")
    axes[k + 1].set_title(f"channel {k}")
axes[5].imshow(checkerboard_mask(8, 8, 0)[0, 0], cmap="gray")
axes[6].imshow(checkerboard_mask(8, 8, 1)[0, 0], cmap="gray")
for ax in axes:
    ax.axis("off")
plt.show()
