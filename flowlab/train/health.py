r"""Gradient health: is this step's update safe to take, and why does a run diverge?

Each step measures the global gradient norm
:math:`\|g\|_2 = \big(\sum_k \|g_k\|_2^2\big)^{1/2}` over all parameter tensors with
:func:`torch.nn.utils.get_total_norm` (or clips it with
:func:`torch.nn.utils.clip_grad_norm_`, which returns the same norm).  A NaN or infinity in any
gradient makes the norm non-finite, so one number answers both "how large" and "is it
finite".  A step with a non-finite loss or norm is skipped (no parameter update); after
``max_bad_steps`` in a row the run stops with :class:`TrainingDiverged`, whose message lists
the likely causes, most likely first.

The cost and the alternative that was dropped (PyTorch's private fused AMP check) are measured
in ``decisions/0002-gradient-health.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["TrainingDiverged", "gradient_norm", "divergence_message"]


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


def gradient_norm(params: Sequence[nn.Parameter], grad_clip: float = 0.0) -> Tensor:
    """The global 2-norm of the gradients of ``params`` (a 0-d tensor, not synchronised).

    With ``grad_clip > 0`` the gradients are also scaled down to that norm if larger
    (:func:`torch.nn.utils.clip_grad_norm_`); the norm returned is the one before clipping.
    Non-finite gradients give a non-finite norm (and clipping leaves them as they are).

    Example:
        >>> p = nn.Parameter(torch.zeros(2)); p.grad = torch.tensor([3.0, 4.0])
        >>> gradient_norm([p]).item()
        5.0
        >>> p.grad[0] = float("nan"); bool(torch.isfinite(gradient_norm([p])))
        False
    """
    if grad_clip > 0:
        return torch.nn.utils.clip_grad_norm_(params, grad_clip)
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads)


def divergence_message(
    step: int, bad_steps: int, loss_value: float, *, lr: float, grad_clip: float,
    batch: Tensor | None = None, checkpoint: Path | None = None,
) -> str:
    """Why a run stopped after ``bad_steps`` non-finite steps, and what to try, as text."""
    causes = [
        f"the learning rate is too high (lr={lr:g}): lower --lr, lengthen "
        f"--warmup-steps or keep --grad-clip on (now {grad_clip:g})",
        "an unbounded scale in an affine coupling: exp(s) overflows unless s is bounded "
        "(use a bounded/soft-clamped scale, or additive couplings)",
        "bad data: NaN/inf values, or images that were not dequantized and rescaled",
    ]
    if batch is not None and batch.is_floating_point() and not bool(torch.isfinite(batch).all()):
        causes.insert(0, causes.pop(2).replace("bad data", "bad data (this batch has NaN/inf)"))
    kept = (
        f"The last good checkpoint is kept in {str(checkpoint)!r}."
        if checkpoint is not None and checkpoint.exists()
        else "No checkpoint had been written yet."
    )
    lines = "\n".join(f"  {i + 1}. {c}" for i, c in enumerate(causes))
    return (
        f"training stopped at step {step}: the loss or gradient was non-finite for "
        f"{bad_steps} consecutive steps (last loss {loss_value}). Likely causes, most "
        f"likely first:\n{lines}\n{kept}"
    )
