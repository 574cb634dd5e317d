r"""Exponential moving average (EMA) of the weights.

After every optimiser step the averaged copy :math:`\bar\theta` follows the trained weights
:math:`\theta`:

.. math:: \bar\theta_t = \beta\,\bar\theta_{t-1} + (1-\beta)\,\theta_t ,
          \qquad \bar\theta_1 = \theta_1 .

With :math:`\beta = 0.999` the average spans roughly the last :math:`1/(1-\beta) = 1000`
steps; it smooths the noise of stochastic gradients, and flows evaluated or sampled with the
EMA weights usually score a slightly better test likelihood.  The averaging is PyTorch's own
:class:`torch.optim.swa_utils.AveragedModel`; buffers (e.g. ActNorm statistics) are averaged
too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["make_ema"]


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    r"""An :class:`~torch.optim.swa_utils.AveragedModel` of ``model`` with EMA decay
    :math:`\beta` = ``decay``.  Update it with ``ema.update_parameters(model)`` after each
    optimiser step; the averaged flow is ``ema.module``."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
    average = get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(ema: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        # Tensors arrive grouped by dtype: average floating ones, copy the rest (integer or
        # boolean buffers such as an "initialised" flag or a counter have no average).
        if ema[0].is_floating_point() or ema[0].is_complex():
            average(ema, current, num_averaged)
        else:
            for e, c in zip(ema, current):
                e.copy_(c)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)
