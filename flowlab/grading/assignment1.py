r"""Hidden tests of assignment 1: change of variables and simple layers.

Parts (the ``grade_id`` of each test cell):

* ``density_uniform`` — :math:`X = \sqrt{Z}`, :math:`Z \sim U(0,1)`: :math:`p_X(x) = 2x` on
  :math:`(0,1)`, 0 elsewhere (the lecture's example);
* ``density_lognormal`` — :math:`X = e^{Z}`, :math:`Z \sim \mathcal N(0,1)`:
  :math:`\log p_X(x) = \log\mathcal N(\log x) - \log x` for :math:`x>0`;
* ``leaky_forward`` / ``leaky_inverse`` — the elementwise leaky ReLU (compared with
  :class:`flowlab.transforms.pointwise.LeakyReLU`);
* ``triangular_forward`` / ``triangular_inverse`` — :math:`f(x) = Lx + b` with
  :math:`L` = the lower triangle of ``weight`` (compared with
  :class:`flowlab.transforms.linear.TriangularLinear` and with the brute-force Jacobian);
* ``permutation`` — :math:`z_i = x_{\pi(i)}` (compared with
  :class:`flowlab.transforms.linear.Permutation`).
"""

from __future__ import annotations

import math

import torch

from .common import build, fresh_generator, randn, reference, run_student, set_param
from .delegation import check_no_reference_subclass, no_delegation
from .errors import GradingFailure
from .layers import (
    call_layer,
    check_batch_independent,
    check_logabsdet,
    check_logabsdet_vs_jacobian,
    check_output,
)
from .numerics import expect_close

__all__ = [
    "grade_density_uniform",
    "grade_density_lognormal",
    "grade_leaky_forward",
    "grade_leaky_inverse",
    "grade_triangular_forward",
    "grade_triangular_inverse",
    "grade_permutation",
]

POINTWISE = ["flowlab.transforms.pointwise"]
LINEAR = ["flowlab.transforms.linear"]


def grade_density_uniform(density_sqrt_uniform) -> None:
    part = "density_uniform"
    gen = fresh_generator()
    x = torch.cat([
        torch.rand(200, generator=gen, dtype=torch.float64),            # inside (0, 1)
        torch.rand(50, generator=gen, dtype=torch.float64) * 3 + 1.0,   # beyond 1
        -torch.rand(50, generator=gen, dtype=torch.float64) * 3 - 1e-3,  # below 0
    ])
    expected = torch.where((x > 0) & (x < 1), 2 * x, torch.zeros_like(x))
    p = run_student(density_sqrt_uniform, x.clone(), part=part, what="density_sqrt_uniform(x)")
    expect_close(
        p, expected, "p_X(x)", part=part,
        hints=[
            (2 * x, "Outside (0, 1) the density must be 0: p_Z(f(x)) = 0 there, because f(x) = x^2 "
                    "leaves the support of U(0, 1) (and X = sqrt(Z) is never negative)."),
            (torch.where((x > 0) & (x < 1), 0.5 / x.abs().sqrt(), torch.zeros_like(x)),
             "You used |dg/dz| = 1/(2 sqrt z) at z = x. The formula needs |det Df(x)| with "
             "f = g^{-1}: f(x) = x^2, so |f'(x)| = 2x."),
            (torch.where((x > 0) & (x < 1), torch.ones_like(x), torch.zeros_like(x)),
             "This is p_Z, not p_X: multiply by the volume correction |f'(x)| = 2x."),
        ],
    )
    if float(expected.sum()) > 0:
        # The density integrates to 1: a quick Riemann sum on a grid, as a second opinion.
        grid = torch.linspace(-0.5, 1.5, 4001, dtype=torch.float64)
        pg = run_student(density_sqrt_uniform, grid, part=part, what="density_sqrt_uniform(x)")
        mass = float(torch.trapezoid(torch.as_tensor(pg, dtype=torch.float64), grid))
        if not abs(mass - 1.0) < 1e-2:
            raise GradingFailure(f"p_X integrates to {mass:.3f}, not 1.", part)


