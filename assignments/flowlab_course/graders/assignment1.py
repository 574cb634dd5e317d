r"""Hidden tests of assignment 1: change of variables and simple layers (run in the trusted process).

Parts (each a :func:`~flowlab_course.trusted.parts.part`, key = the test cell's ``grade_id``):

* ``density_uniform`` — :math:`X = \sqrt{Z}`, :math:`Z \sim U(0,1)`: :math:`p_X(x) = 2x` on
  :math:`(0,1)`, 0 elsewhere (the lecture's example), elementwise on inputs of several shapes;
* ``density_lognormal`` — :math:`X = e^{Z}`, :math:`Z \sim \mathcal N(0,1)`:
  :math:`\log p_X(x) = \log\mathcal N(\log x) - \log x` for :math:`x>0`, :math:`-\infty` else;
* ``leaky_forward`` / ``leaky_inverse`` — the elementwise leaky ReLU,
  :math:`\log|\det Df| = \sum_{i: x_i<0} \log a`;
* ``triangular_forward`` / ``triangular_inverse`` — :math:`f(x) = Lx + b`, :math:`L` = the lower
  triangle of ``weight``, :math:`\log|\det Df| = \sum_i \log|L_{ii}|` (negative diagonals);
* ``permutation`` — :math:`z_i = x_{\pi(i)}` and its inverse.

The student's functions run in their kernel on inputs chosen here; every value is compared here
with the formula (plain torch in float64).  Each part checks fixed adversarial cases — points on
both sides of the support and at its edges, slopes below and above 1, diagonals with an odd and
an even number of negative entries (:math:`\det L < 0` and :math:`> 0`), sizes 1 and odd,
permutations that are not their own inverse, sizes beyond small constants (a 48-wide leaky ReLU
with values up to 1e5, n = 16, a 20-cycle), the tails of the densities (|x| up to 1e200) and the
notebook's float32 — besides fresh random ones.  The fixed cases alone catch every catalogue
mistake (``FLOWLAB_GRADER_FIXED_ONLY=1``, see :mod:`.probes`); what each pins down is written
next to it.  Inputs are the caller's own tensors: an in-place write fails.  A forward part also
checks the gradients (with respect to the input and to ``weight``/``bias``): a layer whose values
are right but whose graph is cut cannot be trained.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..trusted.parts import part
from ..trusted.redaction import Graded
from .errors import GradingFailure
from .numerics import expect_close
from .probes import (
    as_float32,
    calls,
    check_batch_independent,
    fixed_generator,
    random_cases,
    tolerance,
    check_named_grads,
    check_tensor,
    fresh_generator,
    randn,
    reference_grads,
    set_layer_call,
)

# What would be delegation for each part (objects, so that one module serves several parts).
POINTWISE = ("flowlab.transforms.pointwise.LeakyReLU", "flowlab.transforms.pointwise.Elementwise")
LINEAR = ("flowlab.transforms.linear.TriangularLinear", "flowlab.transforms.linear.PermutedTriangular", "flowlab.transforms.linear.LULinear", "flowlab.transforms.linear.FullLinear",
          "flowlab.transforms.linear.LinearTransform")
PERMUTATION = ("flowlab.transforms.linear.Permutation", "flowlab.transforms.linear.RandomPermutation", "flowlab.transforms.linear.Reverse", "flowlab.transforms.linear.LinearTransform")

#: What assignment 1 grades: flowlab's code for these is a stub in the grading kernel
#: (flowlab_course.trusted.redaction); every part's `reference` is drawn from these entries.
GRADED = Graded("assignment 1", {
    **{name: "the leaky ReLU layer" for name in POINTWISE},
    **{name: "the triangular linear layer" for name in LINEAR},
    **{name: "the permutation layer" for name in PERMUTATION if name not in LINEAR},
    "flowlab.testing": "the log-determinant",
})

_LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------------- densities
def _call_all(k, fn: str, xs: list[Tensor], name: str) -> list[Tensor]:
    """``fn(x)`` for every x in ONE round trip, each x the caller's own tensor (an in-place write
    fails), each answer a tensor of x's shape AND dtype (float64 answers to the notebook's
    float32 inputs fail), returned as float64."""
    outs = calls(k, fn, [[x] for x in xs], part=name, what=f"{fn}(x)")
    got = []
    for x, out in zip(xs, outs):
        what = f"{fn}(x) for a {str(x.dtype).replace('torch.', '')} x of shape {tuple(x.shape)}"
        if isinstance(out, Tensor) and out.is_floating_point() and out.dtype != x.dtype:
            raise GradingFailure(
                f"{what} has dtype {out.dtype}: keep the input's dtype (the notebook works in "
                "float32): create new tensors with torch.zeros_like(x) / torch.full_like(x, ...) "
                "or dtype=x.dtype, not a hard-coded float64.", name)
        got.append(check_tensor_finite_or_inf(out, x.to(torch.float64), what, name))
    return got


def check_tensor_finite_or_inf(value, x: Tensor, what: str, name: str) -> Tensor:
    """A floating tensor of x's shape (NaN reported, -inf allowed: the caller decides)."""
    if isinstance(value, Tensor) and value.is_floating_point():
        if tuple(value.shape) != tuple(x.shape):
            raise GradingFailure(
                f"{what} has shape {tuple(value.shape)}: it must work ELEMENTWISE and return a "
                f"tensor of the input's shape {tuple(x.shape)} (no sum, no flattening).", name)
        if bool(torch.isnan(value).any()):
            bad = x[torch.isnan(value)]
            region = ("x <= 0" if bool((bad <= 0).all()) else
                      "x >= 1" if bool((bad >= 1).all()) else "some inputs")
            raise GradingFailure(
                f"{what} contains NaN for {region}. Compute the formula only where it is defined "
                "(torch.where on a 'safe' input, e.g. torch.where(x > 0, x, torch.ones_like(x))) "
                "and return the density's value elsewhere explicitly.", name)
        return value.to(torch.float64)
    return check_tensor(value, tuple(x.shape), what, name)


