"""In-process tests of assignment 1's trusted grader (change of variables), on a LocalBridge.

Checked here (issue 12):

* the solution passes every part, and the untouched release fails every part;
* every catalogue mistake of assignment 1 fails its OWN part at every one of ``FLOWLAB_REPEATS``
  (default 20) gradings with fresh random inputs, with a message, and passes every other part;
* correct solutions in other styles pass: a substitution loop, ``solve_triangular`` with
  ``left=False``, ``torch.where`` with Python scalars (float32 log-dets for float64 inputs),
  ``einsum``/``F.linear``, float64 helpers, one-hot permutation matrices, indicator densities,
  debug prints, ``logging`` and ``tqdm`` on stderr;
* a layer built from flowlab's reference is delegation.
"""

from __future__ import annotations

import os

import matplotlib
import pytest

from catalogue import CATALOGUE
from local_grading import grade, namespace, parts, source
from nbgrader_course import patch

matplotlib.use("Agg")


ASSIGNMENT, MODULE = "01_change_of_variables", "assignment1"
REPEATS = int(os.environ.get("FLOWLAB_REPEATS", "20"))
SOURCE = source(ASSIGNMENT)
PARTS = parts(SOURCE)
MISTAKES = CATALOGUE[ASSIGNMENT]




_LEAKY_FORWARD = """        a = self.negative_slope
        z = torch.where(x >= 0, x, a * x)
        log_deriv = torch.where(x >= 0, torch.zeros_like(x), torch.full_like(x, math.log(a)))
        return z, log_deriv.reshape(x.shape[0], -1).sum(dim=1)"""
_LEAKY_INVERSE = """        a = self.negative_slope
        x = torch.where(z >= 0, z, z / a)
        log_deriv = torch.where(z >= 0, torch.zeros_like(z), torch.full_like(z, -math.log(a)))
        return x, log_deriv.reshape(z.shape[0], -1).sum(dim=1)"""
_TRI_FORWARD = """        L = torch.tril(self.weight)
        z = x @ L.T + self.bias
        logabsdet = torch.log(torch.diagonal(L).abs()).sum()
        return z, logabsdet.expand(x.shape[0])"""
_TRI_INVERSE = """        L = torch.tril(self.weight)
        x = torch.linalg.solve_triangular(L, (z - self.bias).T, upper=False).T
        logabsdet = -torch.log(torch.diagonal(L).abs()).sum()
        return x, logabsdet.expand(z.shape[0])"""
_PERM_FORWARD = "        return x[:, self.perm], x.new_zeros(x.shape[0])"
_PERM_INVERSE = "        return z[:, torch.argsort(self.perm)], z.new_zeros(z.shape[0])"
_UNIFORM = """    inside = (x > 0) & (x < 1)
    return torch.where(inside, 2 * x, torch.zeros_like(x))"""
_LOGNORMAL = """    positive = x > 0
    safe = torch.where(positive, x, torch.ones_like(x))
    z = torch.log(safe)
    log_p = -0.5 * z**2 - 0.5 * math.log(2 * math.pi) - torch.log(safe)
    return torch.where(positive, log_p, torch.full_like(x, -math.inf))"""

