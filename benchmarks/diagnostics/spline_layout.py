#!/usr/bin/env python
r"""Evidence for NOTES.md, section 2: the bin softmax of a spline and its memory layout.

    python benchmarks/spline_layout.py

PyTorch's CPU softmax over a *short last axis* (the K = 8 bins) is slow: for 8,192 rows of 8
it takes longer than for 8,192 rows of 64.  A conditioner output laid out
"parameter-major", ``(batch, 3K-1, n_B)``, lets the softmax and the cumulative sum run over
axis 1 with the long ``n_B`` axis innermost, which PyTorch vectorises well.

This script times both layouts and checks that a parameter-major spline (bin search by
comparison and sum instead of ``searchsorted``) computes exactly what
:func:`flowlab.transforms.splines.rational_quadratic_spline` computes.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from flowlab.transforms.splines import rational_quadratic_spline


def _time(fn: Callable[[], object], calls: int = 40) -> float:
    """Median milliseconds per call, after warm-up."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _knots(u: Tensor, bound: float, min_size: float) -> tuple[Tensor, Tensor]:
    """Bin sizes and knots along axis 1 of ``u`` = ``(batch, K, n)``."""
    k = u.shape[1]
    sizes = min_size + (1.0 - min_size * k) * torch.softmax(u, dim=1)
    inner = (2.0 * bound) * torch.cumsum(sizes, dim=1)[:, :-1] - bound
    edge = u.new_full((u.shape[0], 1, u.shape[2]), bound)
    knots = torch.cat([-edge, inner, edge], dim=1)
    return knots[:, 1:] - knots[:, :-1], knots


def spline_parameter_major(
    x: Tensor, params: Tensor, bins: int, inverse: bool = False, bound: float = 3.0,
    min_size: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    """The RQ spline of flowlab with ``params`` of shape ``(batch, 3K-1, n)``."""
    k = bins
    widths, cw = _knots(params[:, :k], bound, min_size)
    heights, ch = _knots(params[:, k : 2 * k], bound, min_size)
    one = x.new_ones(x.shape[0], 1, x.shape[1])
    deriv = torch.cat([one, min_size + F.softplus(params[:, 2 * k :]), one], dim=1)
    inside = (x >= -bound) & (x <= bound)
    xc = x.clamp(-bound, bound)
    knots = ch if inverse else cw
    idx = (xc.unsqueeze(1) >= knots[:, 1:-1]).sum(dim=1, keepdim=True)

    def at(t: Tensor) -> Tensor:
        return t.gather(1, idx).squeeze(1)

    x_k, w_k, y_k, h_k, d_k, d_k1 = at(cw), at(widths), at(ch), at(heights), at(deriv), at(
        deriv[:, 1:])
    s_k = h_k / w_k
    d_sum = d_k + d_k1 - 2.0 * s_k
    if not inverse:
        xi = (xc - x_k) / w_k
        xi_1mxi = xi * (1.0 - xi)
        denominator = s_k + d_sum * xi_1mxi
        out = y_k + h_k * (s_k * xi * xi + d_k * xi_1mxi) / denominator
    else:
        dy = xc - y_k
        a = h_k * (s_k - d_k) + dy * d_sum
        b = h_k * d_k - dy * d_sum
        c = -s_k * dy
        xi = (2.0 * c) / (-b - torch.sqrt((b * b - 4.0 * a * c).clamp_min(0.0)))
        xi_1mxi = xi * (1.0 - xi)
        denominator = s_k + d_sum * xi_1mxi
        out = x_k + xi * w_k
    numerator = (s_k * s_k) * (d_k1 * xi * xi + 2.0 * s_k * xi_1mxi + d_k * (1 - xi) ** 2)
    logabsdet = torch.log(numerator) - 2.0 * torch.log(denominator)
    if inverse:
        logabsdet = -logabsdet
    return torch.where(inside, out, x), torch.where(inside, logabsdet, torch.zeros_like(x))


def main() -> None:
    torch.set_num_threads(1)
    batch, n, k = 256, 32, 8
    g = torch.Generator().manual_seed(0)

    # 1. The two implementations agree (float64, forward and inverse).
    x = 2.5 * torch.randn(batch, n, generator=g, dtype=torch.float64)
    p = torch.randn(batch, 3 * k - 1, n, generator=g, dtype=torch.float64)
    q = p.transpose(1, 2)  # the current (batch, n, 3K-1) layout
    for inverse in (False, True):
        ref = rational_quadratic_spline(x, q[..., :k], q[..., k : 2 * k], q[..., 2 * k :],
                                        inverse=inverse)
        new = spline_parameter_major(x, p, k, inverse=inverse)
        err = max((ref[0] - new[0]).abs().max().item(), (ref[1] - new[1]).abs().max().item())
        print(f"{'inverse' if inverse else 'forward'}: max difference {err:.1e}")

    # 2. The softmax alone, in both layouts.
    flat = torch.randn(batch, n * (3 * k - 1), requires_grad=True)
    def last() -> None:
        torch.softmax(flat.reshape(batch, n, 3 * k - 1)[..., :k], -1).sum().backward()

    def major() -> None:
        torch.softmax(flat.reshape(batch, 3 * k - 1, n)[:, :k], 1).sum().backward()

    print(f"softmax fwd+bwd, bins on the last axis: {_time(last):.3f} ms; "
          f"parameter-major (axis 1): {_time(major):.3f} ms")

    # 3. The whole spline, forward+backward and inverse without gradient.
    x32 = x.float()
    offset = math.log(math.expm1(1.0 - 1e-3))

    def current(inverse: bool) -> tuple[Tensor, Tensor]:
        u = flat.reshape(batch, n, 3 * k - 1)
        return rational_quadratic_spline(x32, u[..., :k], u[..., k : 2 * k],
                                         u[..., 2 * k :] + offset, inverse=inverse)

    def proposed(inverse: bool) -> tuple[Tensor, Tensor]:
        return spline_parameter_major(x32, flat.reshape(batch, 3 * k - 1, n), k, inverse)

    for name, fn in (("current", current), ("parameter-major", proposed)):
        train = _time(lambda f=fn: sum(t.sum() for t in f(False)).backward())
        with torch.no_grad():
            sample = _time(lambda f=fn: f(True))
        print(f"{name:16s} spline fwd+bwd {train:.3f} ms, inverse (no grad) {sample:.3f} ms")


if __name__ == "__main__":
    main()
