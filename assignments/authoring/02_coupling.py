# %% [markdown]
# # Assignment 2 — Coupling flows
#
# A coupling layer splits $x$ into a part $x_A$ that it keeps and a part $x_B$ that it
# transforms, with parameters computed from $x_A$ by a *coupling network* $\theta$:
# $$f(x) = \begin{bmatrix} x_A \\ \hat f\big(x_B \mid \theta(x_A)\big)\end{bmatrix}, \qquad
#   Df(x) = \begin{bmatrix} I & 0 \\ \frac{\partial}{\partial x_A}\hat f & D\hat f\end{bmatrix},
#   \qquad \log|\det Df(x)| = \log\big|\det D\hat f\big(x_B \mid \theta(x_A)\big)\big| .$$
# The Jacobian is block triangular, so $\theta$ may be *any* network — it never has to be
# inverted: the inverse reads $z_A = x_A$ and computes $x_B = \hat f^{-1}(z_B \mid \theta(z_A))$.
#
# You will write the additive (NICE) and affine (RealNVP) couplings, stack them into a
# RealNVP, and train it on the two-moons data set.
#
# **Conventions** (the grader relies on them):
#
# * `mask` is a boolean tensor of shape `(features,)`: `True` marks $x_A$ (kept, fed to the
#   conditioner), `False` marks $x_B$ (transformed). `x[:, mask]` is $x_A$, `x[:, ~mask]` is
#   $x_B$, and the output puts every coordinate back in its original position.
# * `conditioner` is a given `nn.Module` mapping $x_A$ (`(batch, n_A)`) to the coupling's
#   parameters: $t$ (`(batch, n_B)`) for the additive coupling; for the affine coupling
#   `(batch, 2 n_B)`, split as `s, t = conditioner(x_A).chunk(2, dim=1)` (first half $s$).
# * Layers follow the flowlab contract: `forward(x) -> (z, log|det Df(x)|)`,
#   `inverse(z) -> (x, log|det Dg(z)|)`, log-dets of shape `(batch,)`.
#
# Write the layers yourself with torch operations (no flowlab coupling layers or models).
# *flowlab while grading:* you may use `Transform`, `Flow`, `StandardNormal`, masks and data; its
# coupling layers (also `GlowCoupling`, splines, image couplings, autoregressive layers, the
# elementwise transformers `Additive` and `Affine`),
# `flowlab.models.realnvp`, `flowlab.train` and `flowlab.testing` are stubs while your notebook
# is graded.
# Total: 15 points.

# %% [setup]
# Setup (do not edit).
import math
import os
import warnings

import matplotlib.pyplot as plt
import torch
from torch import Tensor, nn

from flowlab.data.toy2d import two_moons
from flowlab.distributions import StandardNormal
from flowlab.flow import Flow
from flowlab.transforms.base import Transform

warnings.filterwarnings("ignore", category=UserWarning, module=r"torch(\.|$)")
GRADING = bool(os.environ.get("NBGRADER_EXECUTION"))  # True under nbgrader validate/autograde
if GRADING:
    torch.set_num_threads(1)  # graders run many kernels side by side: one thread each
torch.manual_seed(0)


def make_conditioner(n_in: int, n_out: int, hidden: int = 64) -> nn.Module:
    """The coupling network theta: a small MLP, last layer zero so that a coupling starts as the identity."""
    net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                        nn.Linear(hidden, n_out))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


def random_conditioner(n_in: int, n_out: int) -> nn.Module:
    """A conditioner with random weights, for testing (a zero-initialised one is the identity)."""
    net = nn.Sequential(nn.Linear(n_in, 16), nn.Tanh(), nn.Linear(16, n_out))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    return net

# %% [markdown]
# ## Part 1 — Additive coupling (2 points)
#
# NICE's coupling transform is a shift: $\hat f(x_B \mid t) = x_B + t$ with $t = \theta(x_A)$.
# Its Jacobian $D\hat f$ is the identity, so $\log|\det Df(x)| = 0$ (volume preserving).
# `forward` and `inverse` are worth 1 point each.

# %% [solution] id=additive_solution
class AdditiveCoupling(Transform):
    """z_A = x_A, z_B = x_B + t(x_A)."""

    def __init__(self, mask: Tensor, conditioner: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.bool))
        self.conditioner = conditioner

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        x_a, x_b = x[:, self.mask], x[:, ~self.mask]
        z = x.clone()
        z[:, ~self.mask] = x_b + self.conditioner(x_a)
        return z, x.new_zeros(x.shape[0])
        ### END SOLUTION

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        z_a, z_b = z[:, self.mask], z[:, ~self.mask]
        x = z.clone()
        x[:, ~self.mask] = z_b - self.conditioner(z_a)
        return x, z.new_zeros(z.shape[0])
        ### END SOLUTION

