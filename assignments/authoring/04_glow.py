# %% [markdown]
# # Assignment 4 — Glow
#
# Glow (Kingma & Dhariwal, 2018) builds each step of a multi-scale image flow from three layers:
# **ActNorm** (a per-channel affine map initialised from the data), an **invertible 1×1
# convolution** (a learned channel mixing that generalises the fixed permutations of RealNVP)
# and an affine coupling. You write the first two and the *temperature* sampling Glow uses to
# draw cleaner samples. Notation as in the lecture: $f$ normalizing, $g = f^{-1}$ generative;
# images are `(batch, C, H, W)`; log-dets have shape `(batch,)`. Write the layers yourself (no
# flowlab Glow layers). Total: 12 points.
# *flowlab while grading:* you may use `Transform`, `Flow` and the distributions (including
# `flow.base.sample(n)`); its Glow layers and models, its linear layers, `flowlab.testing` and
# its temperature sampling (`flow.sample`, `flow.rsample`, `flow.sample_with_log_prob`, and any
# `sample(n, temperature=T)` with `T != 1`) are stubs while your notebook is graded.
#
# *The coupling's order.* Glow's affine coupling is assignment 2's with one difference you will
# meet in flowlab's `GlowCoupling` (and in Glow's published code): it **shifts first, then
# scales**, $z_B = (x_B + t(x_A)) \odot e^{s(x_A)}$, and its inverse divides first, then
# subtracts, $x_B = z_B \odot e^{-s} - t$. Assignment 2 (like the RealNVP paper) scales first,
# $z_B = x_B \odot e^{s} + t$. Both are invertible with the same
# $\log|\det Df| = \sum s$; what matters is that the inverse undoes the steps of *its* forward
# in reverse order.
#
# **Grading.** The hidden tests call your layers on fixed edge cases (one channel, odd and
# non-square images, negative determinants) and on fresh random inputs, and also check that the
# gradients reach your parameters (a `.detach()` or `.item()` would stop training). Each part is
# graded on its own: for `forward`/`inverse` the grader sets the parameters itself.

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

# %% [markdown]
# ## Part 1 — ActNorm (5 points)
#
# A per-channel affine normalisation with parameters $\mu_c$ and $\log\sigma_c$:
# $$z_{c,i,j} = (x_{c,i,j} - \mu_c)\, e^{-\log\sigma_c}, \qquad
#   \log|\det Df(x)| = -H\,W \sum_c \log\sigma_c$$
# (every one of the $H W$ pixels of channel $c$ is scaled by $e^{-\log\sigma_c}$).
# **Data-dependent initialisation:** on the *first* call of `forward`, set $\mu_c$ and $\sigma_c$
# to the mean and standard deviation of channel $c$ of that batch — over the batch, height and
# width axes — so that the first output has zero mean and unit variance per channel. Later
# calls use the (then trained) parameters as they are.
#
# *Convention:* `ActNorm(channels)` has `nn.Parameter`s **`self.loc`** ($\mu$, shape `(C,)`) and
# **`self.log_scale`** ($\log\sigma$, shape `(C,)`) and a Python bool **`self.initialized`**
# (False until the first forward call; the grader sets it to True when it sets the
# parameters). Points: initialisation 2, `forward` 2, `inverse` 1.

# %% [solution] id=actnorm_solution
class ActNorm(Transform):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.initialized = False

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        if not self.initialized:
            with torch.no_grad():
                self.loc.copy_(x.mean(dim=(0, 2, 3)))
                self.log_scale.copy_(torch.log(x.std(dim=(0, 2, 3))))
            self.initialized = True
        loc = self.loc.reshape(1, -1, 1, 1)
        log_scale = self.log_scale.reshape(1, -1, 1, 1)
        z = (x - loc) * torch.exp(-log_scale)
        pixels = x.shape[2] * x.shape[3]
        return z, (-pixels * self.log_scale.sum()).expand(x.shape[0])
        ### END SOLUTION

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        loc = self.loc.reshape(1, -1, 1, 1)
        log_scale = self.log_scale.reshape(1, -1, 1, 1)
        x = z * torch.exp(log_scale) + loc
        pixels = z.shape[2] * z.shape[3]
        return x, (pixels * self.log_scale.sum()).expand(z.shape[0])
        ### END SOLUTION

# %% [tests] id=actnorm_init points=2
layer = ActNorm(3)
x = 2.0 + 3.0 * torch.randn(16, 3, 4, 4)
z, _ = layer(x)
assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5), "after init, each channel has mean 0"
assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2), "after init, each channel has std 1"
assert layer.initialized, "set self.initialized = True after the first call"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment4.actnorm_init
### END HIDDEN TESTS

