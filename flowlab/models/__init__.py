"""Ready-made flows, one name each: :func:`realnvp` (vectors, 2-D toys included), :func:`nsf`
(spline couplings), :func:`maf` / :func:`iaf` (autoregressive), :class:`MultiScaleFlow` (the
multi-scale RealNVP for images), :class:`Glow`, :class:`TarFlow`, the class-conditional
:class:`ClassConditionalFlow`, and a tiny :class:`VAE` for comparison.

The registry (:mod:`flowlab.models.registry`) lists them by name for the command line:
``create("nsf", (2,), context_features=1)`` builds one, with its arguments checked against the
builder's signature."""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from .registry import MODELS, ModelSpec, create, get_model, model_names, register_model

if TYPE_CHECKING:
    from .conditional import ClassConditionalFlow
    from .glow import Glow, GlowTransform, glow_step
    from .image_flow import ImageFlow
    from .maf import iaf, maf
    from .multiscale import FactorOut, MultiScaleFlow, MultiScaleTransform
    from .realnvp import nsf, realnvp
    from .tarflow import TarFlow, TarFlowTransform
    from .vae import VAE

# name -> submodule, imported on first attribute access (PEP 562): the registry, and so
# `flowlab --help`, needs no torch.
_LAZY = {
    "realnvp": ".realnvp", "nsf": ".realnvp", "ImageFlow": ".image_flow",
    "FactorOut": ".multiscale", "MultiScaleTransform": ".multiscale", "MultiScaleFlow": ".multiscale",
    "GlowTransform": ".glow", "Glow": ".glow", "glow_step": ".glow",
    "maf": ".maf", "iaf": ".maf", "ClassConditionalFlow": ".conditional",
    "TarFlow": ".tarflow", "TarFlowTransform": ".tarflow", "VAE": ".vae",
}  # fmt: skip

__all__ = [
    "realnvp", "nsf",
    "ImageFlow",
    "FactorOut", "MultiScaleTransform", "MultiScaleFlow",
    "GlowTransform", "Glow", "glow_step",
    "maf", "iaf", "ClassConditionalFlow", "TarFlow", "TarFlowTransform",
    "VAE",
    "MODELS", "ModelSpec", "create", "get_model", "model_names", "register_model",
]  # fmt: skip


class _Package(types.ModuleType):
    """``import flowlab.models.realnvp`` binds the submodule to this package's attribute of the
    same name; the builder keeps the name (``flowlab.models.realnvp`` is the function, as
    ``from flowlab.models import realnvp`` says), whichever is imported first."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
