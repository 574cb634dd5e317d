r"""Bits per dimension: the standard way to report the likelihood of an image model.

For discrete data :math:`x \in \{0, \dots, K-1\}^D` the model assigns a probability
:math:`P(x)`; the number of bits needed to encode :math:`x` with the model is
:math:`-\log_2 P(x)`, and per dimension

.. math::

    \mathrm{bpd}(x) = -\frac{\log P(x)}{D \log 2}.

A flow gives a density, not a probability.  With dequantization
(:mod:`flowlab.transforms.dequantize`) a density :math:`p_V` on the scale of the levels,
:math:`v = x + u \in [0, K)^D`, gives :math:`\log P(x) \ge \mathbb{E}_u \log p_V(x + u)` (for
uniform :math:`u`), so :math:`-\log p_V(x+u)/(D\log 2)` is an upper bound on the bits per
dimension (on average over the noise).

**Scaling.**  If the density was fitted to data rescaled as :math:`y = v / K \in [0,1)^D`, then
:math:`p_V(v) = p_Y(v/K)\, K^{-D}` (the Jacobian of the rescaling), hence

.. math::

    \mathrm{bpd} = \frac{-\log p_Y(y) + D \log K}{D \log 2}
                 = -\frac{\log p_Y(y)}{D \log 2} + \log_2 K .

:func:`bits_per_dim` applies this correction when told ``num_levels=K``.  The dequantization
layers of flowlab already count the :math:`-D\log K` in their log-determinant, so for a
``Flow`` that starts with one, pass ``num_levels=None``.  (Any further preprocessing inside
the flow -- e.g. the logit transform -- is part of :math:`f` and its log-determinant is
already in ``log_prob``.)

Sanity check: the uniform distribution over the :math:`K^D` images has
:math:`\log P = -D\log K`, i.e. exactly :math:`\log_2 K` bits per dimension (8 for 8-bit
images).  A model that does worse than that has learnt nothing.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["bits_per_dim", "dataset_bits_per_dim"]


def bits_per_dim(
    log_prob: Tensor | float,
    dims: int | Sequence[int],
    num_levels: int | None = None,
) -> Tensor:
    r"""Convert log-likelihoods in nats to bits per dimension.

    .. math::

        \mathrm{bpd} = \frac{-\log p + D \log K}{D \log 2},

    where the :math:`D \log K` term is added only when ``num_levels`` is given.

    Args:
        log_prob: :math:`\log p` per sample (any shape, in nats).
        dims: :math:`D`, the number of dimensions of one sample, or its shape
            (``(C, H, W)``).
        num_levels: :math:`K` when ``log_prob`` is a density of the data rescaled to
            :math:`[0, 1)` (i.e. :math:`y = (x + u)/K`); ``None`` when it already refers to the
            levels' scale :math:`[0, K)` -- e.g. ``flow.log_prob`` of a flow that starts with
            :class:`~flowlab.transforms.dequantize.UniformDequantization`.

    Returns:
        Bits per dimension, same shape as ``log_prob`` (take ``.mean()`` for a data set).

    Example:
        >>> bits_per_dim(torch.tensor([0.0]), (1, 8, 8), num_levels=17)  # uniform on [0,1)
        tensor([4.0875])
    """
    d = dims if isinstance(dims, int) else math.prod(int(s) for s in dims)
    if d < 1:
        raise ValueError(f"dims must be a positive number of dimensions, got {dims!r}")
    if num_levels is not None and (int(num_levels) != num_levels or num_levels < 2):
        raise ValueError(f"num_levels must be an integer >= 2 or None, got {num_levels!r}")
    log_prob = torch.as_tensor(log_prob)
    if not log_prob.is_floating_point():
        log_prob = log_prob.to(torch.get_default_dtype())
    nats = -log_prob
    if num_levels is not None:
        nats = nats + d * math.log(num_levels)
    return nats / (d * math.log(2.0))


@torch.no_grad()
def dataset_bits_per_dim(
    log_prob_fn: Callable[[Tensor], Tensor],
    data: Tensor,
    *,
    batch_size: int = 256,
    num_levels: int | None = None,
    repeats: int = 1,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> float:
    r"""Mean bits per dimension of ``log_prob_fn`` over a whole data set.

    Args:
        log_prob_fn: e.g. ``flow.log_prob`` (called on batches of ``data``).
        data: ``(N, *event_shape)`` samples (integer levels are converted to ``dtype``).
        batch_size: evaluation batch size.
        num_levels: see :func:`bits_per_dim`.
        repeats: number of passes; with stochastic dequantization more passes average more
            noise draws (the estimate of :math:`\mathbb{E}_u` gets tighter, not the bound).
        dtype, device: where to evaluate (default: the default dtype, the data's device).

    Returns:
        The mean bits per dimension as a Python float.
    """
    if data.shape[0] == 0:
        raise ValueError("dataset_bits_per_dim needs at least one sample")
    dtype = dtype or torch.get_default_dtype()
    if repeats < 1 or batch_size < 1:
        raise ValueError("repeats and batch_size must be positive")
    device = device or data.device
    total = torch.zeros((), dtype=torch.float64, device=device)
    for _ in range(repeats):
        for start in range(0, data.shape[0], batch_size):
            batch = data[start : start + batch_size].to(device=device, dtype=dtype)
            total += log_prob_fn(batch).double().sum()  # stays on the device: no sync here
    mean_log_prob = total.cpu() / (repeats * data.shape[0])
    return float(bits_per_dim(mean_log_prob, tuple(data.shape[1:]), num_levels))
