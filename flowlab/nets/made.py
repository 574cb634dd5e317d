r"""MADE: a masked MLP whose output :math:`i` only sees the inputs before :math:`i` in an order.

Germain et al. 2015, "MADE: Masked Autoencoder for Distribution Estimation",
https://arxiv.org/abs/1502.03509.

Give every input a **degree** :math:`m(d) \in \{1, \dots, D\}`, its position in the chosen
order, every hidden unit a degree :math:`m(k) \in \{1, \dots, D-1\}`, and every context input
(a conditional flow's extra input) the degree 0 (then hidden degrees start at 0, so that
the first coordinate sees the context too).  A weight from unit :math:`j` to hidden unit
:math:`k` is kept iff :math:`m(k) \ge m(j)`; a weight from hidden unit :math:`k` to an output
of input :math:`d` is kept iff :math:`m(d) > m(k)` (strict).  Then, by induction over the
layers, output :math:`d` depends only on the inputs :math:`x_j` with :math:`m(j) < m(d)` (and on
the context):

.. math::

    \theta_d = \theta_d(x_{<d}, c), \qquad
    \frac{\partial \theta_d}{\partial x_j} = 0 \quad \text{for } m(j) \ge m(d).

This is the autoregressive conditioner of MAF and IAF (:mod:`flowlab.transforms.autoregressive`):
one network evaluation gives the parameters of *all* :math:`D` conditionals at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MADE", "MaskedLinear", "made_degrees", "made_masks", "autoregressive_order"]


def autoregressive_order(
    features: int, order: str | Sequence[int] | Tensor = "input", seed: int | None = 0
) -> Tensor:
    r"""The order of the coordinates as a permutation ``perm`` (``perm[k]`` comes k-th).

    Args:
        features: :math:`D`.
        order: ``"input"`` (:math:`0, 1, \dots, D-1`), ``"reversed"``, ``"random"`` (drawn
            with ``seed``) or an explicit permutation of ``range(D)``.
        seed: seed of the random order.
    """
    if isinstance(order, str):
        if order == "input":
            return torch.arange(features)
        if order == "reversed":
            return torch.arange(features).flip(0)
        if order == "random":
            g = torch.Generator().manual_seed(0 if seed is None else int(seed))
            return torch.randperm(features, generator=g)
        raise ValueError(
            f"order must be 'input', 'reversed', 'random' or a permutation of range({features}), "
            f"got {order!r}"
        )
    perm = torch.as_tensor(order, dtype=torch.long).flatten()
    if perm.numel() != features or not torch.equal(perm.sort().values, torch.arange(features)):
        raise ValueError(
            f"an explicit order must be a permutation of range({features}), got {perm.tolist()}"
        )
    return perm


def made_degrees(
    features: int, hidden: Sequence[int], order: str | Sequence[int] | Tensor = "input",
    seed: int | None = 0, context: bool = False,
) -> list[Tensor]:
    r"""Degrees ``[m_in, m_hidden_1, ..., m_hidden_L]``.

    ``m_in[d]`` is the position of ``d`` in the order (1-based).  Hidden degrees cycle through
    :math:`1..D-1`; with a ``context`` they cycle through :math:`0..D-1`, because units of
    degree 0 (which see the context only) are the only path from the context to the *first*
    coordinate's parameters (output degree 1 needs a hidden degree below 1).
    """
    perm = autoregressive_order(features, order, seed)
    m_in = torch.empty(features, dtype=torch.long)
    m_in[perm] = torch.arange(1, features + 1)
    degrees = [m_in]
    for h in hidden:
        if context:
            degrees.append(torch.arange(int(h)) % features)
        elif features > 1:
            degrees.append(torch.arange(int(h)) % (features - 1) + 1)
        else:
            degrees.append(torch.zeros(int(h), dtype=torch.long))
    return degrees


def made_masks(
    features: int, hidden: Sequence[int], params_per_feature: int = 1, context_features: int = 0,
    order: str | Sequence[int] | Tensor = "input", seed: int | None = 0,
) -> list[Tensor]:
    r"""The 0/1 weight masks of the MADE layers, shapes ``(out, in)`` like ``nn.Linear``.

    The inputs are ``[x (D), context (c)]``; the outputs are ``params_per_feature`` blocks of
    :math:`D`, parameter-major (output ``p * D + d`` is parameter ``p`` of coordinate ``d``).
    """
    degrees = made_degrees(features, hidden, order, seed, context=context_features > 0)
    m_prev = torch.cat([degrees[0], torch.zeros(context_features, dtype=torch.long)])
    masks = []
    for m in degrees[1:]:
        masks.append((m[:, None] >= m_prev[None, :]).to(torch.get_default_dtype()))
        m_prev = m
    m_out = degrees[0].repeat(params_per_feature)
    masks.append((m_out[:, None] > m_prev[None, :]).to(torch.get_default_dtype()))
    return masks


class MaskedLinear(nn.Linear):
    r""":math:`y = (W \odot M) x + b` with a fixed 0/1 mask :math:`M` (a buffer).

    Args:
        mask: ``(out_features, in_features)`` tensor of 0s and 1s.
        bias: learn a bias.

    Example:
        >>> layer = MaskedLinear(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        >>> x = torch.randn(1, 2, requires_grad=True)
        >>> layer(x)[0, 0].backward()          # output 0 is connected to input 0 only
        >>> (x.grad[0] != 0).tolist()
        [True, False]
    """

    def __init__(self, mask: Tensor, bias: bool = True) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("mask", mask.detach().to(self.weight.dtype).clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    r"""Masked autoregressive MLP: ``(batch, D)`` (+ context ``(batch, c)``) to
    ``(batch, params_per_feature * D)`` with :math:`\theta_d` a function of :math:`x_{<d}` only.

    Args:
        features: :math:`D`.
        params_per_feature: outputs per coordinate (2 for an affine map: shift and log-scale).
        hidden: hidden layer sizes (each should be at least :math:`D - 1` so that every
            coordinate can see all its predecessors).
        context_features: size :math:`c` of an optional context vector, connected to every
            hidden unit (degree 0); pass ``context=`` then.
        order: ``"input"``, ``"reversed"``, ``"random"`` or an explicit permutation
            (see :func:`autoregressive_order`).
        seed: seed of a random order.
        activation: factory of the nonlinearity (default :class:`torch.nn.ReLU`).
        zero_init_last: start with a zero output layer (the flow layer starts as the identity).

    The output is parameter-major: ``out.view(batch, params_per_feature, D)[:, p, d]``.

    Example:
        >>> made = MADE(3, params_per_feature=1, hidden=(8,), zero_init_last=False)
        >>> x = torch.randn(1, 3, requires_grad=True)
        >>> made(x)[0, 1].backward()          # output 1 may depend on x_0 only
        >>> (x.grad[0] != 0).tolist()
        [True, False, False]
    """

    def __init__(
        self,
        features: int,
        params_per_feature: int = 2,
        hidden: Sequence[int] = (128, 128),
        context_features: int = 0,
        order: str | Sequence[int] | Tensor = "input",
        seed: int | None = 0,
        activation: Callable[[], nn.Module] = nn.ReLU,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        if int(features) != features or features < 1:
            raise ValueError(f"MADE needs at least 1 feature, got {features!r}")
        if not hidden:
            raise ValueError("MADE needs at least one hidden layer (hidden=(128,) or more)")
        self.features = int(features)
        self.params_per_feature = int(params_per_feature)
        self.context_features = int(context_features)
        self.order = autoregressive_order(self.features, order, seed)
        masks = made_masks(
            self.features, hidden, self.params_per_feature, self.context_features, order, seed
        )
        layers: list[nn.Module] = []
        for i, mask in enumerate(masks):
            layers.append(MaskedLinear(mask))
            if i < len(masks) - 1:
                layers.append(activation())
        self.net = nn.Sequential(*layers)
        if zero_init_last:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_features:
            if context is None:
                raise ValueError(
                    f"this MADE was built with context_features={self.context_features}: pass "
                    f"context=<tensor of shape (batch, {self.context_features})>"
                )
            if context.shape != (x.shape[0], self.context_features):
                raise ValueError(
                    f"context must have shape (batch, {self.context_features}) = "
                    f"({x.shape[0]}, {self.context_features}), got {tuple(context.shape)}"
                )
            x = torch.cat([x, context], dim=1)
        return self.net(x)

    def extra_repr(self) -> str:
        sizes = [m.in_features for m in self.net if isinstance(m, nn.Linear)]
        return f"features={self.features}, params_per_feature={self.params_per_feature}, " \
               f"context_features={self.context_features}, widths={sizes}"

