"""The grader's affine coupling and a RealNVP built from it (assignment 2's later parts).

Defined in the student's kernel by the ``realnvp`` part (the stack is built with this coupling, so
a bug in the student's coupling costs only the coupling parts) and the ``training`` part (the
student's loop trains :func:`grader_realnvp`, the same function as flowlab's
``realnvp(2, couplings=6, hidden=(64, 64))`` with the same parameters, in the same order).
Both parts declare ``reveals`` of the coupling parts: this code enters the kernel only after
their verdicts are final.
"""

import torch

from flowlab.distributions import StandardNormal
from flowlab.flow import Flow
from flowlab.transforms.base import Transform


class GraderCoupling(Transform):
    """z_A = x_A, z_B = x_B * exp(s) + t with (t, s~) = conditioner(x_A), s = c tanh(s~ / c).

    flowlab's one affine order (shift first) and soft clamp (flowlab.transforms.univariate.Affine,
    decisions/0009-one-univariate-protocol.md); the order is internal to the grader (the student's
    conditioners only return 2 n_B values), the notebook's own convention is s first."""

    def __init__(self, mask, conditioner, scale_bound=None):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.bool).clone())
        self.conditioner = conditioner
        self.scale_bound = scale_bound

    def _merge(self, a, b):
        out = a.new_empty(a.shape[0], self.mask.numel())
        out[:, self.mask] = a
        out[:, ~self.mask] = b
        return out

    def _params(self, kept):
        t, raw = self.conditioner(kept).chunk(2, dim=1)
        if self.scale_bound is not None:
            raw = self.scale_bound * torch.tanh(raw / self.scale_bound)
        return raw, t

    def forward(self, x, context=None):
        s, t = self._params(x[:, self.mask])
        return self._merge(x[:, self.mask], x[:, ~self.mask] * torch.exp(s) + t), s.sum(dim=1)

    def inverse(self, z, context=None):
        s, t = self._params(z[:, self.mask])
        return (self._merge(z[:, self.mask], (z[:, ~self.mask] - t) * torch.exp(-s)),
                -s.sum(dim=1))


def grader_realnvp(features=2, couplings=6, hidden=(64, 64), scale_bound=3.0):
    """Alternating half masks, ReLU MLP conditioners, a standard normal base (no validation)."""
    first = torch.arange(features) < features // 2
    layers = []
    for i in range(couplings):
        mask = first if i % 2 == 0 else ~first
        sizes = [int(mask.sum()), *hidden, 2 * int((~mask).sum())]
        net = []
        for j, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            net.append(torch.nn.Linear(a, b))
            if j < len(sizes) - 2:
                net.append(torch.nn.ReLU())
        layers.append(GraderCoupling(mask, torch.nn.Sequential(*net), scale_bound))
    return Flow(StandardNormal(features), layers, validate=False)
