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
log-determinants; the cosine decay lets the weights settle at the end.  The rate is a closed
form of the step (:class:`WarmupCosine`, a picklable factor for
:class:`~torch.optim.lr_scheduler.LambdaLR`), so its state is saved and restored with
``state_dict()`` like any scheduler, and past :math:`T` it stays at :math:`\eta_{\min}`.

**A longer (or shorter) run on resume.**  Resuming with a new total :math:`T'` (``flowlab
train --resume --steps T'``) rebuilds the schedule for the new horizon without ever raising
the rate: from the current step :math:`s` (past warm-up) the rate decays by a cosine from its
current value :math:`\eta_s` to :math:`\eta_{\min}` at :math:`T'`
(:meth:`WarmupCosine.continued`); during warm-up the plain schedule of length :math:`T'` is
used (its warm-up is the same).  A run that had already decayed to :math:`\eta_{\min}`
therefore continues at :math:`\eta_{\min}`; for a new decay from the peak rate, start a new
run from the weights instead.

**Other optimisation settings on resume are refused.**  A resumed run restores the
optimiser's state and the scheduler's, which hold :math:`\eta`, :math:`W`, :math:`r` and the
weight decay of the run; a new ``--lr``, ``--warmup-steps``, ``--min-lr-ratio`` or
``--weight-decay`` would therefore be ignored (it was, silently, before).  Applying one is
not well defined either: a new peak rate makes the rate jump at the resumed step (the jump
the ``--steps`` rule exists to avoid), and a new warm-up length past the warm-up means nothing.
:func:`check_resume_settings` refuses them with a message that says how to go on (decision
record ``decisions/0010-resume-settings.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = [
    "warmup_cosine", "WarmupCosine", "continue_schedule", "restore_schedule",
    "check_resume_settings", "RESUME_FIXED",
]  # fmt: skip

#: Settings a resumed run keeps from its checkpoint: the optimiser and the schedule hold them.
RESUME_FIXED = ("lr", "warmup_steps", "min_lr_ratio", "weight_decay")


@dataclass
class WarmupCosine:
    r"""The factor :math:`\eta_t / \eta` of the schedule at step ``t`` (``LambdaLR``'s lambda).

    Args:
        total_steps: :math:`T`.
        warmup_steps: :math:`W` (at most :math:`T`).
        min_lr_ratio: :math:`r`.
        restart_step: with ``restart_factor``, a continued schedule: from this step on, a
            cosine from ``restart_factor`` down to :math:`r` at :math:`T`
            (see :meth:`continued`).

    Example:
        >>> f = WarmupCosine(total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
        >>> [round(f(t), 3) for t in (0, 1, 2, 6, 10, 20)]
        [0.5, 1.0, 1.0, 0.55, 0.1, 0.1]
        >>> g = f.continued(step=6, total_steps=16)   # 6 more steps than planned, from 0.55
        >>> [round(g(t), 3) for t in (6, 11, 16)]
        [0.55, 0.325, 0.1]
    """

    total_steps: int
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    restart_step: int | None = None
    restart_factor: float | None = None

    def __post_init__(self) -> None:
        if self.total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {self.total_steps}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        self.warmup_steps = min(self.warmup_steps, self.total_steps)

    def __call__(self, t: int) -> float:
        r = self.min_lr_ratio
        if self.restart_step is not None and self.restart_factor is not None:
            if t >= self.restart_step:
                span = self.total_steps - self.restart_step
                if span <= 0:
                    return self.restart_factor
                u = min(t - self.restart_step, span) / span
                return r + (self.restart_factor - r) * 0.5 * (1.0 + math.cos(math.pi * u))
        w = self.warmup_steps
        if t < w:
            return (t + 1) / w
        u = min(t - w, max(self.total_steps - w, 1)) / max(self.total_steps - w, 1)
        return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * u))

    def continued(self, step: int, total_steps: int) -> "WarmupCosine":
        """The schedule for a new horizon ``total_steps``, continuing at ``step`` from this
        schedule's rate without a jump: still in warm-up, the plain schedule of the new length
        (same warm-up); after it, a cosine from the rate at ``step`` down to the floor."""
        if step < self.warmup_steps:
            return WarmupCosine(total_steps, self.warmup_steps, self.min_lr_ratio)
        return WarmupCosine(total_steps, self.warmup_steps, self.min_lr_ratio,
                            restart_step=step, restart_factor=self(step))


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0
) -> LambdaLR:
    r"""Warm-up + cosine schedule for ``optimizer`` (call ``.step()`` once per training step).

    Args:
        optimizer: its ``lr`` is the peak rate :math:`\eta` (of each parameter group).
        total_steps: :math:`T`, the length of the run in steps.
        warmup_steps: :math:`W`; 0 starts at the peak rate directly.
        min_lr_ratio: :math:`r = \eta_{\min}/\eta`, the rate reached at the end (each
            parameter group decays to ``r`` times its own rate).
    """
    return LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, min_lr_ratio))


