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

**Importance weighting.**  With :math:`S` noise draws :math:`u_s \sim q(\cdot \mid x)`
(uniform or variational dequantization), :math:`\log P(x) \ge \log \frac1S \sum_s
p_V(x + u_s)/q(u_s \mid x) \ge \mathbb{E}_u[\log p_V(x+u) - \log q(u\mid x)]`; the first
bound tightens as :math:`S` grows (Burda et al. 2016, `arXiv:1509.00519
<https://arxiv.org/abs/1509.00519>`_).  Published image bits/dim with variational
dequantization (Flow++, Ho et al. 2019, `arXiv:1902.00275 <https://arxiv.org/abs/1902.00275>`_;
the UvA tutorial) use it: :func:`dataset_bits_per_dim` with ``importance_samples=S``.  Every
number flowlab prints says which estimate it is.

**Baselines.**  A bits/dim means little alone.  :func:`uniform_bits_per_dim` is the model that
knows nothing (:math:`\log_2 K`: 8 for 8-bit images, :math:`\log_2 17 \approx 4.09` for the
8x8 digits, whose pixels take the 17 levels 0..16); :func:`histogram_bits_per_dim` the model
that knows every pixel's own histogram but no correlation between pixels (fit on the training
images, scored on the test images).  A flow that does not beat the second has learnt nothing
about shapes.  :func:`baselines` returns both.

Sanity check: the uniform distribution over the :math:`K^D` images has
:math:`\log P = -D\log K`, i.e. exactly :math:`\log_2 K` bits per dimension (8 for 8-bit
images).  A model that does worse than that has learnt nothing.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "bits_per_dim",
    "dataset_bits_per_dim",
    "uniform_bits_per_dim",
    "histogram_bits_per_dim",
    "baselines",
]


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
    importance_samples: int = 1,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    context: Tensor | None = None,
) -> float:
    r"""Mean bits per dimension of ``log_prob_fn`` over a whole data set: the one
    implementation that the trainer, the CLI, the book and the benchmarks call.

    With ``importance_samples=S > 1`` each image's :math:`\log P(x)` is estimated by the
    importance-weighted bound :math:`\log \frac1S \sum_{s} e^{\ell_s}`, where
    :math:`\ell_s` are ``S`` calls of ``log_prob_fn`` on the same image (each a fresh
    dequantization draw, :math:`\log p_V(x+u_s) - \log q(u_s\mid x)`); ``S = 1`` gives the
    plain (ELBO) estimate :math:`\mathbb{E}_u[\cdot]`.

    Args:
        log_prob_fn: e.g. ``flow.log_prob`` (called on batches of ``data``).
        data: ``(N, *event_shape)`` samples (integer levels are converted to ``dtype``).
        batch_size: evaluation batch size.
        num_levels: see :func:`bits_per_dim`.
        repeats: number of passes; with stochastic dequantization more passes average more
            noise draws (the estimate of :math:`\mathbb{E}_u` gets tighter, not the bound).
        importance_samples: :math:`S`, draws per image combined inside the logarithm
            (tightens the bound itself; costs :math:`S` evaluations per image).
        dtype, device: where to evaluate (default: the default dtype, the data's device).
        context: ``(N, ...)`` contexts of a conditional model, one per sample: the batches
            are then scored as ``log_prob_fn(x_batch, context_batch)``.

    Returns:
        The mean bits per dimension as a Python float.

    Example:
        >>> from flowlab.distributions import StandardNormal
        >>> round(dataset_bits_per_dim(StandardNormal(4).log_prob, torch.zeros(10, 4)), 4)
        1.3257
    """
    if data.shape[0] == 0:
        raise ValueError("dataset_bits_per_dim needs at least one sample")
    dtype = dtype or torch.get_default_dtype()
    if repeats < 1 or batch_size < 1 or importance_samples < 1:
        raise ValueError("repeats, batch_size and importance_samples must be positive")
    device = device or data.device
    total = torch.zeros((), dtype=torch.float64, device=device)
    log_s = math.log(importance_samples)
    if context is not None and context.shape[0] != data.shape[0]:
        raise ValueError(
            f"give one context per sample: {data.shape[0]} samples, {context.shape[0]} contexts"
        )
    fn = log_prob_fn
    for _ in range(repeats):
        for start in range(0, data.shape[0], batch_size):
            batch = data[start : start + batch_size].to(device=device, dtype=dtype)
            if context is not None:
                c = context[start : start + batch_size].to(
                    device=device, dtype=dtype if context.is_floating_point() else None
                )
                fn = functools.partial(log_prob_fn, context=c)
            if importance_samples == 1:
                log_p = fn(batch).double()
            else:
                draws = torch.stack([fn(batch).double() for _ in range(importance_samples)])
                log_p = torch.logsumexp(draws, dim=0) - log_s
            total += log_p.sum()  # stays on the device: no sync here
    mean_log_prob = total.cpu() / (repeats * data.shape[0])
    return float(bits_per_dim(mean_log_prob, tuple(data.shape[1:]), num_levels))


