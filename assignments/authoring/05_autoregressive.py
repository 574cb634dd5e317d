# %% [markdown]
# # Assignment 5 — Autoregressive flows
#
# A coupling layer splits the coordinates in two blocks. An *autoregressive* layer goes all the
# way: every coordinate is transformed given **all the coordinates before it**,
# $$z_d = \big(x_d - \mu_d(x_{<d})\big)\, e^{-\alpha_d(x_{<d})}, \qquad d = 1, \dots, D,$$
# so $z_d$ does not depend on $x_j$ for $j > d$: the Jacobian $Df(x)$ is **lower triangular** and
# $\log|\det Df(x)| = \sum_d \log|\partial z_d / \partial x_d| = -\sum_d \alpha_d(x_{<d})$. This
# is the masked autoregressive flow (MAF, Papamakarios et al. 2017,
# [arXiv:1705.07057](https://arxiv.org/abs/1705.07057)). You will build its conditioner, MADE
# (Germain et al. 2015, [arXiv:1502.03509](https://arxiv.org/abs/1502.03509)), the MAF layer with
# its one-pass density and $D$-pass sampling, and the causal self-attention that transformer
# flows (TarFlow, Zhai et al. 2024, [arXiv:2412.06329](https://arxiv.org/abs/2412.06329)) use
# instead of MADE. Notation as in the lecture: $f$ normalizing ($x \to z$), $g = f^{-1}$
# generative, layers return `(output, log|det|)` with one log-det per sample. Write everything
# yourself with torch operations (no flowlab autoregressive layers, no MADE from a library).
# *flowlab while grading:* you may use `Transform`, `Flow` and the distributions; its
# autoregressive layers, the `Affine` transformer, MADE, MAF, TarFlow and `flowlab.testing` are
# stubs while your notebook
# is graded.
#
# Total: 11 points.

# %% [setup]
# Setup (do not edit).
import math
import os
import warnings

import torch
from torch import Tensor, nn

from flowlab.transforms.base import Transform

warnings.filterwarnings("ignore", category=UserWarning, module=r"torch(\.|$)")
GRADING = bool(os.environ.get("NBGRADER_EXECUTION"))
if GRADING:
    torch.set_num_threads(1)  # graders run many kernels side by side: one thread each
torch.manual_seed(0)


