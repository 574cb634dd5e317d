r"""A normalizing flow: a base distribution :math:`p_Z` and an invertible map :math:`f`.

.. math::

    \log p_X(x) = \log p_Z(f(x)) + \log|\det Df(x)|, \qquad
    x = g(z) = f^{-1}(z),\; z \sim p_Z .

Training by maximum likelihood minimises :math:`-\frac1M\sum_i \log p_X(x_i)`
(:meth:`Flow.nll`); sampling draws :math:`z \sim p_Z` and runs the generative direction
:math:`g`.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

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
        context_shape: the shape of one context :math:`c` of a conditional flow
            :math:`p(x \\mid c)` (its layers take ``context``); a context of exactly this shape
            is used for the whole batch.  ``None``: a 1-D context is the unbatched one.

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
        context_shape: Iterable[int] | None = None,
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
        self.context_shape = None if context_shape is None else tuple(int(s) for s in context_shape)

    @contextlib.contextmanager
    def checks_disabled(self) -> Iterator["Flow"]:
        """Switch every per-call input check off for the duration of a ``with`` block.

        Inside the block this flow and every layer in it that has a ``validate`` switch (the
        flow's NaN/inf check, the dequantization layers' integer-level check) skip their
        data-reading checks, which cost a host-device synchronisation per call on a GPU.
        Shape, dtype and device checks stay on (they read no data).  On leaving, exactly the
        switches that were on are switched back on.  :class:`flowlab.train.Trainer` uses it for
        its training steps, having checked the data once up front.

        Example:
            >>> import flowlab as fl
            >>> flow = fl.Flow(fl.StandardNormal(2), [fl.Reverse(2)])
            >>> with flow.checks_disabled():
            ...     flow.validate
            False
            >>> flow.validate
            True
        """
        switched = [m for m in self.modules() if getattr(m, "validate", None) is True]
        for m in switched:
            m.validate = False
        try:
            yield self
        finally:
            for m in switched:
                m.validate = True

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

    @property
    def conditional(self) -> bool:
        """Whether this flow is conditional, :math:`p(x \\mid c)` (a layer reads a context)."""
        return self.transform.conditional

    def _context(self, context: Tensor | None, batch: int) -> Tensor | None:
        """A context of shape ``(batch, *context_shape)``, or one ``context_shape`` broadcast."""
        if context is None:
            return None
        if not self.conditional:
            raise ValueError(
                "a context was given but no layer of this flow takes one: build conditional "
                "layers (e.g. realnvp(..., context_features=c) or "
                "MaskedAffineAutoregressive(..., context_features=c)) or drop the context"
            )
        if not isinstance(context, Tensor):
            raise TypeError(
                f"Flow: context must be a torch.Tensor, got {type(context).__name__}; convert it "
                "with torch.as_tensor(...) (e.g. a one-hot label of shape (batch, classes))"
            )
        shape = self.context_shape
        unbatched = context.dim() == 1 if shape is None else tuple(context.shape) == shape
        if unbatched:
            context = context.unsqueeze(0).expand(batch, *context.shape)
        elif context.shape[0] != batch:
            raise ValueError(
                f"Flow: the context has shape {tuple(context.shape)} but the batch has {batch} "
                f"samples: pass one context per sample, shape ({batch}, ...), or a single "
                "unbatched context to use for all of them"
            )
        return context

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Normalizing direction through the whole stack: ``(z, log|det Df(x)|)``."""
        x = self._check(x, "x")
        return self.transform(x, context=self._context(context, x.shape[0]))

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Generative direction: ``(x, log|det Dg(z)|)``."""
        z = self._check(z, "z")
        return self.transform.inverse(z, context=self._context(context, z.shape[0]))

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r""":math:`\log p_X(x) = \log p_Z(f(x)) + \log|\det Df(x)|`, shape ``(batch,)``.

        With a ``context`` :math:`c` (conditional layers): :math:`\log p_X(x \mid c)`; ``c`` has
        shape ``(batch, ...)`` or is one unbatched context used for every sample.
        """
        z, logabsdet = self.forward(x, context)
        return self.base.log_prob(z) + logabsdet

    def nll(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Mean negative log-likelihood of the batch (nats per sample): the training loss."""
        return -self.log_prob(x, context).mean()

    @torch.no_grad()
    def sample(
        self, n: int, temperature: float = 1.0, context: Tensor | None = None
    ) -> Tensor:
        """``n`` samples :math:`x = g(z)`, :math:`z \\sim p_Z` (``temperature`` scales z).

        ``context``: ``(n, ...)`` (one per sample) or one unbatched context for all ``n``.
        """
        z = self.base.sample(n, temperature=temperature)
        if context is None:
            x, _ = self.transform.inverse(z)
        else:
            x, _ = self.transform.inverse(z, context=self._context(context, n))
        return x

    def sample_with_log_prob(
        self, n: int, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""Samples and their log-density, :math:`\log p_Z(z) - \log|\det Dg(z)|`."""
        z = self.base.sample(n)
        if context is None:
            x, logabsdet = self.transform.inverse(z)
        else:
            x, logabsdet = self.transform.inverse(z, context=self._context(context, n))
        return x, self.base.log_prob(z) - logabsdet
