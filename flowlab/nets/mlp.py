r"""A multilayer perceptron, the default conditioner :math:`\theta(x_A)` of coupling layers.

.. math::

    h_0 = x, \qquad h_{k} = \sigma(W_k h_{k-1} + c_k)\ (k = 1..L), \qquad
    \theta = W_{L+1} h_L + c_{L+1} .

With ``zero_init_last=True`` the output layer starts at :math:`W_{L+1} = 0, c_{L+1} = 0`, so
:math:`\theta \equiv 0` and a coupling layer built on it starts as the identity map (the
gradients of the last layer are still nonzero, so it learns from the first step).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from torch import nn

__all__ = ["MLP"]


class MLP(nn.Sequential):
    r"""Fully connected network ``in_features -> hidden... -> out_features``.

    Args:
        in_features: input size.
        out_features: output size.
        hidden: sizes of the hidden layers (``()`` gives a single linear layer).
        activation: a factory of the nonlinearity module (default :class:`torch.nn.ReLU`).
        zero_init_last: initialise the output layer's weight and bias to zero.

    It is an :class:`torch.nn.Sequential` (``Linear, act, Linear, act, ..., Linear``), so it
    adds no Python overhead over a hand-written network.

    Example:
        >>> import torch
        >>> net = MLP(2, 4, hidden=(16, 16))
        >>> net(torch.randn(3, 2))                      # zero-initialised output layer
        tensor([[0., 0., 0., 0.],
                [0., 0., 0., 0.],
                [0., 0., 0., 0.]], grad_fn=<AddmmBackward0>)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (256, 256),
        activation: Callable[[], nn.Module] = nn.ReLU,
        zero_init_last: bool = True,
    ) -> None:
        """Build the network; the arguments are described in the class docstring."""
        sizes = [int(in_features), *(int(h) for h in hidden), int(out_features)]
        if any(s < 1 for s in sizes):
            raise ValueError(f"MLP layer sizes must be positive, got {sizes}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(activation())
        super().__init__(*layers)
        self.in_features = sizes[0]
        self.out_features = sizes[-1]
        if zero_init_last:
            last = layers[-1]
            assert isinstance(last, nn.Linear)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
