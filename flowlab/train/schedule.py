r"""Learning-rate schedule: linear warm-up, then cosine decay.

With peak rate :math:`\eta`, warm-up length :math:`W`, total length :math:`T` and floor
:math:`\eta_{\min} = r\,\eta`,

.. math::

    \eta_t = \begin{cases}
        \eta\,\dfrac{t+1}{W}, & t < W, \\[4pt]
        \eta_{\min} + \tfrac12(\eta - \eta_{\min})
        \Big(1 + \cos\big(\pi\,\tfrac{t - W}{T - W}\big)\Big), & W \le t \le T.
    \end{cases}

Warm-up protects the first steps, where a freshly initialised flow can produce huge
log-determinants; the cosine decay lets the weights settle at the end.  Both pieces are
PyTorch's own schedulers (:class:`~torch.optim.lr_scheduler.LinearLR`,
:class:`~torch.optim.lr_scheduler.CosineAnnealingLR`) chained by
:class:`~torch.optim.lr_scheduler.SequentialLR`, so their state is saved and restored with
``state_dict()`` like any scheduler.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

__all__ = ["warmup_cosine"]


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0
) -> LRScheduler:
    r"""Warm-up + cosine schedule for ``optimizer`` (call ``.step()`` once per training step).

    Args:
        optimizer: its ``lr`` is the peak rate :math:`\eta`.
        total_steps: :math:`T`, the length of the run in steps.
        warmup_steps: :math:`W`; 0 starts at the peak rate directly.
        min_lr_ratio: :math:`r = \eta_{\min}/\eta`, the rate reached at the end (with
            several parameter groups the floor is taken from the group with the smallest rate).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    warmup_steps = min(warmup_steps, total_steps)
    eta_min = min(g["lr"] for g in optimizer.param_groups) * min_lr_ratio
    decay_steps = max(total_steps - warmup_steps, 1)
    cosine = CosineAnnealingLR(optimizer, T_max=decay_steps, eta_min=eta_min)
    if warmup_steps == 0:
        return cosine
    # LinearLR multiplies the rate by a factor that goes from start_factor to 1 in
    # warmup_steps steps; the first step runs at lr / warmup_steps, never at 0.
    warmup = LinearLR(
        optimizer, start_factor=1.0 / warmup_steps, end_factor=1.0, total_iters=warmup_steps - 1
    ) if warmup_steps > 1 else LinearLR(optimizer, start_factor=1.0, total_iters=0)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])
