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
import math
import warnings
from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from .checks import check_finite, check_input
from .distributions import BaseDistribution, check_temperature
from .transforms.base import Compose, Transform

__all__ = ["Flow", "FlowDistribution"]


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
        """Mean negative log-likelihood of the batch (nats per sample): the training loss.

        **Compiling.**  Compile the loss, ``loss_fn = torch.compile(flow.nll)``: that is the
        function a training step calls, and the one way flowlab documents and tests.
        ``torch.compile(flow)`` compiles ``forward`` only: ``torch.compile(flow).log_prob(x)``
        runs the eager method, uncompiled, without a word.  (:class:`flowlab.train.Trainer`
        with ``compile=True`` compiles its loss module, whose ``forward`` is ``log_prob``.)

        Example:
            >>> import flowlab as fl
            >>> flow = fl.Flow(fl.StandardNormal(2), [fl.AffineCoupling(fl.HalfMask(2))])
            >>> loss_fn = torch.compile(flow.nll)      # the default backend needs a C compiler
            >>> x = torch.randn(16, 2)
            >>> torch.allclose(loss_fn(x), flow.nll(x))
            True
        """
        return -self.log_prob(x, context).mean()

    def rsample(
        self, n: int, temperature: float = 1.0, context: Tensor | None = None
    ) -> Tensor:
        r"""``n`` reparameterised samples :math:`x = g_\theta(T\,\varepsilon)`: like
        :meth:`sample`, but differentiable with respect to the flow's parameters (for
        variational inference, or losses on samples).

        Example:
            >>> import flowlab as fl
            >>> flow = fl.Flow(fl.DiagonalGaussian(2), [fl.Reverse(2)])
            >>> flow.rsample(8).pow(2).mean().backward()     # gradients reach the parameters
            >>> flow.base.loc.grad.shape
            torch.Size([2])
        """
        x, _ = self._draw(n, temperature, context, with_log_prob=False)
        return x

    def sample(
        self, n: int, temperature: float = 1.0, context: Tensor | None = None
    ) -> Tensor:
        r"""``n`` samples :math:`x = g(z)`, :math:`z \sim p_Z` with its spread scaled by
        ``temperature`` :math:`T` (a finite number :math:`\ge 0`; 1.0 samples the model
        itself, Glow's :math:`T = 0.7` gives cleaner, less varied images, 0 the latent's
        mode).  No gradients (see
        :meth:`rsample`).

        ``context``: ``(n, ...)`` (one per sample) or one unbatched context for all ``n``.

        Every layer's generative direction bounds its expansion
        (:mod:`flowlab.transforms.bounds`), but deep stacks sampled at high temperatures can
        still overflow: a draw that is not finite (inf/NaN) is never returned silently -- a
        ``RuntimeWarning`` says how many and what to do (lower the temperature, or keep the
        finite draws with ``x[torch.isfinite(x).flatten(1).all(1)]``).  It warns rather than
        raises so that the finite draws of a large batch are not lost.

        Example:
            >>> import flowlab as fl
            >>> flow = fl.Flow(fl.StandardNormal(2), [fl.Reverse(2)])
            >>> flow.sample(3, temperature=0.7).shape
            torch.Size([3, 2])
            >>> flow.sample(3, temperature=-1.0)
            Traceback (most recent call last):
            ...
            ValueError: temperature must be a finite number >= 0 (1.0 samples the model itself...
        """
        with torch.no_grad():
            x, _ = self._draw(n, temperature, context, with_log_prob=False)
        return x

    def sample_with_log_prob(
        self, n: int, temperature: float = 1.0, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""``n`` reparameterised samples and their log-density under the flow,
        :math:`\log p_X(x) = \log p_Z(z) - \log|\det Dg(z)|` (one generative pass, no
        normalizing pass).  With ``temperature`` :math:`T \ne 1` the draws come from the
        tempered latent, and the log-density is still the model's :math:`\log p_X(x)`.

        Example:
            >>> import flowlab as fl
            >>> flow = fl.Flow(fl.StandardNormal(2), [fl.AffineCoupling(fl.HalfMask(2))])
            >>> x, log_p = flow.sample_with_log_prob(4, temperature=0.5)
            >>> torch.allclose(log_p, flow.log_prob(x), atol=1e-5)
            True
        """
        x, log_prob = self._draw(n, temperature, context, with_log_prob=True)
        return x, log_prob

    def _draw(
        self, n: int, temperature: float, context: Tensor | None, with_log_prob: bool
    ) -> tuple[Tensor, Tensor | None]:
        temperature = check_temperature(temperature)
        z = self.base.sample(n, temperature=temperature)
        if context is None:
            x, logabsdet = self.transform.inverse(z)
        else:
            x, logabsdet = self.transform.inverse(z, context=self._context(context, n))
        if not torch.compiler.is_compiling():
            _warn_if_not_finite(x, temperature)
        return x, (self.base.log_prob(z) - logabsdet) if with_log_prob else None

    def as_distribution(self, context: Tensor | None = None) -> "FlowDistribution":
        """This flow as a :class:`torch.distributions.Distribution` (for code written against
        that interface); see :class:`FlowDistribution`."""
        return FlowDistribution(self, context)


def _warn_if_not_finite(x: Tensor, temperature: float) -> None:
    bad = int((~torch.isfinite(x.detach().reshape(x.shape[0], -1))).any(dim=1).sum())
    if bad:
        warnings.warn(
            f"{bad} of {x.shape[0]} draws are not finite (inf/NaN): the generative direction "
            f"overflowed for them at temperature {temperature:g}. Sample at a lower temperature "
            "(e.g. 0.7), or keep the finite draws: x[torch.isfinite(x).flatten(1).all(1)]",
            RuntimeWarning, stacklevel=3,
        )


class FlowDistribution(torch.distributions.Distribution):
    r"""A :class:`Flow` seen as a :class:`torch.distributions.Distribution`.

    ``event_shape`` is the flow's, ``batch_shape`` is ``()``; ``sample(sample_shape)`` and
    ``rsample(sample_shape)`` return ``(*sample_shape, *event_shape)``, ``log_prob`` takes any
    leading shape.  It shares the flow's parameters (nothing is copied), so it works with
    ``torch.distributions`` code such as :class:`~torch.distributions.TransformedDistribution`
    and Monte-Carlo KL estimates.  ``context``: one context for every draw (conditional
    flows).

    Example:
        >>> import flowlab as fl
        >>> from torch.distributions import AffineTransform, TransformedDistribution
        >>> flow = fl.Flow(fl.StandardNormal(2), [fl.AffineCoupling(fl.HalfMask(2))])
        >>> d = flow.as_distribution()
        >>> d.rsample((5, 3)).shape, d.event_shape, d.batch_shape
        (torch.Size([5, 3, 2]), torch.Size([2]), torch.Size([]))
        >>> y = TransformedDistribution(d, AffineTransform(0.0, 2.0, event_dim=1))
        >>> x = d.sample((4,))
        >>> torch.allclose(y.log_prob(2 * x), d.log_prob(x) - 2 * math.log(2.0))
        True
    """

    arg_constraints: dict = {}
    support = torch.distributions.constraints.real_vector
    has_rsample = True

    def __init__(self, flow: Flow, context: Tensor | None = None) -> None:
        self.flow = flow
        self.context = context
        super().__init__(torch.Size(), torch.Size(flow.event_shape), validate_args=False)

    def _n(self, sample_shape: Sequence[int]) -> tuple[torch.Size, int]:
        shape = torch.Size(sample_shape)
        return shape, math.prod(shape)

    def rsample(self, sample_shape: Sequence[int] = torch.Size()) -> Tensor:
        shape, n = self._n(sample_shape)
        return self.flow.rsample(n, context=self.context).reshape(*shape, *self.event_shape)

    def sample(self, sample_shape: Sequence[int] = torch.Size()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        lead = value.shape[: value.dim() - len(self.event_shape)]
        flat = value.reshape(-1, *self.event_shape)
        return self.flow.log_prob(flat, self.context).reshape(lead)
