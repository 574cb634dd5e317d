r"""Hidden tests of assignment 3: image flows (run in the trusted process).

Parts (each a :func:`~flowlab_course.trusted.parts.part`):

* ``squeeze`` / ``unsqueeze`` — space-to-depth with the ordering
  :math:`z[b, 4c + 2i + j, h, w] = x[b, c, 2h+i, 2w+j]` (as :class:`flowlab.transforms.image.Squeeze`),
  on square, non-square and odd half-sizes and several channel counts;
* ``masks`` — ``checkerboard_mask(H, W, parity)`` and ``channel_mask(C, parity)``: every position
  and both parities on many shapes (odd sizes, :math:`H \ne W`, :math:`1 \times n`), the default
  parity, shape ``(1, 1, H, W)`` / ``(1, C, 1, 1)`` and a floating-point dtype (a boolean mask
  breaks ``1 - b`` in the coupling: it is caught *here*);
* ``masked_forward`` / ``masked_inverse`` — the masked affine coupling, given **grader-made**
  float masks (so that a mistake in the student's masks costs only the masks part), against
  :class:`flowlab.transforms.image.MaskedAffineCoupling` (``scale_bound=None``) with the same
  conditioner; the gradient must reach the conditioner (a ``.detach()`` passes a value test);
* ``dequantize`` — :math:`y = (x + u)/K`: every level's cell, :math:`K \ne 256`, uniform fresh noise
  per element and per call, the input untouched;
* ``bits_per_dim`` — :math:`-(\log p_Y(y) - D \log K) / (D \log 2)` for several :math:`D, K`, the
  default :math:`K`, any input shape;
* ``multiscale`` — factoring out the first half of the channels after every block but the last,
  with plain-torch blocks written by the grader (1, 2 and 3 blocks, non-square images).

Every part checks fixed adversarial cases besides fresh random ones: sizes beyond small constants
(34 x 66 images, 33 x 40 boards, 33 and 64 channels, D = 12288 and K = 4096), five scales, float32
images; what each pins down is written next to it, and the fixed cases alone catch every
catalogue mistake (``FLOWLAB_GRADER_FIXED_ONLY=1``, see :mod:`.probes`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..trusted.bridge import NoAnswer, StudentError
from ..trusted.parts import part
from ..trusted.redaction import Graded
from .errors import GradingFailure
from .numerics import expect_close, is_close
from .probes import (
    calls,
    check_batch_independent,
    fixed_generator,
    random_cases,
    tolerance,
    check_grads,
    check_tensor,
    conv_net,
    fresh_generator,
    layer_call,
    randn,
    run,
)

SQUEEZE = ("flowlab.transforms.image.Squeeze", "flowlab.models.multiscale")
MASKS = ("flowlab.transforms.image.checkerboard_mask", "flowlab.transforms.image.squeezed_checkerboard_mask", "flowlab.transforms.image.channel_mask")
MASKED = ("flowlab.transforms.image.MaskedAffineCoupling", "flowlab.transforms.coupling",
          "flowlab.transforms.univariate.Affine")
DEQUANT = ("flowlab.transforms.dequantize", "flowlab.metrics")
MULTISCALE = ("flowlab.models.multiscale", "flowlab.models.image_flow", "flowlab.models.glow")

#: What assignment 3 grades: flowlab's code for these is a stub in the grading kernel
#: (flowlab_course.trusted.redaction); every part's `reference` is drawn from these entries.
GRADED = Graded("assignment 3", {
    "flowlab.transforms.image": "squeeze, the image masks and the masked coupling",
    "flowlab.transforms.coupling": "the masked affine coupling",
    "flowlab.transforms.glow.GlowCoupling": "the masked affine coupling",
    # the affine map the masked coupling applies (Affine()(x, params) is its formula)
    "flowlab.transforms.univariate.Affine": "the masked affine coupling",
    "flowlab.transforms.dequantize": "dequantization",
    "flowlab.metrics": "bits per dimension",
    "flowlab.models.multiscale": "the multi-scale architecture",
    "flowlab.models.image_flow": "the multi-scale architecture",
    "flowlab.models.glow": "the multi-scale architecture",
    "flowlab.transforms.autoregressive": "the masked affine coupling",
    "flowlab.testing": "the log-determinant",
})


# ------------------------------------------------------------------------------ squeeze
def _squeeze(x: Tensor) -> Tensor:
    b, c, h, w = x.shape
    z = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return z.reshape(b, 4 * c, h // 2, w // 2)


#: (batch, C, H, W): square, non-square both ways, half-sizes odd, 1-pixel outputs, many channels
#: (2, 3, 34, 66): sizes beyond any small constant (32, 64) in every axis
SQUEEZE_SHAPES = ((2, 1, 2, 2), (2, 1, 4, 4), (2, 3, 6, 2), (1, 2, 2, 8), (2, 5, 6, 10),
                  (1, 1, 10, 4), (3, 2, 2, 6), (2, 3, 34, 66))
#: the notebook's dtype: float32 images, kept float32
SQUEEZE_FLOAT32 = ((2, 3, 6, 4),)


def _squeeze_inputs(name: str) -> list[Tensor]:
    """The fixed inputs (a constant seed), then, unless fixed-only, two random shapes."""
    fg, gen = fixed_generator(name), fresh_generator()
    xs = [randn(fg, *shape) for shape in SQUEEZE_SHAPES]
    xs += [randn(fg, *shape).to(torch.float32) for shape in SQUEEZE_FLOAT32]
    for _ in range(2 if random_cases() else 0):
        b, c = (int(v) for v in torch.randint(1, 4, (2,), generator=gen))
        h, w = (2 * int(v) for v in torch.randint(1, 6, (2,), generator=gen))
        xs.append(randn(gen, b, c, h, w))
    return xs


def _squeeze_hints(x: Tensor) -> list:
    b, c, h, w = x.shape
    blocks = x.reshape(b, c, h // 2, 2, w // 2, 2)
    return [
        (blocks.permute(0, 3, 5, 1, 2, 4).reshape(b, 4 * c, h // 2, w // 2),
         "Your channel order is (i, j, c); the convention is channel 4c + 2i + j: the four "
         "pixels of a 2x2 block of channel c are next to each other."),
        (blocks.permute(0, 1, 5, 3, 2, 4).reshape(b, 4 * c, h // 2, w // 2),
         "i and j are swapped: channel 4c + 2i + j holds the pixel in ROW 2h + i and COLUMN "
         "2w + j (i is the row offset)."),
    ]


@part("squeeze", defines=("squeeze",), reference=SQUEEZE)
def grade_squeeze(k) -> None:
    name = "squeeze"
    xs = _squeeze_inputs(name)
    answers = calls(k, "squeeze", [[x] for x in xs], part=name, what="squeeze(x)")
    for x, z in zip(xs, answers):
        shape = tuple(x.shape)
        b, c, h, w = shape
        what = f"squeeze(x) for x of shape {shape}"
        z = check_tensor(z, (b, 4 * c, h // 2, w // 2), what, name, dtype=x.dtype)
        expect_close(z, _squeeze(x), f"{what}: z[b, 4c + 2i + j, h, w] = x[b, c, 2h + i, 2w + j]",
                     part=name, atol=0, rtol=0, hints=_squeeze_hints(x))


@part("unsqueeze", defines=("unsqueeze",), reference=SQUEEZE)
def grade_unsqueeze(k) -> None:
    name = "unsqueeze"
    xs = _squeeze_inputs(name)
    zs = [_squeeze(x) for x in xs]
    answers = calls(k, "unsqueeze", [[z] for z in zs], part=name, what="unsqueeze(z)")
    for x, z, back in zip(xs, zs, answers):
        shape = tuple(x.shape)
        what = f"unsqueeze(z) for z of shape {tuple(z.shape)}"
        back = check_tensor(back, shape, what, name, dtype=z.dtype)
        b, c, h, w = shape
        hint_x = z.reshape(b, c, 2, 2, h // 2, w // 2).permute(0, 1, 4, 3, 5, 2).reshape(shape)
        expect_close(back, x, f"{what}: unsqueeze(squeeze(x)) must give x back", part=name,
                     atol=0, rtol=0, hints=[
                         (hint_x, "i and j are swapped: z channel 4c + 2i + j goes back to ROW "
                          "2h + i and COLUMN 2w + j of channel c."),
                     ])


# ------------------------------------------------------------------------------ masks
def _checkerboard(h: int, w: int, parity: int) -> Tensor:
    i = torch.arange(h).reshape(-1, 1)
    j = torch.arange(w).reshape(1, -1)
    return ((i + j) % 2 == parity).to(torch.float64).reshape(1, 1, h, w)


def _channel(c: int, parity: int) -> Tensor:
    first = torch.arange(c) < (c + 1) // 2
    return (first if parity == 0 else ~first).to(torch.float64).reshape(1, c, 1, 1)


#: every parity on 1x1, 1xn, nx1, odd, even and non-square boards
#: ... and (33, 40), (1, 70): sizes beyond any small constant (a table of 32 or 64)
CHECKER_SHAPES = ((1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (3, 5), (5, 3), (4, 4), (4, 6),
                  (6, 4), (2, 7), (7, 2), (8, 8), (5, 8), (1, 6), (33, 40), (1, 70))
#: odd and even counts; 33 and 64: beyond any small constant
CHANNELS = (2, 3, 4, 5, 6, 7, 8, 9, 33, 64)


def _first_wrong(got: Tensor, want: Tensor) -> str:
    idx = (got.to(torch.float64) != want).nonzero()
    if not idx.numel():
        return ""
    where = tuple(int(v) for v in idx[0][-2:]) if want.shape[1] == 1 else int(idx[0][1])
    n = idx.shape[0]
    label = f"pixel (i, j) = {where}" if want.shape[1] == 1 else f"channel {where}"
    return f" ({n} wrong value{'s' if n > 1 else ''}, the first at {label})"


def _mask_probe(k, fn: str, cases: list, name: str) -> list:
    """Call ``fn(*case)`` for every case in one request; locate the case that raised."""
    try:
        raw = k.call("calls", fn=fn, cases=[list(c) for c in cases])
    except StudentError:
        for case in cases:
            run(k, "calls", part=name, what=f"{fn}{tuple(case)}", fn=fn, cases=[list(case)])
        raise GradingFailure(f"{fn} raised an error on one of the grader's cases (and not when "
                             "called again): does it depend on earlier calls?", name) from None
    except NoAnswer as err:
        raise GradingFailure(f"{fn}(...): {err}", name) from None
    if not (isinstance(raw, list) and all(isinstance(v, list) and len(v) == 2 for v in raw)):
        raise GradingFailure(f"{fn}: the grader could not read your function's answers.", name)
    return [value for value, _unchanged in raw]


@part("masks", defines=("checkerboard_mask", "channel_mask"), reference=MASKS)
def grade_masks(k) -> None:
    name = "masks"
    gen = fresh_generator()
    shapes = list(CHECKER_SHAPES)
    for _ in range(2 if random_cases() else 0):
        shapes.append(tuple(int(v) for v in torch.randint(1, 13, (2,), generator=gen)))
    cases = [(h, w, p) for h, w in shapes for p in (0, 1)] + [(h, w) for h, w in shapes[:6]]
    got = _mask_probe(k, "checkerboard_mask", cases, name)
    for case, m in zip(cases, got):
        h, w = case[:2]
        parity = case[2] if len(case) == 3 else 0
        what = f"checkerboard_mask{tuple(case)}"
        if len(case) == 2:
            what += " (the default parity is 0)"
        m = check_tensor(m, (1, 1, h, w), what, name)
        want = _checkerboard(h, w, parity)
        flat = (torch.arange(h * w) % 2 == parity).to(torch.float64).reshape(1, 1, h, w)
        expect_close(m, want, f"{what}: b_ij = 1 iff (i + j) % 2 == parity{_first_wrong(m, want)}",
                     part=name, atol=0, rtol=0, hints=[
                         (_checkerboard(h, w, 1 - parity), "The parity is swapped: b_ij = 1 "
                          "where (i + j) % 2 == parity."),
                         (flat, "You numbered the pixels row by row (k = i*W + j) and used k % 2: "
                          "that equals (i + j) % 2 only when W is odd; use (i + j) % 2."),
                         (_checkerboard(w, h, parity).reshape(1, 1, h, w) if h != w else want + 7,
                          "Height and width are mixed up: i runs over the H rows, j over the W "
                          "columns."),
                     ])
    channels = list(CHANNELS) + ([int(torch.randint(10, 17, (1,), generator=gen))]
                                 if random_cases() else [])
    cases = [(c, p) for c in channels for p in (0, 1)] + [(c,) for c in (3, 4)]
    got = _mask_probe(k, "channel_mask", cases, name)
    for case, m in zip(cases, got):
        c = case[0]
        parity = case[1] if len(case) == 2 else 0
        what = f"channel_mask{tuple(case)}" + (" (the default parity is 0)" if len(case) == 1 else "")
        m = check_tensor(m, (1, c, 1, 1), what, name)
        want = _channel(c, parity)
        floor = torch.arange(c) < c // 2
        floor = (floor if parity == 0 else ~floor).to(torch.float64).reshape(1, c, 1, 1)
        expect_close(m, want, f"{what}: parity 0 keeps the first ceil(C/2) channels, parity 1 the "
                     f"others{_first_wrong(m, want)}", part=name, atol=0, rtol=0, hints=[
                         (_channel(c, 1 - parity), "The parity is swapped: parity 0 keeps the "
                          "first ceil(C/2) channels (b = 1)."),
                         (floor, "For an odd number of channels, the first ceil(C/2) = (C + 1) // 2 "
                          "channels are kept for parity 0 (you used C // 2)."),
                     ])


# ------------------------------------------------------------------------------ masked coupling
#: (kind, C, H, W, parity): both parities, odd and non-square images, 1 to 4 channels
#: ... then ("checker", 3, 17, 34, 1): sizes beyond any small constant; float64 unless marked
COUPLING_CASES = (("checker", 2, 4, 4, 0), ("checker", 2, 4, 4, 1), ("checker", 1, 3, 5, 0),
                  ("checker", 3, 5, 2, 1), ("channel", 4, 2, 2, 0), ("channel", 3, 3, 2, 1),
                  ("channel", 2, 1, 5, 0), ("channel", 5, 2, 3, 1), ("checker", 3, 17, 34, 1))
#: the notebook's dtype: float32 images and masks (checkerboard_mask returns float32)
COUPLING_FLOAT32 = (("checker", 2, 5, 6, 0), ("channel", 4, 3, 3, 1))


def _coupling_cases(gen: torch.Generator, name: str):
    """``(mask, spec, conditioner, x, label)``, x and mask in the case's dtype."""
    fg = fixed_generator(name)
    cases = [(*c, torch.float64, fg) for c in COUPLING_CASES]
    cases += [(*c, torch.float32, fg) for c in COUPLING_FLOAT32]
    if random_cases():
        r = [int(v) for v in torch.randint(1, 6, (4,), generator=gen)]
        cases.append(("checker", r[0], r[1] + 1, r[2] + 1, r[3] % 2, torch.float64, gen))
        cases.append(("channel", r[0] + 1, r[2], r[1], (r[3] + 1) % 2, torch.float64, gen))
    for kind, c, h, w, parity, dtype, g in cases:
        mask = _checkerboard(h, w, parity) if kind == "checker" else _channel(c, parity)
        spec, module = conv_net(g, c, 2 * c)
        x = randn(g, 4, c, h, w)
        label = f"{kind} mask (C={c}, H={h}, W={w}, parity {parity})"
        if dtype == torch.float32:
            label += ", float32"
        yield mask.to(dtype), spec, module, x.to(dtype), label


