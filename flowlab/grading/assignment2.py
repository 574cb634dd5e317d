r"""Hidden tests of assignment 2: coupling flows.

Parts:

* ``additive_forward`` / ``additive_inverse`` — NICE: :math:`z_A = x_A`,
  :math:`z_B = x_B + t(x_A)`, :math:`\log|\det Df| = 0` (compared with
  :class:`flowlab.transforms.coupling.AdditiveCoupling` sharing the same conditioner);
* ``affine_forward`` / ``affine_inverse`` — RealNVP: :math:`z_B = x_B \odot e^{s} + t`,
  :math:`(s, t) = \theta(x_A)` split in two halves, :math:`\log|\det Df| = \sum_i s_i`
  (compared with :class:`flowlab.transforms.coupling.AffineCoupling` with ``scale_bound=None``);
* ``realnvp`` — the stack: built with a *correct* coupling class passed in by the grader, so
  that a bug in the student's coupling costs points only in the coupling parts;
* ``training`` — the student's training loop trains flowlab's reference RealNVP on two moons
  with a fixed seed; graded by a threshold on the test NLL.

Convention stated in the notebook: ``mask`` is a boolean tensor of shape ``(features,)``,
``True`` marks :math:`x_A` (kept, fed to the conditioner), ``False`` marks :math:`x_B`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .common import build, fresh_generator, randn, reference, run_student
from .delegation import check_no_reference_subclass, no_delegation
from .errors import GradingFailure
from .layers import call_layer, check_batch_independent, check_logabsdet, check_output
from .numerics import brute_force_logabsdet, expect_close

__all__ = [
    "grade_additive_forward",
    "grade_additive_inverse",
    "grade_affine_forward",
    "grade_affine_inverse",
    "grade_realnvp",
    "grade_training",
    "TRAINING_STEPS",
    "TRAINING_NLL_THRESHOLD",
    "CorrectAffineCoupling",
]

COUPLING = ["flowlab.transforms.coupling"]
MODELS = ["flowlab.models.realnvp"]

#: steps of the graded training run and the test NLL (nats) it must reach.
TRAINING_STEPS = 300
TRAINING_NLL_THRESHOLD = 2.8  # measured at 300 steps: 2.48-2.55 for seeds 0-3 (grader: seed 0); untrained 3.81


def _random_mask(gen: torch.Generator, features: int) -> Tensor:
    while True:
        mask = torch.rand(features, generator=gen) < 0.5
        if 0 < int(mask.sum()) < features:
            return mask


def _conditioner(gen: torch.Generator, n_in: int, n_out: int) -> nn.Module:
    """A small random MLP in float64 (the 'given conditioner' with non-trivial weights)."""
    net = nn.Sequential(nn.Linear(n_in, 16), nn.Tanh(), nn.Linear(16, n_out)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.6 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return net


def _split(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    return x[:, mask], x[:, ~mask]


def _merge(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    out = a.new_empty(a.shape[0], mask.numel())
    out[:, mask] = a
    out[:, ~mask] = b
    return out


def _coupling(student_cls, mask: Tensor, cond: nn.Module, part: str):
    check_no_reference_subclass(student_cls, COUPLING, part)
    layer = build(student_cls, mask.clone(), cond, part=part,
                  what=f"{getattr(student_cls, '__name__', 'Coupling')}(mask, conditioner)")
    check_no_reference_subclass(layer, COUPLING, part)
    return layer


def _cases(gen: torch.Generator, params_per_feature: int):
    for features in (2, 5):
        mask = _random_mask(gen, features) if features > 2 else torch.tensor([True, False])
        n_a, n_b = int(mask.sum()), int((~mask).sum())
        yield mask, _conditioner(gen, n_a, params_per_feature * n_b), randn(gen, 10, features)


def grade_additive_forward(AdditiveCoupling) -> None:
    from flowlab.transforms.coupling import AdditiveCoupling as Reference
    from flowlab.transforms.masks import Mask

    part = "additive_forward"
    for mask, cond, x in _cases(fresh_generator(), 1):
        layer = _coupling(AdditiveCoupling, mask, cond, part)
        with no_delegation(COUPLING, part):
            z, ld = call_layer(layer, x, "forward", part)
            check_batch_independent(layer, x, "forward", part)
        z_ref, ld_ref = reference(Reference, Mask(mask), conditioner=cond)(x)
        x_a, x_b = _split(x, mask)
        check_output(z, z_ref, "forward: z = [x_A, x_B + t(x_A)]", part, hints=[
            (_merge(x_a, x_b + cond(x_b), mask) if x_a.shape == x_b.shape else z_ref * float("nan"),
             "The shift must be computed from the kept part x_A, not from x_B: t = theta(x_A)."),
            (_merge(x_a + cond(x_b), x_b, mask) if x_a.shape == x_b.shape else z_ref * float("nan"),
             "You shifted x_A: x_A passes through unchanged, x_B is shifted."),
            (_merge(x_a, x_b - cond(x_a), mask), "Forward ADDS the shift: z_B = x_B + t(x_A)."),
        ])
        expect_close(ld, ld_ref, "forward: log|det Df|", part=part)


def grade_additive_inverse(AdditiveCoupling) -> None:
    from flowlab.transforms.coupling import AdditiveCoupling as Reference
    from flowlab.transforms.masks import Mask

    part = "additive_inverse"
    for mask, cond, x in _cases(fresh_generator(), 1):
        layer = _coupling(AdditiveCoupling, mask, cond, part)
        ref = reference(Reference, Mask(mask), conditioner=cond)
        z, _ = ref(x)
        with no_delegation(COUPLING, part):
            xb, ld = call_layer(layer.inverse, z, "inverse", part)
            check_batch_independent(layer.inverse, z, "inverse", part)
        z_a, z_b = _split(z, mask)
        check_output(xb, x, "inverse: x = [z_A, z_B - t(z_A)]", part, hints=[
            (_merge(z_a, z_b + cond(z_a), mask), "The inverse SUBTRACTS the shift: "
             "x_B = z_B - t(z_A)."),
        ])
        expect_close(ld, torch.zeros(z.shape[0], dtype=z.dtype), "inverse: log|det Dg|", part=part)


def grade_affine_forward(AffineCoupling) -> None:
    from flowlab.transforms.coupling import AffineCoupling as Reference
    from flowlab.transforms.masks import Mask

    part = "affine_forward"
    for mask, cond, x in _cases(fresh_generator(), 2):
        layer = _coupling(AffineCoupling, mask, cond, part)
        with no_delegation(COUPLING, part):
            z, ld = call_layer(layer, x, "forward", part)
            check_batch_independent(layer, x, "forward", part)
        z_ref, ld_ref = reference(Reference, Mask(mask), conditioner=cond, scale_bound=None)(x)
        x_a, x_b = _split(x, mask)
        s, t = cond(x_a).chunk(2, dim=1)
        check_output(z, z_ref, "forward: z_B = x_B * exp(s) + t", part, hints=[
            (_merge(x_a, x_b * torch.exp(t) + s, mask), "s and t are swapped: the conditioner's "
             "output is split as s, t = theta(x_A).chunk(2, dim=1) (first half s)."),
            (_merge(x_a, (x_b + t) * torch.exp(s), mask), "Scale first, then shift: "
             "z_B = x_B * exp(s) + t."),
            (_merge(x_a, x_b * s + t, mask), "The scale is exp(s), not s."),
        ])
        check_logabsdet(ld, ld_ref, "forward", part, extra_hints=[
            (t.sum(dim=1), "You summed t; log|det Df| = sum_i s_i (the shift does not change "
             "volume)."),
        ])
        with no_delegation(COUPLING, part):
            ld_jac = brute_force_logabsdet(layer, x[:3])
        expect_close(ld_jac, ld_ref[:3], "forward: log|det| of the autograd Jacobian of your f",
                     part=part, atol=1e-6)


def grade_affine_inverse(AffineCoupling) -> None:
    from flowlab.transforms.coupling import AffineCoupling as Reference
    from flowlab.transforms.masks import Mask

    part = "affine_inverse"
    for mask, cond, x in _cases(fresh_generator(), 2):
        layer = _coupling(AffineCoupling, mask, cond, part)
        ref = reference(Reference, Mask(mask), conditioner=cond, scale_bound=None)
        z, ld_f = ref(x)
        with no_delegation(COUPLING, part):
            xb, ld = call_layer(layer.inverse, z, "inverse", part)
            check_batch_independent(layer.inverse, z, "inverse", part)
        z_a, z_b = _split(z, mask)
        s, t = cond(z_a).chunk(2, dim=1)
        check_output(xb, x, "inverse: x_B = (z_B - t) * exp(-s)", part, hints=[
            (_merge(z_a, (z_b - t) * torch.exp(s), mask), "You used exp(s) in the inverse: "
             "undoing a multiplication by exp(s) means multiplying by exp(-s)."),
            (_merge(z_a, z_b * torch.exp(-s) - t, mask), "Undo the steps in reverse order: "
             "first subtract t, then divide by exp(s)."),
        ])
        check_logabsdet(ld, -ld_f, "inverse", part)


class CorrectAffineCoupling(nn.Module):
    """The grader's own affine coupling (same convention as the notebook), used to grade the
    RealNVP part independently of the student's coupling."""

    def __init__(self, mask: Tensor, conditioner: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.bool).clone())
        self.conditioner = conditioner

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_a, x_b = _split(x, self.mask)
        s, t = self.conditioner(x_a).chunk(2, dim=1)
        return _merge(x_a, x_b * torch.exp(s) + t, self.mask), s.sum(dim=1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        z_a, z_b = _split(z, self.mask)
        s, t = self.conditioner(z_a).chunk(2, dim=1)
        return _merge(z_a, (z_b - t) * torch.exp(-s), self.mask), -s.sum(dim=1)


def grade_realnvp(build_realnvp) -> None:
    from flowlab.distributions import StandardNormal
    from flowlab.flow import Flow
    from flowlab.transforms.base import Transform

    part = "realnvp"
    gen = fresh_generator()
    # The grader's coupling must count as a flowlab Transform for Flow/Compose to accept it.
    Correct = type("AffineCoupling", (CorrectAffineCoupling, Transform), {})
    for features, n_couplings in ((2, 4), (5, 3)):
        with no_delegation(MODELS, part):
            flow = run_student(lambda: build_realnvp(features, n_couplings, coupling=Correct),
                               part=part, what=f"build_realnvp({features}, {n_couplings}, coupling=...)")
        if not isinstance(flow, Flow):
            raise GradingFailure(f"build_realnvp must return a flowlab Flow, got {type(flow).__name__}.", part)
        if not isinstance(flow.base, StandardNormal):
            raise GradingFailure("the base distribution p_Z should be StandardNormal(features).", part)
        couplings = [m for m in flow.modules() if isinstance(m, CorrectAffineCoupling)]
        if len(couplings) != n_couplings:
            raise GradingFailure(
                f"build_realnvp({features}, {n_couplings}) made {len(couplings)} coupling layers "
                f"with the `coupling` argument; expected {n_couplings}. Build every coupling "
                "with coupling(mask, conditioner).", part)
        transformed = torch.zeros(features, dtype=torch.bool)
        for c in couplings:
            transformed |= ~c.mask.cpu()
        if not bool(transformed.all()):
            never = (~transformed).nonzero().flatten().tolist()
            raise GradingFailure(
                f"coordinates {never} are never transformed by any coupling: x_A passes through "
                "unchanged, so swap the roles of x_A and x_B (use ~mask) from one coupling to "
                "the next.", part)
        flow = flow.double()
        with torch.no_grad():
            for c in couplings:
                for p in c.conditioner.parameters():  # moderate random weights: s = O(1)
                    fan_in = p.shape[1] if p.dim() == 2 else 10
                    p.copy_(0.5 / fan_in**0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
        x = randn(gen, 6, features)
        with no_delegation(MODELS, part):
            lp = run_student(flow.log_prob, x, part=part, what="flow.log_prob(x)")
            z, _ = flow(x)
            ld = brute_force_logabsdet(flow, x)
        expected = StandardNormal(features).double().log_prob(z) + ld
        expect_close(lp, expected, "log p_X(x) of your RealNVP", part=part, hints=[])


def grade_training(train) -> None:
    """Train flowlab's reference RealNVP with the student's loop; check the test NLL."""
    part = "training"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest and never oversubscribes
    try:
        _train_and_check(train, part)
    finally:
        torch.set_num_threads(threads)


def _train_and_check(train, part: str) -> None:
    from flowlab.data.toy2d import two_moons
    from flowlab.models.realnvp import realnvp

    torch.manual_seed(0)  # the threshold was measured for this seed
    flow = realnvp(2, couplings=6, hidden=(64, 64), validate=False)
    data = two_moons(2000, seed=1)
    test = two_moons(2000, seed=2)
    with torch.no_grad():
        before = float(flow.nll(test))
    losses = run_student(lambda: train(flow, data, steps=TRAINING_STEPS, lr=3e-3, batch_size=256),
                         part=part, what="train(flow, data, steps=..., lr=..., batch_size=...)")
    with torch.no_grad():
        after = float(flow.nll(test))
    if not after == after or after > before - 0.05:
        raise GradingFailure(
            f"training did not lower the test NLL ({before:.2f} -> {after:.2f} nats). Minimise "
            "the negative log-likelihood -mean(log p_X(x)) and call optimizer.step() after "
            "loss.backward() (and optimizer.zero_grad() before it).", part)
    if after > TRAINING_NLL_THRESHOLD:
        raise GradingFailure(
            f"after {TRAINING_STEPS} steps the test NLL is {after:.2f} nats; a correct loop reaches "
            f"below {TRAINING_NLL_THRESHOLD} with this seed. Check the learning rate is used, the "
            "batches are random samples of the data, and the loss is the mean NLL.", part)
    if not isinstance(losses, (list, tuple)) or len(losses) != TRAINING_STEPS:
        raise GradingFailure(
            f"train should return the list of the {TRAINING_STEPS} training losses (one per step).",
            part)
