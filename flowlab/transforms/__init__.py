"""Invertible layers, one family per file (see each file's docstring for the maths).

=====================  ============================================================
file                   layers
=====================  ============================================================
``base.py``            the contract: ``Transform``, ``Compose``, ``Inverse``
``pointwise.py``       elementwise maps: leaky ReLU, sigmoid, logit, affine
``linear.py``          full, diagonal, triangular, permutation, reverse, LU
``masks.py``           which dimensions a coupling layer keeps (x_A) and transforms (x_B)
``coupling.py``        additive (NICE) and affine (RealNVP) coupling
``splines.py``         rational-quadratic spline coupling (Durkan et al. 2019)
``image.py``           squeeze, checkerboard/channel masks, masked convolutional coupling
``glow.py``            ActNorm, invertible 1x1 convolution (plain and LU)
``dequantize.py``      uniform and variational dequantization, the logit transform
=====================  ============================================================
"""

from .base import Compose, Inverse, Transform

__all__ = ["Transform", "Compose", "Inverse"]