# %% [tests] id=additive_forward points=1
mask = torch.tensor([True, False, True, False])
layer = AdditiveCoupling(mask, random_conditioner(2, 2))
x = torch.randn(8, 4)
z, ld = layer(x)
assert torch.equal(z[:, mask], x[:, mask]), "x_A must pass through unchanged"
assert torch.allclose(z[:, ~mask], x[:, ~mask] + layer.conditioner(x[:, mask])), "z_B = x_B + t(x_A)"
assert ld.shape == (8,) and torch.all(ld == 0), "log|det Df| = 0, one value per sample"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment2.additive_forward
### END HIDDEN TESTS

# %% [tests] id=additive_inverse points=1
mask = torch.tensor([True, False, True, False])
layer = AdditiveCoupling(mask, random_conditioner(2, 2))
x = torch.randn(8, 4)
z = x.clone()
z[:, ~mask] = x[:, ~mask] + layer.conditioner(x[:, mask]).detach()  # z = f(x), written out
x_back, ld = layer.inverse(z)
assert torch.allclose(x_back, x, atol=1e-6), "the inverse must give x back: x_B = z_B - t(z_A)"
assert ld.shape == (8,) and torch.all(ld == 0), "log|det Dg| = 0, one value per sample"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment2.additive_inverse
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 — Affine coupling (5 points)
#
# RealNVP's coupling transform scales and shifts: $\hat f(x_B \mid s, t) = x_B \odot e^{s} + t$
# with $(s, t) = \theta(x_A)$. Then $D\hat f = \operatorname{diag}(e^{s_1}, \dots, e^{s_K})$ and
# $$\log|\det Df(x)| = \sum_{i=1}^{K} s_i .$$
# Work out the inverse yourself (undo the steps in reverse order). `forward` is worth 3 points,
# `inverse` 2 points.

# %% [solution] id=affine_solution
class AffineCoupling(Transform):
    """z_A = x_A, z_B = x_B * exp(s(x_A)) + t(x_A)."""

    def __init__(self, mask: Tensor, conditioner: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.bool))
        self.conditioner = conditioner

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        x_a, x_b = x[:, self.mask], x[:, ~self.mask]
        s, t = self.conditioner(x_a).chunk(2, dim=1)
        z = x.clone()
        z[:, ~self.mask] = x_b * torch.exp(s) + t
        return z, s.sum(dim=1)
        ### END SOLUTION

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ### BEGIN SOLUTION
        z_a, z_b = z[:, self.mask], z[:, ~self.mask]
        s_inv, t_inv = self.conditioner(z_a).chunk(2, dim=1)
        x = z.clone()
        x[:, ~self.mask] = (z_b - t_inv) * torch.exp(-s_inv)
        return x, -s_inv.sum(dim=1)
        ### END SOLUTION

# %% [tests] id=affine_forward points=3
mask = torch.tensor([False, True, True])
layer = AffineCoupling(mask, random_conditioner(2, 2))
x = torch.randn(8, 3)
z, ld = layer(x)
s, t = layer.conditioner(x[:, mask]).chunk(2, dim=1)
assert torch.equal(z[:, mask], x[:, mask]), "x_A must pass through unchanged"
assert torch.allclose(z[:, ~mask], x[:, ~mask] * torch.exp(s) + t, atol=1e-6), "z_B = x_B * exp(s) + t"
assert ld.shape == (8,), "one log|det| per sample: shape (batch,)"
assert torch.allclose(ld, s.sum(dim=1), atol=1e-6), "log|det Df| = sum_i s_i"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment2.affine_forward
### END HIDDEN TESTS

# %% [tests] id=affine_inverse points=2
mask = torch.tensor([False, True, True])
layer = AffineCoupling(mask, random_conditioner(2, 2))
x = torch.randn(8, 3)
s, t = layer.conditioner(x[:, mask]).detach().chunk(2, dim=1)
z = x.clone()
z[:, ~mask] = x[:, ~mask] * torch.exp(s) + t  # z = f(x), written out
x_back, ld_inv = layer.inverse(z)
assert torch.allclose(x_back, x, atol=1e-5), "the inverse must give x back"
assert torch.allclose(ld_inv, -s.sum(dim=1), atol=1e-5), "log|det Dg(z)| = -log|det Df(x)| = -sum_i s_i"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment2.affine_inverse
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 — A RealNVP: stacking couplings (3 points)
#
# One coupling leaves $x_A$ untouched, so stack several and **swap the roles** of $x_A$ and
# $x_B$ from one coupling to the next (`~mask`), as in the lecture's composition
# $f = f_N \circ \dots \circ f_1$, $\log|\det Df| = \sum_i \log|\det Df_i|$.
#
# Write `build_realnvp(features, n_couplings, coupling=AffineCoupling, hidden=64)` returning a
# `Flow(StandardNormal(features), layers)` with exactly `n_couplings` coupling layers, each
# built as `coupling(mask, make_conditioner(n_A, 2 * n_B, hidden))`. Start from the mask that
# keeps the first half of the coordinates. (The grader calls it with its own `coupling` class,
# so this part is graded independently of Part 2.)

