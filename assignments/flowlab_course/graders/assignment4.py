r"""Hidden tests of assignment 4: Glow (run in the trusted process).

Parts (each a :func:`~flowlab_course.trusted.parts.part`, key = the test cell's ``grade_id``):

* ``actnorm_init`` — data-dependent initialisation: after the first ``forward`` every channel of
  the output has mean 0 and standard deviation 1 over batch **and** pixels; later calls keep the
  parameters (batches with per-sample offsets, so that statistics over the wrong axes show);
* ``actnorm_forward`` / ``actnorm_inverse`` — :math:`z = (x - \mu) e^{-\log\sigma}`,
  :math:`\log|\det Df| = -HW\sum_c \log\sigma_c`, with the grader's ``loc``/``log_scale`` and
  ``initialized = True`` (so that a mistake in the initialisation costs only ``actnorm_init``);
* ``conv_weight`` — :math:`W = P L (U + \operatorname{diag}(\mathrm{sign}\odot e^{\log|u|}))` from
  the grader's factors: permutations that are not their own inverse, negative signs, factors whose
  unused triangles and diagonals are far from 0 and 1;
* ``conv_forward`` / ``conv_inverse`` — :math:`z = Wx` per pixel, :math:`\log|\det Df| =
  HW\sum_c\log|u_c|`, with the grader's own ``weight()`` put in the layer (a wrong ``weight``
  costs only ``conv_weight``); :math:`\det W < 0` and :math:`> 0`, :math:`C = 1`, odd and
  non-square images;
* ``temperature`` — sampling :math:`x = g(z)`, :math:`z \sim \mathcal N(0, T^2 I)`, from a
  grader-made flowlab ``Flow`` whose layer records every call (vector and image-shaped events);
  flowlab's own temperature sampling is a stub while graded (``Flow.sample``/``rsample``/
  ``sample_with_log_prob`` and :func:`flowlab.distributions.temper`, through which every
  ``base.sample(n, temperature)`` of flowlab scales its noise; at ``T = 1`` sampling still works).

Every part checks fixed adversarial cases besides fresh random ones (C = 40 and C = 20 channels
beyond small constants, float32 layers and images; what each pins down is written next to it);
the fixed cases alone catch every catalogue mistake (``FLOWLAB_GRADER_FIXED_ONLY=1``, see
:mod:`.probes`).  The forward parts also check the gradients with respect to the input and the
parameters (a layer whose values are right but whose graph is cut cannot be trained).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..trusted.parts import part
from ..trusted.redaction import Graded
from .errors import GradingFailure
from .numerics import expect_close, is_close
from .probes import (
    as_float32,
    fixed_generator,
    random_cases,
    tolerance,
    check_batch_independent,
    check_named_grads,
    check_tensor,
    fresh_generator,
    randn,
    reference_grads,
    run,
    set_layer_call,
)

GLOW = ("flowlab.transforms.glow", "flowlab.models.glow")
ACTNORM = ("flowlab.transforms.glow.ActNorm", "flowlab.models.glow")
#: What assignment 4 grades: flowlab's code for these is a stub in the grading kernel
#: (flowlab_course.trusted.redaction); every part's `reference` is drawn from these entries.
GRADED = Graded("assignment 4", {
    "flowlab.transforms.glow": "ActNorm and the invertible 1x1 convolution",
    "flowlab.models.glow": "the Glow step",
    "flowlab.transforms.linear.LULinear": "the LU-parameterised 1x1 convolution",
    "flowlab.flow.Flow.sample": "sampling with a temperature",
    "flowlab.flow.Flow.sample_with_log_prob": "sampling with a temperature",
    "flowlab.flow.Flow.rsample": "sampling with a temperature",
    "flowlab.distributions.temper": "sampling with a temperature",
    "flowlab.transforms.linear.LinearTransform": "ActNorm and the invertible 1x1 convolution",
    "flowlab.testing": "the log-determinant",
})
CONV = ("flowlab.transforms.glow.InvertibleConv1x1", "flowlab.transforms.glow.LUInvertibleConv1x1", "flowlab.transforms.linear.LULinear", "flowlab.models.glow")


def _per_channel(v: Tensor) -> Tensor:
    return v.reshape(1, -1, 1, 1)


# ---------------------------------------------------------------------------------- ActNorm
def _init_batch(gen, batch: int, c: int, h: int, w: int, mean: Tensor, std: Tensor,
                offsets: float) -> Tensor:
    """Per-channel statistics plus a per-sample, per-channel offset (spread ``offsets``)."""
    noise = randn(gen, batch, c, h, w)
    shift = offsets * randn(gen, batch, c, 1, 1)
    return _per_channel(mean) + _per_channel(std) * (noise + shift)


#: (batch, C, H, W, channel means, channel stds, per-sample offset spread): channels with very
#: different statistics and per-sample offsets (statistics over the wrong axes differ), C = 1,
#: odd and non-square images.
INIT_CASES = (
    (16, 3, 4, 5, (-3.0, 0.5, 6.0), (0.3, 1.0, 4.0), 1.5),
    (24, 1, 3, 7, (2.0,), (0.5,), 0.0),
    (64, 2, 2, 2, (0.0, 10.0), (2.0, 0.1), 2.0),
)


def _y_only(out, x: Tensor, what: str, name: str) -> Tensor:
    """The output of a layer call (the log-det is another part's business here)."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise GradingFailure(f"{what} must return a pair (output, logabsdet).", name)
    y = check_tensor(out[0], tuple(x.shape), f"{what}: the output", name)
    return y.to(torch.float64)


def _vector(value, c: int, attr: str, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise GradingFailure(f"ActNorm has no tensor attribute `{attr}`: the instructions ask "
                             f"for an nn.Parameter self.{attr} of shape (C,).", name)
    if value.numel() != c:
        raise GradingFailure(f"after the first forward call self.{attr} has shape "
                             f"{tuple(value.shape)}; it should hold one value per channel, shape "
                             f"({c},). Reduce over the batch, height and width axes: "
                             "x.mean(dim=(0, 2, 3)).", name)
    return value.reshape(c).to(torch.float64)


@part("actnorm_init", defines=("ActNorm",), reference=ACTNORM)
def grade_actnorm_init(k) -> None:
    """The parameters after the first call are the first batch's statistics; later calls keep them.

    Graded on the parameters the layer holds (``loc`` = mean, ``log_scale`` = log std, the
    notebook's convention) and on the first output being the layer's own output with those
    parameters, never on the forward formula itself (that is ``actnorm_forward``'s part).
    """
    name = "actnorm_init"
    fg, gen = fixed_generator(name), fresh_generator()
    # INIT_CASES, then C = 40 channels (beyond any small constant), then (unless fixed-only) a
    # random case
    cases = [(*case, fg) for case in INIT_CASES]
    cases.append((12, 40, 3, 3, tuple(randn(fg, 40, scale=3.0).tolist()),
                  tuple(torch.exp(randn(fg, 40)).tolist()), 1.0, fg))
    if random_cases():
        c = int(torch.randint(1, 5, (), generator=gen))
        cases.append((32, c, 3, 3, tuple(randn(gen, c, scale=3.0).tolist()),
                      tuple(torch.exp(randn(gen, c)).tolist()), 1.0, gen))
    for batch, c, h, w, mean, std, offsets, g in cases:
        x1 = _init_batch(g, batch, c, h, w, torch.tensor(mean, dtype=torch.float64),
                         torch.tensor(std, dtype=torch.float64), offsets)
        x2 = 5.0 + 0.1 * randn(g, 8, c, h, w)
        raw = run(k, "actnorm_init", part=name, what=f"ActNorm({c}) on a first and a second "
                  "batch", c=c, x1=x1, x2=x2)
        if not isinstance(raw, dict):
            raise GradingFailure("the grader could not read your layer's answer.", name)
        # (an in-place write into x is graded once, by actnorm_forward's probe: the first call
        # runs the forward formula too, and a mistake costs only its own part)
        first, second = raw.get("first") or {}, raw.get("second") or {}
        loc = _vector(first.get("loc"), c, "loc", name)
        log_scale = _vector(first.get("log_scale"), c, "log_scale", name)
        if not (torch.isfinite(loc).all() and torch.isfinite(log_scale).all()):
            raise GradingFailure("after the first forward call loc or log_scale contains NaN or "
                                 "inf (the log of a negative number or of 0?).", name)
        n = batch * h * w
        mu = x1.mean(dim=(0, 2, 3))
        log_sigma = torch.log(x1.std(dim=(0, 2, 3)))
        tol = 1.0 / n + 1e-4  # unbiased or biased std, an eps: all fine
        ok_loc = is_close(loc, mu, atol=1e-6, rtol=1e-6)
        ok_scale = is_close(log_scale, log_sigma, atol=tol, rtol=0)
        if not (ok_loc and ok_scale):
            hints = [
                (log_scale, -log_sigma, "log_scale must be +log(std): z = (x - mu) * "
                 "exp(-log_scale) then divides by the std."),
                (log_scale, torch.exp(log_sigma), "log_scale is the LOG of the std: "
                 "torch.log(x.std(dim=(0, 2, 3)))."),
                (log_scale, 2 * log_sigma, "log_scale is log(std), half the log of the variance."),
                (loc, x1.mean().expand(c), "You used one mean for the whole batch; ActNorm has one "
                 "mu_c PER CHANNEL: x.mean(dim=(0, 2, 3))."),
                (log_scale, torch.log(x1.std()).expand(c), "You used one std for the whole batch; "
                 "ActNorm has one sigma_c PER CHANNEL: x.std(dim=(0, 2, 3))."),
                (log_scale, torch.log(x1.std(dim=(2, 3))).mean(0), "Your sigma is the spread over "
                 "the pixels of each image only; compute it over the batch AND the pixels: "
                 "x.std(dim=(0, 2, 3))."),
                (log_scale, torch.log(x1.std(dim=(2, 3)).mean(0)), "Your sigma is the spread over "
                 "the pixels of each image only; compute it over the batch AND the pixels: "
                 "x.std(dim=(0, 2, 3))."),
                (loc, torch.zeros(c, dtype=torch.float64), "loc was not set: the first call sets "
                 "mu_c to the channel means of the batch."),
                (log_scale, torch.zeros(c, dtype=torch.float64), "log_scale was not set: the first "
                 "call sets it to log(std) of each channel."),
            ]
            what = "loc (mu)" if not ok_loc else "log_scale (log sigma)"
            error = float((loc - mu).abs().max() if not ok_loc
                          else (log_scale - log_sigma).abs().max())
            message = (f"after the first forward call {what} should be the "
                       f"{'mean' if not ok_loc else 'log of the standard deviation'} of each "
                       "channel of that batch, over batch, height and width (largest error "
                       f"{error:.3g}).")
            for got, wrong, sentence in hints:
                if is_close(got, wrong, atol=max(tol, 1e-6), rtol=1e-6):
                    message += " " + sentence
                    break
            else:
                message += (" Compute mu and sigma with x.mean(dim=(0, 2, 3)) and "
                            "x.std(dim=(0, 2, 3)): one value per channel.")
            raise GradingFailure(message, name)
        if not first.get("flag"):
            raise GradingFailure("after the first forward call self.initialized should be True "
                                 "(the grader sets it when it sets the parameters itself).", name)
        # Initialisation happens once: a second batch with other statistics keeps the parameters.
        loc2, ls2 = second.get("loc"), second.get("log_scale")
        if not (isinstance(loc2, Tensor) and isinstance(ls2, Tensor)
                and is_close(loc2.reshape(-1), loc, atol=1e-9, rtol=0)
                and is_close(ls2.reshape(-1), log_scale, atol=1e-9, rtol=0)):
            raise GradingFailure("the second forward call changed the parameters: data-dependent "
                                 "initialisation happens only on the FIRST batch (check "
                                 "self.initialized and set it to True).", name)
        # The first call returns its batch transformed with the NEW parameters.
        z1 = _y_only(raw.get("out1"), x1, "ActNorm.forward (first call)", name)
        z3 = _y_only(raw.get("out3"), x1, "ActNorm.forward", name)
        if not is_close(z1, z3, atol=1e-6, rtol=1e-6):
            raise GradingFailure("the first forward call returned its batch transformed with the "
                                 "parameters from BEFORE the initialisation: set loc and "
                                 "log_scale first, then compute z with them.", name)


def _actnorm_ref(x: Tensor, loc: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor]:
    z = (x - _per_channel(loc)) * torch.exp(-_per_channel(log_scale))
    pixels = x.shape[2] * x.shape[3]
    return z, (-pixels * log_scale.sum()).expand(x.shape[0])


#: (C, H, W, loc, log_scale): sums of log_scale far from 0, odd and non-square images, C = 1.
ACTNORM_CASES = (
    (4, 3, 5, (1.0, -2.0, 0.5, 0.0), (0.3, -0.1, 0.5, 0.2)),
    (1, 2, 7, (-1.5,), (-0.7,)),
    (3, 4, 4, (0.2, 0.0, -0.3), (0.0, 0.4, 0.3)),
    (2, 1, 3, (3.0, -3.0), (-0.5, -0.2)),
)

_ACTNORM_LAYOUT = {"loc": "the per-channel shift mu of shape (C,)",
                   "log_scale": "the per-channel log sigma of shape (C,)"}


def _actnorm_cases(gen: torch.Generator, name: str):
    """``(C, H, W, loc, log_scale, dtype, generator of x)``.  Besides ACTNORM_CASES (float64):
    C = 40 on a 9 x 17 image — sizes beyond any small constant; C = 3 in float32 — the
    notebook's dtype (its loc/log_scale rounded to float32, the values the layer holds); then,
    unless fixed-only, a random case."""
    fg = fixed_generator(name)
    cases = [(c, h, w, torch.tensor(loc, dtype=torch.float64),
              torch.tensor(ls, dtype=torch.float64), torch.float64, fg)
             for c, h, w, loc, ls in ACTNORM_CASES]
    cases.append((40, 9, 17, randn(fg, 40), randn(fg, 40, scale=0.3), torch.float64, fg))
    cases.append((3, 4, 5, as_float32(torch.tensor((0.7, -1.2, 2.5), dtype=torch.float64)),
                  as_float32(torch.tensor((0.4, -0.3, 0.6), dtype=torch.float64)), torch.float32,
                  fg))
    if random_cases():
        c = int(torch.randint(1, 6, (), generator=gen))
        h, w = (int(v) for v in torch.randint(1, 6, (2,), generator=gen))
        cases.append((c, h, w, randn(gen, c), randn(gen, c, scale=0.5), torch.float64, gen))
    return cases


@part("actnorm_forward", defines=("ActNorm",), reference=ACTNORM)
def grade_actnorm_forward(k) -> None:
    name = "actnorm_forward"
    gen = fresh_generator()
    for c, h, w, loc, log_scale, dtype, g in _actnorm_cases(gen, name):
        x = randn(g, 6, c, h, w).to(dtype)
        ans = set_layer_call(k, "ActNorm", "forward", x, args=[c],
                             tensors={"loc": loc, "log_scale": log_scale}, layouts=_ACTNORM_LAYOUT,
                             flags={"initialized": True}, grads=("loc", "log_scale"), part=name,
                             reference=ACTNORM, what=f"ActNorm({c})")
        tol, x = tolerance(x, 10.0), x.to(torch.float64)
        z_ref, ld_ref = _actnorm_ref(x, loc, log_scale)
        if not is_close(ans.y, z_ref) and is_close(ans.y.mean(dim=(0, 2, 3)), torch.zeros(c),
                                                   atol=1e-6, rtol=0) and x.shape[0] * h * w > 1:
            raise GradingFailure(
                "forward re-initialised the layer from the batch although self.initialized was "
                "True (the grader set loc and log_scale itself): initialise only while "
                "self.initialized is False.", name)
        check_batch_independent(ans)
        L, S = _per_channel(loc), _per_channel(log_scale)
        expect_close(ans.y, z_ref, f"forward on a ({c}, {h}, {w}) image: z = (x - mu) * "
                     "exp(-log sigma)", part=name, **tol, hints=[
                         ((x - L) * torch.exp(S), "The forward direction divides by sigma: "
                          "z = (x - mu) * exp(-log sigma)."),
                         (x * torch.exp(-S) - L, "Subtract mu first, then scale: z = (x - mu) * "
                          "exp(-log sigma)."),
                         ((x + L) * torch.exp(-S), "Subtract the shift mu, do not add it."),
                         ((x - L) / S, "log_scale is log sigma: divide by exp(log_scale), not by "
                          "log_scale."),
                     ])
        pixels = h * w
        expect_close(ans.ld, ld_ref, f"forward on a ({c}, {h}, {w}) image: log|det Df| = "
                     "-H W sum_c log sigma_c", part=name, **tolerance(ans.y, 10.0 * h * w),
                     hints=[
                         ((-log_scale.sum()).expand(6), "Each of the H*W pixels is scaled: "
                          "log|det Df| = -H * W * sum_c log sigma_c."),
                         (-ld_ref, "It has the wrong sign: forward divides by sigma, so "
                          "log|det Df| = -H W sum_c log sigma_c."),
                         ((-h * log_scale.sum()).expand(6), "Count every pixel: the factor is "
                          "H * W (x.shape[2] * x.shape[3])."),
                         ((-w * log_scale.sum()).expand(6), "Count every pixel: the factor is "
                          "H * W (x.shape[2] * x.shape[3])."),
                         ((-pixels * c * log_scale.sum()).expand(6), "The sum over channels "
                          "already counts every channel: the factor is H * W, not C * H * W."),
                         (ld_ref * 6, "It looks multiplied by the batch size: each sample has its "
                          "own log|det|."),
                     ])
        expected = reference_grads(_actnorm_ref, x, {"loc": loc, "log_scale": log_scale},
                                   ans.w_out, ans.w_ld)
        check_named_grads(ans, expected)


@part("actnorm_inverse", defines=("ActNorm",), reference=ACTNORM)
def grade_actnorm_inverse(k) -> None:
    name = "actnorm_inverse"
    gen = fresh_generator()
    for c, h, w, loc, log_scale, dtype, g in _actnorm_cases(gen, name):
        x = randn(g, 6, c, h, w)
        z, ld_f = _actnorm_ref(x, loc, log_scale)
        z = z.to(dtype)
        ans = set_layer_call(k, "ActNorm", "inverse", z, args=[c],
                             tensors={"loc": loc, "log_scale": log_scale}, layouts=_ACTNORM_LAYOUT,
                             flags={"initialized": True}, part=name, reference=ACTNORM,
                             what=f"ActNorm({c})")
        check_batch_independent(ans)
        L, S = _per_channel(loc), _per_channel(log_scale)
        tol, z = tolerance(z, 10.0), z.to(torch.float64)
        x = z * torch.exp(S) + L  # the exact inverse of the (rounded) z sent
        expect_close(ans.y, x, f"inverse on a ({c}, {h}, {w}) image: x = z * exp(log sigma) + mu",
                     part=name, **tol, hints=[
                         ((z + L) * torch.exp(S), "Undo the steps in reverse order: first "
                          "multiply by sigma, then add mu: x = z * exp(log sigma) + mu."),
                         (z * torch.exp(-S) + L, "The inverse multiplies by sigma = "
                          "exp(+log sigma)."),
                         (z * torch.exp(S) - L, "The inverse ADDS mu back."),
                     ])
        expect_close(ans.ld, -ld_f, f"inverse on a ({c}, {h}, {w}) image: log|det Dg| = "
                     "+H W sum_c log sigma_c", part=name, **tolerance(ans.y, 10.0 * h * w),
                     hints=[
                         (ld_f, "It has the wrong sign: the inverse returns log|det Dg(z)| = "
                          "-log|det Df(x)| = +H W sum_c log sigma_c."),
                         (log_scale.sum().expand(6), "Each of the H*W pixels is scaled: "
                          "log|det Dg| = +H * W * sum_c log sigma_c."),
                     ])


# ---------------------------------------------------------------------------------- 1x1 conv
def _lu_weight(permutation: Tensor, lower: Tensor, upper: Tensor, log_abs_diag: Tensor,
               sign: Tensor) -> Tensor:
    c = log_abs_diag.shape[0]
    L = torch.tril(lower, -1) + torch.eye(c, dtype=lower.dtype)
    U = torch.triu(upper, 1) + torch.diag(sign * torch.exp(log_abs_diag))
    return permutation @ L @ U


#: (perm, sign, log|u|, H, W): a 3-cycle with one negative sign (det W < 0), a 4-cycle (odd:
#: det W < 0 with positive signs), a swap with a negative sign (det W > 0), C = 1 negative, and a
#: 5-cycle with two negative signs; every sum of log|u| is far from 0.
CONV_CASES = (
    ((1, 2, 0), (1.0, -1.0, 1.0), (0.4, -0.2, 0.3), 3, 4),
    ((1, 2, 3, 0), (1.0, 1.0, 1.0, 1.0), (0.1, 0.2, -0.4, 0.5), 5, 2),
    ((1, 0), (-1.0, 1.0), (0.5, 0.3), 1, 3),
    ((0,), (-1.0,), (0.6,), 2, 2),
    ((2, 3, 4, 0, 1), (1.0, -1.0, -1.0, 1.0, 1.0), (-0.3, 0.2, 0.25, -0.1, 0.35), 3, 3),
)


#: C = 20 (a 20-cycle, alternating signs): sizes beyond any small constant; and CONV_CASES[0]
#: again in float32 — the notebook's dtype (its factors rounded to float32)
CONV_BIG = (tuple((3 * i + 1) % 20 for i in range(20)), tuple((-1.0) ** i for i in range(20)),
            tuple(0.05 * ((i % 5) - 2) + (0.3 if i == 0 else 0.0) for i in range(20)), 2, 3)


def _conv_factors(gen: torch.Generator, name: str):
    """``(tensors, H, W, dtype, generator of x)``: ``{name: tensor}`` of the layer's factors for
    the fixed cases (a constant seed), then, unless fixed-only, a random one.

    ``lower`` and ``upper`` are full random matrices: their diagonals (2.5 and -1.7 plus noise)
    and their unused triangles must be ignored by ``weight()``.
    """
    fg = fixed_generator(name)
    specs = [(torch.tensor(p), torch.tensor(s, dtype=torch.float64),
              torch.tensor(la, dtype=torch.float64), h, w, torch.float64, fg)
             for p, s, la, h, w in CONV_CASES + (CONV_BIG,)]
    specs.append((*specs[0][:5], torch.float32, fg))
    if random_cases():
        specs.append(_random_conv_spec(gen))
    for perm, sign, log_abs, h, w, dtype, g in specs:
        c = perm.numel()
        lower = randn(g, c, c, scale=0.5 if c < 10 else 0.1)
        upper = randn(g, c, c, scale=0.5 if c < 10 else 0.1)
        lower[range(c), range(c)] += 2.5
        upper[range(c), range(c)] -= 1.7
        tensors = {"permutation": torch.eye(c, dtype=torch.float64)[perm], "lower": lower,
                   "upper": upper, "log_abs_diag": log_abs, "sign": sign}
        if dtype == torch.float32:
            tensors = {n: as_float32(t) for n, t in tensors.items()}
        yield tensors, h, w, dtype, g


def _random_conv_spec(gen: torch.Generator):
    c = int(torch.randint(3, 7, (), generator=gen))
    while True:
        p = torch.randperm(c, generator=gen)
        if not torch.equal(p[p], torch.arange(c)):
            break
    sign = torch.where(torch.rand(c, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
    la = randn(gen, c, scale=0.3)
    la[0] = la[0] + (0.5 if float(la.sum()) >= 0 else -0.5)
    h, w = (int(v) for v in torch.randint(1, 5, (2,), generator=gen))
    return p, sign, la, h, w, torch.float64, gen


_CONV_LAYOUT = {"permutation": "the permutation matrix P (C, C)",
                "lower": "the matrix whose strict lower triangle is L's",
                "upper": "the matrix whose strict upper triangle is U's",
                "log_abs_diag": "log|u_c| of shape (C,)",
                "sign": "the signs of U's diagonal, shape (C,)"}

def _missing_or_shape(raw: dict, tensors: dict, what: str, name: str) -> None:
    if "missing" in raw:
        n = raw["missing"]
        raise GradingFailure(f"{what} has no tensor attribute `{n}` (got {raw.get('got')}). The "
                             f"instructions ask you to keep {_CONV_LAYOUT.get(n, 'it')} in "
                             f"self.{n}, so that the grader can set it.", name)
    if "bad_shape" in raw:
        n = raw["bad_shape"]
        raise GradingFailure(f"{what}.{n} has shape {tuple(raw.get('shape') or ())}, expected "
                             f"{tuple(tensors[n].shape)} ({_CONV_LAYOUT.get(n, '')}).", name)


@part("conv_weight", defines=("LUConv1x1",), reference=CONV)
def grade_conv_weight(k) -> None:
    name = "conv_weight"
    gen = fresh_generator()
    for tensors, _h, _w, _dtype, _g in _conv_factors(gen, name):
        c = tensors["sign"].numel()
        w_out = torch.randn(c, c, generator=gen, dtype=torch.float64)
        raw = run(k, "lu_weight", part=name, what=f"LUConv1x1({c}).weight()", c=c,
                  tensors=tensors, w_out=w_out)
        if not isinstance(raw, dict):
            raise GradingFailure("the grader could not read your layer's answer.", name)
        _missing_or_shape(raw, tensors, f"LUConv1x1({c})", name)
        W = check_tensor(raw.get("W"), (c, c), f"LUConv1x1({c}).weight()", name).to(torch.float64)
        P, lo, up, la, sg = (tensors[n] for n in ("permutation", "lower", "upper",
                                                  "log_abs_diag", "sign"))
        expected = _lu_weight(P, lo, up, la, sg)
        eye = torch.eye(c, dtype=torch.float64)
        L = torch.tril(lo, -1) + eye
        U = torch.triu(up, 1) + torch.diag(sg * torch.exp(la))
        hints = [
            (P.T @ L @ U, "You used P^T: W = P L U with the permutation matrix as it is stored."),
            (P @ torch.tril(lo) @ U, "L has ones on its diagonal: use torch.tril(self.lower, -1) "
             "+ I (the diagonal of self.lower is ignored)."),
            (P @ L @ (torch.triu(up) + torch.diag(sg * torch.exp(la))), "U's diagonal is "
             "sign * exp(log|u|) only: use torch.triu(self.upper, 1), the STRICT upper triangle."),
            (P @ L @ (torch.triu(up, 1) + torch.diag(torch.exp(la))), "You forgot the signs: "
             "U's diagonal is sign * exp(log|u|) (a determinant may be negative)."),
            (P @ L @ (torch.triu(up, 1) + torch.diag(sg * la)), "The diagonal is "
             "sign * exp(log_abs_diag), not sign * log_abs_diag."),
            (P @ U @ L, "The order is W = P L U."),
            (L @ U @ P, "The order is W = P L U (the permutation comes first)."),
            (P @ L @ torch.triu(up, 1), "U's diagonal sign * exp(log|u|) is missing."),
        ]
        expect_close(W, expected, f"W = P L (U + diag(sign * exp(log|u|))) for C = {c}", part=name,
                     hints=hints)
        leaves = {n: tensors[n].clone().requires_grad_(True)
                  for n in ("lower", "upper", "log_abs_diag")}
        total = (_lu_weight(P, leaves["lower"], leaves["upper"], leaves["log_abs_diag"], sg)
                 * w_out).sum()
        want = dict(zip(leaves, torch.autograd.grad(total, list(leaves.values()))))
        grads = raw.get("grads") if isinstance(raw.get("grads"), dict) else {}
        for n, g in want.items():
            if n not in grads:
                raise GradingFailure(f"weight(): self.{n} does not require a gradient any more; "
                                     "keep it a trainable nn.Parameter.", name)
            got = grads[n] if isinstance(grads[n], Tensor) else torch.zeros_like(g)
            if tuple(got.shape) != tuple(g.shape) or not is_close(got.to(torch.float64), g,
                                                                  atol=1e-6, rtol=1e-5):
                raise GradingFailure(
                    f"weight(): the values are right, but the gradient with respect to self.{n} "
                    "is wrong or missing (a .detach(), .data, torch.no_grad() or a conversion to "
                    "numpy/float breaks the graph), so training could never update the "
                    "convolution.", name)


def _conv_ref(x: Tensor, W: Tensor, log_abs_diag: Tensor) -> tuple[Tensor, Tensor]:
    z = torch.einsum("ij,bjhw->bihw", W, x)
    pixels = x.shape[2] * x.shape[3]
    return z, (pixels * log_abs_diag.sum()).expand(x.shape[0])


def _conv_logdet_hints(log_abs: Tensor, W: Tensor, h: int, w: int, batch: int, sign: float):
    """Typical wrong log-dets; ``sign`` is +1 for forward, -1 for inverse."""
    pixels = h * w
    ld = sign * pixels * log_abs.sum()
    return [
        ((sign * log_abs.sum()).expand(batch), "The 1x1 convolution acts on every one of the "
         "H*W pixels: log|det| = H * W * sum_c log|u_c|."),
        ((-ld).expand(batch), "It has the wrong sign: forward returns +H W log|det W|, the "
         "inverse -H W log|det W|."),
        ((sign * pixels * torch.exp(log_abs).sum()).expand(batch), "log|det W| is the sum of the "
         "LOGS log|u_c| (self.log_abs_diag), not of |u_c|."),
        ((sign * h * log_abs.sum()).expand(batch), "Count every pixel: the factor is H * W."),
        ((sign * w * log_abs.sum()).expand(batch), "Count every pixel: the factor is H * W."),
        ((ld * batch).expand(batch), "It looks multiplied by the batch size: each sample has its "
         "own log|det|."),
    ]


_CONV_NAN = ("det W can be negative (P and the signs flip it): log|det W| = sum_c log|u_c| = "
             "self.log_abs_diag.sum(); torch.logdet and the log of a product of signed entries "
             "give NaN.")


@part("conv_forward", defines=("LUConv1x1",), reference=CONV,
      reveals=("conv_weight",))  # the grader's weight() goes into the layer
def grade_conv_forward(k) -> None:
    name = "conv_forward"
    gen = fresh_generator()
    for tensors, h, w, dtype, g in _conv_factors(gen, name):
        c = tensors["sign"].numel()
        W = _lu_weight(*(tensors[n] for n in ("permutation", "lower", "upper", "log_abs_diag",
                                              "sign")))
        x = randn(g, 5, c, h, w).to(dtype)
        ans = set_layer_call(k, "LUConv1x1", "forward", x, args=[c], tensors=tensors,
                             layouts=_CONV_LAYOUT, grads=("lower", "upper", "log_abs_diag"),
                             patch="lu_weight", part=name, reference=CONV,
                             what=f"LUConv1x1({c})", nan_hint=_CONV_NAN)
        check_batch_independent(ans)
        tol, x = tolerance(x, 10.0), x.to(torch.float64)
        z_ref, ld_ref = _conv_ref(x, W, tensors["log_abs_diag"])
        expect_close(ans.y, z_ref, f"forward on a ({c}, {h}, {w}) image: z[:, :, h, w] = "
                     "W x[:, :, h, w]", part=name, **tol, hints=[
                         (torch.einsum("ji,bjhw->bihw", W, x), "You applied W^T: z_i = sum_j "
                          "W_ij x_j (einsum 'ij,bjhw->bihw', or conv2d with weight "
                          "W.reshape(C, C, 1, 1))."),
                         (torch.einsum("ij,bjhw->bihw", torch.linalg.inv(W), x), "You applied "
                          "W^{-1}: forward (the normalizing direction f) multiplies by W."),
                     ])
        expect_close(ans.ld, ld_ref, f"forward on a ({c}, {h}, {w}) image: log|det Df| = H W "
                     "sum_c log|u_c|", part=name, **tol,
                     hints=_conv_logdet_hints(tensors["log_abs_diag"], W, h, w, 5, 1.0))

        def ref(v, lower, upper, log_abs_diag):
            Wg = _lu_weight(tensors["permutation"], lower, upper, log_abs_diag, tensors["sign"])
            return _conv_ref(v, Wg, log_abs_diag)

        expected = reference_grads(ref, x, {n: tensors[n] for n in ("lower", "upper",
                                                                    "log_abs_diag")},
                                   ans.w_out, ans.w_ld)
        check_named_grads(ans, expected)


@part("conv_inverse", defines=("LUConv1x1",), reference=CONV,
      reveals=("conv_weight",))  # the grader's weight() goes into the layer
def grade_conv_inverse(k) -> None:
    name = "conv_inverse"
    gen = fresh_generator()
    for tensors, h, w, dtype, g in _conv_factors(gen, name):
        c = tensors["sign"].numel()
        P = tensors["permutation"]
        W = _lu_weight(*(tensors[n] for n in ("permutation", "lower", "upper", "log_abs_diag",
                                              "sign")))
        x = randn(g, 5, c, h, w)
        z = torch.einsum("ij,bjhw->bihw", W, x).to(dtype)
        ans = set_layer_call(k, "LUConv1x1", "inverse", z, args=[c], tensors=tensors,
                             layouts=_CONV_LAYOUT, patch="lu_weight", part=name,
                             reference=CONV, what=f"LUConv1x1({c})", nan_hint=_CONV_NAN)
        check_batch_independent(ans)
        tol, z = tolerance(z, 10.0), z.to(torch.float64)
        Winv = torch.linalg.inv(W)
        x = torch.einsum("ij,bjhw->bihw", Winv, z)  # the exact inverse of the (rounded) z sent
        LU = P.T @ W  # L U
        expect_close(ans.y, x, f"inverse on a ({c}, {h}, {w}) image: x = W^{{-1}} z per pixel",
                     part=name, **tol, hints=[
                         (torch.einsum("ji,bjhw->bihw", W, z), "W^T is not W^{-1} (W is not "
                          "orthogonal): solve with the inverse matrix (torch.linalg.inv or "
                          "torch.linalg.solve)."),
                         (torch.einsum("ji,bjhw->bihw", Winv, z), "You applied (W^{-1})^T: "
                          "x_i = sum_j (W^{-1})_ij z_j."),
                         (torch.einsum("ij,bjhw->bihw", torch.linalg.inv(LU) @ P, z),
                          "P^{-1} = P^T, not P: W^{-1} = U^{-1} L^{-1} P^T."),
                         (torch.einsum("ij,bjhw->bihw", torch.linalg.inv(LU), z),
                          "You left out the permutation: W^{-1} = U^{-1} L^{-1} P^T."),
                         (torch.einsum("ij,bjhw->bihw", W, z), "You multiplied by W again: the "
                          "inverse multiplies by W^{-1}."),
                     ])
        ld_ref = (-(h * w) * tensors["log_abs_diag"].sum()).expand(5)
        expect_close(ans.ld, ld_ref, f"inverse on a ({c}, {h}, {w}) image: log|det Dg| = -H W "
                     "sum_c log|u_c|", part=name, **tol,
                     hints=_conv_logdet_hints(tensors["log_abs_diag"], W, h, w, 5, -1.0))


# ---------------------------------------------------------------------------------- temperature
#: (event shape, temperature): vectors and an image-shaped event; T below and above 1/2.
TEMPERATURE_CASES = (((2,), 0.5), ((3,), 0.8), ((1, 2, 3), 0.7))
N_SAMPLES = 20000


@part("temperature", defines=("sample_with_temperature",), reference=GLOW,
      reference_functions=("flowlab.flow.Flow.sample", "flowlab.flow.Flow.sample_with_log_prob",
                           "flowlab.flow.Flow.rsample", "flowlab.distributions.temper"))
def grade_temperature(k) -> None:
    name = "temperature"
    gen = fresh_generator()
    cases = list(TEMPERATURE_CASES)
    if random_cases():
        cases.append(((2,), float(0.3 + 0.5 * torch.rand((), generator=gen))))
    for event, T in cases:
        d = math.prod(event)
        scale = torch.linspace(0.5, 2.0, d, dtype=torch.float64).reshape(event)
        shift = torch.linspace(3.0, -2.0, d, dtype=torch.float64).reshape(event)
        # a recorded flow (kernel/pieces/temperature.py) whose base ignores any temperature
        raw = run(k, "temperature", part=name, what="sample_with_temperature(flow, n, T)",
                  pieces=("temperature",), event=list(event), temperature=T, n=N_SAMPLES,
                  scale=scale, shift=shift)
        if not isinstance(raw, dict) or not isinstance(raw.get("log"), dict):
            raise GradingFailure("the grader could not read your function's answer.", name)
        log = raw["log"]
        shape = (N_SAMPLES, *event)
        if log.get("bad_shape") is not None:
            raise GradingFailure(
                f"your latent z has shape {tuple(log['bad_shape'])}, but this flow's event_shape "
                f"is {event}: draw eps with the flow's own shape, flow.base.sample(n) or "
                "torch.randn(n, *flow.event_shape), not a fixed size.", name)
        x = raw.get("x")
        if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], Tensor):
            raise GradingFailure("return only the samples x, not the pair (x, logabsdet) that "
                                 "flow.inverse returns: x, _ = flow.inverse(z).", name)
        if isinstance(x, Tensor) and tuple(x.shape) != shape:
            raise GradingFailure(
                f"for a flow with event_shape {event} and n = {N_SAMPLES} the samples have shape "
                f"{tuple(x.shape)}; expected (n, *flow.event_shape) = {shape}. Draw the latent "
                "with the flow's own shape (flow.base.sample(n) or torch.randn(n, "
                "*flow.event_shape)).", name)
        x = check_tensor(x, shape, "sample_with_temperature(flow, n, T)", name).to(torch.float64)
        if not log.get("inverse"):
            if log.get("forward"):
                raise GradingFailure("you called the flow's forward (f, the normalizing "
                                     "direction); sampling uses the generative direction "
                                     "g = f^{-1}: x, _ = flow.inverse(z).", name)
            raise GradingFailure("your function never called flow.inverse: the samples are "
                                 "x = g(z) = flow.inverse(z)[0].", name)
        z = ((x - shift) / scale).reshape(N_SAMPLES, d)  # f(x): back to the latent
        mean = z.mean(0)
        cov = torch.cov(z.T).reshape(d, d) / T ** 2
        eye = torch.eye(d, dtype=torch.float64)
        if not is_close(mean, torch.zeros(d, dtype=torch.float64), atol=0.05 * max(T, 0.3), rtol=0):
            x_is_z = is_close(x.reshape(N_SAMPLES, d).mean(0), torch.zeros(d, dtype=torch.float64),
                              atol=0.05, rtol=0)
            raise GradingFailure(
                "f(x) should be a sample of N(0, T^2 I) centred at 0, but its mean is off by "
                f"{float(mean.abs().max()):.2f}. " +
                ("You returned the latent z itself: return x = g(z), x, _ = flow.inverse(z)."
                 if x_is_z else "Scale the LATENT, not the samples: z = T * eps, then "
                 "x, _ = flow.inverse(z)."), name)
        if not is_close(cov, eye, atol=0.08, rtol=0):
            ratio = float(torch.diagonal(cov).mean())
            hint = ""
            if abs(ratio - T ** 2) < 0.08:
                hint = (" The latent's STANDARD DEVIATION is T (variance T^2): z = T * eps, not "
                        "T^2 * eps.")
            elif abs(ratio - 1 / T) < 0.08:
                hint = " The latent's variance should be T^2: multiply eps by T, not by sqrt(T)."
            elif abs(ratio - 1 / T ** 2) < 0.08:
                hint = " The latent should be scaled by T: z = T * eps with eps ~ N(0, I)."
            raise GradingFailure(
                f"the covariance of f(x) should be T^2 I; at this temperature it is "
                f"{ratio:.3g} T^2 I on average.{hint}", name)
