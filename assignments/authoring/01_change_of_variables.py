# %% [markdown]
# # Assignment 1 — Change of variables and simple layers
#
# In this assignment you compute densities of transformed random variables by hand and then
# write three small invertible layers. We use the lecture's notation throughout:
#
# * $f: \mathcal X \to \mathcal Z$ is the **normalizing** direction (data $x$ to latent $z$),
#   $g = f^{-1}$ the **generative** one;
# * the change-of-variables formula:
#   $$p_X(x) = p_Z\big(f(x)\big)\,\big|\det Df(x)\big|, \qquad
#     \log p_X(x) = \log p_Z\big(f(x)\big) + \log\big|\det Df(x)\big| .$$
#
# Every layer is a `flowlab.transforms.base.Transform` with
# `forward(x) -> (z, logabsdet)` returning $z = f(x)$ and $\log|\det Df(x)|$, and
# `inverse(z) -> (x, logabsdet)` returning $x = g(z)$ and $\log|\det Dg(z)| = -\log|\det Df(x)|$.
# Inputs are batches: the first axis indexes samples, and `logabsdet` has shape `(batch,)`
# — one number per sample.
#
# **Points.** Each part below says how many points its test cell is worth. The visible tests
# catch the most common slips; the grader runs more (hidden) tests on fixed edge cases (points
# outside the support, negative diagonals, size 1, inputs of other shapes) and on fresh random
# inputs, and checks that gradients flow through your forward passes (a `.detach()` or `.item()`
# would stop training), so make sure your code is right in general, not only for the visible
# examples. Write each layer
# yourself with torch operations: a part that hands the work to flowlab's own layer of the same
# name gets no points.
#
# *flowlab while grading:* you may use `Transform` and anything of flowlab not listed here; its
# leaky ReLU, its linear and permutation layers and `flowlab.testing` (the brute-force
# log-determinant) are stubs while your notebook is graded.
#
# Total: 11 points.

# %% [setup]
# Setup (do not edit): imports used throughout the assignment.
import math
import os
import warnings

import matplotlib.pyplot as plt
import torch
from torch import Tensor, nn

from flowlab.transforms.base import Transform

warnings.filterwarnings("ignore", category=UserWarning, module=r"torch(\.|$)")
# True while nbgrader validates or grades this notebook (then long cells run shorter).
GRADING = bool(os.environ.get("NBGRADER_EXECUTION"))
if GRADING:
    torch.set_num_threads(1)  # graders run many kernels side by side: one thread each
torch.manual_seed(0)

# %% [markdown]
# ## Part 1 — Densities of transformed variables (2 points)
#
# **(a)** The lecture's example: $Z \sim U(0, 1)$ and $X = g(Z) = \sqrt Z$. Then
# $f(x) = g^{-1}(x) = x^2$ and, for $0 < x < 1$, $p_X(x) = p_Z(x^2)\,|f'(x)| = 2x$; outside
# $(0, 1)$ the density is $0$.
#
# Write `density_sqrt_uniform(x)` that returns $p_X(x)$ **elementwise** for a tensor `x` of any
# shape (including values outside $(0,1)$).

# %% [solution] id=density_uniform_solution
def density_sqrt_uniform(x: Tensor) -> Tensor:
    """p_X(x) for X = sqrt(Z), Z ~ U(0, 1), elementwise."""
    ### BEGIN SOLUTION
    inside = (x > 0) & (x < 1)
    return torch.where(inside, 2 * x, torch.zeros_like(x))
    ### END SOLUTION

# %% [tests] id=density_uniform points=1
x = torch.tensor([0.25, 0.5, 0.9])
assert torch.allclose(density_sqrt_uniform(x), torch.tensor([0.5, 1.0, 1.8])), \
    "inside (0, 1) the density is p_X(x) = 2x"
assert float(density_sqrt_uniform(torch.tensor([1.5]))) == 0.0, "p_X is 0 outside (0, 1)"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment1.density_uniform
### END HIDDEN TESTS

# %% [markdown]
# **(b)** One more: $Z \sim \mathcal N(0, 1)$ and $X = g(Z) = e^{Z}$ (the *log-normal*
# distribution). Work out $f = g^{-1}$ and $\log|f'(x)|$, then write
# `log_density_exp_normal(x)` returning $\log p_X(x)$ elementwise: the formula for $x > 0$ and
# $-\infty$ for $x \le 0$. Recall $\log \mathcal N(z; 0, 1) = -\tfrac12 z^2 - \tfrac12\log 2\pi$.

