r"""Validation and test NLL and bits per dimension, through :mod:`flowlab.metrics`.

For a data set :math:`x_1, \dots, x_M` of dimension :math:`D`,

.. math::

    \mathrm{NLL} = -\frac1M \sum_{i=1}^M \log p_X(x_i) \quad\text{(nats per sample)}, \qquad
    \mathrm{bits/dim} = \frac{\mathrm{NLL}}{D \ln 2} .

The accumulation over batches and the conversion are
:func:`flowlab.metrics.dataset_bits_per_dim` and :func:`flowlab.metrics.bits_per_dim`, the one
bits/dim implementation of flowlab; this module adds what a training run needs around it:
:class:`~torch.utils.data.Dataset` inputs, the NLL next to the bits/dim, and several
processes (each evaluates a disjoint shard and the sums are added, so the result does not
depend on the number of processes).  For 8-bit images modelled on a rescaled scale pass the
matching ``bits_per_dim`` function.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from .. import metrics
from .distributed import DistInfo, all_reduce_sum

__all__ = ["nll_to_bits_per_dim", "evaluate_nll", "first_tensor", "inputs_of"]


def nll_to_bits_per_dim(nll: float, dims: int) -> float:
    r""":math:`\mathrm{NLL} / (D \ln 2)`: nats per sample to bits per dimension
    (:func:`flowlab.metrics.bits_per_dim` of :math:`\log p = -\mathrm{NLL}`)."""
    return float(metrics.bits_per_dim(torch.tensor(-float(nll), dtype=torch.float64), dims))


def first_tensor(batch: object) -> Tensor:
    """The data tensor of a batch: the batch itself, or the first item of ``(x, label)``."""
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, Tensor):
        raise TypeError(
            f"the data must yield tensors or (tensor, label) pairs, got {type(batch).__name__}"
        )
    return batch


def inputs_of(data: Tensor | torch.utils.data.Dataset) -> Tensor:
    """The samples :math:`x` of ``data``: the tensor itself, or the first tensor of a
    :class:`~torch.utils.data.TensorDataset` of ``(x, c)`` pairs."""
    if isinstance(data, torch.utils.data.TensorDataset):
        return data.tensors[0]
    if isinstance(data, Tensor):
        return data
    return torch.stack([first_tensor(data[i]) for i in range(len(data))])


def _shard(data: Tensor | torch.utils.data.Dataset, indices: Tensor) -> Tensor:
    if isinstance(data, Tensor):
        return data[indices]
    if isinstance(data, torch.utils.data.TensorDataset):
        return data.tensors[0][indices]
    return torch.stack([first_tensor(data[int(i)]) for i in indices])


def _context_shard(data: Tensor | torch.utils.data.Dataset, indices: Tensor) -> Tensor:
    """The contexts of ``(x, c)`` pairs (a conditional model's data)."""
    if isinstance(data, torch.utils.data.TensorDataset) and len(data.tensors) >= 2:
        return data.tensors[1][indices]
    if isinstance(data, Tensor) or not isinstance(data[0], (tuple, list)) or len(data[0]) < 2:
        raise TypeError(
            "the model is conditional (its layers read a context): evaluate it on data that "
            "yield (x, context) pairs, e.g. torch.utils.data.TensorDataset(x, c)"
        )
    return torch.stack([torch.as_tensor(data[int(i)][1]) for i in indices])


@torch.no_grad()
def evaluate_nll(
    model: nn.Module,
    data: Tensor | torch.utils.data.Dataset,
    *,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    bits_per_dim: Callable[[float], float] | None = None,
    info: DistInfo | None = None,
    importance_samples: int = 1,
) -> dict[str, float]:
    """Mean NLL (nats per sample) and bits/dim of ``model`` on ``data``.

    ``model`` needs a ``log_prob(x) -> (batch,)``; a conditional model (``model.conditional``)
    is scored as ``log_prob(x, c)`` on data of ``(x, c)`` pairs.  Under ``torch.distributed``
    (``info``) each process evaluates every ``world_size``-th sample and the totals are summed,
    so every process gets the same exact figure.  ``importance_samples`` is passed to
    :func:`flowlab.metrics.dataset_bits_per_dim` (importance-weighted dequantization bound).

    Raises:
        ValueError: ``data`` is empty, or ``batch_size`` is not positive.
    """
    info = info or DistInfo()
    if len(data) == 0:
        raise ValueError("cannot evaluate on an empty data set (0 samples)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    x0 = first_tensor(data[:1] if isinstance(data, Tensor) else data[0])
    dims = math.prod(x0.shape[1:] if isinstance(data, Tensor) else x0.shape)
    if dtype is None:
        dtype = x0.dtype if x0.is_floating_point() else torch.get_default_dtype()
    was_training = model.training
    model.eval()
    indices = torch.arange(info.rank, len(data), info.world_size)
    total = torch.zeros(2, dtype=torch.float64, device=device)  # sum of NLL, count
    try:
        if len(indices):
            x = _shard(data, indices)
            context = (_context_shard(data, indices)
                       if getattr(model, "conditional", False) else None)
            bpd = metrics.dataset_bits_per_dim(
                model.log_prob, x, batch_size=batch_size, dtype=dtype, device=device,
                importance_samples=importance_samples, context=context,
            )
            total[0] += bpd * dims * math.log(2.0) * len(indices)
            total[1] += len(indices)
    finally:
        model.train(was_training)
    total = all_reduce_sum(total, info)
    nll = (total[0] / total[1]).item()
    bpd = bits_per_dim(nll) if bits_per_dim is not None else nll_to_bits_per_dim(nll, dims)
    return {"nll": nll, "bits_per_dim": float(bpd)}


def gaussian_baseline_nll(train: Tensor, test: Tensor) -> float:
    r"""Test NLL (nats per sample) of one full-covariance Gaussian fit to ``train``: the
    baseline printed beside a flow's NLL on vector data (e.g. the 2-D sets).

    .. math::

        \hat\mu = \frac1N\sum_i x_i, \quad
        \hat\Sigma = \frac1N \sum_i (x_i - \hat\mu)(x_i - \hat\mu)^\top, \quad
        \mathrm{NLL} = -\frac1M \sum_j \log \mathcal{N}(x_j; \hat\mu, \hat\Sigma).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(20000, 2, generator=g, dtype=torch.float64)
        >>> round(gaussian_baseline_nll(x[:10000], x[10000:]), 1)  # entropy of N(0, I): 2.84
        2.8
    """
    tr, te = train.double().flatten(1), test.double().flatten(1)
    mu = tr.mean(0)
    cov = torch.cov(tr.T, correction=0).reshape(tr.shape[1], tr.shape[1])
    cov = cov + 1e-9 * torch.eye(tr.shape[1], dtype=cov.dtype)
    dist = torch.distributions.MultivariateNormal(mu, covariance_matrix=cov)
    return float(-dist.log_prob(te).mean())
