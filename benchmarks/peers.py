"""The same coupling flow built with the libraries people use today: zuko, nflows, normflows, FrEIA.

Each adapter builds, as closely as the library allows, the model that flowlab and
``bare.py`` build: ``couplings`` coupling layers with alternating half masks, each conditioner a
``features/2 -> hidden -> ... -> features/2 * params`` MLP with ReLU and a zero-initialised last
layer, a standard-normal base.  What each library does inside its coupling (how it bounds the
scale, how it splits and merges, how it parameterises the spline) is its own and is what we
measure.  Deviations that cannot be avoided are returned in :attr:`Contender.notes` and listed in
``benchmarks/README.md``.

The peers are optional: :func:`available_peers` says which import.  Install them with
``pip install zuko normflows FrEIA`` and ``pip install --no-deps nflows`` (nflows' own
requirements pull in tensorboard, which none of this needs).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "ModelSpec",
    "Contender",
    "Unsupported",
    "PEERS",
    "available_peers",
    "plain_mlp",
    "half_mask",
]


@dataclass(frozen=True)
class ModelSpec:
    """The architecture every contender builds."""

    features: int = 64
    couplings: int = 8
    hidden: tuple[int, ...] = (256, 256)
    bins: int = 8  # rational-quadratic spline: number of bins K
    bound: float = 5.0  # spline on [-bound, bound], identity (linear tails) outside


@dataclass
class Contender:
    """One implementation of one model, behind a common interface."""

    impl: str  # "flowlab", "bare", "zuko", ...
    kind: str  # "affine" or "spline"
    module: nn.Module  # owns every parameter
    log_prob: Callable[[Tensor], Tensor]  # (batch, features) -> (batch,)
    sample: Callable[[int], Tensor]  # n -> (n, features), no gradient
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.impl} {self.kind}"

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)


class Unsupported(Exception):
    """The library has no such layer; the message says what is missing."""


class PlainMLP(nn.Sequential):
    """Linear-ReLU-...-Linear, last layer zero (each coupling starts as the identity).

    ``forward`` accepts and ignores a ``context`` argument, which nflows and normflows pass to
    every conditioner.
    """

    def __init__(self, n_in: int, n_out: int, hidden: Sequence[int]) -> None:
        sizes = [n_in, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        last = nn.Linear(sizes[-1], n_out)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(*layers, last)
        # nflows and normflows read this to scale the spline's bin logits by 1/sqrt(hidden),
        # as they do with their own conditioner networks.
        self.hidden_features = sizes[-1]

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return super().forward(x)


def plain_mlp(n_in: int, n_out: int, hidden: Sequence[int]) -> PlainMLP:
    """The conditioner handed to every library that takes one (nflows, normflows, FrEIA)."""
    return PlainMLP(n_in, n_out, hidden)


def half_mask(features: int, keep_first: bool) -> torch.Tensor:
    """Boolean mask, True on the kept (conditioning) half: the first ``features//2`` or the rest."""
    mask = torch.zeros(features, dtype=torch.bool)
    half = features // 2
    if keep_first:
        mask[:half] = True
    else:
        mask[half:] = True
    return mask


def _std_normal_log_prob(z: Tensor) -> Tensor:
    return -0.5 * (z * z).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def _zero_last_linear(net: nn.Module) -> None:
    # zuko's Linear is its own module (not nn.Linear): find the last one with a weight.
    last = [m for m in net.modules() if isinstance(getattr(m, "weight", None), nn.Parameter)][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)


# --------------------------------------------------------------------------------------- zuko
def build_zuko(kind: str, spec: ModelSpec) -> Contender:
    from functools import partial

    from zuko.distributions import DiagNormal
    from zuko.flows.coupling import GeneralCouplingTransform
    from zuko.lazy import Flow, UnconditionalDistribution
    from zuko.transforms import MonotonicAffineTransform, MonotonicRQSTransform

    if kind == "affine":
        univariate, shapes = MonotonicAffineTransform, ((), ())
    elif kind == "spline":
        univariate = partial(MonotonicRQSTransform, bound=spec.bound)
        shapes = ((spec.bins,), (spec.bins,), (spec.bins - 1,))
    else:
        raise Unsupported(f"zuko: no {kind} coupling")
    layers = []
    for i in range(spec.couplings):
        layer = GeneralCouplingTransform(
            features=spec.features,
            mask=half_mask(spec.features, keep_first=(i % 2 == 0)),
            univariate=univariate,
            shapes=shapes,
            hidden_features=spec.hidden,
        )
        _zero_last_linear(layer.hyper)
        layers.append(layer)
    base = UnconditionalDistribution(
        DiagNormal, torch.zeros(spec.features), torch.ones(spec.features), buffer=True
    )
    flow = Flow(layers, base)

    def sample(n: int) -> Tensor:
        with torch.no_grad():
            return flow().sample((n,))

    notes = ["log-scale soft-clipped by zuko (slope 1e-3)"] if kind == "affine" else []
    return Contender("zuko", kind, flow, lambda x: flow().log_prob(x), sample, notes)