def _reference_coupling(mask: Tensor, c: int, module):
    from flowlab.transforms.image import MaskedAffineCoupling

    return MaskedAffineCoupling(mask, c, conditioner=module, scale_bound=None).double()


@part("masked_forward", defines=("MaskedAffineCoupling",), reference=MASKED)
def grade_masked_forward(k) -> None:
    name = "masked_forward"
    gen = fresh_generator()
    for mask, spec, cond, x, label in _coupling_cases(gen, name):
        ans = layer_call(k, "MaskedAffineCoupling", "forward", x, args=[mask], cond=spec,
                         part=name, reference=MASKED)
        check_batch_independent(ans)
        tol = tolerance(x, 10.0)
        x, mask = x.to(torch.float64), mask.to(torch.float64)
        z_ref, ld_ref = _reference_coupling(mask, x.shape[1], cond)(x)
        b = mask
        with torch.no_grad():
            t, s = cond(b * x).chunk(2, dim=1)
            t_all, s_all = cond(x).chunk(2, dim=1)
            hints = [
                (b * x + (1 - b) * (x * torch.exp(t) + s), "t and s are swapped: the conditioner "
                 "returns the shift first, t, s = conditioner(b * x).chunk(2, dim=1)."),
                (b * x + (1 - b) * (x * torch.exp(s_all) + t_all), "The conditioner must read "
                 "only the kept values b * x, not the whole x (otherwise the Jacobian is not "
                 "triangular and the inverse cannot recompute s and t)."),
                (b * x + (1 - b) * (x + t) * torch.exp(s), "Scale first, then shift: "
                 "x * exp(s) + t."),
                (b * x + (1 - b) * x * torch.exp(s) + t, "The shift t must also act only on the "
                 "transformed positions: (1 - b) * (x * exp(s) + t)."),
                ((1 - b) * x + b * (x * torch.exp(s) + t), "The mask is the wrong way round: "
                 "b = 1 marks the KEPT values (they pass through unchanged)."),
            ]
        expect_close(ans.y, z_ref.detach(), f"forward with a {label}: y = b*x + (1-b)*(x*exp(s) + t)",
                     part=name, hints=hints, **tol)
        per = lambda v: v.reshape(v.shape[0], -1).sum(dim=1)  # noqa: E731
        with torch.no_grad():
            ld_hints = [
                (per(s), "You summed s over ALL positions: only the transformed ones count, "
                 "log|det Df| = sum (1 - b) * s."),
                (-ld_ref, "It has the wrong sign: forward returns +sum (1 - b) * s."),
                (per((1 - b) * t), "You summed the shift t; log|det Df| = sum (1 - b) * s (a "
                 "shift does not change volume)."),
                (per(b * s), "You summed s over the KEPT positions; log|det Df| = sum (1 - b) * s."),
            ]
        expect_close(ans.ld, ld_ref.detach(), f"forward with a {label}: log|det Df| = "
                     "sum (1 - b) * s", part=name, hints=ld_hints, **tol)
        check_grads(ans, cond, z_ref, ld_ref)


