"""MADE masks and the autoregressive layers (MAF, IAF, spline): the Jacobian is triangular."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowlab.nets.made import MADE, autoregressive_order, made_masks
from flowlab.testing import check_transform
from flowlab.transforms.autoregressive import (
    InverseAffineAutoregressive,
    MaskedAffineAutoregressive,
    MaskedRQSplineAutoregressive,
)

KINDS = {
    "maf": lambda d, **kw: MaskedAffineAutoregressive(d, hidden=(16, 16), **kw),
    "iaf": lambda d, **kw: InverseAffineAutoregressive(d, hidden=(16, 16), **kw),
    "spline": lambda d, **kw: MaskedRQSplineAutoregressive(d, hidden=(16, 16), bins=5, **kw),
}


def _jacobian(fn, x):
    return torch.autograd.functional.jacobian(lambda v: fn(v.unsqueeze(0))[0][0], x[0])


@pytest.mark.parametrize("order", ["input", "reversed", "random", [2, 0, 3, 1]])
def test_made_output_sees_only_earlier_inputs(order):
    made = MADE(4, params_per_feature=2, hidden=(10, 10), order=order, zero_init_last=False,
                activation=torch.nn.Tanh)  # tanh: no dead units hiding a connection
    x = torch.randn(1, 4)
    jac = torch.autograd.functional.jacobian(lambda v: made(v)[0], x)[:, 0, :]  # (8, 4)
    position = torch.empty(4, dtype=torch.long)
    position[made.order] = torch.arange(4)
    for p in range(2):
        for d in range(4):
            for j in range(4):
                if position[j] >= position[d]:
                    assert jac[p * 4 + d, j] == 0, (p, d, j)
    # ... and every output but the first in the order sees all its predecessors
    last = made.order[-1]
    assert bool((jac[last, made.order[:-1]] != 0).all())


def test_made_masks_connectivity_and_context():
    masks = made_masks(3, (6,), params_per_feature=1, context_features=2)
    assert [tuple(m.shape) for m in masks] == [(6, 5), (3, 6)]
    assert bool(masks[0][:, 3:].all())  # context (degree 0) reaches every hidden unit
    conn = (masks[1] @ masks[0]).clamp(max=1)  # which inputs each output can see
    assert conn[:, :3].tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert bool(conn[:, 3:].all())


def test_order_errors():
    with pytest.raises(ValueError, match="permutation"):
        autoregressive_order(3, [0, 0, 1])
    with pytest.raises(ValueError, match="order must be"):
        autoregressive_order(3, "sideways")


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("order", ["input", "reversed", "random"])
def test_contract_float64(perturb, kind, order):
    layer = perturb(KINDS[kind](5, order=order).double(), scale=0.4)
    check_transform(layer, torch.randn(4, 5, dtype=torch.float64))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_jacobian_is_lower_triangular_in_the_order(perturb, kind):
    layer = perturb(KINDS[kind](6, order="random", seed=3).double(), scale=0.4)
    x = torch.randn(1, 6, dtype=torch.float64)
    perm = layer.order
    for fn in (layer, layer.inverse):
        J = _jacobian(fn, x)[perm][:, perm]  # rows and columns in the autoregressive order
        assert torch.count_nonzero(torch.triu(J, diagonal=1)) == 0
        assert bool((torch.diagonal(J) > 0).all())  # monotone in its own coordinate
        assert torch.count_nonzero(torch.tril(J, diagonal=-1)) > 0  # and truly coupled


def test_logdet_is_the_sum_of_log_scales(perturb):
    layer = perturb(MaskedAffineAutoregressive(4, hidden=(8,)).double())
    x = torch.randn(3, 4, dtype=torch.float64)
    # flowlab's one affine order: the MADE's first D outputs are the shifts, the last D the raw
    # log-scales; one soft clamp with the one default bound
    shift, raw = layer.made(x).view(3, 2, 4).unbind(1)
    assert layer.scale_bound == 3.0
    s = 3.0 * torch.tanh(raw / 3.0)
    z, ld = layer(x)
    assert torch.allclose(ld, s.sum(1))
    assert torch.allclose(z, x * torch.exp(s) + shift)


def test_iaf_is_the_inverse_of_maf(perturb):
    maf = perturb(MaskedAffineAutoregressive(4, hidden=(8,)).double())
    iaf = InverseAffineAutoregressive(4, hidden=(8,)).double()
    iaf.load_state_dict(maf.state_dict())
    x = torch.randn(3, 4, dtype=torch.float64)
    z, ld = maf(x)
    x_iaf, ld_iaf = iaf(z)  # IAF forward = MAF inverse
    assert torch.allclose(x_iaf, x) and torch.allclose(ld_iaf, -ld)


def test_identity_at_initialisation():
    for make in KINDS.values():
        layer = make(3)
        x = torch.randn(5, 3)
        z, ld = layer(x)
        assert torch.allclose(z, x, atol=1e-6) and torch.allclose(ld, torch.zeros(5), atol=1e-6)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_context_changes_the_map(perturb, kind):
    layer = perturb(KINDS[kind](3, context_features=2).double(), scale=0.4)
    x = torch.randn(4, 3, dtype=torch.float64)
    c1, c2 = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    assert not torch.allclose(layer(x, context=c1)[0], layer(x, context=c2)[0])
    z, ld = layer(x, context=c1)
    x_back, ld_back = layer.inverse(z, context=c1)
    assert torch.allclose(x_back, x, atol=1e-8) and torch.allclose(ld + ld_back, torch.zeros_like(ld))
    with pytest.raises(ValueError, match="context_features=2"):
        layer(x)
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        layer(x, context=torch.randn(4, 3, dtype=torch.float64))


def test_bad_inputs():
    layer = MaskedAffineAutoregressive(4, hidden=(8,))
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        layer(torch.randn(3, 5))
    with pytest.raises(TypeError, match="float32 parameters"):
        layer(torch.randn(3, 4, dtype=torch.float64))
    # An unconditional layer accepts a context and ignores it (a Compose hands the context to
    # every layer); a Flow without conditional layers rejects one (tests/test_conditional.py).
    x = torch.randn(3, 4)
    assert torch.equal(layer(x, context=torch.randn(3, 1))[0], layer(x)[0])
    assert torch.equal(layer.made(x, context=torch.randn(3, 1)), layer.made(x))
    with pytest.raises(ValueError, match="hidden layer"):
        MADE(3, hidden=())
    with pytest.raises(ValueError, match="scale_bound"):
        MaskedAffineAutoregressive(3, scale_bound=0.0)
    with pytest.raises(ValueError, match="2 bins"):
        MaskedRQSplineAutoregressive(3, bins=1)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    features=st.integers(1, 7),
    batch=st.integers(2, 4),
    order=st.sampled_from(["input", "reversed", "random"]),
    seed=st.integers(0, 2**16),
)
def test_contract_hypothesis(perturb, kind, features, batch, order, seed):
    torch.manual_seed(seed)
    layer = perturb(KINDS[kind](features, order=order, seed=seed).double(), scale=0.4, seed=seed)
    check_transform(layer, torch.randn(batch, features, dtype=torch.float64))