def grade_density_lognormal(log_density_exp_normal) -> None:
    part = "density_lognormal"
    gen = fresh_generator()
    x_pos = torch.exp(randn(gen, 300, scale=1.5))
    x = torch.cat([x_pos, -torch.rand(20, generator=gen, dtype=torch.float64) * 2, torch.zeros(1, dtype=torch.float64)])
    log_norm = lambda v: -0.5 * v**2 - 0.5 * math.log(2 * math.pi)  # noqa: E731
    safe = torch.where(x > 0, x, torch.ones_like(x))
    expected = torch.where(x > 0, log_norm(torch.log(safe)) - torch.log(safe), torch.full_like(x, -math.inf))
    lp = run_student(log_density_exp_normal, x.clone(), part=part, what="log_density_exp_normal(x)")
    expect_close(
        lp, expected, "log p_X(x)", part=part,
        hints=[
            (torch.where(x > 0, log_norm(torch.log(safe)), torch.full_like(x, -math.inf)),
             "You forgot the volume correction: f(x) = log x has log|f'(x)| = -log x."),
            (torch.where(x > 0, log_norm(torch.log(safe)) + torch.log(safe), torch.full_like(x, -math.inf)),
             "The correction has the wrong sign: log|f'(x)| = log(1/x) = -log x."),
            (torch.where(x > 0, log_norm(torch.exp(safe)) + safe, torch.full_like(x, -math.inf)),
             "You evaluated p_Z at g(x) = exp(x); the formula uses f(x) = g^{-1}(x) = log x."),
        ],
    )


def _leaky(student_cls, slope: float, part: str):
    check_no_reference_subclass(student_cls, POINTWISE, part)
    layer = build(student_cls, slope, part=part, what=f"{getattr(student_cls, '__name__', 'LeakyReLU')}(negative_slope)")
    check_no_reference_subclass(layer, POINTWISE, part)
    return layer


def grade_leaky_forward(LeakyReLU) -> None:
    from flowlab.transforms.pointwise import LeakyReLU as Reference

    part = "leaky_forward"
    gen = fresh_generator()
    for slope in (0.1, 0.5 + float(torch.rand((), generator=gen))):
        layer = _leaky(LeakyReLU, slope, part)
        ref = reference(Reference, slope)
        x = randn(gen, 16, 5, scale=2.0)
        x[0, 0] = 0.0  # the kink: h(0) = 0 from both sides
        with no_delegation(POINTWISE, part):
            z, ld = call_layer(layer, x, "forward", part)
            check_batch_independent(layer, x, "forward", part)
        z_ref, ld_ref = ref(x)
        check_output(z, z_ref, "forward: z = h(x)", part, hints=[
            (torch.where(x >= 0, x, x / slope), "You divided by the slope: forward multiplies "
             "negative inputs by a, the inverse divides."),
        ])
        check_logabsdet(ld, ld_ref, "forward", part, extra_hints=[
            ((x < 0).sum(1).to(x.dtype) * slope, "You summed the slope itself; log|det Df| sums "
             "log a over the negative inputs."),
        ])
        with no_delegation(POINTWISE, part):
            check_logabsdet_vs_jacobian(layer, x[1:6], "forward", part)


def grade_leaky_inverse(LeakyReLU) -> None:
    from flowlab.transforms.pointwise import LeakyReLU as Reference

    part = "leaky_inverse"
    gen = fresh_generator()
    for slope in (0.1, 0.5 + float(torch.rand((), generator=gen))):
        layer = _leaky(LeakyReLU, slope, part)
        ref = reference(Reference, slope)
        z = randn(gen, 16, 5, scale=2.0)
        with no_delegation(POINTWISE, part):
            x, ld = call_layer(layer.inverse, z, "inverse", part)
        x_ref, ld_ref = ref.inverse(z)
        check_output(x, x_ref, "inverse: x = h^{-1}(z)", part, hints=[
            (torch.where(z >= 0, z, z * slope), "You multiplied by the slope again: the inverse "
             "of x -> a x is z -> z / a."),
        ])
        check_logabsdet(ld, ld_ref, "inverse", part)
        with no_delegation(POINTWISE, part):  # only the inverse is called: forward is another part
            check_batch_independent(layer.inverse, z, "inverse", part)


def _triangular(student_cls, features: int, weight, bias, part: str):
    check_no_reference_subclass(student_cls, LINEAR, part)
    layer = build(student_cls, features, part=part, what="TriangularLinear(features)")
    check_no_reference_subclass(layer, LINEAR, part)
    set_param(layer, "weight", weight, part, "the (features, features) matrix whose lower triangle is L")
    set_param(layer, "bias", bias, part, "the shift b of shape (features,)")
    return layer


def _random_lower(gen, n: int, negative_diagonal: bool):
    w = randn(gen, n, n, scale=0.5)
    diag = torch.exp(randn(gen, n, scale=0.5))
    if negative_diagonal:
        diag = diag * torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
        diag[0] = -diag[0].abs()
    w = w.clone()
    w[range(n), range(n)] = diag
    return w