@part("masked_inverse", defines=("MaskedAffineCoupling",), reference=MASKED)
def grade_masked_inverse(k) -> None:
    name = "masked_inverse"
    gen = fresh_generator()
    for mask, spec, cond, x, label in _coupling_cases(gen, name):
        dtype = x.dtype
        x, mask64 = x.to(torch.float64), mask.to(torch.float64)
        ref = _reference_coupling(mask64, x.shape[1], cond)
        with torch.no_grad():
            z, _ = ref(x)
        z = z.to(dtype)
        ans = layer_call(k, "MaskedAffineCoupling", "inverse", z, args=[mask], cond=spec,
                         part=name, reference=MASKED)
        check_batch_independent(ans)
        tol, z, mask = tolerance(z, 10.0), z.to(torch.float64), mask64
        with torch.no_grad():
            x, ld_inv = ref.inverse(z)  # the exact inverse of the (rounded) z sent
            ld_f = -ld_inv
        b = mask
        with torch.no_grad():
            t, s = cond(b * z).chunk(2, dim=1)
            hints = [
                (b * z + (1 - b) * (z - t) * torch.exp(s), "Use exp(-s) in the inverse: undoing a "
                 "multiplication by exp(s) means multiplying by exp(-s)."),
                (b * z + (1 - b) * (z * torch.exp(-s) - t), "Undo the steps in reverse order: "
                 "first subtract t, then multiply by exp(-s)."),
                (b * z + (1 - b) * (z - s) * torch.exp(-t), "t and s are swapped: "
                 "t, s = conditioner(b * y).chunk(2, dim=1)."),
            ]
        expect_close(ans.y, x, f"inverse with a {label}: x = b*y + (1-b)*(y - t)*exp(-s)",
                     part=name, hints=hints, **tol)
        expect_close(ans.ld, -ld_f, f"inverse with a {label}: log|det Dg(y)| = -sum (1 - b) * s",
                     part=name, **tol, hints=[(ld_f, "It has the wrong sign: the inverse returns "
                                       "log|det Dg| = -log|det Df|.")])
        x_ref, ld_ref = ref.inverse(z)
        check_grads(ans, cond, x_ref, ld_ref)