# %% [solution] id=density_lognormal_solution
def log_density_exp_normal(x: Tensor) -> Tensor:
    """log p_X(x) for X = exp(Z), Z ~ N(0, 1), elementwise (-inf where x <= 0)."""
    ### BEGIN SOLUTION
    positive = x > 0
    safe = torch.where(positive, x, torch.ones_like(x))
    z = torch.log(safe)
    log_p = -0.5 * z**2 - 0.5 * math.log(2 * math.pi) - torch.log(safe)
    return torch.where(positive, log_p, torch.full_like(x, -math.inf))
    ### END SOLUTION

# %% [tests] id=density_lognormal points=1
lp = log_density_exp_normal(torch.tensor([1.0, 2.0, -1.0]))
assert abs(float(lp[0]) + 0.5 * math.log(2 * math.pi)) < 1e-5, "at x = 1, f(x) = 0 and f'(x) = 1"
assert float(lp[2]) == -math.inf, "X = exp(Z) is positive: log p_X(x) = -inf for x <= 0"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment1.density_lognormal
### END HIDDEN TESTS

# %% [markdown]
# **Check visually.** The histograms of samples of $X$ should follow your densities.

# %% [code]
z = torch.rand(100_000)
grid = torch.linspace(-0.2, 1.2, 300)
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
axes[0].hist(torch.sqrt(z).numpy(), bins=60, density=True, alpha=0.5, label="samples of sqrt(Z)")
axes[0].plot(grid, density_sqrt_uniform(grid), label="your p_X")
axes[0].legend()
grid2 = torch.linspace(0.01, 6, 300)
axes[1].hist(torch.exp(torch.randn(100_000)).clamp(max=6).numpy(), bins=80, range=(0, 6), density=True, alpha=0.5, label="samples of exp(Z)")
axes[1].plot(grid2, log_density_exp_normal(grid2).exp(), label="your p_X")
axes[1].legend()
plt.show()

# %% [markdown]
# ## Part 2 — An elementwise layer: leaky ReLU (3 points)
#
# An elementwise layer applies one scalar bijection $h$ to every coordinate,
# $f(x)_i = h(x_i)$. Its Jacobian is diagonal, so
# $$\log|\det Df(x)| = \sum_i \log|h'(x_i)| .$$
# Implement the leaky ReLU with slope $a > 0$ for negative inputs:
# $h(x) = x$ for $x \ge 0$ and $h(x) = a x$ for $x < 0$.
#
# *Convention:* `LeakyReLU(negative_slope)` stores the slope $a$ in `self.negative_slope`
# (a Python float). `forward` is worth 2 points, `inverse` 1 point.

# %% [solution] id=leaky_solution
class LeakyReLU(Transform):
    """Elementwise h(x) = x (x >= 0), a x (x < 0)."""

    def __init__(self, negative_slope: float = 0.1) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        a = self.negative_slope
        z = torch.where(x >= 0, x, a * x)
        log_deriv = torch.where(x >= 0, torch.zeros_like(x), torch.full_like(x, math.log(a)))
        return z, log_deriv.reshape(x.shape[0], -1).sum(dim=1)
        ### END SOLUTION

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        a = self.negative_slope
        x = torch.where(z >= 0, z, z / a)
        log_deriv = torch.where(z >= 0, torch.zeros_like(z), torch.full_like(z, -math.log(a)))
        return x, log_deriv.reshape(z.shape[0], -1).sum(dim=1)
        ### END SOLUTION

# %% [tests] id=leaky_forward points=2
layer = LeakyReLU(0.5)
z, ld = layer(torch.tensor([[1.0, -2.0, -4.0]]))
assert torch.allclose(z, torch.tensor([[1.0, -1.0, -2.0]])), "negative inputs are multiplied by a"
assert ld.shape == (1,), "logabsdet has one entry per sample: shape (batch,)"
assert torch.allclose(ld, torch.tensor([2 * math.log(0.5)])), "log|det Df| = sum of log a over negative inputs"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment1.leaky_forward
### END HIDDEN TESTS

# %% [tests] id=leaky_inverse points=1
x, ld = LeakyReLU(0.5).inverse(torch.tensor([[1.0, -1.0]]))
assert torch.allclose(x, torch.tensor([[1.0, -2.0]])), "the inverse divides negative values by a"
assert torch.allclose(ld, torch.tensor([-math.log(0.5)])), "log|det Dg| = -log|det Df|"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment1.leaky_inverse
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 — A triangular linear layer (4 points)
#
# The lecture's linear layer with a lower-triangular matrix $L$:
# $$f(x) = L x + b, \qquad \log|\det Df(x)| = \log|\det L| = \sum_i \log|L_{ii}| ,$$
# computable in $O(n)$, and invertible in $O(n^2)$ by substitution:
# $x = L^{-1}(z - b)$ (use `torch.linalg.solve_triangular`, never `torch.inverse`).
#
# *Convention (the grader sets these):* `TriangularLinear(features)` stores an
# `nn.Parameter` **`self.weight`** of shape `(features, features)` — only its lower triangle,
# diagonal included, is $L$ (`torch.tril(self.weight)`); entries above the diagonal are ignored —
# and an `nn.Parameter` **`self.bias`** of shape `(features,)`. The diagonal may be negative.
# Initialise `weight` to the identity and `bias` to zero. Each of `forward` and `inverse` is worth
# 2 points.

