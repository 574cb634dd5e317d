r"""Hidden tests of assignment 3: image flows.

Parts: ``squeeze`` / ``unsqueeze`` (space-to-depth, ordering
:math:`z[b, 4c + 2i + j, h, w] = x[b, c, 2h+i, 2w+j]` as :class:`flowlab.transforms.image.Squeeze`),
``masks`` (checkerboard and channel masks as in :mod:`flowlab.transforms.image`),
``masked_forward`` / ``masked_inverse`` (masked affine coupling, compared with
:class:`flowlab.transforms.image.MaskedAffineCoupling` with ``scale_bound=None``),
``dequantize`` (:math:`y = (x + u)/K`), ``bits_per_dim`` and ``multiscale`` (factoring out half of
the channels after each block).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .common import build, fresh_generator, randn, reference, run_student
from .delegation import check_no_reference_subclass, no_delegation
from .errors import GradingFailure
from .layers import call_layer, check_batch_independent, check_logabsdet, check_output
from .numerics import expect_close

__all__ = [
    "grade_squeeze", "grade_unsqueeze", "grade_masks", "grade_masked_forward",
    "grade_masked_inverse", "grade_dequantize", "grade_bits_per_dim", "grade_multiscale",
]

IMAGE = ["flowlab.transforms.image", "flowlab.transforms.dequantize", "flowlab.metrics",
         "flowlab.models.multiscale"]


def _reference_squeeze(x: Tensor) -> Tensor:
    from flowlab.transforms.image import Squeeze

    return Squeeze()(x)[0]


def grade_squeeze(squeeze) -> None:
    part = "squeeze"
    gen = fresh_generator()
    for shape in ((3, 1, 4, 4), (2, 3, 6, 2)):
        x = randn(gen, *shape)
        with no_delegation(IMAGE, part):
            z = run_student(squeeze, x, part=part, what="squeeze(x)")
        b, c, h, w = shape
        expected = _reference_squeeze(x)
        other = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        check_output(z, expected, "squeeze(x)", part, hints=[
            (other, "Your channel order is (i, j, c); the convention is channel 4c + 2i + j, i.e. "
             "the four pixels of a 2x2 block of channel c are next to each other."),
        ])


def grade_unsqueeze(unsqueeze) -> None:
    part = "unsqueeze"
    gen = fresh_generator()
    for shape in ((3, 1, 4, 4), (2, 3, 6, 2)):
        x = randn(gen, *shape)
        z = _reference_squeeze(x)
        with no_delegation(IMAGE, part):
            xb = run_student(unsqueeze, z, part=part, what="unsqueeze(z)")
        check_output(xb, x, "unsqueeze(squeeze(x))", part, hints=[])


def grade_masks(checkerboard_mask, channel_mask) -> None:
    from flowlab.transforms.image import channel_mask as ref_channel
    from flowlab.transforms.image import checkerboard_mask as ref_checker

    part = "masks"
    for h, w in ((4, 4), (3, 5)):
        for parity in (0, 1):
            with no_delegation(IMAGE, part):
                m = run_student(checkerboard_mask, h, w, parity, part=part,
                                what=f"checkerboard_mask({h}, {w}, {parity})")
            check_output(m, ref_checker(h, w, parity, dtype=torch.float64),
                         f"checkerboard_mask({h}, {w}, parity={parity})", part, hints=[
                             (ref_checker(h, w, 1 - parity, dtype=torch.float64),
                              "The parity is swapped: b_ij = 1 where (i + j) % 2 == parity."),
                         ])
    for c in (2, 3, 6):
        for parity in (0, 1):
            with no_delegation(IMAGE, part):
                m = run_student(channel_mask, c, parity, part=part, what=f"channel_mask({c}, {parity})")
            check_output(m, ref_channel(c, parity, dtype=torch.float64),
                         f"channel_mask({c}, parity={parity})", part, hints=[
                             (ref_channel(c, 1 - parity, dtype=torch.float64),
                              "The parity is swapped: parity 0 keeps the first ceil(C/2) channels."),
                         ])


class _Conv(nn.Module):
    """A small random conditioner: (batch, C, H, W) -> (batch, 2C, H, W)."""

    def __init__(self, gen: torch.Generator, c: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 2 * c, 3, padding=1)).double()
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _masked_cases(gen):
    from flowlab.transforms.image import channel_mask, checkerboard_mask

    yield checkerboard_mask(4, 4, 1, dtype=torch.float64), _Conv(gen, 2), randn(gen, 5, 2, 4, 4)
    yield channel_mask(4, 0, dtype=torch.float64), _Conv(gen, 4), randn(gen, 5, 4, 2, 2)


def _masked(student_cls, mask, cond, part):
    check_no_reference_subclass(student_cls, IMAGE, part)
    layer = build(student_cls, mask.clone(), cond, part=part, what="MaskedAffineCoupling(mask, conditioner)")
    check_no_reference_subclass(layer, IMAGE, part)
    return layer


def grade_masked_forward(MaskedAffineCoupling) -> None:
    from flowlab.transforms.image import MaskedAffineCoupling as Reference

    part = "masked_forward"
    gen = fresh_generator()
    for mask, cond, x in _masked_cases(gen):
        layer = _masked(MaskedAffineCoupling, mask, cond, part)
        with no_delegation(IMAGE, part):
            z, ld = call_layer(layer, x, "forward", part)
            check_batch_independent(layer, x, "forward", part)
        ref = reference(Reference, mask, x.shape[1], conditioner=cond, scale_bound=None)
        z_ref, ld_ref = ref(x)
        t, s = cond(mask * x).chunk(2, dim=1)
        check_output(z, z_ref, "forward: y = b*x + (1-b)*(x*exp(s) + t)", part, hints=[
            (mask * x + (1 - mask) * (x * torch.exp(t) + s), "t and s are swapped: the conditioner "
             "returns t first, then s (t, s = conditioner(b * x).chunk(2, dim=1))."),
        ])
        check_logabsdet(ld, ld_ref, "forward", part, extra_hints=[
            (s.reshape(s.shape[0], -1).sum(1), "You summed s over ALL positions: only the "
             "transformed ones count, log|det Df| = sum (1 - b) * s."),
        ])


def grade_masked_inverse(MaskedAffineCoupling) -> None:
    from flowlab.transforms.image import MaskedAffineCoupling as Reference

    part = "masked_inverse"
    gen = fresh_generator()
    for mask, cond, x in _masked_cases(gen):
        layer = _masked(MaskedAffineCoupling, mask, cond, part)
        ref = reference(Reference, mask, x.shape[1], conditioner=cond, scale_bound=None)
        z, ld_f = ref(x)
        with no_delegation(IMAGE, part):
            xb, ld = call_layer(layer.inverse, z, "inverse", part)
        t, s = cond(mask * z).chunk(2, dim=1)
        check_output(xb, x, "inverse: x = b*y + (1-b)*(y - t)*exp(-s)", part, hints=[
            (mask * z + (1 - mask) * (z - t) * torch.exp(s), "Use exp(-s) in the inverse."),
        ])
        check_logabsdet(ld, -ld_f, "inverse", part)


def grade_dequantize(dequantize) -> None:
    part = "dequantize"
    gen = fresh_generator()
    K = 256
    x = torch.randint(0, K, (4000,), generator=gen).to(torch.float64)
    x[:50] = K - 1
    x[50:100] = 0
    with no_delegation(IMAGE, part):
        y = run_student(dequantize, x.clone(), part=part, what="dequantize(x)")
    if not isinstance(y, Tensor) or tuple(y.shape) != tuple(x.shape):
        raise GradingFailure("dequantize(x) must return a tensor of the same shape as x.", part)
    y = y.detach().to(torch.float64)
    if not bool(((y >= x / K) & (y < (x + 1) / K)).all()):
        if bool((y > 1).any()):
            raise GradingFailure("some values exceed 1: divide by K = 256 (the number of levels), "
                                 "not by 255, so that y = (x + u)/K lies in [x/K, (x+1)/K).", part)
        raise GradingFailure("y must lie in the cell [x/K, (x+1)/K) of its level: y = (x + u)/K "
                             "with u ~ U[0, 1).", part)
    u = (y * K - x)
    if float(u.std()) < 0.2 or abs(float(u.mean()) - 0.5) > 0.05:
        raise GradingFailure("the noise u = K*y - x should be uniform on [0, 1) (mean 1/2, std "
                             "0.29); did you forget to add u ~ U[0, 1)?", part)


def grade_bits_per_dim(bits_per_dim) -> None:
    part = "bits_per_dim"
    gen = fresh_generator()
    for D, K in ((64, 256), (3 * 32 * 32, 256), (64, 17)):
        lp = -D * (0.5 + torch.rand(6, generator=gen, dtype=torch.float64))
        with no_delegation(IMAGE, part):
            bpd = run_student(bits_per_dim, lp.clone(), D, K, part=part,
                              what=f"bits_per_dim(log_prob, {D}, {K})")
        expected = (-lp + D * math.log(K)) / (D * math.log(2))
        expect_close(bpd, expected, f"bits_per_dim(log_prob, num_dims={D}, num_levels={K})", part=part,
                     hints=[
                         (-lp / (D * math.log(2)), "You forgot the D log K term: y = (x + u)/K "
                          "is scaled by 1/K, so log p(x + u) = log p_Y(y) - D log K."),
                         ((-lp + D * math.log(K)) / D, "Bits, not nats: divide by log 2."),
                         ((-lp - D * math.log(K)) / (D * math.log(2)), "The D log K term has the "
                          "wrong sign: the density of x + u is K^{-D} times the density of y."),
                     ])


def grade_multiscale(multiscale_forward) -> None:
    from flowlab.transforms.image import MaskedAffineCoupling, Squeeze, checkerboard_mask
    from flowlab.transforms.base import Compose

    part = "multiscale"
    gen = fresh_generator()
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    blocks = []
    c = 1
    for level in range(3):
        layer = reference(MaskedAffineCoupling, checkerboard_mask(8 >> level, 8 >> level, level % 2, dtype=torch.float64),
                          c, conditioner=_Conv(gen, c), scale_bound=None)
        blocks.append(reference(Compose, layer, Squeeze()))
        c = 4 * c // 2  # squeeze x4, then half is factored out
    blocks[-1] = blocks[-1][0]  # the last block does not squeeze
    x = randn(gen, 3, 1, 8, 8)
    # expected: the lecture's multi-scale split, written out
    h, total, zs = x, torch.zeros(3, dtype=torch.float64), []
    for i, block in enumerate(blocks):
        h, ld = block(h)
        total = total + ld
        if i < len(blocks) - 1:
            half = h.shape[1] // 2
            zs.append(h[:, :half])
            h = h[:, half:]
    zs.append(h)
    # the blocks ARE flowlab layers (given): only a ready-made multi-scale model is off limits
    with no_delegation(["flowlab.models.multiscale"], part):
        out = run_student(multiscale_forward, x.clone(), blocks, part=part, what="multiscale_forward(x, blocks)")
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], (list, tuple))):
        raise GradingFailure("multiscale_forward must return (list of latents, logabsdet).", part)
    got_zs, got_ld = out
    if len(got_zs) != len(zs):
        raise GradingFailure(f"expected {len(zs)} latents (one factored out after each block but "
                             f"the last, plus the final one), got {len(got_zs)}.", part)
    for i, (a, b) in enumerate(zip(got_zs, zs)):
        check_output(a, b, f"latent z_{i + 1}", part, hints=[])
    check_logabsdet(got_ld, total, "forward", part, extra_hints=[
        (ld, "You returned only the last block's log|det|: sum the log-dets of all blocks."),
    ])