# ------------------------------------------------------------------------------ dequantization
#: levels beyond 8 bits (a hard-coded 256 or 255 shows)
BIG_LEVELS = 1000

#: KS distance for 4096 samples: P(D > 0.05) < 3e-9 for uniform noise
KS_LIMIT = 0.05


def _levels(gen: torch.Generator, levels: int) -> Tensor:
    x = torch.randint(0, levels, (64, 1, 8, 8), generator=gen).to(torch.float64)
    x[0] = levels - 1   # the top level: (K - 1 + u)/K must stay below 1
    x[1] = 0
    return x


def _check_dequantized(y, x: Tensor, levels: int, what: str, name: str) -> Tensor:
    y = check_tensor(y, tuple(x.shape), what, name)
    # a float32 computation may round x + u up to x + 1: allow a few ulps of the returned dtype
    rounding = y.dtype != torch.float64
    tol = 4 * torch.finfo(y.dtype).eps if rounding else 0.0
    y = y.to(torch.float64)
    low, high = x / levels, (x + 1) / levels
    inside = (y >= low - tol) & ((y <= high + tol) if rounding else (y < high))
    if not bool(inside.all()):
        if bool((y >= 1 + tol).any()):
            raise GradingFailure(
                f"{what}: some values are >= 1 (for the top level x = K - 1). Divide by "
                f"K = num_levels ({levels} here), not by K - 1, so that y = (x + u)/K lies in "
                "[x/K, (x+1)/K) and in [0, 1).", name)
        if is_close(y, x / 256, atol=1 / 256, rtol=0) and levels != 256:
            raise GradingFailure(f"{what}: use the num_levels argument (K = {levels} here), not a "
                                 "fixed 256.", name)
        raise GradingFailure(f"{what}: every y must lie in the cell [x/K, (x+1)/K) of its level, "
                             "y = (x + u)/K with u ~ U[0, 1).", name)
    return y * levels - x