def uniform_bits_per_dim(num_levels: int) -> float:
    r"""Bits/dim of the uniform model over :math:`K` levels: :math:`\log_2 K`.

    Args:
        num_levels: :math:`K` (256 for 8-bit images; 17 for the 8x8 digits, levels 0..16).

    Example:
        >>> uniform_bits_per_dim(256), round(uniform_bits_per_dim(17), 3)
        (8.0, 4.087)
    """
    return math.log2(_num_levels(num_levels))


def _num_levels(num_levels: int) -> int:
    if int(num_levels) != num_levels or num_levels < 2:
        raise ValueError(f"num_levels must be an integer >= 2, got {num_levels!r}")
    return int(num_levels)


def _levels(x: Tensor, num_levels: int, name: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch (N, ...) of images, got {tuple(x.shape)}")
    flat = x.reshape(x.shape[0], -1)
    levels = flat.long()
    if bool(((flat != levels) | (levels < 0) | (levels >= num_levels)).any()):
        raise ValueError(
            f"{name} must hold integer levels 0..{num_levels - 1} (e.g. data.images), not "
            "rescaled or dequantized values"
        )
    return levels


def histogram_bits_per_dim(
    train: Tensor, test: Tensor, num_levels: int, smoothing: float = 1.0
) -> float:
    r"""Bits/dim of the independent per-pixel histogram model, fit on ``train``, scored on
    ``test``.

    Every dimension :math:`d` gets its own categorical distribution over the :math:`K`
    levels, with add-:math:`\lambda` (Laplace, :math:`\lambda = 1`) smoothing so that a level
    unseen in training does not cost infinitely many bits:

    .. math::

        P_d(k) = \frac{n_d(k) + \lambda}{N + \lambda K}, \qquad
        \text{bits/dim} = -\frac{1}{M D} \sum_{i=1}^{M} \sum_{d=1}^{D} \log_2 P_d(x_{i,d}).

    This is the best model that ignores every correlation between pixels (up to the
    smoothing), so an image flow should beat it by a wide margin.

    Args:
        train: ``(N, ...)`` integer levels (uint8 or floats holding integers).
        test: ``(M, ...)`` integer levels of the same shape.
        num_levels: :math:`K`.
        smoothing: :math:`\lambda > 0`.

    Example:
        >>> train = torch.tensor([[0, 1], [0, 1], [0, 0]])
        >>> round(histogram_bits_per_dim(train, torch.tensor([[0, 1]]), num_levels=2), 4)
        0.5294
    """
    num_levels = _num_levels(num_levels)
    if not smoothing > 0:
        raise ValueError(f"smoothing must be positive, got {smoothing!r}")
    tr, te = _levels(train, num_levels, "train"), _levels(test, num_levels, "test")
    if tr.shape[1] != te.shape[1]:
        raise ValueError(f"train and test images differ in size: {tr.shape[1]} vs {te.shape[1]}")
    counts = torch.zeros(tr.shape[1], num_levels, dtype=torch.float64)
    counts.scatter_add_(1, tr.T, torch.ones(tr.T.shape, dtype=torch.float64))
    log_p = torch.log2(counts + smoothing) - math.log2(tr.shape[0] + smoothing * num_levels)
    scores = log_p.gather(1, te.T)  # (D, M)
    return float(-scores.mean())


def baselines(train: Tensor, test: Tensor, num_levels: int) -> dict[str, float]:
    """The two baselines printed beside every image bits/dim: ``{"uniform": log2 K,
    "per-pixel histogram": ...}`` (histogram fit on ``train``, scored on ``test``).

    Example:
        >>> x = torch.randint(0, 4, (20, 1, 2, 2))
        >>> sorted(baselines(x[:10], x[10:], 4))
        ['per-pixel histogram', 'uniform']
    """
    return {
        "uniform": uniform_bits_per_dim(num_levels),
        "per-pixel histogram": histogram_bits_per_dim(train, test, num_levels),
    }
