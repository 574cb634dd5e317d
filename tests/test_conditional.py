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
