r"""flowlab: normalizing flows for teaching and research.

A flow is a base distribution :math:`p_Z` and an invertible map :math:`f` (data to latent):

.. math:: \log p_X(x) = \log p_Z(f(x)) + \log|\det Df(x)| .

Layers live in :mod:`flowlab.transforms` (one family per file), ready-made models in
:mod:`flowlab.models`, data in :mod:`flowlab.data`, figures in :mod:`flowlab.plots`, the training
loop in :mod:`flowlab.train`.  The most used names are re-exported here:

>>> import torch
>>> import flowlab as fl
>>> flow = fl.Flow(fl.StandardNormal(2), [fl.AffineCoupling(fl.HalfMask(2)), fl.Reverse(2)])
>>> flow.log_prob(torch.zeros(3, 2)).shape
torch.Size([3])

``import flowlab`` loads torch, the layers and the base distributions only; the ready-made
models (``fl.realnvp``, ``fl.Glow``, ...) are imported on first use, and data, plots and training
(which need scikit-learn, matplotlib, tqdm, PyYAML) only when their subpackage is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .distributions import (
    BaseDistribution,
    DiagonalGaussian,
    StandardLogistic,
    StandardNormal,
    UniformBox,
)
from .flow import Flow
from .transforms import *  # noqa: F403  (the layers, listed in transforms.__all__)
from .transforms import __all__ as _transforms_all

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load on first access
    from .metrics import bits_per_dim, dataset_bits_per_dim
    from .models import VAE, ClassConditionalFlow, Glow, MultiScaleFlow, TarFlow, maf, realnvp

__version__ = "0.1.0"

# name -> module that defines it, imported on first attribute access (PEP 562).
_LAZY = {
    "realnvp": ".models",
    "MultiScaleFlow": ".models",
    "Glow": ".models",
    "VAE": ".models",
    "maf": ".models",
    "TarFlow": ".models",
    "ClassConditionalFlow": ".models",
    "bits_per_dim": ".metrics",
    "dataset_bits_per_dim": ".metrics",
}
_SUBPACKAGES = ("data", "metrics", "models", "nets", "plots", "testing", "train", "checks")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'flowlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBPACKAGES))


__all__ = [
    "Flow",
    "BaseDistribution", "StandardNormal", "DiagonalGaussian", "StandardLogistic", "UniformBox",
    *_transforms_all,
    *_LAZY,
]  # fmt: skip