def _check_uniform(u: Tensor, what: str, name: str) -> None:
    flat = u.reshape(-1)
    if float(flat.std()) < 0.1:
        raise GradingFailure(f"{what}: the noise u = K*y - x is (nearly) constant: add fresh "
                             "uniform noise u ~ U[0, 1) to every value (torch.rand_like(x)).", name)
    rows = u.reshape(u.shape[0], -1)
    if float((rows[2:] - rows[2:3]).abs().max()) < 1e-12:
        raise GradingFailure(f"{what}: every sample got the same noise; draw independent noise "
                             "for every value of the batch (torch.rand_like(x)).", name)
    n = flat.numel()
    sorted_u = torch.sort(flat).values
    grid = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = float(torch.maximum((grid - sorted_u).abs(), (grid - 1 / n - sorted_u).abs()).max())
    if ks > KS_LIMIT:
        raise GradingFailure(f"{what}: the noise u = K*y - x is not uniform on [0, 1) "
                             f"(Kolmogorov-Smirnov distance {ks:.3f}); use u ~ U[0, 1), "
                             "torch.rand_like(x).", name)


@part("dequantize", defines=("dequantize",), reference=DEQUANT)
def grade_dequantize(k) -> None:
    name = "dequantize"
    gen = fresh_generator()
    # fixed: K = 256 (the default) in float64, and K = 1000 (beyond 8 bits) on float32 levels (the
    # notebook's dtype, kept); random (constant in fixed-only mode): K between 5 and 39
    other = int(torch.randint(5, 40, (1,), generator=gen))
    fg = fixed_generator(name)
    x, x_k, x_big = _levels(fg, 256), _levels(gen, other), _levels(fg, BIG_LEVELS)
    out = run(k, "dequantize", part=name, what="dequantize(x)", x=x, x_k=x_k,
              levels=other, x32=x_big.to(torch.float32), levels32=BIG_LEVELS)
    if not isinstance(out, dict):
        raise GradingFailure("the grader could not read dequantize's answer.", name)
    if out.get("unchanged") is not True:
        raise GradingFailure("dequantize changed its input x in place (e.g. x += ...): return a "
                             "new tensor and leave the data unchanged.", name)
    u1 = _check_dequantized(out.get("first"), x, 256, "dequantize(x)", name)
    _check_uniform(u1, "dequantize(x)", name)
    u2 = _check_dequantized(out.get("second"), x, 256, "dequantize(x), called again", name)
    if float((u1 - u2).abs().max()) < 1e-12:
        raise GradingFailure("two calls of dequantize(x) gave the same y: the noise must be drawn "
                             "afresh at every call (no fixed seed, no noise stored once).", name)
    u3 = _check_dequantized(out.get("other"), x_k, other, f"dequantize(x, num_levels={other})",
                            name)
    _check_uniform(u3, f"dequantize(x, num_levels={other})", name)
    what = f"dequantize(x, num_levels={BIG_LEVELS}) for float32 x"
    big = out.get("big")
    if isinstance(big, Tensor) and big.is_floating_point() and big.dtype != torch.float32:
        raise GradingFailure(f"{what} has dtype {big.dtype}: keep the input's dtype (the notebook "
                             "works in float32; torch.rand_like(x) draws noise in x's dtype).",
                             name)
    u4 = _check_dequantized(big, x_big, BIG_LEVELS, what, name)
    _check_uniform(u4, what, name)