#: Points on both sides of the support (0, 1), at its edges and far away (|x| up to 1e30).
UNIFORM_FIXED = (-1e30, -10.0, -3.0, -1.0, -0.5, -1e-3, 0.0, 1e-30, 1e-4, 0.01, 0.1, 0.25, 0.5,
                 0.75, 0.9, 0.999, 1.001, 1.5, 2.0, 4.0, 100.0, 1e30)


def _uniform_inputs(gen: torch.Generator) -> list[Tensor]:
    """The fixed inputs, each pinning a property (then fresh random ones, unless fixed-only):

    ============================  ====================================================
    the fixed points, 1-D          the support's edges 0 and 1 from both sides, |x| = 1e30
    a (3, 4, 3) tensor             elementwise on any shape (no flattening, no sum)
    a 0-d tensor                   a single number
    a (40, 25) tensor, float64     sizes beyond any small constant (1000 values)
    the fixed points, float32      the notebook's own dtype: the answer keeps it
    ============================  ====================================================
    """
    fixed = torch.tensor(UNIFORM_FIXED, dtype=torch.float64)
    fg = fixed_generator("density_uniform")
    big = torch.rand(40, 25, generator=fg, dtype=torch.float64) * 3 - 1
    out = [fixed, torch.cat([fixed, fixed.flip(0)])[:36].reshape(3, 4, 3), fixed[10:11].reshape(()),
           big, fixed.to(torch.float32)]
    if random_cases():
        rand = torch.cat([
            torch.rand(60, generator=gen, dtype=torch.float64),             # inside (0, 1)
            torch.rand(20, generator=gen, dtype=torch.float64) * 3 + 1.0,   # beyond 1
            -torch.rand(20, generator=gen, dtype=torch.float64) * 3 - 1e-3,  # below 0
        ])
        rand = rand[rand != 1.0]
        out.append(rand.reshape(-1, 1) if rand.numel() % 4 else rand.reshape(4, -1))
    return out