# %% [solution] id=realnvp_solution
def build_realnvp(features: int, n_couplings: int, coupling=AffineCoupling, hidden: int = 64) -> Flow:
    ### BEGIN SOLUTION
    mask = torch.arange(features) < features // 2
    layers = []
    for _ in range(n_couplings):
        n_a, n_b = int(mask.sum()), int((~mask).sum())
        layers.append(coupling(mask, make_conditioner(n_a, 2 * n_b, hidden)))
        mask = ~mask
    return Flow(StandardNormal(features), layers)
    ### END SOLUTION

# %% [tests] id=realnvp points=3
flow = build_realnvp(2, 4)
assert isinstance(flow, Flow), "return a flowlab Flow(StandardNormal(features), layers)"
assert flow.log_prob(torch.randn(5, 2)).shape == (5,), "log p_X(x) has one value per sample"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment2.realnvp
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4 — Training by maximum likelihood (5 points)
#
# Training minimises the negative log-likelihood of the data,
# $$\mathcal L = -\frac1M \sum_{m=1}^M \log p_X(x_m)
#   = -\frac1M \sum_{m=1}^M \Big[\log p_Z\big(f(x_m)\big) + \log|\det Df(x_m)|\Big] ,$$
# on random mini-batches. Write `train(flow, data, steps, lr=1e-3, batch_size=256)`: an Adam
# optimiser over `flow.parameters()` with learning rate `lr`; at each of the `steps` steps draw
# a random batch of `batch_size` rows of `data`, compute $\mathcal L$ with `flow.log_prob`, take
# one optimisation step; return the list of the `steps` loss values (Python floats).
#
# The grader trains flowlab's own RealNVP with your `train` for a fixed number of steps and a
# fixed seed, and checks that the NLL on held-out data drops below a threshold that a correct
# loop reaches comfortably.

# %% [solution] id=training_solution
def train(flow: nn.Module, data: Tensor, steps: int, lr: float = 1e-3, batch_size: int = 256) -> list[float]:
    ### BEGIN SOLUTION
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        batch = data[torch.randint(0, data.shape[0], (batch_size,))]
        loss = -flow.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
    ### END SOLUTION

# %% [markdown]
# Train your own RealNVP (built from *your* coupling layers) on two moons. Under nbgrader the
# run is shortened (`GRADING`); on your machine it runs longer and looks better.

# %% [code]
torch.manual_seed(0)
data, test = two_moons(2000, seed=1), two_moons(2000, seed=2)
my_flow = build_realnvp(2, 6)
losses = train(my_flow, data, steps=100 if GRADING else 2000, lr=3e-3)
with torch.no_grad():
    print(f"test NLL of your RealNVP: {float(my_flow.nll(test)):.3f} nats")

# %% [tests] id=training points=5
assert len(losses) == (100 if GRADING else 2000), "train returns one loss per step"
assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20, "the loss should go down during training"
### BEGIN HIDDEN TESTS
# flowlab-grade: assignment2.training
### END HIDDEN TESTS

# %% [markdown]
# **Check visually.** Left: the learned density $p_X$ on a grid; right: samples
# $x = g(z)$, $z \sim \mathcal N(0, I)$, over the data.

# %% [code]
grid = torch.linspace(-4, 4, 120)
xx, yy = torch.meshgrid(grid, grid, indexing="xy")
with torch.no_grad():
    density = my_flow.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp().reshape(xx.shape)
    samples = my_flow.sample(2000)
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
axes[0].pcolormesh(xx, yy, density, shading="auto")
axes[0].set_title("learned density p_X")
axes[1].scatter(data[:, 0], data[:, 1], s=2, alpha=0.3, label="data")
axes[1].scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.3, label="samples g(z)")
axes[1].set_xlim(-4, 4)
axes[1].set_ylim(-4, 4)
axes[1].legend()
plt.show()