class MaskedLinear(nn.Linear):
    """y = (W * M) x + b with a fixed 0/1 mask M of shape (out_features, in_features)."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.detach().clone().to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


def jacobian(fn, x: Tensor) -> Tensor:
    """The (D, D) Jacobian of fn at one sample x of shape (D,), by autograd (for checking)."""
    return torch.autograd.functional.jacobian(fn, x)

# %% [markdown]
# ## Part 1 — MADE: degrees and masks (3 points)
#
# MADE turns an MLP into an autoregressive network by **masking its weights**. Every unit gets a
# *degree*:
#
# * input $d$ (0-based index $d$) has degree $m(d) = d + 1 \in \{1, \dots, D\}$ (the input order);
# * hidden unit $k$ (0-based) of every hidden layer has degree $m(k) = (k \bmod (D - 1)) + 1 \in
#   \{1, \dots, D-1\}$ (cycling, so that every degree is present when the layer has at least
#   $D - 1$ units). Assume $D \ge 2$.
#
# A weight from unit $j$ of one layer to hidden unit $k$ of the next is kept iff
# $m(k) \ge m(j)$; a weight from hidden unit $k$ of the last hidden layer to the output for
# coordinate $d$ is kept iff $m(d) > m(k)$ (**strict**). Then output $d$ only sees $x_{<d}$.
#
# * `made_degrees(features, hidden_sizes)` returns the list `[m_in, m_h1, ..., m_hL]` of integer
#   tensors (shapes `(D,)`, `(h_1,)`, ...);
# * `made_masks(degrees, params_per_feature=2)` returns the float 0/1 masks of the layers, shaped
#   `(out, in)` like `nn.Linear.weight`: one per hidden layer, then the output mask of shape
#   `(params_per_feature * D, h_L)`. The outputs are **parameter-major**: output row
#   $p \cdot D + d$ is parameter $p$ of coordinate $d$ (so its mask row is that of coordinate $d$).
#
# `made_degrees` 1 point, the hidden masks 1 point, the output mask 1 point.

# %% [solution] id=made_solution
def made_degrees(features: int, hidden_sizes: list) -> list:
    ### BEGIN SOLUTION
    degrees = [torch.arange(1, features + 1)]
    for h in hidden_sizes:
        degrees.append(torch.arange(h) % (features - 1) + 1)
    return degrees
    ### END SOLUTION


def made_masks(degrees: list, params_per_feature: int = 2) -> list:
    ### BEGIN SOLUTION
    masks = []
    for m_prev, m in zip(degrees[:-1], degrees[1:]):
        masks.append((m[:, None] >= m_prev[None, :]).float())
    m_out = degrees[0].repeat(params_per_feature)
    masks.append((m_out[:, None] > degrees[-1][None, :]).float())
    return masks
    ### END SOLUTION

# %% [tests] id=made_degrees points=1
degrees = made_degrees(3, [4])
assert degrees[0].tolist() == [1, 2, 3], "inputs have degrees 1..D"
assert degrees[1].tolist() == [1, 2, 1, 2], "hidden degrees cycle through 1..D-1"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment5.made_degrees
### END HIDDEN TESTS

# %% [tests] id=made_hidden_masks points=1
masks = made_masks([torch.tensor([1, 2, 3]), torch.tensor([1, 2, 1, 2])])
assert masks[0].shape == (4, 3), "a mask is shaped (out, in) like nn.Linear.weight"
assert masks[0][0].tolist() == [1.0, 0.0, 0.0], "hidden unit of degree 1 sees input 1 only"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment5.made_hidden_masks
### END HIDDEN TESTS

# %% [tests] id=made_output_mask points=1
assert masks[-1].shape == (6, 4), "the output mask is (params_per_feature * D, h_L)"
assert masks[-1][0].tolist() == [0.0, 0.0, 0.0, 0.0], "the first coordinate's parameters see nothing"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment5.made_output_mask
### END HIDDEN TESTS

# %% [markdown]
# **Check it.** A MADE built from your masks: output $d$ must not depend on $x_j$, $j \ge d$
# (the Jacobian of every parameter block is strictly lower triangular).

# %% [code]
D, hidden = 4, [8, 8]
layers, masks = [], made_masks(made_degrees(D, hidden))
for i, mask in enumerate(masks):
    layers += [MaskedLinear(mask)] + ([nn.Tanh()] if i < len(masks) - 1 else [])
made = nn.Sequential(*layers)
J = jacobian(lambda v: made(v[None])[0], torch.randn(D))
print("mu block:\n", (J[:D].abs() > 0).int())
print("alpha block:\n", (J[D:].abs() > 0).int())

# %% [markdown]
# ## Part 2 — The MAF layer (5 points)
#
# `MAF(conditioner)` takes an autoregressive network (`(batch, D) -> (batch, 2D)`, output
# $d$ and $D + d$ depending on $x_{<d}$ only, *in the input order*) and splits its output as
# `mu, alpha = conditioner(x).chunk(2, dim=1)` ($\mu$ first).
#
# * `forward(x)` (normalizing, **one pass**): $z = (x - \mu(x))\, e^{-\alpha(x)}$,
#   $\log|\det Df(x)| = -\sum_d \alpha_d(x)$. (2 points)
# * `inverse(z)` (generative, **sequential**): $x_d = z_d\, e^{\alpha_d(x_{<d})} + \mu_d(x_{<d})$
#   needs the earlier $x$ first. Start from $x = 0$ and repeat $D$ times
#   `mu, alpha = conditioner(x)`, `x = z * exp(alpha) + mu`: after pass $k$ the first $k$
#   coordinates are exact. Return $\log|\det Dg(z)| = +\sum_d \alpha_d(x)$. (3 points)

# %% [solution] id=maf_solution
class MAF(Transform):
    def __init__(self, conditioner: nn.Module) -> None:
        super().__init__()
        self.conditioner = conditioner

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        mu, alpha = self.conditioner(x).chunk(2, dim=1)
        z = (x - mu) * torch.exp(-alpha)
        return z, -alpha.sum(dim=1)
        ### END SOLUTION

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        x = torch.zeros_like(z)
        for _ in range(z.shape[1]):
            mu, alpha = self.conditioner(x).chunk(2, dim=1)
            x = z * torch.exp(alpha) + mu
        return x, alpha.sum(dim=1)
        ### END SOLUTION

# %% [markdown]
# A small MADE conditioner for the checks (built from **your** masks):

# %% [code]
def made_net(features: int, hidden: list) -> nn.Module:
    masks = made_masks(made_degrees(features, hidden))
    layers = []
    for i, mask in enumerate(masks):
        layers += [MaskedLinear(mask)] + ([nn.Tanh()] if i < len(masks) - 1 else [])
    return nn.Sequential(*layers)

# %% [tests] id=maf_forward points=2
torch.manual_seed(1)
maf = MAF(made_net(3, [8]))
x = torch.randn(5, 3)
z, ld = maf(x)
assert z.shape == (5, 3) and ld.shape == (5,), "forward returns (z, log|det|) with one log-det per sample"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment5.maf_forward
### END HIDDEN TESTS

# %% [tests] id=maf_inverse points=3
x_back, ld_inv = maf.inverse(z)
assert x_back.shape == (5, 3), "the inverse returns x of the shape of z"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment5.maf_inverse
### END HIDDEN TESTS

# %% [markdown]
# **Check visually.** The Jacobian of your MAF at one sample is lower triangular:

# %% [code]
J = jacobian(lambda v: maf(v[None])[0][0], x[0])
print((J.abs() > 1e-12).int())

# %% [markdown]
# ## Part 3 — Causal self-attention (3 points)
#
# Transformer flows replace MADE by a transformer over a *sequence* of $T$ tokens (image patches
# in TarFlow): attention is made autoregressive by a **causal mask**. Token $i$ may look at token
# $j$ iff $j \le i$; the *strict* pattern $j < i$ is the one the parameters of an autoregressive
# flow need (they must not see $x_i$ itself).
#
# * `causal_mask(T, strict=False)`: a **boolean** `(T, T)` tensor, entry `[i, j]` True iff
#   $j \le i$ (`strict=False`) or iff $j < i$ (`strict=True`). (1 point)
# * `causal_attention(x, w_q, w_k, w_v, shift=False)` for `x` of shape `(batch, T, d)` and
#   projection matrices `w_q`, `w_k` of shape `(d, d_k)` and `w_v` of shape `(d, d_v)`:
#   $q = x W_q$, $k = x W_k$, $v = x W_v$ and, with the causal mask (`strict=False`),
#   $$\text{out}_i = \sum_{j \le i} \operatorname{softmax}_j\Big(\frac{q_i \cdot k_j}{\sqrt{d_k}}\Big)\, v_j,$$
#   the softmax taken over the allowed $j$ only (disallowed scores set to $-\infty$ before it).
#   $\text{out}_i$ depends on $x_{\le i}$: the query $q_i$ reads $x_i$ itself, so masking $j < i$
#   would not be enough. TarFlow's trick is to **shift** the output by one token: with
#   `shift=True` return $\text{out}'_0 = 0$, $\text{out}'_i = \text{out}_{i-1}$, which depends on
#   $x_{<i}$ only. Returns `(batch, T, d_v)`. (2 points)

# %% [solution] id=attention_solution
def causal_mask(T: int, strict: bool = False) -> Tensor:
    ### BEGIN SOLUTION
    i = torch.arange(T).reshape(-1, 1)
    j = torch.arange(T).reshape(1, -1)
    return j < i if strict else j <= i
    ### END SOLUTION


def causal_attention(x: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor, shift: bool = False) -> Tensor:
    ### BEGIN SOLUTION
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~causal_mask(x.shape[1]), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    if shift:
        out = torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], dim=1)
    return out
    ### END SOLUTION

# %% [tests] id=causal_mask points=1
assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]], \
    "token i attends to tokens j <= i"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment5.causal_mask
### END HIDDEN TESTS

# %% [tests] id=causal_attention points=2
torch.manual_seed(2)
xs = torch.randn(2, 5, 4)
w_q, w_k, w_v = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 2)
out = causal_attention(xs, w_q, w_k, w_v)
assert out.shape == (2, 5, 2), "(batch, T, d_v)"
assert torch.allclose(out[:, 0], xs[:, 0] @ w_v, atol=1e-5), "token 0 only sees itself"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment5.causal_attention
### END HIDDEN TESTS

# %% [markdown]
# **Check it.** Changing token 3 must not change the outputs at tokens 0-2 (nor at 3 with `shift=True`):

# %% [code]
xs2 = xs.clone()
xs2[:, 3] += 1.0
for shift in (False, True):
    changed = (causal_attention(xs2, w_q, w_k, w_v, shift) - causal_attention(xs, w_q, w_k, w_v, shift)).abs().amax(dim=(0, 2)) > 0
    print(f"shift={shift}: outputs that changed:", changed.nonzero().flatten().tolist())