@part("density_uniform", defines=("density_sqrt_uniform",))
def grade_density_uniform(k) -> None:
    name = "density_uniform"
    gen = fresh_generator()
    inputs = _uniform_inputs(gen)
    grid = torch.linspace(-0.5, 1.5, 4001, dtype=torch.float64)
    answers = _call_all(k, "density_sqrt_uniform", inputs + [grid], name)
    for x, p in zip(inputs, answers):
        tol = {"atol": 1e-6, "rtol": 1e-6} if x.dtype == torch.float64 else tolerance(x)
        x = x.to(torch.float64)
        inside = (x > 0) & (x < 1)
        zero = torch.zeros_like(x)
        expected = torch.where(inside, 2 * x, zero)
        safe = torch.where(inside, x, torch.ones_like(x))
        hints = [
            (2 * x, "Outside (0, 1) the density must be 0: p_Z(f(x)) = 0 there, because f(x) = "
                    "x^2 leaves the support of U(0, 1) (and X = sqrt(Z) is never negative)."),
            (torch.where(x < 1, 2 * x, zero), "For x <= 0 the density must be 0 too (X = sqrt(Z) "
             "is never negative; a density is never negative): the support is 0 < x < 1."),
            (torch.where(x > 0, 2 * x, zero), "For x >= 1 the density must be 0: f(x) = x^2 is "
             "then outside the support of U(0, 1)."),
            (torch.where(inside, 0.5 / safe.sqrt(), zero),
             "You used |dg/dz| = 1/(2 sqrt z) at z = x. The formula needs |det Df(x)| with "
             "f = g^{-1}: f(x) = x^2, so |f'(x)| = 2x."),
            (torch.where(inside, torch.ones_like(x), zero),
             "This is p_Z, not p_X: multiply by the volume correction |f'(x)| = 2x."),
            (torch.where(inside, x ** 2, zero), "This is f(x) = x^2; the density is "
             "p_Z(f(x)) * |f'(x)| = 1 * 2x."),
        ]
        expect_close(p, expected, f"p_X(x) for x of shape {tuple(x.shape)}", part=name,
                     hints=hints, **tol)
    # The density integrates to 1: a Riemann sum on a grid, as a second opinion.
    pg = answers[-1]
    mass = float(torch.trapezoid(pg, grid))
    if not abs(mass - 1.0) < 1e-2:
        raise GradingFailure(f"p_X integrates to {mass:.3f}, not 1.", name)


#: Positive points around 1, tiny and huge ones; zero, negative zero and negatives.
LOGNORMAL_FIXED = (1.0, math.e, 1 / math.e, 0.5, 2.0, 1e-3, 1e-6, 7.5, 50.0, 1e3, 0.0, -0.0,
                   -1e-9, -0.5, -1.0, -5.0)
#: The tails, where log p_X is far below the log of the smallest positive float: the density
#: itself underflows to 0 there, so only a log-density computed directly (not log(p)) is right.
LOGNORMAL_TAILS = (1e-200, 1e-30, 1e-9, 1e9, 1e30, 1e200, 3.0, -1e200)
#: The notebook's dtype: float32 underflows far earlier (p < 1e-45 from |log x| > 14).
LOGNORMAL_FLOAT32 = (1.0, 0.25, 4.0, 1e-9, 1e-20, 1e9, 1e20, 0.0, -2.0)


def _log_normal(v: Tensor) -> Tensor:
    return -0.5 * v ** 2 - 0.5 * _LOG_2PI


