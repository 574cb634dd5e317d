r"""RealNVP written out by hand in plain PyTorch: the yardstick for framework overhead.

No flowlab import, no abstraction beyond ``nn.Module``: what a careful researcher would type in
one sitting.  The model must be *the same function* as ``flowlab.models.realnvp.realnvp`` with
``kind="affine"`` (same layers, same parameter shapes and order, same initialisation from the same
seed), so that any difference in speed is overhead and nothing else.  :func:`copy_parameters`
and the test in ``tests/test_benchmarks.py`` check this.

One affine coupling layer keeps one half of the input, :math:`x_A`, and transforms the other,
:math:`x_B`:

.. math::

    (t, \tilde s) = \mathrm{MLP}(x_A), \qquad s = c \tanh(\tilde s / c), \qquad
    z_B = x_B \odot e^{s} + t, \qquad \log|\det Df(x)| = \textstyle\sum_j s_j ,

with the soft clamp :math:`c \tanh(\cdot / c)` bounding the log-scale to :math:`(-c, c)`.
Layers alternate which half is kept (first half, second half, first half, ...).  The base
distribution is :math:`\mathcal N(0, I)`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["BareAffineCoupling", "BareRealNVP", "copy_parameters"]


def _mlp(n_in: int, n_out: int, hidden: Sequence[int]) -> nn.Sequential:
    """Linear-ReLU-...-Linear with the last layer set to zero (each coupling starts as identity)."""
    sizes = [n_in, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    last = nn.Linear(sizes[-1], n_out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class BareAffineCoupling(nn.Module):
    """Affine coupling on a half split; ``keep_first`` says which half conditions the other."""

    def __init__(
        self, features: int, keep_first: bool, hidden: Sequence[int], clamp: float
    ) -> None:
        super().__init__()
        half = features // 2
        # HalfMask convention: split after features//2; keep the first part or the second.
        self.sizes = (half, features - half)
        self.keep_first = keep_first
        n_keep = half if keep_first else features - half
        n_change = features - n_keep
        self.n_change = n_change
        self.clamp = clamp
        self.net = _mlp(n_keep, 2 * n_change, hidden)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        first, second = torch.split(x, self.sizes, dim=1)
        return (first, second) if self.keep_first else (second, first)

    def _join(self, keep: Tensor, change: Tensor) -> Tensor:
        return torch.cat((keep, change) if self.keep_first else (change, keep), dim=1)

    def _shift_logscale(self, keep: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = self.net(keep).split(self.n_change, dim=1)  # flowlab's order: shift first
        return shift, self.clamp * torch.tanh(raw / self.clamp)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        keep, change = self._split(x)
        shift, log_scale = self._shift_logscale(keep)
        z = change * torch.exp(log_scale) + shift
        return self._join(keep, z), log_scale.sum(dim=1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        keep, change = self._split(z)
        shift, log_scale = self._shift_logscale(keep)
        x = (change - shift) * torch.exp(-log_scale)
        return self._join(keep, x), -log_scale.sum(dim=1)


class BareRealNVP(nn.Module):
    """``couplings`` affine couplings with alternating half masks and a standard-normal base."""

    def __init__(
        self,
        features: int = 64,
        couplings: int = 8,
        hidden: Sequence[int] = (256, 256),
        clamp: float = 3.0,
    ) -> None:
        super().__init__()
        self.features = features
        self.layers = nn.ModuleList(
            BareAffineCoupling(features, keep_first=(i % 2 == 0), hidden=hidden, clamp=clamp)
            for i in range(couplings)
        )

    def log_prob(self, x: Tensor) -> Tensor:
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        log_base = -0.5 * (x * x).sum(dim=1) - 0.5 * self.features * math.log(2 * math.pi)
        return log_base + logdet

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        ref = self.layers[0].net[0].weight
        z = torch.randn(n, self.features, dtype=ref.dtype, device=ref.device)
        for layer in reversed(self.layers):
            z, _ = layer.inverse(z)
        return z


def copy_parameters(source: nn.Module, target: nn.Module) -> None:
    """Copy ``source``'s parameters into ``target`` in registration order.

    Raises ``ValueError`` unless both hold the same number of tensors with the same shapes:
    the check that two implementations are the same architecture.
    """
    src = list(source.parameters())
    dst = list(target.parameters())
    shapes_src = [tuple(p.shape) for p in src]
    shapes_dst = [tuple(p.shape) for p in dst]
    if shapes_src != shapes_dst:
        raise ValueError(
            "the two models differ in their parameters:\n"
            f"  source: {shapes_src}\n  target: {shapes_dst}"
        )
    with torch.no_grad():
        for s, d in zip(src, dst, strict=True):
            d.copy_(s)
