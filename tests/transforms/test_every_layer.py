"""Every public layer of ``flowlab.transforms`` passes the held-out contract check in float64:
log-determinant against the brute-force autograd Jacobian (``slogdet``), inverse round trip,
inverse log-determinant, batch independence.  A new public layer must be added to LAYERS (or
to NOT_A_LAYER with the reason), or the first test fails."""

from __future__ import annotations

import inspect

import pytest
import torch

import flowlab.transforms as T
from flowlab.testing import check_transform
from flowlab.transforms.image import channel_mask, checkerboard_mask

D = torch.float64


def _x(*shape):
    return torch.randn(*shape, dtype=D)


MASK5 = torch.tensor([True, False, True, False, False])

#: name -> () -> (layer, x, context): layers built small, perturbed off their identity init.
LAYERS = {
    "Compose": lambda: (T.Compose(T.AffineCoupling(MASK5, hidden=(8,)), T.Reverse(5),
                                  T.LeakyReLU(0.3)), _x(4, 5), None),
    "Inverse": lambda: (T.Inverse(T.AffineCoupling(MASK5, hidden=(8,))), _x(4, 5), None),
    "LeakyReLU": lambda: (T.LeakyReLU(0.2), _x(4, 3), None),
    "Logit": lambda: (T.Logit(0.05), torch.rand(4, 3, dtype=D) * 0.9 + 0.05, None),
    "Sigmoid": lambda: (T.Sigmoid(), _x(4, 3), None),
    "Tanh": lambda: (T.Tanh(), _x(4, 3), None),
    "FullLinear": lambda: (T.FullLinear(4), _x(4, 4), None),
    "DiagonalLinear": lambda: (T.DiagonalLinear(4), _x(4, 4), None),
    "TriangularLinear": lambda: (T.TriangularLinear(4), _x(4, 4), None),
    "Permutation": lambda: (T.Permutation([2, 0, 3, 1]), _x(4, 4), None),
    "RandomPermutation": lambda: (T.RandomPermutation(4, seed=0), _x(4, 4), None),
    "Reverse": lambda: (T.Reverse(4), _x(4, 4), None),
    "PermutedTriangular": lambda: (T.PermutedTriangular(4, seed=0), _x(4, 4), None),
    "LULinear": lambda: (T.LULinear(4, seed=0), _x(4, 4), None),
    # the elementwise transformers, as layers whose parameters are the (per-sample) context
    "Additive": lambda: (_Elementwise(T.Additive()), _x(4, 3), _x(4, 3, 1)),
    "Affine": lambda: (_Elementwise(T.Affine()), _x(4, 3), _x(4, 3, 2)),
    "RQSpline": lambda: (_Elementwise(T.RQSpline(bins=4, bound=2.0)), 1.5 * _x(4, 3),
                         _x(4, 3, 11)),
    "Coupling": lambda: (T.Coupling(MASK5, T.Affine(scale="sigmoid"), hidden=(8,)), _x(4, 5),
                         None),
    "AdditiveCoupling": lambda: (T.AdditiveCoupling(MASK5, hidden=(8,)), _x(4, 5), None),
    "AffineCoupling": lambda: (T.AffineCoupling(MASK5, hidden=(8,), context_features=2),
                               _x(4, 5), _x(4, 2)),
    "RQSplineCoupling": lambda: (T.RQSplineCoupling(MASK5, bins=4, bound=2.0, hidden=(8,)),
                                 1.5 * _x(4, 5), None),
    "MaskedAutoregressive": lambda: (T.MaskedAutoregressive(4, T.Additive(), hidden=(8,)),
                                     _x(4, 4), None),
    "MaskedAffineAutoregressive": lambda: (T.MaskedAffineAutoregressive(
        4, hidden=(8,), context_features=2, order="random"), _x(4, 4), _x(4, 2)),
    "InverseAffineAutoregressive": lambda: (T.InverseAffineAutoregressive(4, hidden=(8,)),
                                            _x(4, 4), None),
    "MaskedRQSplineAutoregressive": lambda: (T.MaskedRQSplineAutoregressive(
        3, hidden=(8,), bins=4, bound=2.0), 1.5 * _x(4, 3), None),
    "Squeeze": lambda: (_Unsqueezed(), _x(2, 1, 4, 4), None),
    "MaskedAffineCoupling": lambda: (T.MaskedAffineCoupling(
        checkerboard_mask(4, 4), 2, hidden_channels=4, blocks=1), _x(2, 2, 4, 4), None),
    "ActNorm": lambda: (T.ActNorm(3), _x(4, 3, 2, 2), None),
    "InvertibleConv1x1": lambda: (T.InvertibleConv1x1(3), _x(2, 3, 2, 2), None),
    "LUInvertibleConv1x1": lambda: (T.LUInvertibleConv1x1(3), _x(2, 3, 2, 2), None),
    "GlowCoupling": lambda: (T.GlowCoupling(4, hidden_channels=4, mask=channel_mask(4, 1)),
                             _x(2, 4, 3, 3), None),
}

#: public classes that are not a layer to check, with the reason.
NOT_A_LAYER = {
    "Transform": "the abstract base",
    "Elementwise": "the abstract base of the pointwise layers",
    "LinearTransform": "the abstract base of the linear layers",
    "Univariate": "the abstract base of the transformers",
    "UniformDequantization": "adds noise: a stochastic lower bound, not a bijection",
    "VariationalDequantization": "adds learnt noise: a stochastic lower bound, not a bijection",
}


class _Elementwise(T.Transform):
    def __init__(self, transformer):
        super().__init__()
        self.transformer = transformer

    def forward(self, x, context=None):
        y, ladj = self.transformer(x, context)
        return y, ladj.reshape(len(x), -1).sum(1)

    def inverse(self, z, context=None):
        x, ladj = self.transformer.inverse(z, context)
        return x, ladj.reshape(len(z), -1).sum(1)


class _Unsqueezed(T.Transform):
    """Squeeze with its output read back in the input's shape (a fixed reordering of the
    coordinates), so that check_transform can compare the shapes."""

    def __init__(self):
        super().__init__()
        self.squeeze = T.Squeeze()

    def forward(self, x, context=None):
        z, ld = self.squeeze(x)
        return z.reshape(x.shape), ld

    def inverse(self, z, context=None):
        b, c, h, w = z.shape
        return self.squeeze.inverse(z.reshape(b, 4 * c, h // 2, w // 2))


def _public_layer_classes() -> set[str]:
    return {n for n in T.__all__ if inspect.isclass(getattr(T, n))
            and issubclass(getattr(T, n), (T.Transform, T.Univariate))}


def test_every_public_layer_is_checked():
    public = _public_layer_classes()
    assert public - set(LAYERS) - set(NOT_A_LAYER) == set(), "add it to LAYERS"
    assert set(LAYERS) | set(NOT_A_LAYER) <= public


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_contract(name, perturb):
    torch.manual_seed(0)
    layer, x, context = LAYERS[name]()
    layer = perturb(layer.double(), scale=0.3)
    check_transform(layer, x, context=context)
