r"""Masked autoregressive flows on vectors: a stack of MAF (or IAF) layers.

.. math::

    f = f_K \circ \dots \circ f_1, \qquad
    \log p_X(x \mid c) = \log \mathcal N\big(f(x; c); 0, I\big) + \sum_k \log|\det Df_k| ,

with each :math:`f_k` an autoregressive layer of :mod:`flowlab.transforms.autoregressive`
(Papamakarios et al. 2017, https://arxiv.org/abs/1705.07057).  Consecutive layers alternate
the order of the autoregression (input order, reversed, input, ...), the role that the masks'
alternation plays in RealNVP: a layer's first coordinate is transformed unconditionally, so
the next one should condition it on everything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ..distributions import BaseDistribution, StandardNormal
from ..flow import Flow
from ..transforms.autoregressive import (
    InverseAffineAutoregressive,
    MaskedAffineAutoregressive,
    MaskedRQSplineAutoregressive,
)
from ..transforms.base import Transform
from ..transforms.univariate import SCALE_BOUND

__all__ = ["maf", "iaf"]

Kind = Literal["affine", "spline", "iaf"]


def maf(
    features: int,
    transforms: int = 5,
    hidden: Sequence[int] = (128, 128),
    kind: Kind = "affine",
    context_features: int = 0,
    base: BaseDistribution | None = None,
    scale_bound: float | None = SCALE_BOUND,
    bins: int = 8,
    bound: float = 3.0,
    validate: bool = True,
) -> Flow:
    r"""A masked autoregressive :class:`~flowlab.flow.Flow` on vectors of size ``features``.

    Args:
        features: :math:`D`.
        transforms: number of autoregressive layers :math:`K`.
        hidden: hidden sizes of each layer's MADE.
        kind: ``"affine"`` (MAF, :class:`~flowlab.transforms.autoregressive.MaskedAffineAutoregressive`),
            ``"spline"`` (:class:`~flowlab.transforms.autoregressive.MaskedRQSplineAutoregressive`)
            or ``"iaf"`` (:class:`~flowlab.transforms.autoregressive.InverseAffineAutoregressive`:
            fast sampling, a density that costs :math:`D` passes per layer).
        context_features: size of a context vector (0: unconditional); a conditional flow is
            called as ``log_prob(x, context=c)`` and ``sample(n, context=c)``.
        base: the base distribution (default :math:`\mathcal N(0, I_D)`).
        scale_bound: soft bound of the affine log-scales.
        bins, bound: spline bins :math:`K` and interval :math:`[-B, B]` (``kind="spline"``).
        validate: let the flow check inputs for NaN/inf.

    Example:
        >>> import torch
        >>> flow = maf(2, transforms=2, hidden=(16,), context_features=3)
        >>> flow.log_prob(torch.randn(4, 2), context=torch.randn(4, 3)).shape
        torch.Size([4])
        >>> flow.sample(5, context=torch.randn(3)).shape       # one context for all samples
        torch.Size([5, 2])
    """
    if int(features) != features or features < 1:
        raise ValueError(f"maf needs at least 1 feature, got {features!r}")
    if int(transforms) != transforms or transforms < 1:
        raise ValueError(f"transforms must be a positive integer, got {transforms!r}")
    if kind not in ("affine", "spline", "iaf"):
        raise ValueError(f"kind must be 'affine', 'spline' or 'iaf', got {kind!r}")
    layers: list[Transform] = []
    for i in range(int(transforms)):
        order = "input" if i % 2 == 0 else "reversed"
        if kind == "spline":
            layers.append(MaskedRQSplineAutoregressive(
                features, hidden, context_features, order, bins=bins, bound=bound))
        else:
            cls = MaskedAffineAutoregressive if kind == "affine" else InverseAffineAutoregressive
            layers.append(cls(features, hidden, context_features, order, scale_bound=scale_bound))
    context_shape = (int(context_features),) if context_features else None
    return Flow(base if base is not None else StandardNormal(int(features)), layers,
                validate=validate, context_shape=context_shape)


def iaf(
    features: int,
    transforms: int = 5,
    hidden: Sequence[int] = (128, 128),
    context_features: int = 0,
    base: BaseDistribution | None = None,
    scale_bound: float | None = SCALE_BOUND,
    validate: bool = True,
) -> Flow:
    r"""An inverse autoregressive flow (Kingma et al. 2016, https://arxiv.org/abs/1606.04934):
    :func:`maf` with ``kind="iaf"``.  Sampling is one MADE pass per layer; the density of given
    data costs :math:`D` sequential passes per layer, so training by maximum likelihood is
    :math:`D` times slower than a MAF's.

    Args:
        features, transforms, hidden, context_features, base, scale_bound, validate: as for
            :func:`maf`.

    Example:
        >>> import torch
        >>> iaf(2, transforms=2, hidden=(16,)).sample(3).shape
        torch.Size([3, 2])
    """
    return maf(features, transforms, hidden, kind="iaf", context_features=context_features,
               base=base, scale_bound=scale_bound, validate=validate)