@part("density_lognormal", defines=("log_density_exp_normal",))
def grade_density_lognormal(k) -> None:
    name = "density_lognormal"
    gen = fresh_generator()
    fixed = torch.tensor(LOGNORMAL_FIXED, dtype=torch.float64)
    # fixed: the points above (1-D and as a (4, 2, 2) tensor: elementwise), the tails, float32
    inputs = [fixed, fixed.reshape(4, 2, 2), torch.tensor(LOGNORMAL_TAILS, dtype=torch.float64),
              torch.tensor(LOGNORMAL_FLOAT32, dtype=torch.float32)]
    if random_cases():
        rand = torch.cat([torch.exp(randn(gen, 60, scale=1.5)),
                          -torch.rand(10, generator=gen, dtype=torch.float64) * 2])
        inputs.append(rand.reshape(7, 10))
    answers = _call_all(k, "log_density_exp_normal", inputs, name)
    for x, lp in zip(inputs, answers):
        tol = {"atol": 1e-6, "rtol": 1e-6} if x.dtype == torch.float64 else tolerance(x)
        x = x.to(torch.float64)
        pos = x > 0
        safe = torch.where(pos, x, torch.ones_like(x))
        minf = torch.full_like(x, -math.inf)
        log_x = torch.log(safe)
        expected = torch.where(pos, _log_normal(log_x) - log_x, minf)
        if bool(torch.isposinf(lp).any()):
            raise GradingFailure("log p_X(x) is +inf for some inputs: a log-density is +inf "
                                 "nowhere here. Return -inf (density 0) for x <= 0.", name)
        # (expect_close's relative tolerance is infinite where the expected value is -inf)
        wrong = torch.isneginf(expected) & ~torch.isneginf(lp)
        if bool(wrong.any()):
            zero = bool((lp[wrong] == 0).all())
            raise GradingFailure(
                "log p_X(x) must be -inf where x <= 0 (X = exp(Z) is positive, the density is 0 "
                "there and its log is -inf)" + (", not 0: torch.full_like(x, -math.inf)." if zero
                                                 else ": torch.full_like(x, -math.inf)."), name)
        if bool((torch.isneginf(lp) & ~torch.isneginf(expected)).any()):
            raise GradingFailure("log p_X(x) is -inf for some x > 0; the density of X = exp(Z) is "
                                 "positive for every x > 0 (compute the log-density directly, not "
                                 "the log of a density that underflows).", name)
        hints = [
            (torch.where(pos, _log_normal(log_x), minf),
             "You forgot the volume correction: f(x) = log x has log|f'(x)| = -log x."),
            (torch.where(pos, _log_normal(log_x) + log_x, minf),
             "The correction has the wrong sign: log|f'(x)| = log(1/x) = -log x."),
            (torch.where(pos, _log_normal(safe) + safe, minf),
             "You evaluated p_Z at g(x) = exp(x); the formula uses f(x) = g^{-1}(x) = log x."),
            (torch.where(pos, _log_normal(log_x) - log_x, torch.zeros_like(x)),
             "For x <= 0 the density is 0, so its log is -inf (not 0): "
             "torch.full_like(x, -math.inf)."),
            (torch.where(pos, -0.5 * log_x ** 2 - log_x, minf),
             "You dropped the normalising constant -log(2 pi)/2 of log N(z; 0, 1)."),
            (torch.where(pos, torch.exp(_log_normal(log_x)) / safe, minf),
             "This is the density p_X(x), not its log."),
        ]
        expect_close(lp, expected, f"log p_X(x) for x of shape {tuple(x.shape)}", part=name,
                     hints=hints, **tol)


# ---------------------------------------------------------------------------------- leaky ReLU
#: slopes below and above 1 (the default 0.1, 2.0: a hard-coded slope or a divided one shows)
LEAKY_SLOPES = (0.1, 2.0, 0.5)


#: The fixed cases ``(slope, width, dtype)`` and what each pins down:
#: 0.1 / 5 — the default slope; 2.0 / 1 — a slope above 1, one feature; 0.5 / 7 — an odd size;
#: 0.3 / 48, float32 — the notebook's dtype, a width beyond any small constant, values up to 1e6.
LEAKY_CASES = ((0.1, 5, torch.float64), (2.0, 1, torch.float64), (0.5, 7, torch.float64),
               (0.3, 48, torch.float32))


def _leaky_cases(gen: torch.Generator, name: str):
    """``(slope, x)``: every row has a negative and a positive entry (then a random slope)."""
    fg = fixed_generator(name)
    cases = [(slope, width, dtype, fg) for slope, width, dtype in LEAKY_CASES]
    if random_cases():
        cases.append((float(0.05 + 2.5 * torch.rand((), generator=gen, dtype=torch.float64)), 4,
                      torch.float64, gen))
    for slope, width, dtype, g in cases:
        x = randn(g, 8, width, scale=2.0)
        if width > 40:
            x[:, 20:] *= 1e5  # far beyond the usual range: no clamping, no saturation
        if width > 1:
            x[:, 0] = -x[:, 0].abs() - 0.1
            x[:, 1] = x[:, 1].abs() + 0.1
        else:
            x[::2, 0] = -x[::2, 0].abs() - 0.1
            x[1::2, 0] = x[1::2, 0].abs() + 0.1
        yield slope, x.to(dtype)


