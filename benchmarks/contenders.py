"""Build any contender by name: flowlab, the bare reference, or a peer library.

``build("flowlab", "spline", spec, seed=0)`` seeds torch, builds the model and wraps it in a
:class:`~peers.Contender`.  flowlab's builder is imported lazily, so the harness still runs
(bare and peers only) while parts of flowlab are missing.
"""

from __future__ import annotations

import importlib.util

import torch

from bare import BareRealNVP
from peers import PEERS, Contender, ModelSpec, Unsupported, available_peers

__all__ = ["build", "available_impls", "flowlab_available"]


def flowlab_available() -> bool:
    """Whether ``flowlab.models.realnvp`` exists yet."""
    try:
        return importlib.util.find_spec("flowlab.models.realnvp") is not None
    except ModuleNotFoundError:
        return False


def available_impls() -> list[str]:
    """Every implementation that can be built here, flowlab first and bare second."""
    return (["flowlab"] if flowlab_available() else []) + ["bare"] + available_peers()


def _build_flowlab(kind: str, spec: ModelSpec) -> Contender:
    from flowlab.models.realnvp import realnvp

    # "spline-lu": flowlab's best flat model, the same spline couplings with a learned
    # LU-factorised linear layer between them (Durkan et al. 2019's RQ-NSF (C)) in place of the
    # fixed alternation of halves; no peer here offers it, so it has no peer row.
    extra = {"bins": spec.bins, "bound": spec.bound} if kind.startswith("spline") else {}
    if kind == "spline-lu":
        extra["mixing"] = "lu"
    flow = realnvp(
        spec.features, couplings=spec.couplings, hidden=spec.hidden,
        kind="spline" if kind == "spline-lu" else kind, **extra
    )
    return Contender("flowlab", kind, flow, flow.log_prob, flow.sample)


def _build_bare(kind: str, spec: ModelSpec) -> Contender:
    if kind != "affine":
        raise Unsupported("bare.py implements the affine coupling only (the yardstick)")
    model = BareRealNVP(spec.features, spec.couplings, spec.hidden)
    return Contender("bare", kind, model, model.log_prob, model.sample)


def build(impl: str, kind: str, spec: ModelSpec, seed: int = 0) -> Contender:
    """Seed torch's generator with ``seed`` and build ``impl``'s ``kind`` model of ``spec``."""
    torch.manual_seed(seed)
    if impl == "flowlab":
        return _build_flowlab(kind, spec)
    if impl == "bare":
        return _build_bare(kind, spec)
    if impl in PEERS:
        return PEERS[impl][1](kind, spec)
    raise ValueError(f"unknown implementation {impl!r}; choose from {available_impls()}")