ALTERNATIVES = {
    # issue 27: styles that must pass the float32, large-size and tail cases too
    "new_tensors_in_x_dtype_and_diagonal_loop": [
        (_UNIFORM, """    out = torch.zeros_like(x)
    inside = (x > 0) & (x < 1)
    out[inside] = 2 * x[inside]
    return out"""),
        (_LOGNORMAL, """    out = torch.full(x.shape, -math.inf, dtype=x.dtype)
    pos = x > 0
    log_x = torch.log(x[pos])
    out[pos] = -0.5 * log_x**2 - 0.5 * math.log(2 * math.pi) - log_x
    return out"""),
        (_TRI_FORWARD, """        L = torch.tril(self.weight)
        z = (L @ x.unsqueeze(-1)).squeeze(-1) + self.bias
        logabsdet = sum(torch.log(torch.abs(L[i, i])) for i in range(L.shape[0]))
        return z, logabsdet * torch.ones(x.shape[0], dtype=x.dtype)"""),
    ],
    "masks_as_dtype_and_solve_of_tril": [
        (_LEAKY_FORWARD, """        a = self.negative_slope
        negative = (x < 0).to(x.dtype)
        z = x * (1 - negative) + a * x * negative
        return z, negative.flatten(1).sum(dim=1) * math.log(a)"""),
        (_TRI_INVERSE, """        L = self.weight.tril()
        x = torch.linalg.solve(L, (z - self.bias).unsqueeze(-1)).squeeze(-1)
        return x, -torch.log(L.diagonal().abs()).sum().expand(z.shape[0])"""),
        (_PERM_INVERSE, """        inverse = torch.zeros_like(self.perm)
        inverse[self.perm] = torch.arange(self.perm.numel())
        return z.index_select(1, inverse), torch.zeros_like(z[:, 0])"""),
    ],
    "substitution_loop_and_einsum": [
        (_TRI_FORWARD, """        L = self.weight.tril()
        z = torch.einsum("ij,bj->bi", L, x) + self.bias
        return z, torch.linalg.slogdet(L)[1] * torch.ones(x.shape[0], dtype=x.dtype)"""),
        (_TRI_INVERSE, """        L = torch.tril(self.weight)
        rhs = z - self.bias
        cols = []
        for i in range(L.shape[0]):
            acc = rhs[:, i]
            for j in range(i):
                acc = acc - L[i, j] * cols[j]
            cols.append(acc / L[i, i])
        x = torch.stack(cols, dim=1)
        return x, -torch.log(torch.abs(torch.diagonal(L))).sum() * torch.ones(z.shape[0])"""),
    ],
    "solve_left_false_and_in_place_loop": [
        (_TRI_FORWARD, """        L = torch.tril(self.weight)
        z = torch.nn.functional.linear(x, L, self.bias)
        return z, torch.diagonal(L).abs().log().sum().repeat(x.shape[0])"""),
        (_TRI_INVERSE, """        L = torch.tril(self.weight)
        x = torch.linalg.solve_triangular(L.T, z - self.bias, upper=True, left=False)
        check = torch.zeros_like(z)
        for i in range(L.shape[0]):  # a substitution loop, written in place
            check[:, i] = (z[:, i] - self.bias[i] - check[:, :i] @ L[i, :i]) / L[i, i]
        assert torch.allclose(check, x, atol=1e-5)
        return check, -torch.diagonal(L).abs().log().sum().expand(len(z))"""),
    ],
    "where_with_scalars_float32_logdets": [
        (_LEAKY_FORWARD, """        a = self.negative_slope
        z = torch.nn.functional.leaky_relu(x, a)
        return z, torch.where(x < 0, math.log(a), 0.0).sum(dim=1)"""),
        (_LEAKY_INVERSE, """        a = self.negative_slope
        x = torch.where(z < 0, z / a, z)
        return x, (z < 0).sum(dim=1) * -math.log(a)"""),
        (_PERM_FORWARD, """        P = torch.eye(len(self.perm))[self.perm].to(x.dtype)
        return x @ P.T, torch.zeros(x.shape[0])"""),
        (_PERM_INVERSE, """        inverse = torch.empty_like(self.perm)
        inverse[self.perm] = torch.arange(len(self.perm))
        return z[:, inverse], torch.zeros(len(z))"""),
    ],
    "float64_helpers_and_indicators": [
        (_LEAKY_FORWARD, """        xd = x.double()
        a = float(self.negative_slope)
        z = xd * (xd >= 0) + a * xd * (xd < 0)
        return z.to(x.dtype), ((xd < 0).double() * math.log(a)).flatten(1).sum(-1).to(x.dtype)"""),
        (_UNIFORM, """    x64 = x.to(torch.float64)
    return (2 * x64 * ((x64 > 0) & (x64 < 1))).to(x.dtype)"""),
        (_LOGNORMAL, """    normal = torch.distributions.Normal(0.0, 1.0)
    safe = x.clamp_min(1e-300)
    value = normal.log_prob(torch.log(safe)) - torch.log(safe)
    return value.masked_fill(x <= 0, float("-inf"))"""),
    ],
    "debug_prints_logging_tqdm": [
        (_LEAKY_INVERSE, """        import logging
        import sys
        print("inverse of", tuple(z.shape), file=sys.stderr)
        logging.getLogger("student").warning("leaky inverse called")
""" + _LEAKY_INVERSE),
        (_TRI_INVERSE, """        from tqdm.auto import tqdm
        for _ in tqdm(range(2), desc="solving"):
            pass
        print("debug: solving with L of shape", tuple(self.weight.shape))
""" + _TRI_INVERSE),
        (_UNIFORM, """    import warnings
    warnings.warn("density called")
""" + _UNIFORM),
    ],
}


@pytest.mark.parametrize("style", sorted(ALTERNATIVES))
def test_alternative_correct_style_passes(style):
    nb = SOURCE
    for old, new in ALTERNATIVES[style]:
        nb = patch(nb, old, new)
    ns = namespace(nb)
    assert {p: str(e) for p in PARTS if (e := grade(MODULE, ns, p)) is not None} == {}


def test_reference_subclass_is_not_there_to_inherit():
    """Separation: in the grading kernel flowlab's LeakyReLU is a stub that cannot be subclassed."""
    from local_grading import grade_separated

    nb = patch(SOURCE, "class LeakyReLU(Transform):",
               "from flowlab.transforms.pointwise import LeakyReLU as _Reference\n\n\n"
               "class LeakyReLU(_Reference):")
    for part in ("leaky_forward", "leaky_inverse"):
        try:
            err = grade_separated(MODULE, nb, part)
        except Exception as raised:   # the class statement itself raises: nothing is defined
            err = raised
        assert err is not None, part
        assert "you write the leaky ReLU layer yourself" in str(err), str(err)
    assert grade_separated(MODULE, SOURCE, "leaky_forward") is None   # the solution still passes


def test_negative_diagonal_without_abs_is_named():
    mistake = next(m for m in MISTAKES if m.name == "triangular_log_without_abs")
    err = grade(MODULE, namespace(patch(SOURCE, mistake.old, mistake.new)), "triangular_forward")
    assert err is not None and "NaN" in str(err) and "absolute value" in str(err)


def test_detached_forward_is_named_as_a_gradient_problem():
    mistake = next(m for m in MISTAKES if m.name == "triangular_forward_no_grad")
    err = grade(MODULE, namespace(patch(SOURCE, mistake.old, mistake.new)), "triangular_forward")
    assert err is not None and "gradient" in str(err) and "self.weight" in str(err)