def _side(slope: float) -> str:
    return "<" if slope < 1 else ">" if slope > 1 else "="


def _leaky_ref(x: Tensor, a: float) -> tuple[Tensor, Tensor]:
    z = torch.where(x >= 0, x, a * x)
    ld = ((x < 0).to(x.dtype) * math.log(a)).reshape(x.shape[0], -1).sum(dim=1)
    return z, ld


@part("leaky_forward", defines=("LeakyReLU",), reference=POINTWISE)
def grade_leaky_forward(k) -> None:
    name = "leaky_forward"
    gen = fresh_generator()
    for slope, x in _leaky_cases(gen, name):
        x = x.clone()
        x[0, -1] = 0.0  # the kink: h(0) = 0 from both sides (sample 0 is not compared for log-dets)
        ans = set_layer_call(k, "LeakyReLU", "forward", x, args=[slope], grads=(), part=name,
                             reference=POINTWISE, what="LeakyReLU(negative_slope)")
        check_batch_independent(ans)
        tol = tolerance(x)  # relative: the float32 case's values reach 1e5
        x = x.to(torch.float64)
        z_ref, ld_ref = _leaky_ref(x, slope)
        neg = (x < 0).to(x.dtype)
        expect_close(ans.y, z_ref, f"forward with a slope a {_side(slope)} 1: z = h(x)",
                     part=name, **tol, hints=[
            (torch.where(x >= 0, x, x / slope), "You divided by the slope: forward multiplies "
             "negative inputs by a, the inverse divides."),
            (torch.where(x >= 0, slope * x, x), "You scaled the positive inputs: h(x) = x for "
             "x >= 0 and a x for x < 0."),
            (torch.where(x >= 0, x, 0.1 * x), "Use the layer's own slope self.negative_slope, "
             "not a fixed 0.1."),
        ])
        rows = slice(1, None)
        ld_hints = [
            ((neg * slope).sum(1), "You summed the slope itself; log|det Df| sums log a over the "
             "negative inputs."),
            (((1 - neg) * math.log(slope)).sum(1), "You counted the non-negative inputs: h'(x) = "
             "a only where x < 0."),
            (-ld_ref, "It has the wrong sign: forward (the normalizing direction f) returns "
             "+log|det Df(x)| = + (number of negative inputs) * log a."),
            (ld_ref.sum().expand_as(ld_ref), "It looks summed over the whole batch: each sample "
             "has its own log|det|."),
            ((neg * math.log(0.1)).sum(1), "Use the layer's own slope self.negative_slope, not a "
             "fixed 0.1."),
            (torch.zeros_like(ld_ref), "It is zero: the leaky ReLU changes volume where x < 0, "
             "log|h'(x)| = log a there."),
        ]
        expect_close(ans.ld[rows], ld_ref[rows], "forward: log|det Df(x)| = sum over x_i < 0 of "
                     "log a", part=name, hints=[(w[rows], s) for w, s in ld_hints],
                     **tolerance(ans.y, 10.0))
        grads = reference_grads(lambda v: _leaky_ref(v, slope), x, {}, ans.w_out, ans.w_ld)
        ans.grads = {k_: (g[1:] if isinstance(g, Tensor) else g)
                     for k_, g in (ans.grads or {}).items()}
        check_named_grads(ans, {"input": grads["input"][1:]})


