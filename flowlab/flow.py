r"""A normalizing flow: a base distribution :math:`p_Z` and an invertible map :math:`f`.

.. math::

    \log p_X(x) = \log p_Z(f(x)) + \log|\det Df(x)|, \qquad
    x = g(z) = f^{-1}(z),\; z \sim p_Z .

Training by maximum likelihood minimises :math:`-\frac1M\sum_i \log p_X(x_i)`
(:meth:`Flow.nll`); sampling draws :math:`z \sim p_Z` and runs the generative direction
:math:`g`.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from .checks import check_finite, check_input
from .distributions import BaseDistribution
from .transforms.base import Compose, Transform

__all__ = ["Flow"]


class Flow(nn.Module):
    """A base distribution plus a stack of layers.

    Args:
        base: the latent distribution :math:`p_Z` (its ``event_shape`` is the latent's shape).
        transforms: one :class:`~flowlab.transforms.Transform` or several, applied in order in
            the normalizing direction (the first one sees the data).
        validate: check every input batch for NaN/inf before evaluating it (one reduction per
            call; switch off for benchmarks).

    Example:
        >>> import flowlab as fl
        >>> flow = fl.Flow(fl.StandardNormal(2), [fl.AffineCoupling(fl.HalfMask(2)), fl.Reverse(2)])
        >>> flow.log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        base: BaseDistribution,
        transforms: Transform | Iterable[Transform],
        validate: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(base, BaseDistribution):
            raise TypeError(
                f"Flow needs a flowlab base distribution (e.g. flowlab.StandardNormal(dim)), "
                f"got {type(base).__name__}"
            )
        self.base = base
        self.transform = transforms if isinstance(transforms, Compose) else Compose(transforms)
        self.validate = validate

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.base.event_shape

    def _check(self, x: Tensor, name: str) -> Tensor:
        check_input(x, name=name, layer="Flow", like=self.base._ref)
        # The finiteness check reads the data (a host-device sync on a GPU, a graph break under
        # torch.compile): skipped while compiling and when validate=False.
        if self.validate and not torch.compiler.is_compiling():
            check_finite(x, name=name, layer="Flow")
        return x

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalizing direction through the whole stack: ``(z, log|det Df(x)|)``."""
        return self.transform(self._check(x, "x"))

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Generative direction: ``(x, log|det Dg(z)|)``."""
        return self.transform.inverse(self._check(z, "z"))

    def log_prob(self, x: Tensor) -> Tensor:
        r""":math:`\log p_X(x) = \log p_Z(f(x)) + \log|\det Df(x)|`, shape ``(batch,)``."""
        z, logabsdet = self.forward(x)
        return self.base.log_prob(z) + logabsdet

    def nll(self, x: Tensor) -> Tensor:
        """Mean negative log-likelihood of the batch (nats per sample): the training loss."""
        return -self.log_prob(x).mean()

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """``n`` samples :math:`x = g(z)`, :math:`z \\sim p_Z` (``temperature`` scales z)."""
        z = self.base.sample(n, temperature=temperature)
        x, _ = self.transform.inverse(z)
        return x

    def sample_with_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        r"""Samples and their log-density, :math:`\log p_Z(z) - \log|\det Dg(z)|`."""
        z = self.base.sample(n)
        x, logabsdet = self.transform.inverse(z)
        return x, self.base.log_prob(z) - logabsdet
