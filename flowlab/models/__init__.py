"""Ready-made flows, one name each: :func:`realnvp` (vectors, 2-D toys included),
:class:`MultiScaleFlow` (the multi-scale RealNVP for images), :class:`Glow`, and a tiny
:class:`VAE` for comparison."""

from .glow import Glow, GlowTransform, glow_step
from .image_flow import ImageFlow
from .multiscale import FactorOut, MultiScaleFlow, MultiScaleTransform
from .realnvp import realnvp
from .maf import maf
from .conditional import ClassConditionalFlow
from .tarflow import TarFlow, TarFlowTransform
from .vae import VAE

__all__ = [
    "realnvp",
    "ImageFlow",
    "FactorOut", "MultiScaleTransform", "MultiScaleFlow",
    "GlowTransform", "Glow", "glow_step",
    "maf", "ClassConditionalFlow", "TarFlow", "TarFlowTransform",
    "VAE",
]  # fmt: skip
