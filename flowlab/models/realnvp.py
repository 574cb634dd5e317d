r"""RealNVP-style flows on vectors: a stack of coupling layers with alternating masks.

.. math::

    f = f_K \circ \dots \circ f_1, \qquad f_k = \text{coupling}_k \ (\circ\ \text{mixing}_k),
    \qquad \log p_X(x) = \log \mathcal{N}(f(x); 0, I) + \sum_k \log|\det Df_k| .

Consecutive couplings use complementary masks (first half / second half, or even / odd
coordinates), so every coordinate is transformed, conditioned on the others, every second
layer.  Optionally a mixing layer between couplings (a reverse, a random permutation or a
learnable LU-parameterised matrix) changes which coordinates meet in a coupling.

**Conditional flows** :math:`p(x \mid c)`: with ``context_features=k`` every coupling's
conditioner reads :math:`[x_A, c]`, so :math:`\theta = \theta(x_A, c)`; the Jacobian in
:math:`x` keeps its block-triangular form and :math:`\log|\det Df(x; c)|` is computed
exactly as before.  Call ``log_prob(x, context=c)`` and ``sample(n, context=c)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ..distributions import BaseDistribution, StandardNormal
from ..flow import Flow
from ..transforms.base import Transform
from ..transforms.coupling import AdditiveCoupling, AffineCoupling
from ..transforms.linear import DiagonalLinear, LULinear, RandomPermutation, Reverse
from ..transforms.masks import AlternatingMask, HalfMask, Mask
from ..transforms.splines import RQSplineCoupling
from ..transforms.univariate import SCALE_BOUND

__all__ = ["realnvp", "nsf"]

Kind = Literal["affine", "additive", "spline"]
MaskKind = Literal["half", "alternating"]
Mixing = Literal["reverse", "permutation", "lu"] | None


def _masks(features: int, mask: MaskKind) -> tuple[Mask, Mask]:
    if mask == "half":
        return HalfMask(features), HalfMask(features, flip=True)
    if mask == "alternating":
        return AlternatingMask(features, parity=0), AlternatingMask(features, parity=1)
    raise ValueError(f"mask must be 'half' or 'alternating', got {mask!r}")


def realnvp(
    features: int,
    couplings: int = 8,
    hidden: Sequence[int] | None = None,
    kind: Kind = "affine",
    mask: MaskKind = "half",
    mixing: Mixing = None,
    base: BaseDistribution | None = None,
    scale_bound: float | None = SCALE_BOUND,
    bins: int = 8,
    bound: float | None = None,
    seed: int | None = 0,
    validate: bool = True,
    context_features: int = 0,
) -> Flow:
    r"""A RealNVP-style :class:`~flowlab.flow.Flow` on vectors of size ``features``
    (Dinh et al. 2016, `arXiv:1605.08803 <https://arxiv.org/abs/1605.08803>`_).

    One builder for every size: ``realnvp(2)`` is the ready flow for the 2-D toy sets of
    :mod:`flowlab.data.toy2d` (8 couplings, 2x64 MLPs, splines on :math:`[-4, 4]`, where
    those sets lie); ``realnvp(64)`` a flat model of the 8x8 digits (2x256 MLPs).

    Args:
        features: dimension :math:`n` of the data (at least 2).
        couplings: number of coupling layers.
        hidden: hidden sizes of each coupling's MLP conditioner (default ``(64, 64)`` for
            2-D data, ``(256, 256)`` otherwise).
        kind: ``"affine"`` (RealNVP, :class:`~flowlab.transforms.coupling.AffineCoupling`),
            ``"additive"`` (NICE; a final learnable diagonal scaling is appended because
            additive couplings preserve volume) or ``"spline"``
            (:class:`~flowlab.transforms.splines.RQSplineCoupling`).
        mask: ``"half"`` (first/second half, alternating) or ``"alternating"`` (even/odd).
        mixing: layer between couplings: ``None``, ``"reverse"``, ``"permutation"`` (a fixed
            random one per gap) or ``"lu"`` (:class:`~flowlab.transforms.linear.LULinear`).
        base: the base distribution (default :math:`\mathcal{N}(0, I_n)`).
        scale_bound: bound of the affine log-scale (``kind="affine"``).
        bins, bound: spline bins :math:`K` and interval :math:`[-B, B]` (``kind="spline"``;
            default :math:`B = 4` for 2-D data, 3 otherwise).
        seed: seed of the random permutations (``mixing="permutation"`` or ``"lu"``).
        validate: let the flow check inputs for NaN/inf (switch off for benchmarks).
        context_features: size :math:`k` of a context vector :math:`c` (0: unconditional);
            every coupling's conditioner then reads :math:`[x_A, c]`.

    Example:
        >>> import torch
        >>> flow = realnvp(2, kind="spline")
        >>> flow.log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
        >>> conditional = realnvp(2, couplings=2, hidden=(16,), context_features=3)
        >>> conditional.log_prob(torch.randn(5, 2), context=torch.randn(5, 3)).shape
        torch.Size([5])
        >>> conditional.sample(4, context=torch.randn(3)).shape   # one context for all 4
        torch.Size([4, 2])
    """
    if int(features) != features or features < 2:
        raise ValueError(f"a coupling flow needs at least 2 features, got {features!r}")
    if int(couplings) != couplings or couplings < 1:
        raise ValueError(f"couplings must be a positive integer, got {couplings!r}")
    if kind not in ("affine", "additive", "spline"):
        raise ValueError(f"kind must be 'affine', 'additive' or 'spline', got {kind!r}")
    if mixing not in (None, "reverse", "permutation", "lu"):
        raise ValueError(f"mixing must be None, 'reverse', 'permutation' or 'lu', got {mixing!r}")
    if int(context_features) != context_features or context_features < 0:
        raise ValueError(
            f"context_features must be a non-negative integer (0: unconditional), got "
            f"{context_features!r}"
        )
    features, k = int(features), int(context_features)
    if hidden is None:
        hidden = (64, 64) if features == 2 else (256, 256)
    if bound is None:
        bound = 4.0 if features == 2 else 3.0
    even, odd = _masks(features, mask)
    layers: list[Transform] = []
    for i in range(int(couplings)):
        m = even if i % 2 == 0 else odd
        if kind == "affine":
            layers.append(AffineCoupling(m, hidden=hidden, scale_bound=scale_bound,
                                         context_features=k))
        elif kind == "additive":
            layers.append(AdditiveCoupling(m, hidden=hidden, context_features=k))
        else:
            layers.append(RQSplineCoupling(m, bins=bins, bound=bound, hidden=hidden,
                                           context_features=k))
        if mixing is not None and i < couplings - 1:
            layer_seed = None if seed is None else seed + i
            if mixing == "reverse":
                layers.append(Reverse(features))
            elif mixing == "permutation":
                layers.append(RandomPermutation(features, seed=layer_seed))
            else:
                layers.append(LULinear(features, seed=layer_seed))
    if kind == "additive":
        layers.append(DiagonalLinear(features, bias=False))
    return Flow(base if base is not None else StandardNormal(features), layers, validate=validate,
                context_shape=(k,) if k else None)


def nsf(
    features: int,
    couplings: int = 8,
    hidden: Sequence[int] | None = None,
    bins: int = 8,
    bound: float | None = None,
    mask: MaskKind = "half",
    mixing: Mixing = None,
    context_features: int = 0,
    base: BaseDistribution | None = None,
    seed: int | None = 0,
    validate: bool = True,
) -> Flow:
    r"""A coupling neural spline flow (Durkan et al. 2019, `arXiv:1906.04032
    <https://arxiv.org/abs/1906.04032>`_): :func:`realnvp` with ``kind="spline"``, every
    coupling a rational-quadratic spline
    (:class:`~flowlab.transforms.splines.RQSplineCoupling`) of :math:`x_B` whose
    :math:`3K - 1` parameters per coordinate come from :math:`\theta(x_A)` (or
    :math:`\theta(x_A, c)` with ``context_features``).

    Args:
        features, couplings, hidden, mask, mixing, base, seed, validate: as for
            :func:`realnvp`.
        bins, bound: :math:`K` bins on :math:`[-B, B]` (default :math:`B = 4` for 2-D data,
            3 otherwise); the identity outside.
        context_features: size of a context vector (0: unconditional).

    Example:
        >>> import torch
        >>> flow = nsf(2, couplings=2, hidden=(16,), context_features=1)
        >>> flow.log_prob(torch.randn(3, 2), context=torch.randn(3, 1)).shape
        torch.Size([3])
    """
    return realnvp(features, couplings, hidden, kind="spline", mask=mask, mixing=mixing,
                   base=base, bins=bins, bound=bound, seed=seed, validate=validate,
                   context_features=context_features)

