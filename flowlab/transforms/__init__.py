"""Invertible layers, one family per file (see each file's docstring for the maths).

=====================  ============================================================
file                   layers
=====================  ============================================================
``base.py``            the contract: ``Transform``, ``Compose``, ``Inverse``
``pointwise.py``       elementwise maps: leaky ReLU, sigmoid, tanh, logit (with a margin)
``linear.py``          full, diagonal (elementwise scale), triangular, permutation, LU
``univariate.py``      the elementwise transformers every coupling and MAF/IAF layer applies:
                       additive, affine (one parameter order, one bound); the spline's is in
                       ``splines.py``
``masks.py``           which dimensions a coupling layer keeps (x_A) and transforms (x_B)
``coupling.py``        ``Coupling(mask, transformer)``: additive (NICE), affine (RealNVP); which
                       coupling when
``splines.py``         the rational-quadratic spline transformer and its coupling (Durkan et al.
                       2019)
``autoregressive.py``  masked autoregressive layers: MAF, IAF, autoregressive spline
``image.py``           squeeze, checkerboard/channel masks, masked convolutional coupling
``glow.py``            ActNorm, invertible 1x1 convolution (plain and LU), Glow's coupling
``dequantize.py``      uniform and variational dequantization
=====================  ============================================================
"""

from .base import Compose, Inverse, Transform
from .pointwise import Elementwise, LeakyReLU, Logit, Sigmoid, Tanh
from .linear import (
    DiagonalLinear,
    FullLinear,
    LinearTransform,
    LULinear,
    Permutation,
    PermutedTriangular,
    RandomPermutation,
    Reverse,
    TriangularLinear,
)
from .univariate import Additive, Affine, Univariate
from .masks import AlternatingMask, HalfMask, Mask, as_mask
from .coupling import AdditiveCoupling, AffineCoupling, Coupling
from .splines import RQSpline, RQSplineCoupling, rational_quadratic_spline
from .autoregressive import (
    InverseAffineAutoregressive,
    MaskedAffineAutoregressive,
    MaskedAutoregressive,
    MaskedRQSplineAutoregressive,
)
from .image import MaskedAffineCoupling, Squeeze, channel_mask, checkerboard_mask
from .glow import ActNorm, GlowCoupling, InvertibleConv1x1, LUInvertibleConv1x1
from .dequantize import UniformDequantization, VariationalDequantization

__all__ = [
    # the contract
    "Transform", "Compose", "Inverse",
    # pointwise
    "Elementwise", "LeakyReLU", "Logit", "Sigmoid", "Tanh",
    # linear
    "LinearTransform", "FullLinear", "DiagonalLinear", "TriangularLinear", "Permutation",
    "RandomPermutation", "Reverse", "PermutedTriangular", "LULinear",
    # elementwise transformers (coupling and autoregressive layers)
    "Univariate", "Additive", "Affine", "RQSpline",
    # coupling
    "Mask", "HalfMask", "AlternatingMask", "as_mask", "Coupling", "AdditiveCoupling",
    "AffineCoupling", "RQSplineCoupling", "rational_quadratic_spline",
    # autoregressive (MAF / IAF)
    "MaskedAutoregressive", "MaskedAffineAutoregressive", "InverseAffineAutoregressive",
    "MaskedRQSplineAutoregressive",
    # images and Glow
    "Squeeze", "checkerboard_mask", "channel_mask", "MaskedAffineCoupling",
    "ActNorm", "InvertibleConv1x1", "LUInvertibleConv1x1", "GlowCoupling",
    "UniformDequantization", "VariationalDequantization",
]  # fmt: skip
