"""Conditional flows p(x | c) through the whole stack: layers, Compose, Flow, a class model."""

from __future__ import annotations

import pytest
import torch

from flowlab.distributions import StandardNormal
from flowlab.flow import Flow
from flowlab.models.conditional import ClassConditionalFlow, Flatten
from flowlab.models.maf import maf
from flowlab.testing import check_transform
from flowlab.transforms.autoregressive import MaskedAffineAutoregressive
from flowlab.transforms.base import Compose, Inverse, accepts_context
from flowlab.transforms.coupling import AffineCoupling
from flowlab.transforms.image import MaskedAffineCoupling, checkerboard_mask
from flowlab.transforms.linear import Reverse
from flowlab.transforms.masks import HalfMask


class WithContext:
    """A conditional layer with one context fixed for every sample: f(. | c) is an ordinary
    layer, which check_transform can test (it pushes samples one at a time)."""

    def __init__(self, layer, context):
        self.layer, self.context = layer, context

    def _c(self, x):
        return self.context.unsqueeze(0).expand(x.shape[0], *self.context.shape)

    def __call__(self, x):
        return self.layer(x, context=self._c(x))

    def inverse(self, z):
        return self.layer.inverse(z, context=self._c(z))


def conditional_stack(perturb) -> Compose:
    layers = Compose(
        MaskedAffineAutoregressive(3, hidden=(16,), context_features=2),
        Reverse(3),
        AffineCoupling(HalfMask(3), hidden=(16,), context_features=2),
        Inverse(MaskedAffineAutoregressive(3, hidden=(16,), context_features=2, order="reversed")),
    )
    return perturb(layers.double(), scale=0.3)


def test_compose_carries_the_context_float64(perturb):
    stack = conditional_stack(perturb)
    c = torch.randn(4, 2, dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64)
    check_transform(WithContext(stack, c[0]), x)
    check_transform(WithContext(stack, c[1]), x)
    assert not torch.allclose(stack(x, context=c)[0], stack(x, context=c + 1)[0])


def test_accepts_context():
    assert accepts_context(MaskedAffineAutoregressive(2, hidden=(4,), context_features=1))
    assert not accepts_context(MaskedAffineAutoregressive(2, hidden=(4,)))  # declared 0
    assert not accepts_context(Reverse(2))
    assert accepts_context(Inverse(AffineCoupling(HalfMask(2), hidden=(4,), context_features=1)))
    assert not accepts_context(Compose(Reverse(2), AffineCoupling(HalfMask(2), hidden=(4,))))


