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

``import flowlab`` itself loads nothing heavy: torch, the layers and the base distributions
load on the first use of one of their names (``fl.Flow``, ``fl.StandardNormal``, ...), the
ready-made models (``fl.realnvp``, ``fl.Glow``, ...) on first use too, and data, plots and
training (which need scikit-learn, matplotlib, tqdm, PyYAML) only when their subpackage is
imported.  So the ``flowlab`` command answers ``--help`` and flag errors without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load on first access
    from .distributions import (
        BaseDistribution,
        DiagonalGaussian,
        StandardLogistic,
        StandardNormal,
        UniformBox,
    )
    from .flow import Flow
    from .transforms import *  # noqa: F403  (the layers, listed in transforms.__all__)
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
    "nsf": ".models",
    "iaf": ".models",
    "TarFlow": ".models",
    "ClassConditionalFlow": ".models",
    "bits_per_dim": ".metrics",
    "dataset_bits_per_dim": ".metrics",
}
_SUBPACKAGES = ("data", "metrics", "models", "nets", "plots", "testing", "train", "checks",
                "distributions", "flow", "transforms")


_DISTRIBUTIONS = (
    "BaseDistribution", "StandardNormal", "DiagonalGaussian", "StandardLogistic", "UniformBox",
)  # fmt: skip


def _core() -> dict[str, Any]:
    """Import torch, :class:`Flow`, the base distributions and every layer (once); their
    names join the module's globals, so later lookups skip :func:`__getattr__`."""
    from . import distributions, flow, transforms

    names = {"Flow": flow.Flow, **{n: getattr(distributions, n) for n in _DISTRIBUTIONS}}
    names.update({n: getattr(transforms, n) for n in transforms.__all__})
    names["__all__"] = ["Flow", *_DISTRIBUTIONS, *transforms.__all__, *_LAZY]
    globals().update(names)
    return names


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if not name.startswith("__") or name == "__all__":
        core = _core()
        if name in core:
            return core[name]
    raise AttributeError(f"module 'flowlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBPACKAGES) | set(_core()))
