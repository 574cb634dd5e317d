"""In-process tests of assignment 4's trusted grader (Glow), on a LocalBridge.

Checked here (issue 12):

* the solution passes every part, and the untouched release fails every part;
* every catalogue mistake of assignment 4 fails its OWN part at every one of ``FLOWLAB_REPEATS``
  (default 20) gradings with fresh random inputs, with a message, and passes every other part —
  a wrong ``weight()`` costs only ``conv_weight`` (the grader grades ``forward``/``inverse`` with
  its own), a wrong forward formula costs nothing in ``actnorm_init`` (graded on the parameters);
* the two 1x1-convolution mistakes issue 12 saw caught in only 77% of gradings (``torch.logdet`` of
  a W whose determinant may be negative, an LU inverse with P instead of P^T) are caught in 100 of
  100 (fixed cases with det W < 0 and permutations that are not their own inverse);
* correct solutions in other styles pass: ``conv2d``, ``torch.linalg.solve``, LU triangular
  solves, ``slogdet`` log-dets, biased std with an eps, ``.data`` assignment, ``torch.randn`` with
  ``flow.event_shape``, debug prints, ``logging`` and ``tqdm`` on stderr;
* flowlab's own temperature sampling earns nothing, however it is reached (``Flow.sample``,
  ``rsample``, a ``StandardNormal`` or ``DiagonalGaussian`` of the student's own sampled with
  ``temperature=T``, ``distributions.temper``): they are stubs while graded.
"""

from __future__ import annotations

import os

import matplotlib
import pytest

from catalogue import CATALOGUE
from local_grading import grade, namespace, parts, source
from nbgrader_course import patch

matplotlib.use("Agg")


ASSIGNMENT, MODULE = "04_glow", "assignment4"
REPEATS = int(os.environ.get("FLOWLAB_REPEATS", "20"))
SOURCE = source(ASSIGNMENT)
PARTS = parts(SOURCE)
MISTAKES = CATALOGUE[ASSIGNMENT]




@pytest.mark.slow
@pytest.mark.parametrize("name", ["conv_logdet_via_logdet", "conv_inverse_lu_wrong_permutation"])
def test_issue_12_conv_mistakes_caught_in_100_of_100(name):
    mistake = next(m for m in MISTAKES if m.name == name)
    ns = namespace(patch(SOURCE, mistake.old, mistake.new))
    caught = sum(grade(MODULE, ns, mistake.part) is not None for _ in range(100))
    assert caught == 100


_ACTNORM_INIT = """            with torch.no_grad():
                self.loc.copy_(x.mean(dim=(0, 2, 3)))
                self.log_scale.copy_(torch.log(x.std(dim=(0, 2, 3))))"""
_ACTNORM_FORWARD = """        loc = self.loc.reshape(1, -1, 1, 1)
        log_scale = self.log_scale.reshape(1, -1, 1, 1)
        z = (x - loc) * torch.exp(-log_scale)
        pixels = x.shape[2] * x.shape[3]
        return z, (-pixels * self.log_scale.sum()).expand(x.shape[0])"""
_ACTNORM_INVERSE = """        x = z * torch.exp(log_scale) + loc
        pixels = z.shape[2] * z.shape[3]"""
_WEIGHT = """        c = self.log_abs_diag.shape[0]
        eye = torch.eye(c, dtype=self.lower.dtype, device=self.lower.device)
        L = torch.tril(self.lower, -1) + eye
        U = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.log_abs_diag))
        return self.permutation @ L @ U"""
_CONV_FORWARD = """        W = self.weight()
        z = torch.einsum("ij,bjhw->bihw", W, x)
        pixels = x.shape[2] * x.shape[3]
        return z, (pixels * self.log_abs_diag.sum()).expand(x.shape[0])"""
_CONV_INVERSE = """        W_inv = torch.linalg.inv(self.weight())
        x = torch.einsum("ij,bjhw->bihw", W_inv, z)
        pixels = z.shape[2] * z.shape[3]
        return x, (-pixels * self.log_abs_diag.sum()).expand(z.shape[0])"""
_TEMPERATURE = """    eps = flow.base.sample(n)  # N(0, I), in the flow's dtype and device
    z = temperature * eps
    x, _ = flow.inverse(z)
    return x"""

