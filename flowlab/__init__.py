r"""flowlab: normalizing flows for teaching and research.

A flow is a base distribution :math:`p_Z` and an invertible map :math:`f` (data to latent):

.. math:: \log p_X(x) = \log p_Z(f(x)) + \log|\det Df(x)| .

Layers live in :mod:`flowlab.transforms` (one family per file), ready-made models in
:mod:`flowlab.models`, data in :mod:`flowlab.data`, figures in :mod:`flowlab.plots`, the training
loop in :mod:`flowlab.train`.  The most used names are re-exported here::

    import flowlab as fl
    flow = fl.Flow(fl.StandardNormal(2), [fl.AffineCoupling(fl.HalfMask(2)), fl.Reverse(2)])
"""

from .distributions import (
    BaseDistribution,
    DiagonalGaussian,
    StandardLogistic,
    StandardNormal,
    UniformBox,
)
from .flow import Flow
from .metrics import bits_per_dim, dataset_bits_per_dim
from .models import (
    VAE,
    Glow,
    MultiScaleFlow,
    glow,
    multiscale_realnvp,
    realnvp,
    realnvp_2d,
)
from .transforms import *  # noqa: F403  (the layers, listed in transforms.__all__)
from .transforms import __all__ as _transforms_all

__version__ = "0.1.0"

__all__ = [
    "Flow",
    "BaseDistribution", "StandardNormal", "DiagonalGaussian", "StandardLogistic", "UniformBox",
    *_transforms_all,
    "realnvp", "realnvp_2d", "multiscale_realnvp", "MultiScaleFlow", "glow", "Glow", "VAE",
    "bits_per_dim", "dataset_bits_per_dim",
]  # fmt: skip
