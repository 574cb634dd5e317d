"""Ready-made flows, one name each: :func:`realnvp` (vectors, 2-D toys included), :func:`nsf`
(spline couplings), :func:`maf` / :func:`iaf` (autoregressive), :class:`MultiScaleFlow` (the
multi-scale RealNVP for images), :class:`Glow`, :class:`TarFlow`, the class-conditional
:class:`ClassConditionalFlow`, and a tiny :class:`VAE` for comparison.

The registry (:mod:`flowlab.models.registry`) lists them by name for the command line:
``create("nsf", (2,), context_features=1)`` builds one, with its arguments checked against the
builder's signature."""

from .glow import Glow, GlowTransform, glow_step
from .image_flow import ImageFlow
from .multiscale import FactorOut, MultiScaleFlow, MultiScaleTransform
from .realnvp import nsf, realnvp
from .maf import iaf, maf
from .conditional import ClassConditionalFlow
from .tarflow import TarFlow, TarFlowTransform
from .vae import VAE
from .registry import MODELS, ModelSpec, create, get_model, model_names, register_model

__all__ = [
    "realnvp", "nsf",
    "ImageFlow",
    "FactorOut", "MultiScaleTransform", "MultiScaleFlow",
    "GlowTransform", "Glow", "glow_step",
    "maf", "iaf", "ClassConditionalFlow", "TarFlow", "TarFlowTransform",
    "VAE",
    "MODELS", "ModelSpec", "create", "get_model", "model_names", "register_model",
]  # fmt: skip