# ------------------------------------------------------------------------------ bits per dim
#: (D, K, shape of log p_Y): 8-bit images, CIFAR-sized, other K, the default K, 2-D batches
#: ... (3 * 64 * 64, 4096, (3,)): D and K beyond 8-bit CIFAR's constants
BPD_CASES = ((64, 256, (6,)), (3 * 32 * 32, 256, (4,)), (64, 17, (2, 3)), (1, 2, (5,)),
             (784, None, (3,)), (12, None, (2, 2)), (3 * 64 * 64, 4096, (3,)))
#: the notebook's dtype: float32 log-densities, the answer kept float32
BPD_FLOAT32 = ((784, 256, (4,)),)


@part("bits_per_dim", defines=("bits_per_dim",), reference=DEQUANT)
def grade_bits_per_dim(k) -> None:
    name = "bits_per_dim"
    fg, gen = fixed_generator(name), fresh_generator()
    cases = [(*c, torch.float64, fg) for c in BPD_CASES]
    cases += [(*c, torch.float32, fg) for c in BPD_FLOAT32]
    if random_cases():
        cases.append((int(torch.randint(2, 500, (1,), generator=gen)),
                      int(torch.randint(2, 300, (1,), generator=gen)), (4,), torch.float64, gen))
    lps, args = [], []
    for d, levels, shape, dtype, g in cases:
        lp = d * (1.5 - 2.5 * torch.rand(shape, generator=g, dtype=torch.float64))
        lp.view(-1)[0] = 0.3 * d  # a density above 1 somewhere: log p_Y > 0
        lps.append(lp.to(dtype))
        args.append([lps[-1], d] if levels is None else [lps[-1], d, levels])
    # one round trip; the caller's log_prob_y is handed over as it is: an in-place write fails
    answers = calls(k, "bits_per_dim", args, part=name, what="bits_per_dim(log_prob_y, ...)")
    for (d, levels, shape, dtype, _), lp, got in zip(cases, lps, answers):
        if levels is None:
            what = f"bits_per_dim(log_prob_y, {d})"
            levels = 256
        else:
            what = f"bits_per_dim(log_prob_y, {d}, {levels})"
        tol = tolerance(lp, 1.0)
        if dtype == torch.float32:
            what += " for a float32 log_prob_y"
        got = check_tensor(got, shape, what, name, dtype=dtype)
        lp = lp.to(torch.float64)
        dlk = d * math.log(levels)
        expected = (-lp + dlk) / (d * math.log(2))
        expect_close(got, expected, f"{what}: bpd = -(log p_Y(y) - D log K) / (D log 2)",
                     part=name, **tol, hints=[
                         (-lp / (d * math.log(2)), "You forgot the D log K term: y = (x + u)/K "
                          "is scaled by 1/K, so log p(x + u) = log p_Y(y) - D log K."),
                         ((-lp + dlk) / d, "Bits, not nats: divide by log 2."),
                         ((-lp - dlk) / (d * math.log(2)), "The D log K term has the wrong sign: "
                          "the density of x + u is K^(-D) times the density of y."),
                         ((-lp + d * math.log(256)) / (d * math.log(2)) if levels != 256
                          else expected + 1, "Use the num_levels argument, not a fixed 256."),
                         ((lp - dlk) / (d * math.log(2)), "It has the wrong sign: bits/dim is the "
                          "NEGATIVE log-likelihood per dimension."),
                         (-lp + dlk, "Divide by the number of dimensions D (and by log 2): it "
                          "is bits per DIMENSION."),
                     ])