# %% [tests] id=actnorm_forward points=2
layer = ActNorm(2)
with torch.no_grad():
    layer.loc.copy_(torch.tensor([1.0, -1.0]))
    layer.log_scale.copy_(torch.tensor([math.log(2.0), 0.0]))
layer.initialized = True
z, ld = layer(torch.ones(1, 2, 3, 3))
assert torch.allclose(z[0, :, 0, 0], torch.tensor([0.0, 2.0])), "z = (x - mu) * exp(-log sigma)"
assert torch.allclose(ld, torch.tensor([-9 * math.log(2.0)])), "log|det Df| = -H W sum_c log sigma_c"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment4.actnorm_forward
### END HIDDEN TESTS

# %% [tests] id=actnorm_inverse points=1
layer = ActNorm(2)
with torch.no_grad():
    layer.loc.copy_(torch.tensor([1.0, -1.0]))
    layer.log_scale.copy_(torch.tensor([math.log(2.0), 0.0]))
layer.initialized = True
x, ld = layer.inverse(torch.tensor([0.0, 2.0]).reshape(1, 2, 1, 1).expand(1, 2, 3, 3))
assert torch.allclose(x, torch.ones(1, 2, 3, 3)), "x = z * exp(log sigma) + mu"
assert torch.allclose(ld, torch.tensor([9 * math.log(2.0)])), "log|det Dg| = +H W sum_c log sigma_c"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment4.actnorm_inverse
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 — Invertible 1×1 convolution, LU-parameterised (5 points)
#
# A 1×1 convolution multiplies the channel vector of every pixel by the same $C \times C$
# matrix $W$: $z_{:,i,j} = W x_{:,i,j}$, so $\log|\det Df(x)| = H W \log|\det W|$. Computing
# $\log|\det W|$ costs $O(C^3)$; Glow parameterises
# $$W = P\, L\, \big(U + \operatorname{diag}(\mathrm{sign} \odot e^{\log|u|})\big)$$
# with $P$ a fixed permutation, $L$ lower triangular with **ones on the diagonal**, $U$ strictly
# upper triangular, so that $\log|\det W| = \sum_c \log|u_c|$ (the lecture's triangular trick).
#
# *Convention:* `LUConv1x1(channels)` has buffers **`permutation`** ($P$, `(C, C)`) and **`sign`**
# (`(C,)`), and parameters **`lower`** (`(C, C)`, only its strict lower triangle is used),
# **`upper`** (`(C, C)`, only its strict upper triangle is used) and **`log_abs_diag`**
# ($\log|u|$, `(C,)`). `weight()` returns $W$ (1 point); `forward` (2 points) and `inverse`
# (2 points) must obtain $W$ by calling `self.weight()` (the grader grades them with its own
# `weight()`, so that a slip in `weight` costs only its point). Remember that $\det W$ may be
# negative: $\log|\det W| = \sum_c \log|u_c|$ is what the layer returns.

# %% [solution] id=conv_solution
class LUConv1x1(Transform):
    def __init__(self, channels: int) -> None:
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]  # a random rotation
        p, lower, upper = torch.linalg.lu(w)
        self.register_buffer("permutation", p)
        self.register_buffer("sign", torch.sign(torch.diagonal(upper)))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(upper)
        self.log_abs_diag = nn.Parameter(torch.log(torch.diagonal(upper).abs()))

    def weight(self) -> Tensor:
        ### BEGIN SOLUTION
        c = self.log_abs_diag.shape[0]
        eye = torch.eye(c, dtype=self.lower.dtype, device=self.lower.device)
        L = torch.tril(self.lower, -1) + eye
        U = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.log_abs_diag))
        return self.permutation @ L @ U
        ### END SOLUTION

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        W = self.weight()
        z = torch.einsum("ij,bjhw->bihw", W, x)
        pixels = x.shape[2] * x.shape[3]
        return z, (pixels * self.log_abs_diag.sum()).expand(x.shape[0])
        ### END SOLUTION

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        W_inv = torch.linalg.inv(self.weight())
        x = torch.einsum("ij,bjhw->bihw", W_inv, z)
        pixels = z.shape[2] * z.shape[3]
        return x, (-pixels * self.log_abs_diag.sum()).expand(z.shape[0])
        ### END SOLUTION

