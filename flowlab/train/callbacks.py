"""The per-step hook: what a callback learns after every optimisation step.

``Trainer(..., callbacks=[fn])`` or ``trainer.on_step(fn)`` calls ``fn(record)`` after every
step with a :class:`StepRecord`, a small frozen record of that step: its number, the loss
and the gradient norm (before clipping) it measured, the learning rate it ran at and whether
it was taken (a step with a non-finite loss or gradient is skipped, ``finite=False``).  It is
the public way to watch or steer a run (record a curve, stop on a condition by raising, time
the steps), instead of wrapping the trainer's private step.

A callback runs on every process, after the step and before the step's logging, validation
and checkpoint; what it raises stops :meth:`~flowlab.train.Trainer.fit` (a
:class:`KeyboardInterrupt` is handled like Ctrl-C).

Example:
    >>> from flowlab.data.toy2d import toy_dataset
    >>> from flowlab.models import realnvp
    >>> from flowlab.train import TrainConfig, Trainer
    >>> trainer = Trainer(realnvp(2, couplings=2), toy_dataset("two_moons", 512, seed=0),
    ...                   config=TrainConfig(steps=4, warmup_steps=2, lr=1e-3, progress=False,
    ...                                      sample_every=0, val_fraction=0))
    >>> seen = []
    >>> @trainer.on_step
    ... def watch(record):
    ...     seen.append((record.step, round(record.lr, 6), record.finite))
    >>> _ = trainer.fit()
    >>> seen      # warm-up over 2 steps, then the cosine towards 1 % of the rate at step 4
    [(1, 0.0005, True), (2, 0.001, True), (3, 0.001, True), (4, 0.000505, True)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["StepCallback", "StepRecord"]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One optimisation step, as the per-step hook sees it (read-only).

    Attributes:
        step: the step just completed (1 for the first step of a run).
        epoch: the epoch its batch came from.
        loss: the mean negative log-likelihood of the batch in nats (averaged over processes);
            ``nan``/``inf`` when the step was skipped.
        grad_norm: the global gradient norm before clipping (the health check of
            :mod:`flowlab.train.health`).
        lr: the learning rate the step ran at.
        finite: whether loss and gradients were finite, i.e. the step was taken.
        batch_size: samples in the step, over all processes.
    """

    step: int
    epoch: int
    loss: float
    grad_norm: float
    lr: float
    finite: bool
    batch_size: int


#: A per-step hook: called with the :class:`StepRecord` of every step; its result is ignored.
StepCallback = Callable[[StepRecord], Any]
