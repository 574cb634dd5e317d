r"""Hidden tests of assignment 4: Glow.

Parts: ``actnorm_init`` (data-dependent initialisation: per-channel zero mean and unit variance
over batch and pixels, once), ``actnorm_forward`` / ``actnorm_inverse``
(:math:`z = (x - \mu) e^{-\log\sigma}`, :math:`\log|\det Df| = -HW\sum_c \log\sigma_c`, as
:class:`flowlab.transforms.glow.ActNorm`), ``conv_weight`` / ``conv_forward`` / ``conv_inverse`` (the
LU-parameterised invertible 1x1 convolution, as :class:`flowlab.transforms.glow.LUInvertibleConv1x1`)
and ``temperature`` (sampling :math:`x = g(z)`, :math:`z \sim \mathcal N(0, T^2 I)`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .common import build, fresh_generator, randn, reference, run_student, set_param
from .delegation import check_no_reference_subclass, no_delegation
from .errors import GradingFailure
from .layers import call_layer, check_batch_independent, check_logabsdet, check_output
from .numerics import expect_close, is_close

__all__ = [
    "grade_actnorm_init", "grade_actnorm_forward", "grade_actnorm_inverse", "grade_conv_weight",
    "grade_conv_forward", "grade_conv_inverse", "grade_temperature",
]

GLOW = ["flowlab.transforms.glow", "flowlab.models.glow"]


def _actnorm(student_cls, c: int, part: str):
    check_no_reference_subclass(student_cls, GLOW, part)
    layer = build(student_cls, c, part=part, what="ActNorm(channels)")
    check_no_reference_subclass(layer, GLOW, part)
    return layer


def _set_actnorm(layer, loc: Tensor, log_scale: Tensor, part: str) -> None:
    set_param(layer, "loc", loc, part, "the per-channel shift mu of shape (C,)")
    set_param(layer, "log_scale", log_scale, part, "the per-channel log sigma of shape (C,)")
    layer.initialized = True


def _per_channel(v: Tensor) -> Tensor:
    return v.reshape(1, -1, 1, 1)


def grade_actnorm_init(ActNorm) -> None:
    part = "actnorm_init"
    gen = fresh_generator()
    c = 3
    layer = _actnorm(ActNorm, c, part)
    mean = randn(gen, c, scale=3.0)
    std = torch.exp(randn(gen, c))
    x = _per_channel(mean) + _per_channel(std) * randn(gen, 16, c, 4, 5)
    with no_delegation(GLOW, part):
        z, _ = call_layer(layer, x, "forward (first call)", part)
    m = z.detach().mean(dim=(0, 2, 3))
    s = z.detach().std(dim=(0, 2, 3))
    if not (is_close(m, torch.zeros(c, dtype=m.dtype), atol=1e-4, rtol=0)
            and is_close(s, torch.ones(c, dtype=s.dtype), atol=2e-2, rtol=0)):
        if is_close(s, std**-2 * 0 + 1 / std**2, atol=0.05, rtol=0.05):
            raise GradingFailure("after initialisation the output's std is 1/sigma^2: log_scale "
                                 "must be +log(std) (z = (x - mu) * exp(-log_scale)).", part)
        raise GradingFailure(
            "after the first forward call each channel of the output should have mean 0 and "
            f"std 1 over the batch and all pixels (got means {m.cpu().numpy().round(3)}, stds "
            f"{s.cpu().numpy().round(3)}). Compute mu and sigma with x.mean(dim=(0, 2, 3)) and "
            "x.std(dim=(0, 2, 3)): over batch, height and width, one value per channel.", part)
    # Initialisation happens once: a second batch with other statistics reuses the parameters.
    x2 = 5.0 + 0.1 * randn(gen, 8, c, 4, 5)
    with no_delegation(GLOW, part):
        z2, _ = call_layer(layer, x2, "forward (second call)", part)
    expected = (x2 - _per_channel(x.mean(dim=(0, 2, 3)))) / _per_channel(x.std(dim=(0, 2, 3)))
    if not is_close(z2, expected, atol=5e-2, rtol=2e-2):
        raise GradingFailure("the second forward call changed the parameters again: "
                             "data-dependent initialisation happens only on the FIRST batch "
                             "(set self.initialized = True).", part)


def grade_actnorm_forward(ActNorm) -> None:
    from flowlab.transforms.glow import ActNorm as Reference

    part = "actnorm_forward"
    gen = fresh_generator()
    c = 4
    layer = _actnorm(ActNorm, c, part)
    loc, log_scale = randn(gen, c), randn(gen, c, scale=0.5)
    _set_actnorm(layer, loc, log_scale, part)
    x = randn(gen, 6, c, 3, 5)
    with no_delegation(GLOW, part):
        z, ld = call_layer(layer, x, "forward", part)
        check_batch_independent(layer, x, "forward", part)
    ref = reference(Reference, c)
    with torch.no_grad():
        ref.loc.copy_(loc)
        ref.log_scale.copy_(log_scale)
        ref.initialized.fill_(True)
    z_ref, ld_ref = ref(x)
    check_output(z, z_ref, "forward: z = (x - mu) * exp(-log sigma)", part, hints=[])
    check_logabsdet(ld, ld_ref, "forward", part, extra_hints=[
        ((-log_scale.sum()).expand(6), "Each of the H*W pixels is scaled: log|det Df| = "
         "-H * W * sum_c log sigma_c."),
    ])


def grade_actnorm_inverse(ActNorm) -> None:
    part = "actnorm_inverse"
    gen = fresh_generator()
    c = 4
    layer = _actnorm(ActNorm, c, part)
    loc, log_scale = randn(gen, c), randn(gen, c, scale=0.5)
    _set_actnorm(layer, loc, log_scale, part)
    x = randn(gen, 6, c, 3, 5)
    z = (x - _per_channel(loc)) * torch.exp(-_per_channel(log_scale))
    with no_delegation(GLOW, part):
        xb, ld = call_layer(layer.inverse, z, "inverse", part)
    check_output(xb, x, "inverse: x = z * exp(log sigma) + mu", part, hints=[])
    check_logabsdet(ld, (15 * log_scale.sum()).expand(6), "inverse", part)


def _lu_factors(gen, c: int):
    perm = torch.eye(c, dtype=torch.float64)[torch.randperm(c, generator=gen)]
    lower = randn(gen, c, c, scale=0.5)
    upper = randn(gen, c, c, scale=0.5)
    log_abs = randn(gen, c, scale=0.3)
    sign = torch.where(torch.rand(c, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
    L = torch.tril(lower, -1) + torch.eye(c, dtype=torch.float64)
    U = torch.triu(upper, 1) + torch.diag(sign * torch.exp(log_abs))
    return perm, lower, upper, log_abs, sign, perm @ L @ U


def _conv(student_cls, gen, c: int, part: str):
    check_no_reference_subclass(student_cls, GLOW, part)
    layer = build(student_cls, c, part=part, what="LUConv1x1(channels)")
    check_no_reference_subclass(layer, GLOW, part)
    perm, lower, upper, log_abs, sign, W = _lu_factors(gen, c)
    set_param(layer, "permutation", perm, part, "the permutation matrix P (C, C)")
    set_param(layer, "lower", lower, part, "the matrix whose strict lower triangle is L's")
    set_param(layer, "upper", upper, part, "the matrix whose strict upper triangle is U's")
    set_param(layer, "log_abs_diag", log_abs, part, "log|u_c| of shape (C,)")
    set_param(layer, "sign", sign, part, "the signs of U's diagonal, shape (C,)")
    return layer, W, log_abs


def grade_conv_weight(LUConv1x1) -> None:
    part = "conv_weight"
    gen = fresh_generator()
    for c in (3, 5):
        layer, W, _ = _conv(LUConv1x1, gen, c, part)
        with no_delegation(GLOW, part):
            got = run_student(layer.weight, part=part, what="weight()")
        check_output(got, W, "W = P L (U + diag(sign * exp(log|u|)))", part, hints=[])


def grade_conv_forward(LUConv1x1) -> None:
    from flowlab.transforms.glow import LUInvertibleConv1x1 as Reference

    part = "conv_forward"
    gen = fresh_generator()
    for c in (3, 4):
        layer, W, log_abs = _conv(LUConv1x1, gen, c, part)
        layer.weight = lambda W=W: W  # the weight part is graded on its own
        x = randn(gen, 5, c, 3, 4)
        with no_delegation(GLOW, part):
            z, ld = call_layer(layer, x, "forward", part)
            check_batch_independent(layer, x, "forward", part)
        z_ref, ld_ref = reference(Reference.from_weight, W)(x)
        check_output(z, z_ref, "forward: z[:, :, h, w] = W x[:, :, h, w]", part, hints=[
            (torch.einsum("ji,bjhw->bihw", W, x), "You applied W^T: z_i = sum_j W_ij x_j."),
        ])
        check_logabsdet(ld, ld_ref, "forward", part, extra_hints=[
            (log_abs.sum().expand(5), "The 1x1 convolution acts on every one of the H*W "
             "pixels: log|det Df| = H * W * sum_c log|u_c|."),
        ])


def grade_conv_inverse(LUConv1x1) -> None:
    part = "conv_inverse"
    gen = fresh_generator()
    for c in (3, 4):
        layer, W, log_abs = _conv(LUConv1x1, gen, c, part)
        layer.weight = lambda W=W: W
        x = randn(gen, 5, c, 3, 4)
        z = torch.einsum("ij,bjhw->bihw", W, x)
        with no_delegation(GLOW, part):
            xb, ld = call_layer(layer.inverse, z, "inverse", part)
        check_output(xb, x, "inverse: x = W^{-1} z per pixel", part, hints=[
            (torch.einsum("ji,bjhw->bihw", W, z), "W^T is not W^{-1} (W is not orthogonal): "
             "solve with the inverse matrix."),
        ])
        check_logabsdet(ld, (-12 * log_abs.sum()).expand(5), "inverse", part)


def grade_temperature(sample_with_temperature) -> None:
    from flowlab.distributions import StandardNormal
    from flowlab.flow import Flow
    from flowlab.transforms.linear import TriangularLinear

    part = "temperature"
    gen = fresh_generator()
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    layer = reference(TriangularLinear, 2)
    with torch.no_grad():
        layer.off_diagonal.copy_(torch.tensor([[0.0, 0.0], [0.8, 0.0]]))
        layer.log_diagonal.copy_(torch.tensor([0.3, -0.4]))
        layer.bias.copy_(torch.tensor([1.0, -2.0]))
    flow = Flow(reference(StandardNormal, 2), [layer])
    for T in (0.5, 0.8):
        with no_delegation(GLOW, part):
            x = run_student(sample_with_temperature, flow, 40000, T, part=part,
                            what="sample_with_temperature(flow, n, T)")
        if not isinstance(x, Tensor) or tuple(x.shape) != (40000, 2):
            raise GradingFailure("return a tensor of n samples, shape (n, *event_shape).", part)
        with torch.no_grad():
            z, _ = flow(x.to(torch.float64))  # back to the latent: must be N(0, T^2 I)
        mean, cov = z.mean(0), torch.cov(z.T)
        expect_close(mean, torch.zeros(2, dtype=torch.float64), f"mean of f(x) at T={T}", part=part,
                     atol=0.04, hints=[])
        expect_close(cov, T**2 * torch.eye(2, dtype=torch.float64), f"covariance of f(x) at T={T}",
                     part=part, atol=0.04, hints=[
                         (T**4 * torch.eye(2, dtype=torch.float64), "The latent's STANDARD DEVIATION "
                          "is T (variance T^2): z = T * eps, eps ~ N(0, I)."),
                         (T * torch.eye(2, dtype=torch.float64), "The latent's variance should "
                          "be T^2: multiply eps by T, not by sqrt(T)."),
                     ])