@part("leaky_inverse", defines=("LeakyReLU",), reference=POINTWISE)
def grade_leaky_inverse(k) -> None:
    name = "leaky_inverse"
    gen = fresh_generator()
    for slope, z in _leaky_cases(gen, name):
        ans = set_layer_call(k, "LeakyReLU", "inverse", z, args=[slope], part=name,
                             reference=POINTWISE, what="LeakyReLU(negative_slope)")
        check_batch_independent(ans)
        tol = tolerance(z)  # relative: the float32 case's values reach 1e5
        ld_tol = tolerance(z, 10.0)
        z = z.to(torch.float64)
        x_ref = torch.where(z >= 0, z, z / slope)
        neg = (z < 0).to(z.dtype)
        ld_ref = -(neg * math.log(slope)).sum(1)
        expect_close(ans.y, x_ref, f"inverse with a slope a {_side(slope)} 1: x = h^{{-1}}(z)", part=name,
                     **tol, hints=[
                         (torch.where(z >= 0, z, z * slope), "You multiplied by the slope again: "
                          "the inverse of x -> a x is z -> z / a."),
                         (torch.where(z >= 0, z / slope, z), "You divided the positive values: "
                          "h^{-1}(z) = z for z >= 0 and z / a for z < 0."),
                         (torch.where(z >= 0, z, z / 0.1), "Use the layer's own slope "
                          "self.negative_slope, not a fixed 0.1."),
                     ])
        expect_close(ans.ld, ld_ref, "inverse: log|det Dg(z)| = -(number of negative z_i) * "
                     "log a", part=name, **ld_tol, hints=[
                         (-ld_ref, "It has the wrong sign: the inverse returns log|det Dg(z)| = "
                          "-log|det Df(x)|."),
                         (ld_ref.sum().expand_as(ld_ref), "It looks summed over the whole batch: "
                          "each sample has its own log|det|."),
                         (-((1 - neg) * math.log(slope)).sum(1), "You counted the non-negative "
                          "values: the slope applies where z < 0."),
                         (torch.zeros_like(ld_ref), "It is zero: the inverse changes volume by "
                          "1/a where z < 0, log|det Dg| = -log a there."),
                     ])


# ---------------------------------------------------------------------------------- triangular
#: diagonals of L: one negative entry (det L < 0), all negative with even size (det L > 0 but
#: log(diag) is NaN), size 1 negative, all positive, and mixed magnitudes below and above 1.
TRIANGULAR_DIAGONALS = (
    (2.0, -0.5, 1.5),
    (-1.0, -2.0, -0.5, -1.5),
    (-3.0,),
    (0.7, 1.3, 2.2, 0.6, 1.1),
    # n = 16, beyond any small constant (a loop or a slice that stops early), three negatives
    (1.2, -0.8, 1.5, 0.9, 1.1, -1.3, 0.7, 1.4, 1.0, 0.8, 1.6, -0.9, 1.2, 1.1, 0.75, 1.3),
)
#: the notebook's dtype: the size-5 diagonal again with float32 weights and inputs
TRIANGULAR_FLOAT32 = (-0.9, 1.3, 2.2, -0.6, 1.1)