# ------------------------------------------------------------------------------------- nflows
def build_nflows(kind: str, spec: ModelSpec) -> Contender:
    from nflows.distributions.normal import StandardNormal
    from nflows.flows import Flow
    from nflows.transforms import (
        AffineCouplingTransform,
        CompositeTransform,
        PiecewiseRationalQuadraticCouplingTransform,
    )

    def net(n_in: int, n_out: int) -> nn.Module:
        return plain_mlp(n_in, n_out, spec.hidden)

    layers = []
    for i in range(spec.couplings):
        # nflows: mask > 0 marks the *transformed* features.
        mask = (~half_mask(spec.features, keep_first=(i % 2 == 0))).int()
        if kind == "affine":
            layers.append(AffineCouplingTransform(mask, net))
        elif kind == "spline":
            layers.append(
                PiecewiseRationalQuadraticCouplingTransform(
                    mask, net, num_bins=spec.bins, tails="linear", tail_bound=spec.bound
                )
            )
        else:
            raise Unsupported(f"nflows: no {kind} coupling")
    flow = Flow(CompositeTransform(layers), StandardNormal([spec.features]))

    def sample(n: int) -> Tensor:
        with torch.no_grad():
            return flow.sample(n)

    notes = ["scale = sigmoid(a + 2) + 1e-3 (nflows' choice)"] if kind == "affine" else []
    return Contender("nflows", kind, flow, flow.log_prob, sample, notes)


# ---------------------------------------------------------------------------------- normflows
def build_normflows(kind: str, spec: ModelSpec) -> Contender:
    import normflows as nf
    from normflows.flows.neural_spline.coupling import PiecewiseRationalQuadraticCoupling

    class SplineCoupling(nf.flows.Flow):
        """normflows' own spline wrapper without its ResidualNet (we pass the plain MLP)."""

        def __init__(self, mask: Tensor) -> None:
            super().__init__()
            self.prqc = PiecewiseRationalQuadraticCoupling(
                mask=mask,
                transform_net_create_fn=lambda i, o: plain_mlp(i, o, spec.hidden),
                num_bins=spec.bins,
                tails="linear",
                tail_bound=spec.bound,
            )

        def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:  # generative direction
            x, log_det = self.prqc.inverse(z)
            return x, log_det.view(-1)

        def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:  # normalizing direction
            z, log_det = self.prqc(x)
            return z, log_det.view(-1)

    flows: list[nn.Module] = []
    half = spec.features // 2
    for i in range(spec.couplings):
        if kind == "affine":
            # AffineCouplingBlock keeps the first half; a swap between blocks alternates halves.
            if i > 0:
                flows.append(nf.flows.Permute(spec.features, mode="swap"))
            flows.append(
                nf.flows.AffineCouplingBlock(
                    plain_mlp(half, 2 * (spec.features - half), spec.hidden), scale_map="exp"
                )
            )
        elif kind == "spline":
            mask = (~half_mask(spec.features, keep_first=(i % 2 == 0))).int()
            flows.append(SplineCoupling(mask))
        else:
            raise Unsupported(f"normflows: no {kind} coupling")
    base = nf.distributions.DiagGaussian(spec.features, trainable=False)
    flow = nf.NormalizingFlow(q0=base, flows=flows)

    def sample(n: int) -> Tensor:
        with torch.no_grad():
            return flow.sample(n)[0]

    notes = []
    if kind == "affine":
        notes = ["unbounded exp scale (normflows' RealNVP default)",
                 "a swap permutation between blocks"]
    return Contender("normflows", kind, flow, flow.log_prob, sample, notes)


# -------------------------------------------------------------------------------------- FrEIA
def build_freia(kind: str, spec: ModelSpec) -> Contender:
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    if kind != "affine":
        raise Unsupported(f"FrEIA 0.2 has no {kind} coupling")

    class Swap(Fm.InvertibleModule):
        """Exchange the two halves (FrEIA's one-sided coupling always keeps the first)."""

        def __init__(self, dims_in, dims_c=None) -> None:
            super().__init__(dims_in, dims_c)
            d = dims_in[0][0]
            self.sizes = (d // 2, d - d // 2)

        def forward(self, x, c=None, rev=False, jac=True):
            a, b = torch.split(x[0], self.sizes[::-1] if rev else self.sizes, dim=1)
            return (torch.cat((b, a), dim=1),), x[0].new_zeros(x[0].shape[0])

        def output_dims(self, input_dims):
            return input_dims

    inn = Ff.SequenceINN(spec.features)
    for i in range(spec.couplings):
        if i > 0:
            inn.append(Swap)
        inn.append(
            Fm.AffineCouplingOneSided,
            subnet_constructor=lambda i, o: plain_mlp(i, o, spec.hidden),
        )
    ref = next(inn.parameters())

    def log_prob(x: Tensor) -> Tensor:
        z, log_jac = inn(x)
        return _std_normal_log_prob(z) + log_jac

    def sample(n: int) -> Tensor:
        with torch.no_grad():
            z = torch.randn(n, spec.features, dtype=ref.dtype, device=ref.device)
            return inn(z, rev=True)[0]

    notes = ["log-scale = 2*0.636*atan(a/2) (FrEIA's clamp)", "a swap between blocks"]
    return Contender("FrEIA", kind, inn, log_prob, sample, notes)


PEERS: dict[str, tuple[str, Callable[[str, ModelSpec], Contender]]] = {
    # name -> (module to import, builder)
    "zuko": ("zuko", build_zuko),
    "nflows": ("nflows", build_nflows),
    "normflows": ("normflows", build_normflows),
    "FrEIA": ("FrEIA", build_freia),
}


def available_peers() -> list[str]:
    """The peer libraries that are installed here."""
    return [name for name, (module, _) in PEERS.items() if importlib.util.find_spec(module)]
