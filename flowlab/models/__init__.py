"""Ready-made flows: RealNVP (flat and 2-D), the multi-scale image model, Glow, and a tiny VAE
for comparison."""

from .glow import Glow, GlowTransform, glow, glow_step
from .image_flow import ImageFlow
from .multiscale import MultiScaleFlow, MultiScaleTransform, multiscale_realnvp
from .realnvp import realnvp, realnvp_2d
from .vae import VAE

__all__ = [
    "realnvp", "realnvp_2d",
    "ImageFlow",
    "MultiScaleTransform", "MultiScaleFlow", "multiscale_realnvp",
    "GlowTransform", "Glow", "glow", "glow_step",
    "VAE",
]  # fmt: skip
