r"""The training batches: which samples each step of each process reads, on which device.

Data order is a :class:`~torch.utils.data.DistributedSampler`, even on one process: epoch
:math:`e` is the permutation seeded with ``seed + e``, and rank :math:`r` of :math:`W`
processes takes every :math:`W`-th index of it, so :math:`W` processes see exactly the global
batches of one process, split between them.  Step :math:`s` is batch
:math:`s \bmod S` of epoch :math:`\lfloor s / S\rfloor` (:math:`S` steps per epoch, the last
incomplete batch dropped), so a resumed run reads the batches the uninterrupted run would have
read, from the step number alone.

A batch is a tensor ``x``, or for a conditional model an ``(x, context)`` pair (the second
item of a :class:`~torch.utils.data.TensorDataset` or of a dataset's samples);
:func:`as_args` turns either into the loss's arguments.

Example:
    >>> import torch
    >>> batches = Batches(torch.arange(10.).view(10, 1), batch_size=4, seed=0)
    >>> batches.steps_per_epoch                    # 10 samples, batches of 4: 2 (2 dropped)
    2
    >>> [b.shape for b in batches.epoch(0)]
    [torch.Size([4, 1]), torch.Size([4, 1])]
    >>> torch.equal(next(batches.epoch(0, first=1)), list(batches.epoch(0))[1])  # resumable
    True
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from ..checks import check_finite
from .evaluate import first_tensor

__all__ = ["Batches", "as_args", "check_finite_data", "training_contexts"]

Batch = Tensor | tuple[Tensor, Tensor]


class Batches:
    """The batches of one process.

    Args:
        data: a tensor ``(N, *event_shape)``, a :class:`~torch.utils.data.TensorDataset` or
            any dataset of tensors / ``(tensor, label-or-context)`` pairs.
        batch_size: the global batch (split evenly between ``world_size`` processes).
        seed: the data-order seed (epoch ``e`` is shuffled with ``seed + e``).
        world_size, rank: the processes and this one.
        device, dtype: where batches go; floating-point data is cast to ``dtype``.
        conditional: yield ``(x, context)`` pairs (the model reads a context).
        num_workers: loader processes for a dataset that is not in memory.
        model_name: names the model in the error for data without contexts.
        held_out: samples held out for validation (only named in an error).
    """

    def __init__(
        self,
        data: Tensor | Dataset,
        batch_size: int,
        seed: int = 0,
        *,
        world_size: int = 1,
        rank: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        conditional: bool = False,
        num_workers: int = 0,
        model_name: str = "the model",
        held_out: int | None = None,
    ) -> None:
        self.data = data
        self.local_batch = batch_size // world_size
        self.device = torch.device(device)
        self.dtype = dtype
        self.conditional = conditional
        self.num_workers = num_workers
        self.model_name = model_name
        self.sampler = DistributedSampler(
            range(len(data)), num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
            drop_last=True,
        )
        #: Steps per epoch: whole local batches of this process's share of an epoch.
        self.steps_per_epoch = len(self.sampler) // self.local_batch
        if self.steps_per_epoch == 0:
            held = f" after holding out {held_out} for validation" if held_out else ""
            raise ValueError(
                f"the training set has {len(data)} samples{held}, fewer than one batch "
                f"per process ({self.local_batch}): lower batch_size"
            )

    def position(self, step: int) -> tuple[int, int]:
        """``(epoch, batch within the epoch)`` of the batch read at step ``step + 1``."""
        return divmod(step, self.steps_per_epoch)

    def epoch(self, epoch: int, first: int = 0) -> Iterator[Batch]:
        """The batches ``first, first+1, ...`` of ``epoch``: tensors, or ``(x, context)``."""
        self.sampler.set_epoch(epoch)
        order = torch.tensor(list(self.sampler), dtype=torch.long)
        b = self.local_batch
        chunks = [order[k * b : (k + 1) * b] for k in range(first, self.steps_per_epoch)]
        if isinstance(self.data, (Tensor, TensorDataset)):
            batches: Any = (self.data[idx] for idx in chunks)
        else:
            # A private generator: creating the loader's iterator then leaves the global
            # random state alone, which keeps resumed runs identical.
            batches = DataLoader(
                self.data, batch_sampler=[c.tolist() for c in chunks],
                num_workers=self.num_workers, generator=torch.Generator(),
                pin_memory=self.device.type == "cuda",
            )
        for k, batch in enumerate(batches, start=first):
            yield self._to_device(batch, epoch * self.steps_per_epoch + k + 1)

    def _to_device(self, batch: Any, step: int) -> Batch:
        x = first_tensor(batch)
        if x.dim() == 0 or x.shape[0] == 0:
            raise ValueError(
                f"the training data gave an empty batch (shape {tuple(x.shape)}) at step "
                f"{step}: a Dataset must yield one sample per index"
            )
        dtype = self.dtype if x.is_floating_point() else None
        x = x.to(device=self.device, dtype=dtype, non_blocking=True)
        if not self.conditional:
            return x
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            raise TypeError(
                f"{self.model_name} is conditional (its layers read a context): give data that "
                "yield (x, context) pairs, e.g. torch.utils.data.TensorDataset(x, c)"
            )
        c = torch.as_tensor(batch[1])
        c_dtype = self.dtype if c.is_floating_point() else None
        return x, c.to(device=self.device, dtype=c_dtype, non_blocking=True)


def as_args(batch: Batch) -> tuple[Tensor, ...]:
    """The loss's arguments: ``(x,)`` or ``(x, context)``."""
    return (batch,) if isinstance(batch, Tensor) else tuple(batch)


def training_contexts(data: Tensor | Dataset, n: int) -> Tensor:
    """The contexts of samples ``0, 1, ..., n-1`` of ``data`` (cycled): what a conditional
    model samples at by default."""
    idx = torch.arange(n) % len(data)
    if isinstance(data, TensorDataset):
        return data.tensors[1][idx]
    return torch.stack([torch.as_tensor(data[int(i)][1]) for i in idx])


def check_finite_data(data: Tensor | Dataset, name: str) -> None:
    """One pass over in-memory tensor data: NaN/inf would otherwise only show up as skipped
    steps (datasets are checked batch by batch through the loss)."""
    if isinstance(data, Tensor) and data.is_floating_point():
        check_finite(data, name=f"the {name} data", layer="Trainer")
    elif isinstance(data, TensorDataset):
        for what, t in zip(("data", "contexts"), data.tensors):
            if t.is_floating_point():
                check_finite(t, name=f"the {name} {what}", layer="Trainer")