# ------------------------------------------------------------------------------ multi-scale
def _block(x: Tensor, a: Tensor, squeeze: bool) -> tuple[Tensor, Tensor]:
    if squeeze:
        x = _squeeze(x)
    a = a.reshape(1, -1, 1, 1)
    y = torch.exp(a) * (x + 0.5 * torch.tanh(x))
    log_d = a + torch.log(1 + 0.5 * (1 - torch.tanh(x) ** 2))
    return y, log_d.reshape(x.shape[0], -1).sum(dim=1)


def _expected_multiscale(x: Tensor, params: list[Tensor], keep_second: bool = False):
    h, total, zs, lds = x, x.new_zeros(x.shape[0]), [], []
    for i, a in enumerate(params):
        h, ld = _block(h, a, i < len(params) - 1)
        total, lds = total + ld, lds + [ld]
        if i < len(params) - 1:
            half = h.shape[1] // 2
            zs.append(h[:, half:] if keep_second else h[:, :half])
            h = h[:, :half] if keep_second else h[:, half:]
    zs.append(h)
    return zs, total, lds


#: (input shape, number of blocks): 1 to 3 scales, square and non-square, several channels
#: ... ((2, 1, 16, 32), 5): a depth beyond three scales (and beyond two); float64 unless marked
MULTISCALE_CASES = (((3, 1, 8, 8), 3), ((2, 2, 4, 12), 2), ((2, 3, 6, 6), 2), ((2, 1, 4, 4), 1),
                    ((2, 1, 4, 8), 3), ((2, 1, 16, 32), 5))