def _triangular_cases(gen: torch.Generator, name: str):
    """``(weight, bias, x)``: the fixed diagonals (float64, then float32), then, unless
    fixed-only, a random size with random signs.  The float32 case's weight and bias are already
    rounded to float32 (the values the layer holds), its x is float32."""
    fg = fixed_generator(name)
    cases = [(torch.tensor(d, dtype=torch.float64), torch.float64, fg)
             for d in TRIANGULAR_DIAGONALS]
    cases.append((torch.tensor(TRIANGULAR_FLOAT32, dtype=torch.float64), torch.float32, fg))
    if random_cases():
        n = int(torch.randint(2, 8, (), generator=gen))
        d = torch.exp(randn(gen, n, scale=0.4)) * torch.where(
            torch.rand(n, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
        cases.append((d, torch.float64, gen))
    for diag, dtype, g in cases:
        n = diag.numel()
        w = randn(g, n, n, scale=0.6 if n < 10 else 0.15)
        w = w + torch.triu(torch.full((n, n), 2.0, dtype=torch.float64), 1)  # above: ignored
        w[range(n), range(n)] = diag
        b, x = randn(g, n), randn(g, 9, n)
        if dtype == torch.float32:
            w, b, x = as_float32(w), as_float32(b), x.to(dtype)
        yield w, b, x


def _tri_ref(x: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    L = torch.tril(weight)
    return x @ L.T + bias, torch.log(torch.diagonal(L).abs()).sum().expand(x.shape[0])


_TRI_LAYOUT = {"weight": "the (features, features) matrix whose lower triangle is L",
               "bias": "the shift b of shape (features,)"}
_TRI_NAN = ("The diagonal of L may be negative: log|det L| = sum_i log|L_ii| needs the absolute "
            "value (torch.log(torch.diagonal(L).abs())).")


@part("triangular_forward", defines=("TriangularLinear",), reference=LINEAR)
def grade_triangular_forward(k) -> None:
    name = "triangular_forward"
    gen = fresh_generator()
    for w, b, x in _triangular_cases(gen, name):
        n = w.shape[0]
        ans = set_layer_call(k, "TriangularLinear", "forward", x, args=[n],
                             tensors={"weight": w, "bias": b}, layouts=_TRI_LAYOUT,
                             grads=("weight", "bias"), part=name, reference=LINEAR,
                             what=f"TriangularLinear({n})", nan_hint=_TRI_NAN)
        check_batch_independent(ans)
        tol = tolerance(x, 10.0)
        x = x.to(torch.float64)
        z_ref, ld_ref = _tri_ref(x, w, b)
        L = torch.tril(w)
        hints = [
            (x @ w.T + b, "You used the whole weight matrix: only its lower triangle (with the "
             "diagonal) is L; use torch.tril(self.weight)."),
            (x @ L + b, "You computed x^T L instead of L x: for a batch of rows, z = x @ L.T + b."),
            (x @ torch.triu(w).T + b, "You used the upper triangle: L is lower triangular."),
            (x @ L.T, "You forgot the shift: z = L x + b."),
            (x @ L.T - b, "The shift is added: z = L x + b."),
        ]
        expect_close(ans.y, z_ref, f"forward with n = {n}: z = L x + b", part=name, hints=hints,
                     **tol)
        diag = torch.diagonal(L)
        ld_hints = [
            (torch.linalg.slogdet(w)[1].expand_as(ld_ref), "This is log|det| of the whole weight "
             "matrix; the layer uses only its lower triangle L: log|det L| = sum_i log|L_ii|."),
            (diag.prod().abs().expand_as(ld_ref), "This is |det L| itself; the layer returns "
             "log|det L| = sum_i log|L_ii|."),
            (diag.abs().sum().expand_as(ld_ref), "You summed |L_ii|; take their logs: "
             "sum_i log|L_ii|."),
            (-ld_ref, "It has the wrong sign: forward returns +log|det L|."),
            (ld_ref * x.shape[0], "It looks multiplied by the batch size: each sample has its "
             "own log|det| (the same number for every sample here)."),
            (torch.zeros_like(ld_ref), "It is zero: a linear map changes volume by |det L|."),
        ]
        expect_close(ans.ld, ld_ref, "forward: log|det Df(x)| = sum_i log|L_ii|", part=name,
                     hints=ld_hints, **tol)
        expected = reference_grads(_tri_ref, x, {"weight": w, "bias": b}, ans.w_out, ans.w_ld)
        check_named_grads(ans, expected)


@part("triangular_inverse", defines=("TriangularLinear",), reference=LINEAR)
def grade_triangular_inverse(k) -> None:
    name = "triangular_inverse"
    gen = fresh_generator()
    for w, b, x_true in _triangular_cases(gen, name):
        n = w.shape[0]
        L = torch.tril(w)
        dtype = x_true.dtype
        z = (x_true.to(torch.float64) @ L.T + b).to(dtype)
        tol = tolerance(z, 10.0)
        x_true = torch.linalg.solve_triangular(L, (z.to(torch.float64) - b).T, upper=False).T
        ans = set_layer_call(k, "TriangularLinear", "inverse", z, args=[n],
                             tensors={"weight": w, "bias": b}, layouts=_TRI_LAYOUT, part=name,
                             reference=LINEAR, what=f"TriangularLinear({n})", nan_hint=_TRI_NAN)
        check_batch_independent(ans)
        z = z.to(torch.float64)
        hints = [
            (torch.linalg.solve(L, z.T).T - b, "Subtract the shift b BEFORE solving: "
             "x = L^{-1}(z - b), not L^{-1} z - b."),
            (torch.linalg.solve(L.T, (z - b).T).T, "You solved with L^T instead of L: for rows, "
             "x = solve_triangular(L, (z - b).T, upper=False).T (or solve x L^T = z - b with "
             "left=False)."),
            (torch.linalg.solve(w, (z - b).T).T, "You inverted the whole weight matrix: only its "
             "lower triangle is L (torch.tril(self.weight))."),
            (torch.linalg.solve(L, z.T).T, "You forgot to subtract the shift: x = L^{-1}(z - b)."),
            ((z - b) @ L.T, "You multiplied by L again: the inverse solves L x = z - b."),
        ]
        expect_close(ans.y, x_true, f"inverse with n = {n}: x = L^{{-1}}(z - b)", part=name,
                     hints=hints, **tol)
        ld_ref = -torch.log(torch.diagonal(L).abs()).sum().expand(z.shape[0])
        expect_close(ans.ld, ld_ref, "inverse: log|det Dg(z)| = -sum_i log|L_ii|", part=name,
                     **tol, hints=[
                         (-ld_ref, "It has the wrong sign: the inverse returns -log|det L|."),
                         (torch.linalg.slogdet(w)[1].neg().expand_as(ld_ref), "This uses the "
                          "whole weight matrix; L is its lower triangle."),
                         (ld_ref * z.shape[0], "It looks multiplied by the batch size: each sample "
                          "has its own log|det|."),
                         (torch.zeros_like(ld_ref), "It is zero: the inverse changes volume by "
                          "1/|det L|."),
                     ])


# ---------------------------------------------------------------------------------- permutation
#: 3-cycles and a 5-cycle (not their own inverse), size 1, a swap.
#: A 20-cycle (beyond any small constant), used in float64 and float32 (the notebook's dtype).
PERMUTATIONS = ((1, 2, 0), (2, 0, 1), (0,), (1, 0), (3, 0, 4, 1, 2),
                tuple((7 * i + 3) % 20 for i in range(20)))


def _permutations(gen: torch.Generator):
    perms = [torch.tensor(p) for p in PERMUTATIONS] + [torch.tensor(PERMUTATIONS[-1])]
    if not random_cases():
        return perms
    n = int(torch.randint(4, 9, (), generator=gen))
    while True:
        p = torch.randperm(n, generator=gen)
        if not torch.equal(p[p], torch.arange(n)):  # need P != P^{-1}
            perms.append(p)
            return perms


@part("permutation", defines=("Permutation",), reference=PERMUTATION)
def grade_permutation(k) -> None:
    name = "permutation"
    gen = fresh_generator()
    fg = fixed_generator(name)
    perms = _permutations(gen)
    for i, perm in enumerate(perms):
        n = perm.numel()
        x = randn(fg if i <= len(PERMUTATIONS) else gen, 7, n)
        if i == len(PERMUTATIONS):
            x = x.to(torch.float32)
        what = "Permutation(perm)"
        involution = torch.equal(perm[perm], torch.arange(n))
        kind = f"of size {n}" + ("" if involution else " (not its own inverse)")
        ans = set_layer_call(k, "Permutation", "forward", x, args=[perm.clone()], grads=(),
                             part=name, reference=PERMUTATION, what=what)
        check_batch_independent(ans)
        z_ref = x[:, perm]
        inv = torch.argsort(perm)
        expect_close(ans.y, z_ref, f"forward with a permutation {kind}: z_i = x_{{perm[i]}}",
                     part=name, hints=[(x[:, inv], "You applied the inverse permutation in "
                                        "forward: z = x[:, perm].")])
        zero = torch.zeros(x.shape[0], dtype=x.dtype)
        expect_close(ans.ld, zero, "forward: log|det P| (= 0: a permutation keeps volume)",
                     part=name)
        expected = reference_grads(lambda v: (v[:, perm], v.new_zeros(v.shape[0])), x, {},
                                   ans.w_out, ans.w_ld)
        check_named_grads(ans, {"input": expected["input"]})
        back = set_layer_call(k, "Permutation", "inverse", z_ref, args=[perm.clone()], part=name,
                              reference=PERMUTATION, what=what)
        check_batch_independent(back)
        expect_close(back.y, x, f"inverse with a permutation {kind}: x = P^{{-1}} z", part=name,
                     hints=[(z_ref[:, perm], "The inverse applied perm again: undo it with the "
                             "inverse permutation torch.argsort(perm) (P^{-1} = P^T).")])
        expect_close(back.ld, zero, "inverse: log|det P^{-1}| (= 0)", part=name)
