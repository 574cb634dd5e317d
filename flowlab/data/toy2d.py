r"""Two-dimensional toy data sets, generated in code (nothing is downloaded).

Every generator takes the number of points ``n`` and a ``seed`` (the same seed gives the same
points) and returns a tensor of shape ``(n, 2)``.  All sets are scaled to lie within about
:math:`[-4, 4]^2`, so one plotting window and one spline interval fit them all.

=====================  =========================================================  =========
name                   shape                                                      density
=====================  =========================================================  =========
``two_moons``          two interleaved half circles with Gaussian noise            —
``eight_gaussians``    a mixture of 8 Gaussians on a circle                        analytic
``checkerboard``       uniform on the 8 "black" squares of a 4x4 board             analytic
``two_spirals``        two interleaved spirals with Gaussian noise                 —
``rings``              four concentric noisy circles                               —
=====================  =========================================================  =========

:func:`toy_dataset_with_labels` gives the same points with the integer component each was
drawn from (which moon, Gaussian, square, spiral arm or ring; :data:`TOY_CLASSES` of them): the
context of a conditional flow :math:`p(x \mid y)`.

:func:`toy_log_prob` gives the exact log-density of the sets marked *analytic*, for measuring
a trained flow's test NLL against the true one (the NLL of the truth,
:math:`-\mathbb{E}[\log p(x)]`, is the best any model can reach).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "TOY_DATASETS",
    "checkerboard",
    "eight_gaussians",
    "rings",
    "toy_dataset",
    "toy_dataset_with_labels",
    "TOY_CLASSES",
    "RINGS_RADII",
    "toy_log_prob",
    "two_moons",
    "two_spirals",
]

#: Eight-Gaussians parameters: centres on a circle of this radius, this standard deviation.
EIGHT_GAUSSIANS_RADIUS = 2.5
EIGHT_GAUSSIANS_STD = 0.25
#: Checkerboard: the board covers [-CHECKERBOARD_HALF_WIDTH, CHECKERBOARD_HALF_WIDTH]^2.
CHECKERBOARD_HALF_WIDTH = 3.0
#: Rings: the radii of the four circles.
RINGS_RADII = (0.75, 1.5, 2.25, 3.0)


def _generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def _n(n: int) -> int:
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    return int(n)


def _dtype(dtype: torch.dtype | None) -> torch.dtype:
    return torch.get_default_dtype() if dtype is None else dtype


def two_moons(
    n: int, seed: int | None = 0, noise: float = 0.1, dtype: torch.dtype | None = None
) -> Tensor:
    r"""Two interleaved half circles ("moons").

    A point on the upper moon is :math:`(\cos t, \sin t)`, on the lower moon
    :math:`(1 - \cos t, \tfrac12 - \sin t)`, :math:`t \sim U(0, \pi)`; add
    :math:`\mathcal{N}(0, \text{noise}^2 I)`, then centre and scale by 2 (the set fills about
    :math:`[-3, 3] \times [-1.7, 1.7]`).
    """
    return _two_moons(n, seed, noise)[0].to(_dtype(dtype))


def _two_moons(n: int, seed: int | None, noise: float = 0.1) -> tuple[Tensor, Tensor]:
    n = _n(n)
    gen = _generator(seed)
    t = math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
    upper = torch.rand(n, generator=gen) < 0.5
    x = torch.where(upper, torch.cos(t), 1.0 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    pts = torch.stack([x, y], dim=1)
    pts = pts + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    pts = 2.0 * (pts - torch.tensor([0.5, 0.25], dtype=torch.float64))
    return pts, (~upper).long()


def _eight_centres(dtype: torch.dtype, device: torch.device | str = "cpu") -> Tensor:
    angles = torch.arange(8, dtype=dtype, device=device) * (math.pi / 4)
    return EIGHT_GAUSSIANS_RADIUS * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)


def eight_gaussians(n: int, seed: int | None = 0, dtype: torch.dtype | None = None) -> Tensor:
    r"""An equal-weight mixture of 8 Gaussians with centres :math:`c_k` on a circle:

    .. math::

        p(x) = \frac18 \sum_{k=0}^{7} \mathcal{N}(x;\, c_k, \sigma^2 I), \qquad
        c_k = r(\cos\tfrac{k\pi}{4}, \sin\tfrac{k\pi}{4}),\ r = 2.5,\ \sigma = 0.25 .
    """
    return _eight_gaussians(n, seed)[0].to(_dtype(dtype))


def _eight_gaussians(n: int, seed: int | None) -> tuple[Tensor, Tensor]:
    n = _n(n)
    gen = _generator(seed)
    k = torch.randint(0, 8, (n,), generator=gen)
    eps = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    pts = _eight_centres(torch.float64)[k] + EIGHT_GAUSSIANS_STD * eps
    return pts, k


def checkerboard(n: int, seed: int | None = 0, dtype: torch.dtype | None = None) -> Tensor:
    r"""Uniform on the "black" squares of a 4x4 board covering :math:`[-3, 3]^2`.

    With square side :math:`a = 1.5` and :math:`i = \lfloor (x_1 + 3)/a \rfloor`,
    :math:`j = \lfloor (x_2 + 3)/a \rfloor`, the black squares are those with :math:`i + j`
    even; there are 8 of them, so :math:`p(x) = 1/(8a^2)` on them and 0 elsewhere.
    """
    return _checkerboard(n, seed)[0].to(_dtype(dtype))


def _checkerboard(n: int, seed: int | None) -> tuple[Tensor, Tensor]:
    n = _n(n)
    gen = _generator(seed)
    side = 2 * CHECKERBOARD_HALF_WIDTH / 4
    i = torch.randint(0, 4, (n,), generator=gen)
    j_half = torch.randint(0, 2, (n,), generator=gen)
    j = 2 * j_half + (i % 2)  # i + j even
    u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    cell = torch.stack([i, j], dim=1).to(torch.float64)
    pts = (cell + u) * side - CHECKERBOARD_HALF_WIDTH
    return pts, 2 * i + j_half


def two_spirals(
    n: int, seed: int | None = 0, noise: float = 0.1, dtype: torch.dtype | None = None
) -> Tensor:
    r"""Two interleaved spirals, one the point reflection of the other:

    .. math::

        x = \pm \frac{t}{\pi} (\cos t, -\sin t) + \varepsilon, \qquad
        t = 3\pi\sqrt{u},\ u \sim U(0, 1),\ \varepsilon \sim \mathcal{N}(0, \text{noise}^2 I)

    (the square root puts more points on the longer, outer turns).
    """
    return _two_spirals(n, seed, noise)[0].to(_dtype(dtype))


def _two_spirals(n: int, seed: int | None, noise: float = 0.1) -> tuple[Tensor, Tensor]:
    n = _n(n)
    gen = _generator(seed)
    t = 3 * math.pi * torch.sqrt(torch.rand(n, generator=gen, dtype=torch.float64))
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
    arm = torch.stack([t * torch.cos(t), -t * torch.sin(t)], dim=1) / math.pi
    pts = sign.unsqueeze(1) * arm + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return pts, (sign > 0).long()


def rings(
    n: int, seed: int | None = 0, noise: float = 0.08, dtype: torch.dtype | None = None
) -> Tensor:
    r"""Four concentric circles of radii 0.75, 1.5, 2.25, 3 with Gaussian noise; each point
    picks a ring with probability proportional to its circumference (uniform along the
    total length)."""
    return _rings(n, seed, noise)[0].to(_dtype(dtype))


def _rings(n: int, seed: int | None, noise: float = 0.08) -> tuple[Tensor, Tensor]:
    n = _n(n)
    gen = _generator(seed)
    radii = torch.tensor(RINGS_RADII, dtype=torch.float64)
    cumulative = torch.cumsum(radii / radii.sum(), 0)
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    ring = torch.searchsorted(cumulative, u, right=True).clamp_max(3)
    angle = 2 * math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
    r = radii[ring].unsqueeze(1)
    pts = r * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    pts = pts + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return pts, ring


TOY_DATASETS: dict[str, Callable[..., Tensor]] = {
    "two_moons": two_moons,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "two_spirals": two_spirals,
    "rings": rings,
}


def toy_dataset(
    name: str, n: int, seed: int | None = 0, dtype: torch.dtype | None = None
) -> Tensor:
    """``n`` points of the toy set ``name`` (one of :data:`TOY_DATASETS`)."""
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; choose one of {sorted(TOY_DATASETS)}")
    return TOY_DATASETS[name](n, seed=seed, dtype=dtype)


_WITH_LABELS: dict[str, Callable[[int, int | None], tuple[Tensor, Tensor]]] = {
    "two_moons": _two_moons,
    "eight_gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "two_spirals": _two_spirals,
    "rings": _rings,
}

#: How many components (labels ``0..k-1``) each toy set is drawn from.
TOY_CLASSES = {"two_moons": 2, "eight_gaussians": 8, "checkerboard": 8, "two_spirals": 2,
               "rings": 4}


def toy_dataset_with_labels(
    name: str, n: int, seed: int | None = 0, dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor]:
    """The points of :func:`toy_dataset` (identical for the same seed) and the component each
    was drawn from, ``int64`` in ``0..TOY_CLASSES[name]-1``: the moon (0 upper, 1 lower), the
    Gaussian, the black square, the spiral arm, or the ring (0 innermost; radius
    ``RINGS_RADII[label]``).

    Example:
        >>> x, y = toy_dataset_with_labels("two_moons", 8, seed=0)
        >>> torch.equal(x, toy_dataset("two_moons", 8, seed=0)), y.tolist()
        (True, [1, 1, 0, 0, 1, 1, 0, 1])
    """
    if name not in _WITH_LABELS:
        raise ValueError(f"unknown toy data set {name!r}; choose one of {sorted(_WITH_LABELS)}")
    pts, labels = _WITH_LABELS[name](n, seed)
    return pts.to(_dtype(dtype)), labels.long()


def _eight_gaussians_log_prob(x: Tensor) -> Tensor:
    centres = _eight_centres(x.dtype, x.device)
    sq = ((x.unsqueeze(1) - centres) ** 2).sum(dim=-1)  # (batch, 8)
    var = EIGHT_GAUSSIANS_STD**2
    log_comp = -0.5 * sq / var - math.log(2 * math.pi * var)
    return torch.logsumexp(log_comp, dim=1) - math.log(8)


def _checkerboard_log_prob(x: Tensor) -> Tensor:
    h = CHECKERBOARD_HALF_WIDTH
    side = 2 * h / 4
    cell = torch.floor((x + h) / side)
    inside = ((x >= -h) & (x < h)).all(dim=1)
    black = (cell.sum(dim=1) % 2) == 0
    value = torch.full_like(x[:, 0], -math.log(8 * side * side))
    return torch.where(inside & black, value, torch.full_like(value, -math.inf))


_LOG_PROBS: dict[str, Callable[[Tensor], Tensor]] = {
    "eight_gaussians": _eight_gaussians_log_prob,
    "checkerboard": _checkerboard_log_prob,
}


def toy_log_prob(name: str, x: Tensor) -> Tensor:
    r"""The exact :math:`\log p(x)` of a toy set with a known density, shape ``(batch,)``.

    Available for ``"eight_gaussians"`` and ``"checkerboard"`` (:math:`-\infty` off the black
    squares).  The other sets are noisy curves without a closed-form density.
    """
    if name not in _LOG_PROBS:
        raise ValueError(
            f"no analytic density for {name!r}; it exists for {sorted(_LOG_PROBS)}. "
            "For the others, compare models by their test NLL."
        )
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"toy_log_prob expects a float tensor of shape (batch, 2), got {x!r:.60}")
    return _LOG_PROBS[name](x)