ALTERNATIVES = {
    # issue 27: styles that must also pass the float32 and the C = 20 / 40 cases
    "indexing_broadcast_and_solve_per_pixel": [
        (_ACTNORM_FORWARD, """        scale = torch.exp(-self.log_scale)[None, :, None, None]
        z = (x - self.loc[None, :, None, None]) * scale
        logdet = -x.shape[2] * x.shape[3] * self.log_scale.sum()
        return z, logdet * torch.ones(x.shape[0], dtype=x.dtype)"""),
        (_CONV_INVERSE, """        b, c, h, w = z.shape
        x = torch.linalg.solve(self.weight(), z.reshape(b, c, h * w)).reshape(b, c, h, w)
        pixels = h * w
        return x, -pixels * self.log_abs_diag.sum() * torch.ones_like(z[:, 0, 0, 0])"""),
    ],
    "movedim_matmul_and_logdet_loop": [
        (_CONV_FORWARD, """        W = self.weight()
        z = torch.movedim(torch.movedim(x, 1, -1) @ W.T, -1, 1)
        total = 0.0
        for c in range(self.log_abs_diag.shape[0]):
            total = total + self.log_abs_diag[c]
        pixels = x.shape[2] * x.shape[3]
        return z, (pixels * total).expand(x.shape[0])"""),
        (_ACTNORM_INVERSE, """        x = torch.addcmul(loc, z, log_scale.exp())
        pixels = z.shape[2] * z.shape[3]"""),
    ],
    "conv2d_solve_and_slogdet": [
        (_CONV_FORWARD, """        W = self.weight()
        c = W.shape[0]
        z = torch.nn.functional.conv2d(x, W.reshape(c, c, 1, 1))
        return z, x[0, 0].numel() * torch.linalg.slogdet(W)[1].expand(x.shape[0])"""),
        (_CONV_INVERSE, """        W = self.weight()
        x = torch.linalg.solve(W, z.flatten(2)).reshape(z.shape)
        return x, -z.shape[2] * z.shape[3] * torch.linalg.slogdet(W)[1] * torch.ones(len(z), dtype=z.dtype)"""),
    ],
    "lu_triangular_solves_and_multi_dot": [
        (_WEIGHT, """        n = len(self.sign)
        L = self.lower.tril(-1) + torch.eye(n, dtype=self.lower.dtype)
        U = self.upper.triu(1) + torch.diag_embed(self.sign * self.log_abs_diag.exp())
        return torch.linalg.multi_dot([self.permutation, L, U])"""),
        (_CONV_INVERSE, """        c = self.log_abs_diag.shape[0]
        L = torch.tril(self.lower, -1) + torch.eye(c, dtype=self.lower.dtype)
        U = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.log_abs_diag))
        b, _, h, w = z.shape
        flat = z.permute(1, 0, 2, 3).reshape(c, -1)
        y = torch.linalg.solve_triangular(L, self.permutation.T @ flat, upper=False, unitriangular=True)
        x = torch.linalg.solve_triangular(U, y, upper=True).reshape(c, b, h, w).permute(1, 0, 2, 3)
        return x, (-h * w * self.log_abs_diag.sum()).expand(b)"""),
    ],
    "biased_std_eps_and_data": [
        (_ACTNORM_INIT, """            self.loc.data = x.mean(dim=(0, 2, 3)).clone()
            self.log_scale.data = torch.log(x.var(dim=(0, 2, 3), correction=0).add(1e-6).sqrt())"""),
        (_ACTNORM_FORWARD, """        z = (x - self.loc[None, :, None, None]) / torch.exp(self.log_scale)[None, :, None, None]
        return z, -x[0, 0].numel() * self.log_scale.sum() * torch.ones(x.shape[0], dtype=x.dtype)"""),
    ],
    "permute_matmul_and_float32_logdet": [
        (_CONV_FORWARD, """        W = self.weight()
        z = (x.permute(0, 2, 3, 1) @ W.T).permute(0, 3, 1, 2)
        pixels = x.shape[2] * x.shape[3]
        return z, torch.full((x.shape[0],), float(pixels)) * self.log_abs_diag.sum()"""),
        (_ACTNORM_INVERSE, """        x = torch.addcmul(loc, z, log_scale.exp())
        pixels = z[0, 0].numel()"""),
    ],
    "randn_event_shape_prints_logging_tqdm": [
        (_TEMPERATURE, """    import logging
    import sys
    from tqdm.auto import tqdm
    print("sampling", n, "at T =", temperature, file=sys.stderr)
    logging.getLogger("student").warning("temperature %s", temperature)
    chunks = []
    for start in tqdm(range(0, n, 5000), desc="sampling"):
        m = min(5000, n - start)
        z = torch.randn(m, *flow.event_shape) * temperature
        chunks.append(flow.inverse(z)[0])
    return torch.cat(chunks)"""),
        (_WEIGHT, """        print("debug: building W for", self.sign.numel(), "channels")
""" + _WEIGHT),
    ],
}