# %% [solution] id=triangular_solution
class TriangularLinear(Transform):
    """f(x) = L x + b with L = tril(weight)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        L = torch.tril(self.weight)
        z = x @ L.T + self.bias
        logabsdet = torch.log(torch.diagonal(L).abs()).sum()
        return z, logabsdet.expand(x.shape[0])
        ### END SOLUTION

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        L = torch.tril(self.weight)
        x = torch.linalg.solve_triangular(L, (z - self.bias).T, upper=False).T
        logabsdet = -torch.log(torch.diagonal(L).abs()).sum()
        return x, logabsdet.expand(z.shape[0])
        ### END SOLUTION

# %% [tests] id=triangular_forward points=2
layer = TriangularLinear(2)
with torch.no_grad():
    layer.weight.copy_(torch.tensor([[2.0, 5.0], [1.0, -3.0]]))  # 5.0 lies above the diagonal
    layer.bias.copy_(torch.tensor([1.0, 0.0]))
z, ld = layer(torch.tensor([[1.0, 1.0]]))
assert torch.allclose(z, torch.tensor([[3.0, -2.0]])), "z = L x + b with L the LOWER triangle of weight"
assert torch.allclose(ld, torch.tensor([math.log(6.0)])), "log|det L| = sum_i log|L_ii|"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment1.triangular_forward
### END HIDDEN TESTS

# %% [tests] id=triangular_inverse points=2
x, ld = layer.inverse(torch.tensor([[3.0, -2.0]]))
assert torch.allclose(x, torch.tensor([[1.0, 1.0]]), atol=1e-5), "inverse(forward(x)) should be x"
assert torch.allclose(ld, torch.tensor([-math.log(6.0)])), "the inverse returns -log|det L|"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment1.triangular_inverse
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4 — A permutation (2 points)
#
# A permutation matrix $P$ reorders coordinates: $z_i = x_{\pi(i)}$, i.e. `z = x[:, perm]`.
# It has $|\det P| = 1$, so $\log|\det| = 0$. Chained with triangular layers it lets every
# coordinate depend on every other one.
#
# *Convention:* `Permutation(perm)` takes a `LongTensor` `perm` (a rearrangement of
# $0, \dots, n-1$). Write `forward` and `inverse` (hint: `torch.argsort`).

# %% [solution] id=permutation_solution
class Permutation(Transform):
    """z = x[:, perm]; log|det P| = 0."""

    def __init__(self, perm: Tensor) -> None:
        super().__init__()
        self.register_buffer("perm", torch.as_tensor(perm, dtype=torch.long))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        return x[:, self.perm], x.new_zeros(x.shape[0])
        ### END SOLUTION

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        return z[:, torch.argsort(self.perm)], z.new_zeros(z.shape[0])
        ### END SOLUTION

# %% [tests] id=permutation points=2
layer = Permutation(torch.tensor([2, 0, 1]))
z, ld = layer(torch.tensor([[10.0, 20.0, 30.0]]))
assert torch.allclose(z, torch.tensor([[30.0, 10.0, 20.0]])), "z_i = x_{perm[i]}"
x, _ = layer.inverse(z)
assert torch.allclose(x, torch.tensor([[10.0, 20.0, 30.0]])), "the inverse must undo the permutation"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment1.permutation
### END HIDDEN TESTS

# %% [markdown]
# **Check visually.** Push a standard normal sample through your triangular layer and a
# permutation: a linear flow can only stretch, shear and reflect the Gaussian.

# %% [code]
flow_layers = [TriangularLinear(2), Permutation(torch.tensor([1, 0]))]
with torch.no_grad():
    flow_layers[0].weight.copy_(torch.tensor([[1.0, 0.0], [1.5, 0.5]]))
    x = torch.randn(2000, 2)
    for layer in flow_layers:
        x, _ = layer.inverse(x)  # the generative direction g
plt.figure(figsize=(4, 4))
plt.scatter(x[:, 0], x[:, 1], s=2)
plt.title("samples of g(z), z ~ N(0, I)")
plt.axis("equal")
plt.show()
