r"""Test negative log-likelihood and bits per dimension.

For a test set :math:`x_1, \dots, x_M` of dimension :math:`D`,

.. math::

    \mathrm{NLL} = -\frac1M \sum_{i=1}^M \log p_X(x_i) \quad\text{(nats per sample)}, \qquad
    \mathrm{bits/dim} = \frac{\mathrm{NLL}}{D \ln 2} .

For 8-bit images modelled on a rescaled, dequantized scale the bits/dim also need the
log-determinant of that rescaling; pass the matching function as ``bits_per_dim`` (the image
data pipeline provides it).  Several processes each evaluate a disjoint shard and the sums are
added, so the result does not depend on the number of processes.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from ..metrics import bits_per_dim
from .distributed import DistInfo, all_reduce_sum

__all__ = ["nll_to_bits_per_dim", "evaluate_nll", "first_tensor"]


def nll_to_bits_per_dim(nll: float, dims: int) -> float:
    r""":math:`\mathrm{NLL} / (D \ln 2)`: nats per sample to bits per dimension
    (:func:`flowlab.metrics.bits_per_dim` of :math:`\log p = -\mathrm{NLL}`)."""
    return float(bits_per_dim(torch.tensor(-float(nll), dtype=torch.float64), dims))


def first_tensor(batch: object) -> Tensor:
    """The data tensor of a batch: the batch itself, or the first item of ``(x, label)``."""
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, Tensor):
        raise TypeError(
            f"the data must yield tensors or (tensor, label) pairs, got {type(batch).__name__}"
        )
    return batch


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
) -> dict[str, float]:
    """Mean test NLL (nats per sample) and bits/dim of ``model`` on ``data``.

    ``model`` needs a ``log_prob(x) -> (batch,)``.  Under ``torch.distributed`` (``info``) each
    process evaluates every ``world_size``-th sample and the totals are summed, so every
    process gets the same exact figure.
    """
    info = info or DistInfo()
    was_training = model.training
    model.eval()
    n = len(data)
    indices = torch.arange(info.rank, n, info.world_size)
    total = torch.zeros(2, dtype=torch.float64, device=device)
    dims = None
    try:
        for start in range(0, len(indices), batch_size):
            idx = indices[start : start + batch_size]
            if isinstance(data, Tensor):
                x = data[idx]
            else:
                x = torch.utils.data.default_collate([data[int(i)] for i in idx])
            x = first_tensor(x)
            x = x.to(device=device, dtype=dtype if dtype and x.is_floating_point() else None)
            dims = math.prod(x.shape[1:])
            lp = model.log_prob(x)
            total[0] -= lp.double().sum()
            total[1] += lp.shape[0]
    finally:
        model.train(was_training)
    total = all_reduce_sum(total, info)
    if dims is None:  # this shard was empty; the sample shape still defines D
        x0 = first_tensor(data[0] if not isinstance(data, Tensor) else data[:1])
        dims = math.prod(x0.shape[1:] if isinstance(data, Tensor) else x0.shape)
    nll = (total[0] / total[1]).item()
    bpd = bits_per_dim(nll) if bits_per_dim is not None else nll_to_bits_per_dim(nll, dims)
    return {"nll": nll, "bits_per_dim": float(bpd)}