def grade_triangular_forward(TriangularLinear) -> None:
    from flowlab.transforms.linear import TriangularLinear as Reference

    part = "triangular_forward"
    gen = fresh_generator()
    n = 5
    for negative in (False, True):
        w = _random_lower(gen, n, negative)
        b = randn(gen, n)
        layer = _triangular(TriangularLinear, n, w, b, part)
        x = randn(gen, 12, n)
        L = torch.tril(w)
        with no_delegation(LINEAR, part):
            z, ld = call_layer(layer, x, "forward", part)
        expected_ld = torch.log(torch.diagonal(L).abs()).sum().expand(x.shape[0])
        if not negative:  # flowlab's reference has a positive diagonal: compare with it
            ref = reference(Reference, n)
            with torch.no_grad():
                ref.off_diagonal.copy_(w)
                ref.log_diagonal.copy_(torch.log(torch.diagonal(w)))
                ref.bias.copy_(b)
            z_ref, ld_ref = ref(x)
        else:
            z_ref, ld_ref = x @ L.T + b, expected_ld
        check_output(z, z_ref, "forward: z = L x + b", part, hints=[
            (x @ w.T + b, "You used the whole weight matrix: only its lower triangle (with the "
             "diagonal) is L; use torch.tril(self.weight)."),
            (x @ L + b, "You computed x^T L instead of L x: for a batch of rows, z = x @ L.T + b."),
            (x @ torch.triu(w) .T + b, "You used the upper triangle: L is lower triangular."),
        ])
        check_logabsdet(ld, expected_ld if negative else ld_ref, "forward", part, extra_hints=[
            (torch.log(torch.diagonal(L)).sum().expand(x.shape[0]) if not negative else torch.full_like(ld_ref, math.nan),
             "Take the log of |L_ii|: the diagonal may be negative."),
            (torch.diagonal(L).prod().abs().expand(x.shape[0]),
             "This is |det L| itself; the layer returns log|det L| = sum_i log|L_ii|."),
        ])
        with no_delegation(LINEAR, part):
            check_logabsdet_vs_jacobian(layer, x[:4], "forward", part)
            check_batch_independent(layer, x, "forward", part)


def grade_triangular_inverse(TriangularLinear) -> None:
    part = "triangular_inverse"
    gen = fresh_generator()
    n = 6
    for negative in (False, True):
        w = _random_lower(gen, n, negative)
        b = randn(gen, n)
        layer = _triangular(TriangularLinear, n, w, b, part)
        L = torch.tril(w)
        x_true = randn(gen, 12, n)
        z = x_true @ L.T + b
        with no_delegation(LINEAR, part):
            x, ld = call_layer(layer.inverse, z, "inverse", part)
        check_output(x, x_true, "inverse: x = L^{-1}(z - b)", part, atol=1e-6, rtol=1e-6, hints=[
            (torch.linalg.solve(L, z.T).T - b, "Subtract the shift b BEFORE solving: "
             "x = L^{-1}(z - b), not L^{-1} z - b."),
            (torch.linalg.solve(L.T, (z - b).T).T, "You solved with L^T instead of L: for rows, "
             "solve_triangular(L.T, ..., upper=True, left=False) or solve L x = z - b per column."),
        ])
        check_logabsdet(ld, -torch.log(torch.diagonal(L).abs()).sum().expand(z.shape[0]), "inverse", part)
        with no_delegation(LINEAR, part):
            check_batch_independent(layer.inverse, z, "inverse", part)
            check_logabsdet_vs_jacobian(layer.inverse, z[:4], "inverse", part)


def grade_permutation(Permutation) -> None:
    from flowlab.transforms.linear import Permutation as Reference

    part = "permutation"
    gen = fresh_generator()
    check_no_reference_subclass(Permutation, LINEAR, part)
    for n in (2, 7):
        perm = torch.randperm(n, generator=gen)
        while n > 2 and bool((perm == torch.argsort(perm)).all()):  # need P != P^{-1}
            perm = torch.randperm(n, generator=gen)
        layer = build(Permutation, perm.clone(), part=part, what="Permutation(perm)")
        check_no_reference_subclass(layer, LINEAR, part)
        ref = reference(Reference, perm)
        x = randn(gen, 9, n)
        with no_delegation(LINEAR, part):
            z, ld = call_layer(layer, x, "forward", part)
        z_ref, _ = ref(x)
        check_output(z, z_ref, "forward: z_i = x_{perm[i]}", part, hints=[
            (x[:, torch.argsort(perm)], "You applied the inverse permutation in forward: "
             "z = x[:, perm]."),
        ])
        expect_close(ld, torch.zeros(9, dtype=torch.float64), "forward: log|det P|", part=part,
                     hints=[])
        with no_delegation(LINEAR, part):
            xb, ldb = call_layer(layer.inverse, z_ref, "inverse", part)
        check_output(xb, x, "inverse: x = P^{-1} z", part, hints=[
            (z_ref[:, perm], "The inverse applied perm again: undo it with the inverse "
             "permutation torch.argsort(perm) (P^{-1} = P^T)."),
        ])
        expect_close(ldb, torch.zeros(9, dtype=torch.float64), "inverse: log|det P^{-1}|", part=part)