def continue_schedule(scheduler: LambdaLR, step: int, total_steps: int) -> LambdaLR:
    """Rebuild a :func:`warmup_cosine` scheduler, positioned at ``step``, for a new length
    ``total_steps`` (:meth:`WarmupCosine.continued`: the rate never jumps up); returns a new
    scheduler on the same optimizer.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = warmup_cosine(opt, 10, 0, 0.0)
        >>> for _ in range(10):
        ...     opt.step(); sched.step()
        >>> opt.param_groups[0]["lr"]       # the end of the planned run: the floor
        0.0
        >>> sched = continue_schedule(sched, 10, 20)
        >>> opt.param_groups[0]["lr"]       # 10 more steps continue at the floor, no jump
        0.0
    """
    old = scheduler.lr_lambdas[0]
    if not isinstance(old, WarmupCosine):
        raise TypeError("continue_schedule needs a scheduler made by warmup_cosine")
    new = old.continued(step, total_steps)
    optimizer = scheduler.optimizer
    fresh = LambdaLR(optimizer, new)
    position(fresh, step)
    return fresh


def position(scheduler: LambdaLR, step: int) -> None:
    """Put a ``LambdaLR`` at ``step`` (as if ``.step()`` had been called ``step`` times)."""
    scheduler.last_epoch = step
    for group, base, fn in zip(
        scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas
    ):
        group["lr"] = base * fn(step)
    scheduler._last_lr = [g["lr"] for g in scheduler.optimizer.param_groups]  # noqa: SLF001


def restore_schedule(
    scheduler: LambdaLR, saved: Any, step: int, total_steps: int
) -> tuple[LambdaLR, str | None]:
    """The scheduler of a resumed run: ``scheduler`` given the ``saved`` state at ``step``,
    rebuilt by :func:`continue_schedule` if the run's length changed to ``total_steps``.

    Returns the scheduler to use and, for a new length, a message saying what the rate does.
    Checkpoints written before the schedule was a closed form hold another scheduler's state
    (``SequentialLR``); the same closed form is then positioned at ``step``.
    """
    lambdas = saved.get("lr_lambdas") if isinstance(saved, dict) else None
    if lambdas and isinstance(lambdas[0], dict) and "total_steps" in lambdas[0]:
        scheduler.load_state_dict(saved)
    else:
        position(scheduler, step)
    planned = scheduler.lr_lambdas[0].total_steps
    if planned == total_steps:
        return scheduler, None
    before = scheduler.optimizer.param_groups[0]["lr"]
    scheduler = continue_schedule(scheduler, step, total_steps)
    floor = scheduler.base_lrs[0] * scheduler.lr_lambdas[0].min_lr_ratio
    return scheduler, (
        f"steps changed from {planned} to {total_steps} on resume: the learning rate continues "
        f"from {before:.3g} at step {step} and decays to {floor:.3g} at step {total_steps} (a "
        "cosine over the new horizon; it never rises again: for a fresh decay from --lr, start "
        "a new run)"
    )


def check_resume_settings(saved: Mapping[str, Any] | None, config: Any) -> None:
    """Refuse to resume with optimisation settings (:data:`RESUME_FIXED`) that differ from
    those the run was trained with (``saved``: the checkpoint's ``"config"``; a checkpoint
    without one is not checked).

    Example:
        >>> from flowlab.train.config import TrainConfig
        >>> check_resume_settings({"lr": 1e-3}, TrainConfig(lr=1e-3))   # the same: fine
        >>> check_resume_settings({"lr": 1e-3}, TrainConfig(lr=1e-2))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: cannot resume with lr 0.01 (--lr): the run was trained with 0.001. A ...

    Raises:
        ValueError: the message names each changed setting and says how to go on.
    """
    if not saved:
        return
    changed = []
    for name in RESUME_FIXED:
        if name not in saved:
            continue
        old, new = saved[name], getattr(config, name)
        same = (math.isclose(float(old), float(new), rel_tol=1e-12, abs_tol=0.0)
                if isinstance(old, (int, float)) and isinstance(new, (int, float)) else old == new)
        if not same:
            changed.append((name, old, new))
    if not changed:
        return
    flags = " ".join(f"--{n.replace('_', '-')}" for n, _, _ in changed)
    what = "; ".join(f"{n} {new!r} (--{n.replace('_', '-')}): the run was trained with {old!r}"
                     for n, old, new in changed)
    raise ValueError(
        f"cannot resume with {what}. A resumed run continues its saved optimiser and "
        f"learning-rate schedule, which hold these settings. Drop {flags} to continue the run "
        "as it was (--steps may change: the schedule is rebuilt for the new length), or train "
        "with the new values in a new run (another --run-dir, or --overwrite)"
    )
