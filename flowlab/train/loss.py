r"""The training loss as a module: :math:`-\log p_\theta(x_b)` per sample.

DistributedDataParallel synchronises gradients only for what runs through a module's
``forward``, and a flow's training quantity is ``log_prob``; :class:`NegativeLogLikelihood`
makes it the ``forward`` (and is what ``torch.compile`` compiles).

Example:
    >>> import torch
    >>> from flowlab.models import realnvp
    >>> nll = NegativeLogLikelihood(realnvp(2, couplings=2))
    >>> nll(torch.zeros(5, 2)).shape
    torch.Size([5])
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

__all__ = ["NegativeLogLikelihood", "checks_disabled"]


class NegativeLogLikelihood(nn.Module):
    r"""Per-sample loss :math:`-\log p_\theta(x_b)` (or :math:`-\log p_\theta(x_b \mid c_b)`)
    of any model with ``log_prob``.

    The result is promoted to at least float32, so under bfloat16 autocast the sum of
    log-determinants and the loss are accumulated in float32.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(model, "log_prob", None)):
            raise TypeError(
                f"the trainer needs a model with a log_prob(x) method (e.g. a flowlab.Flow), "
                f"got {type(model).__name__}"
            )
        self.model = model

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        log_prob = self.model.log_prob(x) if context is None else self.model.log_prob(x, context)
        return -log_prob.to(torch.promote_types(log_prob.dtype, torch.float32))


@contextlib.contextmanager
def checks_disabled(model: nn.Module) -> Iterator[None]:
    """:meth:`flowlab.Flow.checks_disabled` for every flow in ``model``: the per-call data
    checks (NaN/inf, integer levels) read the whole batch, a host-device synchronisation on a
    GPU, and are redundant in training: the data were checked once before the first step, and
    a non-finite loss skips the step."""
    from ..flow import Flow

    with contextlib.ExitStack() as stack:
        for m in model.modules():
            if isinstance(m, Flow):
                stack.enter_context(m.checks_disabled())
        yield