@pytest.mark.parametrize("style", sorted(ALTERNATIVES))
def test_alternative_correct_style_passes(style):
    nb = SOURCE
    for old, new in ALTERNATIVES[style]:
        nb = patch(nb, old, new)
    ns = namespace(nb)
    assert {p: str(e) for p in PARTS if (e := grade(MODULE, ns, p)) is not None} == {}


@pytest.mark.parametrize("body", [
    "    return flow.sample(n, temperature=temperature)",
    "    return Flow.sample(flow, n, temperature)",
    "    return flow.rsample(n, temperature)",
    "    x, _ = flow.inverse(flow.base.sample(n, temperature))\n    return x",
    # issue 27's known hole: a StandardNormal of their own, sampled at temperature T
    ("    x, _ = flow.inverse(StandardNormal(flow.event_shape).sample(n, temperature=temperature))\n"
     "    return x"),
    ("    from flowlab.distributions import DiagonalGaussian\n"
     "    x, _ = flow.inverse(DiagonalGaussian(flow.event_shape).sample(n, temperature))\n"
     "    return x"),
    ("    from flowlab.distributions import temper\n"
     "    x, _ = flow.inverse(temper(flow.base.sample(n), temperature))\n    return x"),
    ("    return Flow(StandardNormal(flow.event_shape), [flow.transform])._draw(\n"
     "        n, temperature, None, False)[0]"),
    "    return Flow(StandardNormal(flow.event_shape), [flow.transform]).rsample(n, temperature)",
])
def test_flowlab_temperature_sampling_earns_nothing(body):
    """Separation: flowlab's temperature sampling (Flow.sample/rsample, and distributions.temper,
    through which every base distribution scales its noise) is a stub in the grading kernel,
    and the grader's own base ignores T: however flowlab is asked to scale the latent, the part
    is lost."""
    from local_grading import grade_separated

    nb = patch(SOURCE, _TEMPERATURE, "    from flowlab.distributions import StandardNormal\n"
               "    from flowlab.flow import Flow\n" + body)
    err = grade_separated(MODULE, nb, "temperature")
    assert err is not None and err.part == "temperature", err
    # with the real flowlab the same code computes right values: the stub is what stops it
    if "StandardNormal(flow.event_shape).sample" in body:
        assert grade(MODULE, namespace(nb), "temperature") is None


def test_the_notebooks_own_sampling_works_while_graded():
    """The stubs leave what the notebook needs: flow.base.sample(n) at T = 1, Flow.inverse and
    log_prob (the solution passes every part against the redacted flowlab)."""
    from local_grading import grade_separated

    assert {p: str(e) for p in PARTS if (e := grade_separated(MODULE, SOURCE, p)) is not None} == {}


def test_forward_that_ignores_initialized_is_named():
    nb = patch(SOURCE, "        if not self.initialized:\n", "        if True:\n")
    ns = namespace(nb)
    err = grade(MODULE, ns, "actnorm_forward")
    assert err is not None and "re-initialised" in str(err)


def test_wrong_weight_does_not_cost_forward_or_inverse():
    ns = namespace(patch(SOURCE, "return self.permutation @ L @ U", "return L @ U"))
    assert grade(MODULE, ns, "conv_weight") is not None
    assert grade(MODULE, ns, "conv_forward") is None and grade(MODULE, ns, "conv_inverse") is None
