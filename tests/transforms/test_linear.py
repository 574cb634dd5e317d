"""Linear layers f(x) = Ax + b: contract checks and agreement with the dense matrix."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowlab.testing import check_transform
from flowlab.transforms.linear import (
    DiagonalLinear,
    FullLinear,
    LULinear,
    Permutation,
    PermutedTriangular,
    RandomPermutation,
    Reverse,
    TriangularLinear,
)

FACTORIES = {
    "full": lambda n: FullLinear(n),
    "full_nobias": lambda n: FullLinear(n, bias=False),
    "diagonal": lambda n: DiagonalLinear(n),
    "lower": lambda n: TriangularLinear(n, lower=True),
    "upper": lambda n: TriangularLinear(n, lower=False),
    "permutation": lambda n: Permutation(torch.arange(n).roll(1)),
    "random_permutation": lambda n: RandomPermutation(n, seed=1),
    "reverse": lambda n: Reverse(n),
    "lu": lambda n: LULinear(n, seed=2),
    "permuted_triangular": lambda n: PermutedTriangular(n, seed=3),
}


def _make(name: str, n: int, perturb) -> torch.nn.Module:
    return perturb(FACTORIES[name](n).double(), scale=0.4)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_contract(name, perturb):
    check_transform(_make(name, 5, perturb), torch.randn(4, 5, dtype=torch.float64))


@pytest.mark.parametrize("name", list(FACTORIES))
def test_matches_dense_matrix(name, perturb):
    layer = _make(name, 6, perturb)
    x = torch.randn(7, 6, dtype=torch.float64)
    A = layer.weight().to(x.dtype)
    b = layer.bias if layer.bias is not None else torch.zeros(6, dtype=x.dtype)
    z, ld = layer(x)
    assert torch.allclose(z, x @ A.T + b)
    assert torch.allclose(ld, torch.linalg.slogdet(A)[1].expand(7))
    x_back, _ = layer.inverse(z)
    assert torch.allclose(x_back, torch.linalg.solve(A, (z - b).T).T)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(sorted(FACTORIES)),
    features=st.integers(1, 7),
    batch=st.integers(2, 4),
    seed=st.integers(0, 2**16),
)
def test_contract_hypothesis(perturb, name, features, batch, seed):
    # (perturb is a pure function, so sharing the fixture between examples is safe)
    torch.manual_seed(seed)
    layer = perturb(FACTORIES[name](features).double(), scale=0.3, seed=seed)
    check_transform(layer, torch.randn(batch, features, dtype=torch.float64))


def test_initialisation_is_well_conditioned():
    n = 16
    assert torch.allclose(TriangularLinear(n).weight(), torch.eye(n))
    assert torch.allclose(DiagonalLinear(n).weight(), torch.eye(n))
    W = FullLinear(n).weight().detach()
    assert torch.allclose(W @ W.T, torch.eye(n), atol=1e-5)  # orthogonal: condition number 1
    lu = LULinear(n, seed=0)
    assert torch.allclose(lu.weight(), torch.eye(n)[lu.perm])  # starts as its permutation P
    pt = PermutedTriangular(n, seed=0)
    assert torch.allclose(pt.weight(), Permutation(pt.perm).weight())


def test_structure_of_factors(perturb):
    lu = perturb(LULinear(5, seed=0).double())
    L, U = lu.L(), lu.U()
    assert torch.equal(torch.diagonal(L), torch.ones(5, dtype=L.dtype))
    assert torch.equal(torch.triu(L, 1), torch.zeros_like(L))
    assert torch.equal(torch.tril(U, -1), torch.zeros_like(U))
    assert (torch.diagonal(U) > 0).all()
    tri = perturb(TriangularLinear(5, lower=False).double())
    assert torch.equal(torch.tril(tri.weight(), -1), torch.zeros(5, 5, dtype=torch.float64))


def test_permutations():
    x = torch.arange(4.0).reshape(1, 4)
    z, ld = Permutation([2, 0, 3, 1])(x)
    assert z.tolist() == [[2.0, 0.0, 3.0, 1.0]] and ld.tolist() == [0.0]
    assert Reverse(4)(x)[0].tolist() == [[3.0, 2.0, 1.0, 0.0]]
    assert torch.equal(RandomPermutation(10, seed=5).perm, RandomPermutation(10, seed=5).perm)
    assert not torch.equal(RandomPermutation(10, seed=5).perm, RandomPermutation(10, seed=6).perm)
    # A permutation has no parameters and works for any floating dtype.
    assert list(Reverse(3).parameters()) == []
    check_transform(Reverse(3), torch.randn(2, 3, dtype=torch.float64))


def test_bad_inputs():
    with pytest.raises(ValueError, match="rearrangement"):
        Permutation([0, 0, 1])
    with pytest.raises(ValueError, match="positive integer"):
        FullLinear(0)
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        LULinear(3)(torch.randn(5, 4))
    with pytest.raises(TypeError, match="float32 parameters"):
        TriangularLinear(3)(torch.randn(5, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating-point"):
        Reverse(3)(torch.ones(5, 3, dtype=torch.int64))


# ---------------------------------------------------------------- one name per concept (issue 16)
def test_diagonal_linear_is_the_elementwise_scale_and_shift(perturb):
    # DiagonalLinear replaces ElementwiseAffine: vectors keep their parameter names (so old
    # checkpoints load), and any event shape works.
    assert list(DiagonalLinear(3).state_dict()) == ["bias", "log_diagonal"]
    assert list(DiagonalLinear(3, bias=False).state_dict()) == ["log_diagonal"]
    layer = perturb(DiagonalLinear((2, 3, 3)).double(), scale=0.5)
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    check_transform(layer, x)
    z, ld = layer(x)
    assert torch.allclose(z, x * layer.log_diagonal.exp() + layer.bias)
    assert torch.allclose(ld, layer.log_diagonal.sum().expand(4))
    assert layer.weight().shape == (18, 18)
    with pytest.raises(ValueError, match=r"\(batch, 2, 3, 3\)"):
        layer(torch.randn(4, 18, dtype=torch.float64))


def test_ref_is_never_a_method():
    # `_ref` has one meaning in flowlab: the 0-d dtype/device buffer of a parameter-free layer.
    import flowlab.distributions as D
    import flowlab.transforms as T

    for module in (T, D):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type):
                assert not callable(getattr(obj, "_ref", None)), name
