"""The validation split: held out from the *training* data, seeded, stratified by label.

Model selection (the best checkpoint, early stopping) needs a score the model was not trained
on; the test set must not be that score, or the reported test figure is biased.  So the
:class:`~flowlab.train.Trainer` carves a validation set out of the training data:
in every class, ``round(fraction * n_class)`` samples chosen by
``numpy.random.RandomState(seed)`` (:func:`flowlab.data.images.stratified_split`; without
labels the whole set is one class).  The indices are recorded in the run folder
(``split.json``) and a resumed run reuses them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

__all__ = ["ValidationSplit", "find_labels"]


@dataclass(frozen=True)
class ValidationSplit:
    """Which training samples are held out for validation.

    Attributes:
        n: size of the full training set.
        val_indices: sorted indices of the validation samples.
        fraction, seed: how they were drawn; ``stratified``: whether labels were used.
    """

    n: int
    val_indices: tuple[int, ...]
    fraction: float
    seed: int
    stratified: bool

    @classmethod
    def draw(
        cls, n: int, fraction: float, seed: int, labels: Tensor | None = None
    ) -> ValidationSplit:
        """Draw the split (see the module docstring).

        Raises:
            ValueError: the training set is too small to hold out a validation sample and keep
                one for training.

        Example:
            >>> s = ValidationSplit.draw(10, 0.2, seed=0, labels=torch.tensor([0] * 5 + [1] * 5))
            >>> len(s.val_indices), s.stratified
            (2, True)
        """
        from ..data.images import stratified_split

        if labels is not None and len(labels) != n:
            raise ValueError(f"got {len(labels)} labels for {n} training samples")
        y = (np.zeros(n, dtype=np.int64) if labels is None
             else np.asarray(torch.as_tensor(labels).cpu()))
        _, val = stratified_split(y, fraction, seed)
        if len(val) == 0 or len(val) == n:
            raise ValueError(
                f"val_fraction={fraction} of {n} training samples gives {len(val)} validation "
                "samples: raise val_fraction, use more data, or set val_fraction=0 (no model "
                "selection)"
            )
        return cls(n, tuple(int(i) for i in val), float(fraction), int(seed), labels is not None)

    @classmethod
    def for_run(
        cls, data: Tensor | Dataset, fraction: float, seed: int, labels: Tensor | None = None,
        recorded: Path | None = None,
    ) -> ValidationSplit:
        """The split of a run on ``data``: the one ``recorded`` in a resumed run's
        ``split.json`` (which must have been drawn with the same ``fraction`` and ``seed``),
        else a new draw, stratified by ``labels`` (default: :func:`find_labels`)."""
        if recorded is None or not recorded.is_file():
            labels = labels if labels is not None else find_labels(data)
            return cls.draw(len(data), fraction, seed, labels)
        split = cls.load(recorded)
        if (split.fraction, split.seed) != (fraction, seed):
            raise ValueError(
                f"the run's validation split (split.json) was drawn with val_fraction="
                f"{split.fraction}, seed={split.seed}; a resumed run keeps it: "
                "do not change --val-fraction or --seed when resuming"
            )
        return split

    @property
    def train_indices(self) -> Tensor:
        mask = torch.ones(self.n, dtype=torch.bool)
        mask[list(self.val_indices)] = False
        return mask.nonzero().flatten()

    def apply(self, data: Tensor | Dataset) -> tuple[Tensor | Dataset, Tensor | Dataset]:
        """``(train part, validation part)`` of ``data``."""
        if len(data) != self.n:
            raise ValueError(
                f"the recorded validation split is for {self.n} training samples, the data has "
                f"{len(data)}: it is not the data the run started with"
            )
        val = torch.tensor(self.val_indices, dtype=torch.long)
        train = self.train_indices
        if isinstance(data, Tensor):
            return data[train], data[val]
        if isinstance(data, TensorDataset):  # (x, context) pairs stay tensors: fast batches
            return (TensorDataset(*(t[train] for t in data.tensors)),
                    TensorDataset(*(t[val] for t in data.tensors)))
        return Subset(data, train.tolist()), Subset(data, val.tolist())

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "fraction": self.fraction, "seed": self.seed,
                "stratified": self.stratified, "val_indices": list(self.val_indices)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValidationSplit:
        return cls(int(d["n"]), tuple(int(i) for i in d["val_indices"]), float(d["fraction"]),
                   int(d["seed"]), bool(d["stratified"]))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: Path) -> ValidationSplit:
        return cls.from_dict(json.loads(path.read_text()))


def find_labels(data: Tensor | Dataset) -> Tensor | None:
    """Class labels of a data set if it carries them (``targets`` or ``labels``), else ``None``."""
    for name in ("targets", "labels"):
        labels = getattr(data, name, None)
        if labels is not None and len(labels) == len(data):
            return torch.as_tensor(labels)
    return None
