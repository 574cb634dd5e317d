r"""Hidden tests of assignment 5: autoregressive flows (run in the trusted process).

Parts (each a :func:`~flowlab_course.trusted.parts.part`):

* ``made_degrees`` — input degrees :math:`1..D`, hidden degrees :math:`(k \bmod (D-1)) + 1`
  (as :func:`flowlab.nets.made.made_degrees`);
* ``made_hidden_masks`` / ``made_output_mask`` — :math:`M_{kj} = [m(k) \ge m(j)]` between
  hidden layers, :math:`M_{dk} = [m(d) > m(k)]` for the outputs, parameter-major blocks, checked
  on **grader-given** degrees (random input orders, random hidden degrees), so that a wrong
  ``made_degrees`` costs only its own part; the output mask's autoregressive property is also
  checked directly (no path from :math:`x_j` to output :math:`d` unless :math:`m(j) < m(d)`);
* ``maf_forward`` / ``maf_inverse`` — :math:`z = (x - \mu) e^{-\alpha}`, :math:`\log|\det Df| =
  -\sum\alpha`; the sequential inverse and :math:`+\sum\alpha`, with a grader-made autoregressive
  conditioner (plain masked MLP), against :class:`flowlab.transforms.autoregressive` formulas,
  plus a **brute-force Jacobian** computed here by central differences from outputs the kernel
  returns for perturbed inputs: lower triangular, and :math:`\log|\det|` equal to the sum of the
  logs of its diagonal;
* ``causal_mask`` / ``causal_attention`` — the causal mask (:math:`j \le i`, ``strict``:
  :math:`j < i`) and masked self-attention with the optional one-token ``shift`` (TarFlow), values
  against the formula and, from outputs for inputs perturbed one token at a time, the dependency
  pattern (no information from the future).  ``causal_attention`` is graded
  with the grader's ``causal_mask`` in place of the student's, so that the two parts are isolated.

Every part checks fixed adversarial cases besides fresh random ones: D = 20 with four hidden
layers, D = 24 masks over four hidden layers, a MAF with D = 16 whose inverse converges only after
16 passes, sequences of 40 and 129 tokens, float32 MAF and attention; what each pins down is
written next to it, and the fixed cases alone catch every catalogue mistake
(``FLOWLAB_GRADER_FIXED_ONLY=1``, see :mod:`.probes`).  ``made_masks``' list is checked by
each of its parts for what that part grades (the hidden masks first, the output mask last), so a
wrong count costs only the part whose masks are missing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..trusted.parts import part
from ..trusted.redaction import Graded
from .errors import GradingFailure
from .numerics import expect_close, is_close
from .probes import (calls, check_pair, check_tensor, fixed_generator, fresh_generator,
                     random_cases, randn, run, tolerance)

AUTOREGRESSIVE = ("flowlab.transforms.autoregressive", "flowlab.nets.made", "flowlab.models.maf",
                  "flowlab.models.tarflow", "flowlab.transforms.univariate.Affine")
ATTENTION = ("flowlab.models.tarflow",)
#: What assignment 5 grades: flowlab's code for these is a stub in the grading kernel
#: (flowlab_course.trusted.redaction); every part's `reference` is drawn from these entries.
GRADED = Graded("assignment 5", {
    "flowlab.transforms.autoregressive": "the MADE masks and the MAF layer",
    "flowlab.nets.made": "the MADE masks",
    "flowlab.models.maf": "the MAF layer",
    # the affine map a MAF layer applies per coordinate (Affine()(x, params) is its formula)
    "flowlab.transforms.univariate.Affine": "the MAF layer",
    "flowlab.models.tarflow": "causal attention",
    "flowlab.testing": "the log-determinant",
})


# ------------------------------------------------------------------------------ MADE
def _degrees(features: int, hidden: list[int]) -> list[Tensor]:
    out = [torch.arange(1, features + 1)]
    for h in hidden:
        out.append(torch.arange(h) % (features - 1) + 1)
    return out


def _masks(degrees: list[Tensor], params: int) -> list[Tensor]:
    masks = [(m[:, None] >= mp[None, :]).to(torch.float64) for mp, m in zip(degrees[:-1], degrees[1:])]
    m_out = degrees[0].repeat(params)
    masks.append((m_out[:, None] > degrees[-1][None, :]).to(torch.float64))
    return masks


#: (D, hidden sizes): D = 2 (one hidden degree), hidden smaller / larger than D - 1, one to three
#: hidden layers of different sizes
DEGREE_CASES = ((2, [3]), (3, [4]), (4, [3, 5]), (5, [8, 8]), (7, [6, 13, 2]), (3, [1]),
                # D = 20 and 4 hidden layers up to 64 units: sizes and depths beyond constants
                (20, [50, 64, 40, 30]))


@part("made_degrees", defines=("made_degrees",), reference=AUTOREGRESSIVE)
def grade_made_degrees(k) -> None:
    name = "made_degrees"
    gen = fresh_generator()
    cases = list(DEGREE_CASES)
    if random_cases():
        d = int(torch.randint(2, 10, (1,), generator=gen))
        cases.append((d, [int(v) for v in torch.randint(1, 20, (2,), generator=gen)]))
    answers = calls(k, "made_degrees", [[features, list(hidden)] for features, hidden in cases],
                    part=name, what="made_degrees(D, hidden_sizes)")
    for (features, hidden), got in zip(cases, answers):
        what = f"made_degrees({features}, {hidden})"
        want = _degrees(features, hidden)
        if isinstance(got, tuple):
            got = list(got)
        if not isinstance(got, list) or len(got) != len(want):
            raise GradingFailure(f"{what} must return a list of {len(want)} tensors (the input "
                                 "degrees, then one per hidden layer).", name)
        for i, (g, w) in enumerate(zip(got, want)):
            label = "the input degrees m_in" if i == 0 else f"the degrees of hidden layer {i}"
            g = check_tensor(g, tuple(w.shape), f"{label} of {what}", name, floating=False)
            if g.is_floating_point() or g.dtype == torch.bool:
                raise GradingFailure(f"{label} of {what} should be an integer tensor, got "
                                     f"{g.dtype}.", name)
            if not torch.equal(g.to(torch.long), w):
                if i == 0:
                    hint = (" Inputs are numbered from 1: m(d) = d + 1 for the 0-based index d."
                            if torch.equal(g.to(torch.long), w - 1) else
                            " Input d has degree d + 1 (the input order).")
                else:
                    alt = torch.arange(w.numel()) % features + 1
                    zero = torch.arange(w.numel()) % (features - 1)
                    hint = (" Hidden degrees lie in 1..D-1 (a unit of degree D could see every "
                            "input and would be useless): (k mod (D - 1)) + 1."
                            if torch.equal(g.to(torch.long), alt) else
                            " Hidden degrees start at 1: (k mod (D - 1)) + 1 (a unit of degree 0 "
                            "would see no input)." if torch.equal(g.to(torch.long), zero) else
                            " Hidden unit k has degree (k mod (D - 1)) + 1.")
                raise GradingFailure(f"{label} of {what} are wrong.{hint}", name)


def _random_degrees(gen: torch.Generator, features: int, hidden: list[int]) -> list[Tensor]:
    """A random input order and random hidden degrees in 1..D-1 (not the cycling convention)."""
    out = [torch.randperm(features, generator=gen) + 1]
    for h in hidden:
        out.append(torch.randint(1, max(features, 2), (h,), generator=gen))
    return out


#: (degrees, params_per_feature): hand-made adversarial degree lists (every comparison
#: equal / below / above, a reversed order, single units) besides the cycling convention
FIXED_DEGREES = (
    ([[1, 2], [1]], 2),
    ([[1, 2, 3], [1, 2, 1, 2]], 2),
    ([[3, 1, 2], [2, 2, 1], [1, 2]], 1),
    ([[2, 1, 4, 3], [3, 1, 2, 3, 1], [1, 1, 3]], 3),
    ([[1, 2, 3, 4, 5], [4, 3, 2, 1], [2, 4, 1, 3, 2, 4]], 2),
)


def _mask_cases(gen: torch.Generator):
    """FIXED_DEGREES; the cycling convention for D = 6; D = 24 with FOUR hidden layers of up to
    70 units and 3 parameters per feature (sizes and depths beyond any small constant); then,
    unless fixed-only, random degrees."""
    for degrees, params in FIXED_DEGREES:
        yield [torch.tensor(d) for d in degrees], params
    yield _degrees(6, [7, 9]), 2
    yield _degrees(24, [70, 40, 64, 33]), 3
    if not random_cases():
        return
    features = int(torch.randint(2, 8, (1,), generator=gen))
    hidden = [int(v) for v in torch.randint(1, 12, (int(torch.randint(1, 4, (1,), generator=gen)),),
                                            generator=gen)]
    yield _random_degrees(gen, features, hidden), int(torch.randint(1, 4, (1,), generator=gen))


def _student_masks(k, cases: list, name: str) -> list[list]:
    """``made_masks(degrees, params)`` for every case in ONE round trip (inputs checked for
    in-place writes), each answer a list.  Its LENGTH is checked by each part for what it grades
    (the hidden masks come first, the output mask last), so that a wrong count costs only the
    part whose masks are missing or extra."""
    answers = calls(k, "made_masks", [[list(d), p] for d, p in cases], part=name,
                    what="made_masks(degrees, params_per_feature)")
    out = []
    for (degrees, params), got in zip(cases, answers):
        if isinstance(got, tuple):
            got = list(got)
        if not isinstance(got, list) or not got:
            raise GradingFailure(f"{_describe(degrees, params)} must return a list of "
                                 f"{len(degrees)} masks: one per hidden layer, then the output "
                                 "mask.", name)
        out.append(got)
    return out


def _describe(degrees: list[Tensor], params: int) -> str:
    return f"made_masks(degrees of sizes {[d.numel() for d in degrees]}, params_per_feature={params})"


@part("made_hidden_masks", defines=("made_masks",), reference=AUTOREGRESSIVE)
def grade_made_hidden_masks(k) -> None:
    name = "made_hidden_masks"
    gen = fresh_generator()
    cases = list(_mask_cases(gen))
    for (degrees, params), got in zip(cases, _student_masks(k, cases, name)):
        what = _describe(degrees, params)
        want = _masks(degrees, params)
        hidden = len(degrees) - 1
        # the hidden masks, then the output mask: a missing output mask is the other part's
        if len(got) not in (hidden, hidden + 1):
            raise GradingFailure(f"{what} returned {len(got)} masks; with {hidden} hidden "
                                 f"layer{'s' if hidden > 1 else ''} there is one mask between "
                                 "each pair of consecutive layers: "
                                 f"{hidden} hidden masks (input -> first hidden layer, then each "
                                 "hidden layer -> the next), then the output mask.", name)
        for i in range(hidden):
            label = f"the mask of hidden layer {i + 1} of {what}"
            g = check_tensor(got[i], tuple(want[i].shape), label, name)
            m_prev, m = degrees[i], degrees[i + 1]
            expect_close(g, want[i], f"{label}: M[k, j] = 1 iff m(k) >= m(j)", part=name, atol=0,
                         rtol=0, hints=[
                             ((m[:, None] > m_prev[None, :]).to(torch.float64), "Between hidden "
                              "layers the comparison is >= (a unit may see units of its own "
                              "degree); only the output mask uses the strict >."),
                             (want[i].T if m.numel() == m_prev.numel() else want[i] + 2,
                              "The mask is transposed: shape (out, in) like nn.Linear.weight, "
                              "row k is the unit of the next layer."),
                             ((m[:, None] <= m_prev[None, :]).to(torch.float64), "The comparison "
                              "is the wrong way round: unit k sees unit j iff m(k) >= m(j)."),
                         ])


@part("made_output_mask", defines=("made_masks",), reference=AUTOREGRESSIVE)
def grade_made_output_mask(k) -> None:
    name = "made_output_mask"
    gen = fresh_generator()
    cases = list(_mask_cases(gen))
    for (degrees, params), got in zip(cases, _student_masks(k, cases, name)):
        what = _describe(degrees, params)
        want = _masks(degrees, params)[-1]
        label = f"the output mask of {what}"
        last = got[-1]
        if isinstance(last, Tensor) and tuple(last.shape) != tuple(want.shape):
            raise GradingFailure(f"{label}: the LAST mask of the list is the output mask, of "
                                 f"shape (params_per_feature * D, last hidden size) = "
                                 f"{tuple(want.shape)}, got {tuple(last.shape)}.", name)
        g = check_tensor(last, tuple(want.shape), label, name)
        m_in, m_last = degrees[0], degrees[-1]
        features = m_in.numel()
        d_major = m_in.repeat_interleave(params)
        expect_close(g, want, f"{label}: M[p*D + d, k] = 1 iff m(d) > m(k)", part=name, atol=0,
                     rtol=0, hints=[
                         ((m_in.repeat(params)[:, None] >= m_last[None, :]).to(torch.float64),
                          "The output mask needs the STRICT comparison m(d) > m(k): with >= "
                          "output d could see x_d itself and the Jacobian is no longer "
                          "triangular."),
                         ((d_major[:, None] > m_last[None, :]).to(torch.float64) if params > 1
                          else want + 2, "The outputs are parameter-major: row p*D + d is "
                          "parameter p of coordinate d (repeat the degrees, do not interleave "
                          "them)."),
                         ((m_in.repeat(params)[:, None] < m_last[None, :]).to(torch.float64),
                          "The comparison is the wrong way round: output d sees hidden unit k "
                          "iff m(d) > m(k)."),
                     ])
        # the autoregressive property itself, through the grader's hidden masks: output row
        # p*D + d must have no path from x_j with m(j) >= m(d)
        path = torch.eye(features, dtype=torch.float64)
        for mask in _masks(degrees, params)[:-1]:
            path = (mask @ path > 0).to(torch.float64)
        reach = (g.to(torch.float64) @ path > 0)
        leaks = reach & (m_in[None, :] >= m_in.repeat(params)[:, None])
        if bool(leaks.any()):
            row, col = (int(v) for v in leaks.nonzero()[0])
            raise GradingFailure(f"{label}: output row {row} (coordinate {row % features}) can "
                                 f"see input {col}, which does not come before it.", name)


# ------------------------------------------------------------------------------ MAF
def _conditioner(gen: torch.Generator, features: int, hidden: int = 10, scale: float = 0.5):
    """A random autoregressive MLP D -> hidden -> 2D (masked weights): (spec, module)."""
    masks = _masks(_degrees(features, [hidden]), 2)
    w1 = scale * torch.randn(hidden, features, generator=gen, dtype=torch.float64) * masks[0]
    b1 = scale * torch.randn(hidden, generator=gen, dtype=torch.float64)
    w2 = scale * torch.randn(2 * features, hidden, generator=gen, dtype=torch.float64) * masks[1]
    b2 = scale * torch.randn(2 * features, generator=gen, dtype=torch.float64)
    spec = [["linear", w1, b1], ["tanh"], ["linear", w2, b2]]
    module = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, 2 * features))
    module = module.double()
    with torch.no_grad():
        module[0].weight.copy_(w1)
        module[0].bias.copy_(b1)
        module[2].weight.copy_(w2)
        module[2].bias.copy_(b2)
    return spec, module


def _maf_forward(cond: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    mu, alpha = cond(x).chunk(2, dim=1)
    return (x - mu) * torch.exp(-alpha), -alpha.sum(dim=1)


def _maf_inverse(cond: nn.Module, z: Tensor) -> tuple[Tensor, Tensor]:
    x = torch.zeros_like(z)
    for _ in range(z.shape[1]):
        mu, alpha = cond(x).chunk(2, dim=1)
        x = z * torch.exp(alpha) + mu
    return x, alpha.sum(dim=1)


#: feature counts: D = 1 (the conditioner sees nothing), 2, odd, larger; D = 16 with 32 hidden
#: units — the inverse's fixed-point iteration converges only after 16 passes (a chain of 16
#: dependencies), so a loop of any smaller constant count fails
MAF_FEATURES = (1, 2, 3, 5, 8, 16)
#: the notebook's dtype: D = 5 in float32 (float32 tolerances; no finite differences)
MAF_FLOAT32 = (5,)
_STEP = 1e-5

def _maf_cases(gen: torch.Generator, name: str):
    """``(D, spec, conditioner, x)``: x float64, or float32 for MAF_FLOAT32 (then, unless
    fixed-only, a random D)."""
    fg = fixed_generator(name)
    cases = [(d, torch.float64, fg) for d in MAF_FEATURES]
    cases += [(d, torch.float32, fg) for d in MAF_FLOAT32]
    if random_cases():
        cases.append((int(torch.randint(2, 10, (1,), generator=gen)), torch.float64, gen))
    for d, dtype, g in cases:
        # D = 16: 64 hidden units at scale 0.5 couple every coordinate strongly enough to its
        # predecessors that 10 fixed-point passes leave an error of ~0.1 (measured), not 1e-8
        spec, module = _conditioner(g, max(d, 2), hidden=4 * d if d > 8 else 10)
        if d == 1:  # a one-coordinate MADE: mu and alpha are constants (only the bias)
            spec, module = _constant_conditioner(g)
        yield d, spec, module, randn(g, 4, d).to(dtype)


def _constant_conditioner(gen: torch.Generator):
    w1 = torch.zeros(3, 1, dtype=torch.float64)
    b1 = torch.randn(3, generator=gen, dtype=torch.float64)
    w2 = 0.5 * torch.randn(2, 3, generator=gen, dtype=torch.float64)
    b2 = 0.5 * torch.randn(2, generator=gen, dtype=torch.float64)
    spec = [["linear", w1, b1], ["tanh"], ["linear", w2, b2]]
    module = nn.Sequential(nn.Linear(1, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    with torch.no_grad():
        module[0].weight.copy_(w1)
        module[0].bias.copy_(b1)
        module[2].weight.copy_(w2)
        module[2].bias.copy_(b2)
    return spec, module


def _call_maf(k, direction: str, x: Tensor, spec: list, gen: torch.Generator, name: str) -> dict:
    d = x.shape[1]
    x2 = x.clone()
    x2[0] = x2[0] + 0.5 * torch.randn(d, generator=gen, dtype=x.dtype)
    perturbed = []
    # central differences need float64; a float32 case checks values and form only
    for j in range(d if x.dtype == torch.float64 else 0):
        for sign in (1.0, -1.0):
            v = x.clone()
            v[:, j] += sign * _STEP
            perturbed.append(v)
    w_out = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    w_ld = torch.randn(x.shape[0], generator=gen, dtype=torch.float64)
    what = f"MAF.{direction}"
    raw = run(k, "maf", part=name, what=what, cond=spec, direction=direction, x=x, x2=x2,
              perturbed=perturbed, w_out=w_out, w_ld=w_ld)
    if not isinstance(raw, dict):
        raise GradingFailure(f"{what}: the grader could not read your layer's answer.", name)
    if raw.get("unchanged") is not True:
        raise GradingFailure(f"{what} changed its input in place (e.g. x -= ..., x[...] = ...): "
                             "the caller's tensor must stay as it was; work on a new tensor.",
                             name)
    y, ld = check_pair(raw.get("out"), x, f"{what} (D = {d})", name)
    y2, ld2 = check_pair(raw.get("out2"), x, f"{what} (D = {d})", name)
    same = ({"atol": 1e-9, "rtol": 0.0} if x.dtype == torch.float64 else
            {"atol": 1e-5, "rtol": 1e-5})
    if not (is_close(y[1:], y2[1:], **same) and is_close(ld[1:], ld2[1:], **same)):
        raise GradingFailure(f"{what}: changing one sample changed the result for other samples. "
                             "Each sample must be transformed on its own.", name)
    moved = raw.get("moved")
    if not isinstance(moved, list) or len(moved) != len(perturbed):
        raise GradingFailure(f"{what}: the grader could not read your layer's answers.", name)
    cols = []
    for j in range(len(perturbed) // 2):
        plus = check_tensor(moved[2 * j], tuple(x.shape), what, name, dtype=x.dtype)
        minus = check_tensor(moved[2 * j + 1], tuple(x.shape), what, name, dtype=x.dtype)
        cols.append((plus - minus) / (2 * _STEP))
    # (batch, i, j) = d out_i / d in_j, by central differences (None for float32 cases)
    jac = torch.stack(cols, dim=-1) if cols else None
    return {"y": y, "ld": ld, "jac": jac, "grads": raw.get("grads"), "w_out": w_out, "w_ld": w_ld}


def _check_triangular(ans: dict, what: str, name: str) -> None:
    jac = ans["jac"]
    if jac is None:
        return
    d = jac.shape[-1]
    upper = torch.triu(torch.ones(d, d, dtype=torch.bool), diagonal=1)
    leak = jac.abs().amax(dim=0) * upper
    if float(leak.max()) > 1e-6:
        i, j = (int(v) for v in (leak == leak.max()).nonzero()[0])
        raise GradingFailure(f"{what}: output {i} depends on input {j} > {i} (brute-force "
                             "Jacobian): an autoregressive map is lower triangular; coordinate i "
                             "may only use the coordinates before it.", name)
    diag = torch.diagonal(jac, dim1=-2, dim2=-1)
    if bool((diag.abs() < 1e-12).any()):
        raise GradingFailure(f"{what}: some output does not depend on its own input (a zero on "
                             "the Jacobian's diagonal): the map is not invertible.", name)
    brute = torch.log(diag.abs()).sum(dim=1)
    if not is_close(ans["ld"], brute, atol=1e-5, rtol=1e-5):
        raise GradingFailure(f"{what}: the log|det| you return differs from the log of the product "
                             "of the Jacobian's diagonal (brute force, largest error "
                             f"{float((ans['ld'] - brute).abs().max()):.3g}).", name)


@part("maf_forward", defines=("MAF",), reference=AUTOREGRESSIVE)
def grade_maf_forward(k) -> None:
    name = "maf_forward"
    gen = fresh_generator()
    for d, spec, cond, x in _maf_cases(gen, name):
        ans = _call_maf(k, "forward", x, spec, gen, name)
        tol, x = tolerance(x, 10.0), x.to(torch.float64)
        z_ref, ld_ref = _maf_forward(cond, x)
        with torch.no_grad():
            mu, alpha = cond(x).chunk(2, dim=1)
            hints = [
                ((x - alpha) * torch.exp(-mu), "mu and alpha are swapped: "
                 "mu, alpha = conditioner(x).chunk(2, dim=1) (mu first)."),
                ((x - mu) * torch.exp(alpha), "The normalizing direction divides by the scale: "
                 "z = (x - mu) * exp(-alpha)."),
                (x * torch.exp(-alpha) - mu, "Subtract mu first, then scale: "
                 "z = (x - mu) * exp(-alpha)."),
                ((x + mu) * torch.exp(-alpha), "Subtract mu: z = (x - mu) * exp(-alpha)."),
            ]
        expect_close(ans["y"], z_ref.detach(), f"MAF.forward (D = {d}): z = (x - mu(x)) * "
                     "exp(-alpha(x))", part=name, hints=hints, **tol)
        expect_close(ans["ld"], ld_ref.detach(), f"MAF.forward (D = {d}): log|det Df| = "
                     "-sum_d alpha_d", part=name, **tol, hints=[
                         (-ld_ref.detach(), "It has the wrong sign: z = (x - mu) exp(-alpha) "
                          "shrinks by exp(-alpha), so log|det Df| = -sum alpha."),
                         (-mu.sum(dim=1), "You summed mu; log|det Df| = -sum alpha (a shift "
                          "does not change volume)."),
                     ])
        _check_triangular(ans, f"MAF.forward (D = {d})", name)
        _check_grads(ans, cond, z_ref, ld_ref, "MAF.forward", name)


def _check_grads(ans: dict, cond: nn.Module, y_ref: Tensor, ld_ref: Tensor, what: str,
                 name: str) -> None:
    grads = ans["grads"]
    params = list(cond.parameters())
    expected = torch.autograd.grad((y_ref * ans["w_out"]).sum() + (ld_ref * ans["w_ld"]).sum(),
                                   params, allow_unused=True)
    if not isinstance(grads, list) or len(grads) != len(params):
        raise GradingFailure(f"{what}: the grader could not read the gradients.", name)
    tol = ({"atol": 1e-6, "rtol": 1e-4} if ans["y"].dtype == torch.float64 else
           {"atol": 1e-3, "rtol": 1e-3})
    for got, want in zip(grads, expected):
        if want is None:
            continue
        if not isinstance(got, Tensor) or not is_close(got, want, **tol):
            raise GradingFailure(
                f"{what}: the values are right, but the gradient does not flow back into the "
                "conditioner's weights as it should (a .detach(), .data, torch.no_grad() or a "
                "conversion to numpy/float breaks the graph, so training would never update the "
                "MADE).", name)


@part("maf_inverse", defines=("MAF",), reference=AUTOREGRESSIVE)
def grade_maf_inverse(k) -> None:
    name = "maf_inverse"
    gen = fresh_generator()
    for d, spec, cond, x in _maf_cases(gen, name):
        dtype = x.dtype
        with torch.no_grad():
            z, _ = _maf_forward(cond, x.to(torch.float64))
        z = z.to(dtype)
        ans = _call_maf(k, "inverse", z, spec, gen, name)
        tol, z = tolerance(z, 10.0), z.to(torch.float64)
        with torch.no_grad():
            x, ld_inv = _maf_inverse(cond, z)  # the exact inverse of the (rounded) z sent
            ld_f = -ld_inv
            one_pass = _maf_inverse_passes(cond, z, 1)
            short = _maf_inverse_passes(cond, z, d - 1) if d > 1 else one_pass + 1
            mu_z, alpha_z = cond(z).chunk(2, dim=1)
            hints = [
                (one_pass, "Only the first coordinate is right: the inverse is sequential, repeat "
                 "`mu, alpha = conditioner(x); x = z * exp(alpha) + mu` D times."),
                (short, "The last coordinate is wrong: D passes are needed (after pass k the "
                 "first k coordinates are exact)."),
                (z * torch.exp(alpha_z) + mu_z, "The parameters must be computed from x (the "
                 "coordinates already recovered), not from z."),
                (_maf_inverse_custom(cond, z, lambda zz, mu, a: (zz - mu) * torch.exp(a)),
                 "Undo the steps in reverse order: x = z * exp(alpha) + mu (scale, then shift)."),
                (_maf_inverse_custom(cond, z, lambda zz, mu, a: zz * torch.exp(-a) + mu),
                 "The generative direction multiplies by exp(+alpha): x = z * exp(alpha) + mu."),
            ]
        expect_close(ans["y"], x, f"MAF.inverse (D = {d}): x_d = z_d * exp(alpha_d(x_<d)) + "
                     "mu_d(x_<d), D sequential passes", part=name, hints=hints, **tol)
        expect_close(ans["ld"], -ld_f, f"MAF.inverse (D = {d}): log|det Dg(z)| = +sum_d "
                     "alpha_d(x)", part=name, **tol, hints=[
                         (ld_f, "It has the wrong sign: the inverse returns log|det Dg(z)| = "
                          "-log|det Df(x)| = +sum alpha."),
                         (alpha_z.sum(dim=1), "alpha must be evaluated at the recovered x, not "
                          "at z."),
                     ])
        _check_triangular(ans, f"MAF.inverse (D = {d})", name)


def _maf_inverse_passes(cond: nn.Module, z: Tensor, passes: int) -> Tensor:
    x = torch.zeros_like(z)
    for _ in range(passes):
        mu, alpha = cond(x).chunk(2, dim=1)
        x = z * torch.exp(alpha) + mu
    return x


def _maf_inverse_custom(cond: nn.Module, z: Tensor, step) -> Tensor:
    x = torch.zeros_like(z)
    for _ in range(z.shape[1]):
        mu, alpha = cond(x).chunk(2, dim=1)
        x = step(z, mu, alpha)
    return x


# ------------------------------------------------------------------------------ attention
def _causal(t: int, strict: bool) -> Tensor:
    i = torch.arange(t).reshape(-1, 1)
    j = torch.arange(t).reshape(1, -1)
    return j < i if strict else j <= i


@part("causal_mask", defines=("causal_mask",), reference=ATTENTION)
def grade_causal_mask(k) -> None:
    name = "causal_mask"
    gen = fresh_generator()
    # T = 1 to 8, then 40 and 129: lengths beyond any small constant (a table of 32 or 128)
    sizes = [1, 2, 3, 4, 5, 7, 8, 40, 129]
    if random_cases():
        sizes.append(int(torch.randint(9, 20, (1,), generator=gen)))
    cases = [(t, s) for t in sizes for s in (False, True)]
    got = run(k, "calls", part=name, what="causal_mask(T, strict)", fn="causal_mask",
              cases=[[t, s] for t, s in cases] + [[4]])
    if not isinstance(got, list) or len(got) != len(cases) + 1 or not all(
            isinstance(v, list) and len(v) == 2 for v in got):
        raise GradingFailure("causal_mask must return a tensor.", name)
    got = [value for value, _unchanged in got]
    for (t, strict), m in zip(cases + [(4, False)], got):
        what = f"causal_mask({t}, strict={strict})"
        m = check_tensor(m, (t, t), what, name, floating=False)
        if m.dtype != torch.bool:
            raise GradingFailure(f"{what} has dtype {m.dtype}; return a boolean tensor (True = may "
                                 "attend), e.g. j <= i for index grids i, j.", name)
        want = _causal(t, strict)
        if not torch.equal(m, want):
            wrong = (m != want).nonzero()[0].tolist()
            if torch.equal(m, want.T):
                hint = " It is transposed: row i is the query token, column j the key token."
            elif torch.equal(m, _causal(t, not strict)):
                hint = (" strict=True excludes the diagonal (j < i); strict=False includes it "
                        "(j <= i).")
            elif torch.equal(m, ~want):
                hint = " True marks the tokens that MAY be attended to, not the masked ones."
            else:
                hint = ""
            raise GradingFailure(f"{what}: entry [i, j] = {wrong} is wrong (True iff token i may "
                                 f"attend to token j: j <= i, or j < i when strict).{hint}", name)


#: (batch, T, d, d_k, d_v): one token, two, odd lengths, d_k != d_v; T = 40 (a length beyond
#: any small constant)
ATTENTION_CASES = ((2, 1, 3, 2, 2), (2, 2, 3, 4, 2), (3, 5, 4, 3, 2), (2, 7, 2, 5, 3),
                   (2, 40, 3, 4, 2))
#: the notebook's dtype: float32 tokens and weights, kept float32
ATTENTION_FLOAT32 = ((2, 6, 3, 4, 2),)


def _shifted(out: Tensor) -> Tensor:
    return torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], dim=1)


def _attention(x: Tensor, wq: Tensor, wk: Tensor, wv: Tensor, shift: bool, *, scale: bool = True,
               strict: bool = False, dim: int = -1, after: bool = False) -> Tensor:
    q, k, v = x @ wq, x @ wk, x @ wv
    scores = q @ k.transpose(-2, -1)
    if scale:
        scores = scores / math.sqrt(q.shape[-1])
    allowed = _causal(x.shape[1], strict)
    if after:  # the mask applied to the weights after the softmax (rows no longer sum to 1)
        weights = torch.softmax(scores, dim=-1) * allowed
    else:
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=dim)
        weights = torch.nan_to_num(weights, nan=0.0).masked_fill(~allowed, 0.0)
    out = weights @ v
    return _shifted(out) if shift else out


@part("causal_attention", defines=("causal_attention",), reference=ATTENTION,
      reveals=("causal_mask",))  # the grader's causal_mask replaces the student's
def grade_causal_attention(k) -> None:
    name = "causal_attention"
    gen, fg = fresh_generator(), fixed_generator(name)
    cases = [(*c, torch.float64, fg) for c in ATTENTION_CASES]
    cases += [(*c, torch.float32, fg) for c in ATTENTION_FLOAT32]
    if random_cases():
        cases.append((*(int(v) for v in torch.randint(2, 7, (5,), generator=gen)), torch.float64,
                      gen))
    for b, t, d, dk, dv, dtype, g in cases:
        x = randn(g, b, t, d).to(dtype)
        wq, wk, wv = (w.to(dtype) for w in (randn(g, d, dk), randn(g, d, dk), randn(g, d, dv)))
        sent = (x, wq, wk, wv)
        for shift in (False, True):
            x, wq, wk, wv = sent  # in the case's dtype (compared in float64 below)
            what = f"causal_attention(x of shape {(b, t, d)}, d_k={dk}, d_v={dv}, shift={shift})"
            if dtype == torch.float32:
                what += " in float32"
            perturbed = []
            for j in range(t):
                v = x.clone()
                v[:, j] = v[:, j] + 0.7 * torch.randn(d, generator=g, dtype=torch.float64).to(dtype)
                perturbed.append(v)
            # the grader's causal_mask (kernel/pieces/causal_mask.py) stands in for the
            # student's in the notebook's namespace (the globals of their function whatever
            # decorator wraps it) and their own is put back afterwards
            out = run(k, "attention", part=name, what=what, pieces=("causal_mask",), x=x,
                      wq=wq, wk=wk, wv=wv, shift=shift, perturbed=perturbed)
            if not isinstance(out, dict):
                raise GradingFailure(f"{what}: the grader could not read the answer.", name)
            y = check_tensor(out.get("out"), (b, t, dv), what, name, dtype=x.dtype)
            moved = out.get("moved") or []
            if len(moved) != t:
                raise GradingFailure(f"{what}: the grader could not read the answers.", name)
            # the dependency pattern, from the outputs for inputs changed one token at a time
            for j, m in enumerate(moved):
                m = check_tensor(m, (b, t, dv), what, name, dtype=x.dtype)
                changed = (m - y).abs().amax(dim=(0, 2)) > (1e-10 if dtype == torch.float64
                                                            else 1e-5)
                future = torch.arange(t) <= j if shift else torch.arange(t) < j
                bad = (changed & future).nonzero().flatten().tolist()
                if bad:
                    rule = "j < i (shift=True)" if shift else "j <= i"
                    extra = (" Masking j < i is not enough: the query q_i reads x_i itself; "
                             "compute the causal (j <= i) output and shift it by one token."
                             if shift and bad[0] == j else "")
                    raise GradingFailure(
                        f"{what}: changing token {j} changed the output at token {bad[0]}; the "
                        f"output at token i may only depend on the tokens {rule}: information "
                        f"from the future leaks, so the flow would not be autoregressive.{extra}",
                        name)
            tol = tolerance(x, 1.0)
            x, wq, wk, wv, y = (v.to(torch.float64) for v in (x, wq, wk, wv, y))
            want = _attention(x, wq, wk, wv, shift)
            hints = [
                (_attention(x, wq, wk, wv, shift, scale=False), "Scale the scores by "
                 "1/sqrt(d_k) before the softmax."),
                (_attention(x, wq, wk, wv, shift, dim=-2), "The softmax is over the keys j "
                 "(the last axis of q k^T), not over the queries."),
                (_attention(x, wq, wv, wk, shift) if dk == dv else want + 1, "k = x W_k and "
                 "v = x W_v are swapped."),
                (_attention(x, wq, wk, wv, shift, after=True), "Mask the scores with -inf BEFORE "
                 "the softmax; zeroing the weights after it leaves rows that do not sum to 1."),
                (_attention(x, wq, wk, wv, False, strict=True), "shift=True shifts the causal "
                 "output by one token (out'_0 = 0, out'_i = out_{i-1}); masking j < i instead "
                 "still lets the query q_i read x_i." if shift else
                 "shift=False uses the causal mask j <= i (a token attends to itself)."),
            ]
            if shift:
                hints.append((_attention(x, wq, wk, wv, False), "shift=True: return the causal "
                              "output shifted by one token, out'_0 = 0, out'_i = out_{i-1}."))
            expect_close(y, want, f"{what}: out_i = sum_(j <= i) softmax_j(q_i . k_j / sqrt(d_k)) "
                         "v_j" + (", shifted by one token" if shift else ""), part=name,
                         hints=hints, **tol)


__all__ = ["grade_made_degrees", "grade_made_hidden_masks", "grade_made_output_mask",
           "grade_maf_forward", "grade_maf_inverse", "grade_causal_mask",
           "grade_causal_attention"]