def test_flow_log_prob_depends_on_context_and_sample_shapes(perturb):
    flow = Flow(StandardNormal(3), conditional_stack(perturb)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    c = torch.randn(5, 2, dtype=torch.float64)
    lp = flow.log_prob(x, context=c)
    assert lp.shape == (5,)
    assert not torch.allclose(lp, flow.log_prob(x, context=c.flip(0)))
    assert torch.allclose(flow.nll(x, context=c), -lp.mean())
    # one unbatched context (c,) is broadcast over the batch
    one = c[0]
    assert torch.allclose(flow.log_prob(x, context=one), flow.log_prob(x, context=one.expand(5, 2)))
    torch.manual_seed(3)
    s1 = flow.sample(7, context=one)
    torch.manual_seed(3)
    s2 = flow.sample(7, context=one.expand(7, 2))
    assert s1.shape == (7, 3) and torch.allclose(s1, s2)
    assert flow.sample(5, context=c).shape == (5, 3)
    xs, lps = flow.sample_with_log_prob(4, context=c[:4])
    assert torch.allclose(lps, flow.log_prob(xs, context=c[:4]), atol=1e-8)
    with pytest.raises(ValueError, match="5 samples"):
        flow.log_prob(x, context=c[:3])
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        flow.log_prob(x)  # the conditional layers ask for their context


def test_unconditional_flow_unchanged_and_rejects_a_context():
    flow = Flow(StandardNormal(2), [AffineCoupling(HalfMask(2), hidden=(8,)), Reverse(2)])
    x = torch.randn(4, 2)
    assert flow.log_prob(x).shape == (4,) and flow.sample(3).shape == (3, 2)
    with pytest.raises(ValueError, match="no layer of this flow takes one"):
        flow.log_prob(x, context=torch.randn(4, 1))
    with pytest.raises(TypeError, match="torch.Tensor"):
        maf(2, transforms=1, hidden=(4,), context_features=1).log_prob(x, context=[1.0])


def test_maf_builder_conditional(perturb):
    flow = perturb(maf(2, transforms=3, hidden=(16,), context_features=3).double())
    x = torch.randn(6, 2, dtype=torch.float64)
    c = torch.randn(6, 3, dtype=torch.float64)
    check_transform(WithContext(flow.transform, c[0]), x)
    assert flow.sample(4, context=torch.randn(3, dtype=torch.float64)).shape == (4, 2)


def test_masked_affine_coupling_with_context_from_a_flow(perturb):
    """The issue's case: a Flow of MaskedAffineCoupling(context_channels=...) can be called."""
    layers = [MaskedAffineCoupling(checkerboard_mask(4, 4, p), 1, hidden_channels=8, blocks=1,
                                   context_channels=2) for p in (0, 1)]
    flow = perturb(Flow(StandardNormal((1, 4, 4)), layers, context_shape=(2, 4, 4)).double(),
                   scale=0.1)
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    c = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    lp = flow.log_prob(x, context=c)
    assert lp.shape == (3,) and not torch.allclose(lp, flow.log_prob(x, context=-c))
    assert flow.sample(5, context=c[0]).shape == (5, 1, 4, 4)  # one (2, 4, 4) context broadcast
    check_transform(WithContext(flow.transform, c[0]), x)


def test_class_conditional_digits():
    torch.manual_seed(0)
    model = ClassConditionalFlow(transforms=2, hidden=(64,))
    for layer in model.transform:
        if isinstance(layer, MaskedAffineAutoregressive):
            torch.nn.init.normal_(layer.made.net[-1].weight, std=0.05)
    x = torch.randint(0, 17, (4, 1, 8, 8)).float()
    labels = torch.tensor([0, 3, 5, 9])
    torch.manual_seed(1)
    a = model.log_prob(x, labels=labels)
    torch.manual_seed(1)
    b = model.log_prob(x, labels=labels.flip(0))
    assert a.shape == (4,) and not torch.allclose(a, b)  # log_prob depends on the class
    torch.manual_seed(1)
    assert torch.allclose(a, model.log_prob(x, context=model.one_hot(labels)))
    s = model.sample_class(6, 7)
    assert s.shape == (6, 1, 8, 8)
    assert bool(((s >= 0) & (s <= 16) & (s == s.round())).all())
    assert model.sample(3, context=model.one_hot([1, 2, 3])).shape == (3, 1, 8, 8)
    with pytest.raises(ValueError, match="class of every image"):
        model.log_prob(x)
    with pytest.raises(ValueError, match="0..9"):
        model.one_hot(10)


def test_class_conditional_learns_the_class():
    """A few hundred steps on two digit classes: the right label gives the higher density."""
    from flowlab.data.images import load_digits

    torch.manual_seed(0)
    data = load_digits("train")
    keep = (data.labels == 0) | (data.labels == 1)
    x, y = data.float()[keep], data.labels[keep]
    model = ClassConditionalFlow(num_classes=2, transforms=2, hidden=(64,))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(150):
        idx = torch.randint(0, len(x), (64,))
        loss = -model.log_prob(x[idx], labels=y[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        right = model.log_prob(x, labels=y)
        wrong = model.log_prob(x, labels=1 - y)
    assert (right > wrong).float().mean() > 0.9


def test_flatten():
    f = Flatten((2, 3))
    x = torch.randn(4, 2, 3)
    z, ld = f(x)
    assert z.shape == (4, 6) and torch.equal(f.inverse(z)[0], x) and bool((ld == 0).all())


# ------------------------------------------------------------ issue 29: context everywhere
from flowlab.models.realnvp import nsf, realnvp  # noqa: E402
from flowlab.models.tarflow import TarFlowBlock  # noqa: E402
from flowlab.testing import assert_logabsdet_matches_jacobian  # noqa: E402
from flowlab.transforms import (  # noqa: E402
    ActNorm,
    AdditiveCoupling,
    LULinear,
    RQSplineCoupling,
    Squeeze,
)
from flowlab.transforms.autoregressive import (  # noqa: E402
    InverseAffineAutoregressive,
    MaskedRQSplineAutoregressive,
)
from flowlab.transforms.base import Transform  # noqa: E402


def conditional_layers():
    """Every public conditional layer, with a context of 2 features (or 2 channels)."""
    return {
        "AffineCoupling": (AffineCoupling(HalfMask(4), hidden=(16,), context_features=2), (4,)),
        "AdditiveCoupling": (AdditiveCoupling(HalfMask(4), hidden=(16,), context_features=2),
                             (4,)),
        "RQSplineCoupling": (RQSplineCoupling(HalfMask(4), bins=4, hidden=(16,),
                                              context_features=2), (4,)),
        "MaskedAffineAutoregressive": (MaskedAffineAutoregressive(4, (16,), 2), (4,)),
        "InverseAffineAutoregressive": (InverseAffineAutoregressive(4, (16,), 2), (4,)),
        "MaskedRQSplineAutoregressive": (MaskedRQSplineAutoregressive(4, (16,), 2, bins=4),
                                         (4,)),
        "TarFlowBlock": (TarFlowBlock(2, 3, 8, 1, 2, context_features=2), (3, 2)),
    }


@pytest.mark.parametrize("name", list(conditional_layers()))
def test_every_conditional_layer_passes_the_contract_with_per_row_contexts(name, perturb):
    layer, shape = conditional_layers()[name]
    layer = perturb(layer.double(), scale=0.2)
    assert layer.conditional
    x = torch.randn(5, *shape, dtype=torch.float64)
    c = torch.randn(5, 2, dtype=torch.float64)
    if "Spline" in name:
        x = x.clamp(-2.5, 2.5)
    check_transform(layer, x, context=c)
    # the context changes the map
    assert not torch.allclose(layer(x, context=c)[0], layer(x, context=c.flip(0))[0])


def test_check_transform_catches_a_layer_that_mixes_up_the_contexts():
    class Swapped(Transform):
        """Shifts sample b by the context of another sample: wrong, and not visible without
        per-row contexts."""

        conditional = True

        def forward(self, x, context=None):
            s = context.flip(0).sum(1, keepdim=True)
            return x * torch.exp(s), x.shape[1] * s.squeeze(1)

        def inverse(self, z, context=None):
            s = context.flip(0).sum(1, keepdim=True)
            return z * torch.exp(-s), -z.shape[1] * s.squeeze(1)

    x = torch.randn(4, 3, dtype=torch.float64)
    c = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(AssertionError, match="log\\|det\\|"):
        check_transform(Swapped(), x, context=c)
    with pytest.raises(ValueError, match="one context per sample"):
        check_transform(Swapped(), x, context=c[:2])


def test_unconditional_layers_accept_and_ignore_a_context(perturb):
    c = torch.randn(4, 3)
    for layer, x in [
        (Reverse(4), torch.randn(4, 4)),
        (LULinear(4), torch.randn(4, 4)),
        (AffineCoupling(HalfMask(4), hidden=(8,)), torch.randn(4, 4)),
        (MaskedAffineAutoregressive(4, hidden=(8,)), torch.randn(4, 4)),
        (ActNorm(2), torch.randn(4, 2, 4, 4)),
        (Squeeze(), torch.randn(4, 1, 4, 4)),
    ]:
        layer = perturb(layer, scale=0.1)
        assert not layer.conditional
        z, ld = layer(x)
        zc, ldc = layer(x, context=c)
        assert torch.equal(z, zc) and torch.equal(ld, ldc), type(layer).__name__
        assert torch.equal(layer.inverse(z)[0], layer.inverse(z, context=c)[0])


def test_compose_is_one_loop_without_signature_inspection():
    import inspect

    from flowlab.transforms import base

    source = inspect.getsource(base)
    assert "signature" not in source and "inspect" not in source
    forward = inspect.getsource(Compose.forward)
    assert forward.count("for ") == 1 and "context is" not in forward

    class Plain(Transform):  # the plain contract of a course notebook: no context argument
        def forward(self, x):
            return x + 1, x.new_zeros(x.shape[0])

        def inverse(self, z):
            return z - 1, z.new_zeros(z.shape[0])

    flow = Flow(StandardNormal(2), [Plain(), AffineCoupling(HalfMask(2), hidden=(4,))])
    assert flow.log_prob(torch.zeros(3, 2)).shape == (3,) and flow.sample(2).shape == (2, 2)


@pytest.mark.parametrize("builder", [realnvp, nsf])
def test_conditional_coupling_builders_are_exact_and_the_context_changes_the_density(
    builder, perturb
):
    flow = perturb(builder(3, couplings=3, hidden=(16,), context_features=2).double(), scale=0.2)
    assert flow.conditional and flow.context_shape == (2,)
    x = torch.randn(6, 3, dtype=torch.float64).clamp(-2.5, 2.5)
    c = torch.randn(6, 2, dtype=torch.float64)
    check_transform(flow.transform, x, context=c)
    lp = flow.log_prob(x, context=c)
    assert lp.shape == (6,) and not torch.allclose(lp, flow.log_prob(x, context=c + 1.0))
    xs, lps = flow.sample_with_log_prob(5, context=c[:5])
    assert torch.allclose(lps, flow.log_prob(xs, context=c[:5]), atol=1e-8)
    with pytest.raises(ValueError, match=r"context_features=2"):
        flow.log_prob(x)  # the conditional couplings ask for their context
    with pytest.raises(ValueError, match="context_features must be a non-negative integer"):
        builder(3, context_features=-1)


def test_the_whole_flow_jacobian_at_a_fixed_context_matches_log_prob(perturb):
    """log p(x | c) = log N(f(x; c)) + log|det D_x f(x; c)|, with D_x by autograd."""
    flow = perturb(nsf(2, couplings=2, hidden=(8,), context_features=1).double(), scale=0.3)
    x = torch.randn(4, 2, dtype=torch.float64)
    c = torch.randn(4, 1, dtype=torch.float64)
    assert_logabsdet_matches_jacobian(flow.transform, x, context=c)