#: the notebook's dtype: float32 images and blocks
MULTISCALE_FLOAT32 = (((2, 2, 8, 4), 3),)


@part("multiscale", defines=("multiscale_forward",), reference=MULTISCALE,
      reveals=("squeeze",))  # its grader blocks squeeze
def grade_multiscale(k) -> None:
    name = "multiscale"
    gen = fixed_generator(name)  # no random case here: the shapes and depths are the point
    cases = [(*c, torch.float64) for c in MULTISCALE_CASES]
    cases += [(*c, torch.float32) for c in MULTISCALE_FLOAT32]
    fresh = fresh_generator()
    if random_cases():  # the second net: a random two-scale case with fresh values
        c, h, w = (int(v) for v in torch.randint(1, 4, (3,), generator=fresh))
        cases.append(((2, c, 2 * h, 2 * w), 2, torch.float64))
    n_fixed = len(MULTISCALE_CASES) + len(MULTISCALE_FLOAT32)
    for index, (shape, n_blocks, dtype) in enumerate(cases):
        gen = fresh if index >= n_fixed else gen
        x = randn(gen, *shape).to(dtype)
        params, c = [], shape[1]
        for i in range(n_blocks):
            c = 4 * c if i < n_blocks - 1 else c
            params.append((0.3 * torch.randn(c, generator=gen, dtype=torch.float64)).to(dtype))
            c = c // 2 if i < n_blocks - 1 else c
        what = f"multiscale_forward(x, blocks) with {n_blocks} block(s) and x of shape {shape}"
        if dtype == torch.float32:
            what += " in float32"
        # the grader's blocks squeeze (kernel/pieces/multiscale.py): the part `reveals` squeeze
        out = run(k, "multiscale", part=name, what=what, pieces=("multiscale",), x=x,
                  params=params)
        tol = tolerance(x, 10.0)
        dtype, x = x.dtype, x.to(torch.float64)
        params = [a.to(torch.float64) for a in params]
        zs, total, lds = _expected_multiscale(x, params)
        got = out.get("latents") if isinstance(out, dict) else None
        if not isinstance(got, list):
            raise GradingFailure(f"{what} must return (latents, logabsdet) with latents a list of "
                                 f"tensors, got {out.get('kind') if isinstance(out, dict) else out}.",
                                 name)
        if out.get("unchanged") is not True:
            raise GradingFailure(f"{what} changed its input x in place.", name)
        if len(got) != len(zs):
            raise GradingFailure(
                f"{what} returned {len(got)} latents, expected {len(zs)}: one factored out after "
                "each block but the last, plus the whole output of the last block.", name)
        wrong_half, _, _ = _expected_multiscale(x, params, keep_second=True)
        for i, (z_got, z_want) in enumerate(zip(got, zs)):
            z_got = check_tensor(z_got, tuple(z_want.shape), f"latent z_{i + 1} of {what}", name,
                                 dtype=dtype)
            expect_close(z_got, z_want, f"latent z_{i + 1} of {what}", part=name, **tol, hints=[
                (wrong_half[i], "Factor out the FIRST half of the channels, h[:, :C/2], and "
                 "continue with the second half.")])
        ld = check_tensor(out.get("logabsdet"), (shape[0],), f"the logabsdet of {what}", name,
                          dtype=dtype)
        expect_close(ld, total, f"the logabsdet of {what}: the sum of every block's log|det|",
                     part=name, **tol, hints=[
                         (lds[-1], "You returned only the last block's log|det|: sum the "
                          "log-dets of all blocks."),
                         (lds[0] if len(lds) > 1 else total + 1, "You returned only the first "
                          "block's log|det|: sum the log-dets of all blocks."),
                     ])


__all__ = ["grade_squeeze", "grade_unsqueeze", "grade_masks", "grade_masked_forward",
           "grade_masked_inverse", "grade_dequantize", "grade_bits_per_dim", "grade_multiscale"]