# %% [tests] id=conv_weight points=1
layer = LUConv1x1(3)
W = layer.weight()
assert W.shape == (3, 3), "W is a (C, C) matrix"
with torch.no_grad():
    assert abs(float(torch.linalg.slogdet(W)[1] - layer.log_abs_diag.sum())) < 1e-4, "log|det W| = sum_c log|u_c|"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment4.conv_weight
### END HIDDEN TESTS

# %% [tests] id=conv_forward points=2
layer = LUConv1x1(3)
x = torch.randn(2, 3, 4, 4)
z, ld = layer(x)
assert torch.allclose(z[:, :, 1, 2], x[:, :, 1, 2] @ layer.weight().T, atol=1e-5), "z = W x at every pixel"
assert torch.allclose(ld, 16 * layer.log_abs_diag.sum().expand(2), atol=1e-4), "log|det Df| = H W sum_c log|u_c|"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment4.conv_forward
### END HIDDEN TESTS

# %% [tests] id=conv_inverse points=2
layer = LUConv1x1(3)
x = torch.randn(2, 3, 4, 4)
z = torch.einsum("ij,bjhw->bihw", layer.weight().detach(), x)  # z = f(x), written out
x_back, ld = layer.inverse(z)
assert torch.allclose(x_back, x, atol=1e-4), "the inverse must give x back"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment4.conv_inverse
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 — Temperature sampling (2 points)
#
# Glow samples with a *reduced temperature* $T < 1$: draw $z \sim \mathcal N(0, T^2 I)$ (i.e.
# $z = T\varepsilon$, $\varepsilon \sim \mathcal N(0, I)$) and return $x = g(z)$. Samples
# concentrate where the model is confident. Write `sample_with_temperature(flow, n, temperature)`
# for a flowlab `Flow` (`flow.event_shape` is the latent's shape, a vector or an image shape;
# `flow.inverse(z)` returns `(x, logabsdet)`). Scale the latent yourself: flowlab's own
# `flow.sample(n, temperature=...)` and `base.sample(n, temperature=...)` do this part for you and
# earn no points (`flow.base.sample(n)` for $\varepsilon$ is fine).

# %% [solution] id=temperature_solution
@torch.no_grad()
def sample_with_temperature(flow, n: int, temperature: float) -> Tensor:
    ### BEGIN SOLUTION
    eps = flow.base.sample(n)  # N(0, I), in the flow's dtype and device
    z = temperature * eps
    x, _ = flow.inverse(z)
    return x
    ### END SOLUTION

# %% [tests] id=temperature points=2
from flowlab.distributions import StandardNormal
from flowlab.flow import Flow

class _Shift(Transform):  # f(x) = x - 1, g(z) = z + 1
    def forward(self, x):
        return x - 1.0, x.new_zeros(x.shape[0])

    def inverse(self, z):
        return z + 1.0, z.new_zeros(z.shape[0])

x = sample_with_temperature(Flow(StandardNormal(2), [_Shift()]), 5000, 0.5)
assert x.shape == (5000, 2), "n samples of shape event_shape"
assert abs(float(x.std()) - 0.5) < 0.05, "z ~ N(0, T^2 I): the spread of z is T"
assert abs(float(x.mean()) - 1.0) < 0.05, "return x = g(z), not z"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment4.temperature
### END HIDDEN TESTS

# %% [markdown]
# **Check visually.** A flow made of your ActNorm and 1×1 convolution on 2×2 "images" with one
# pixel is just a linear flow; lowering $T$ shrinks the samples towards the mode.

# %% [code]
class _Flatten(Transform):
    def forward(self, x):
        return x.reshape(x.shape[0], 2, 1, 1), x.new_zeros(x.shape[0])

    def inverse(self, z):
        return z.reshape(z.shape[0], 2), z.new_zeros(z.shape[0])

conv = LUConv1x1(2)
norm = ActNorm(2)
norm.initialized = True
with torch.no_grad():
    norm.log_scale.copy_(torch.tensor([0.5, -0.5]))
demo = Flow(StandardNormal(2), [_Flatten(), norm, conv, _Flatten().inv()])
fig, axes = plt.subplots(1, 3, figsize=(10, 3))
for ax, T in zip(axes, (1.0, 0.7, 0.4)):
    s = sample_with_temperature(demo, 2000, T)
    ax.scatter(s[:, 0], s[:, 1], s=2)
    ax.set_title(f"T = {T}")
    ax.set_xlim(-4, 4)
    ax.set_ylim(-4, 4)
plt.show()
