r"""Linear (affine) layers :math:`f(x) = Ax + b` on vectors :math:`x \in \mathbb{R}^n`.

.. math::

    f(x) = A x + b, \qquad f^{-1}(z) = A^{-1}(z - b), \qquad
    \log|\det Df(x)| = \log|\det A| \quad (\text{the same for every } x).

A general matrix costs :math:`\mathcal{O}(n^3)` for the determinant and the inverse, so flows
use structured matrices whose determinant and inverse are cheap:

===========================  ====================  =====================  ==================
layer                        :math:`A`             :math:`\log|\det A|`   inverse
===========================  ====================  =====================  ==================
:class:`FullLinear`          any invertible        ``slogdet``, O(n^3)    ``solve``, O(n^3)
:class:`DiagonalLinear`      diagonal              O(n)                   O(n)
:class:`TriangularLinear`    triangular            O(n) (the diagonal)    O(n^2) substitution
:class:`Permutation`         permutation           0                      O(n) (reindex)
:class:`LULinear`            :math:`PLU`           O(n)                   two substitutions
:class:`PermutedTriangular`  :math:`TP`            O(n)                   one substitution
===========================  ====================  =====================  ==================

Batches are rows, so the code computes :math:`z = x A^\top + b` for a batch ``x`` of shape
``(batch, n)``.  Every layer's dense matrix is available as :meth:`LinearTransform.weight`
(for teaching and testing; the layers themselves never form :math:`A^{-1}`).

Diagonals that must stay nonzero are stored as their logarithm, :math:`A_{ii} = e^{a_i}`:
the matrix is invertible for every value of the parameters, and
:math:`\log|\det A| = \sum_i a_i` is exact and free.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_input
from .base import Transform

__all__ = [
    "DiagonalLinear",
    "FullLinear",
    "LULinear",
    "LinearTransform",
    "Permutation",
    "PermutedTriangular",
    "RandomPermutation",
    "Reverse",
    "TriangularLinear",
]


def _check_features(features: int, layer: str) -> int:
    if int(features) != features or features < 1:
        raise ValueError(f"{layer} needs a positive integer number of features, got {features!r}")
    return int(features)


def _random_permutation(features: int, seed: int | None) -> Tensor:
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return torch.randperm(features, generator=gen)


class LinearTransform(Transform):
    r"""Base class of :math:`f(x) = Ax + b` with an optional bias :math:`b`.

    Subclasses implement :meth:`weight` (the dense :math:`A`), :meth:`_matmul` (:math:`x
    \mapsto x A^\top` for a batch of rows), :meth:`_solve` (:math:`y \mapsto y A^{-\top}`,
    i.e. :math:`A^{-1} y` per row) and :meth:`log_abs_det` (:math:`\log|\det A|`, a scalar).

    Args:
        features: the dimension :math:`n`.
        bias: learn :math:`b` (initialised to 0).
    """

    def __init__(self, features: int, bias: bool = True) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__()
        self.features = _check_features(features, type(self).__name__)
        if bias:
            self.bias = nn.Parameter(torch.zeros(self.features))
        else:
            self.register_parameter("bias", None)

    # -- what subclasses provide ------------------------------------------------------------
    def weight(self) -> Tensor:  # pragma: no cover - abstract
        """The dense matrix :math:`A` of shape ``(n, n)``."""
        raise NotImplementedError

    def log_abs_det(self) -> Tensor:  # pragma: no cover - abstract
        r""":math:`\log|\det A|` as a 0-d tensor."""
        raise NotImplementedError

    def _matmul(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight())

    def _solve(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the layer ----------------------------------------------------------------------------
    def _check(self, x: Tensor, name: str) -> Tensor:
        # like=self: the dtype and device of the first parameter (none for a permutation).
        return check_input(
            x, name=name, layer=type(self).__name__, event_shape=(self.features,), like=self
        )

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, "x")
        z = self._matmul(x)
        if self.bias is not None:
            z = z + self.bias
        return z, self.log_abs_det().expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z, "z")
        if self.bias is not None:
            z = z - self.bias
        return self._solve(z), (-self.log_abs_det()).expand(z.shape[0])

    def extra_repr(self) -> str:
        return f"features={self.features}, bias={self.bias is not None}"


class FullLinear(LinearTransform):
    r"""A full learnable matrix: :math:`f(x) = Wx + b`.

    .. math::

        \log|\det Df(x)| = \log|\det W| \;(\texttt{slogdet}, \mathcal{O}(n^3)), \qquad
        f^{-1}(z) = W^{-1}(z - b) \;(\texttt{linalg.solve}, \mathcal{O}(n^3)).

    :math:`W` starts as a random orthogonal matrix (a rotation/reflection: perfectly
    conditioned, :math:`|\det W| = 1`).  Nothing keeps it invertible during training; this
    is the expensive, unconstrained baseline that the structured layers improve on.

    Args:
        features: the dimension :math:`n`.
        bias: learn :math:`b`.

    Example:
        >>> layer = FullLinear(3)
        >>> z, logabsdet = layer(torch.randn(4, 3))
        >>> abs(logabsdet[0].item()) < 1e-5                 # a rotation: |det W| = 1
        True
    """

    def __init__(self, features: int, bias: bool = True) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__(features, bias)
        q, r = torch.linalg.qr(torch.randn(self.features, self.features))
        self.W = nn.Parameter(q * torch.sign(torch.diagonal(r)))

    def weight(self) -> Tensor:
        return self.W

    def log_abs_det(self) -> Tensor:
        return torch.linalg.slogdet(self.W)[1]

    def _solve(self, y: Tensor) -> Tensor:
        # Rows: solve x W^T = y.
        return torch.linalg.solve(self.W.T, y, left=False)


class DiagonalLinear(LinearTransform):
    r"""A learnable elementwise scale and shift: the diagonal matrix
    :math:`A = \operatorname{diag}(e^{a})` with positive entries, plus a bias.

    .. math::

        f(x) = e^{a} \odot x + b, \qquad \log|\det Df(x)| = \sum_i a_i \;(\mathcal{O}(n)),
        \qquad f^{-1}(z) = e^{-a} \odot (z - b).

    Storing :math:`a = \log A_{ii}` keeps every diagonal entry positive (the map stays
    invertible whatever the optimiser does).  Starts as the identity (:math:`a = 0, b = 0`).
    ``features`` may be an event shape such as ``(C, H, W)``: then every value of the event has
    its own scale and shift, and :meth:`weight` is the diagonal matrix of the flattened event.

    This is flowlab's one layer for "a learnable scale per coordinate" (the scaling layer of
    NICE, https://arxiv.org/abs/1410.8516, after additive couplings).  Its relative
    :class:`~flowlab.transforms.glow.ActNorm` differs in two ways: one scale and shift per
    *channel*, shared by all pixels, and a data-dependent initialisation from the first batch.

    Args:
        features: the dimension :math:`n`, or the event shape.
        bias: learn :math:`b` (otherwise :math:`b = 0`).

    Example:
        >>> layer = DiagonalLinear(3)
        >>> with torch.no_grad():
        ...     _ = layer.log_diagonal.copy_(torch.log(torch.tensor([1.0, 2.0, 4.0])))
        ...     z, logabsdet = layer(torch.ones(1, 3))
        >>> z, logabsdet                                 # log 8 = log 1 + log 2 + log 4
        (tensor([[1., 2., 4.]]), tensor([2.0794]))
    """

    def __init__(self, features: int | Sequence[int], bias: bool = True) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        if isinstance(features, Sequence):
            shape = tuple(int(_check_features(s, "DiagonalLinear")) for s in features)
            if not shape:
                raise ValueError("DiagonalLinear needs a non-empty event shape")
        else:
            shape = (_check_features(features, "DiagonalLinear"),)
        super().__init__(math.prod(shape), bias=False)
        self.event_shape = shape
        if bias:
            self.bias = nn.Parameter(torch.zeros(shape))
        self.log_diagonal = nn.Parameter(torch.zeros(shape))

    def _check(self, x: Tensor, name: str) -> Tensor:
        return check_input(
            x, name=name, layer="DiagonalLinear", event_shape=self.event_shape, like=self
        )

    def weight(self) -> Tensor:
        return torch.diag(torch.exp(self.log_diagonal.flatten()))

    def log_abs_det(self) -> Tensor:
        return self.log_diagonal.sum()

    def _matmul(self, x: Tensor) -> Tensor:
        return x * torch.exp(self.log_diagonal)

    def _solve(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.log_diagonal)

    def extra_repr(self) -> str:
        size = self.features if len(self.event_shape) == 1 else self.event_shape
        return f"features={size}, bias={self.bias is not None}"


def _triangular(off_diagonal: Tensor, log_diagonal: Tensor, lower: bool) -> Tensor:
    strict = torch.tril(off_diagonal, -1) if lower else torch.triu(off_diagonal, 1)
    return strict + torch.diag(torch.exp(log_diagonal))


class TriangularLinear(LinearTransform):
    r"""A lower (or upper) triangular matrix :math:`T` with a positive diagonal
    :math:`T_{ii} = e^{a_i}`:

    .. math::

        f(x) = T x + b, \qquad \log|\det Df(x)| = \sum_i \log T_{ii} = \sum_i a_i,
        \qquad f^{-1}(z) = T^{-1}(z - b) \text{ by substitution, } \mathcal{O}(n^2)

    (:func:`torch.linalg.solve_triangular`).  Only the entries below (above) the diagonal of
    ``off_diagonal`` are used.  Starts as the identity.

    Args:
        features: the dimension :math:`n`.
        lower: lower triangular (``True``) or upper triangular.
        bias: learn :math:`b`.

    Example:
        >>> layer = TriangularLinear(3)
        >>> torch.equal(layer.weight(), torch.eye(3))       # starts as the identity
        True
    """

    def __init__(self, features: int, lower: bool = True, bias: bool = True) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__(features, bias)
        self.lower = bool(lower)
        self.off_diagonal = nn.Parameter(torch.zeros(self.features, self.features))
        self.log_diagonal = nn.Parameter(torch.zeros(self.features))

    def weight(self) -> Tensor:
        return _triangular(self.off_diagonal, self.log_diagonal, self.lower)

    def log_abs_det(self) -> Tensor:
        return self.log_diagonal.sum()

    def _solve(self, y: Tensor) -> Tensor:
        # Rows: solve x T^T = y; T^T is upper triangular when T is lower.
        return torch.linalg.solve_triangular(self.weight().T, y, upper=self.lower, left=False)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", lower={self.lower}"


class Permutation(LinearTransform):
    r"""A fixed permutation of the coordinates, :math:`z_i = x_{\pi(i)}`:

    .. math::

        f(x) = P x, \quad P_{i, \pi(i)} = 1, \qquad |\det P| = 1 \;(\log|\det| = 0), \qquad
        f^{-1}(z)_{\pi(i)} = z_i .

    Placed between coupling layers it changes which coordinates are transformed next.  No
    parameters and no bias; it works for any floating dtype.

    Args:
        perm: the permutation :math:`\pi` as a rearrangement of ``0, ..., n-1``.

    Example:
        >>> Permutation([2, 0, 1])(torch.tensor([[10.0, 11.0, 12.0]]))
        (tensor([[12., 10., 11.]]), tensor([0.]))
    """

    def __init__(self, perm: Tensor | list[int]) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        perm = torch.as_tensor(perm, dtype=torch.long).flatten()
        super().__init__(perm.numel(), bias=False)
        if not torch.equal(torch.sort(perm).values, torch.arange(perm.numel())):
            raise ValueError(
                f"Permutation expects a rearrangement of 0..{perm.numel() - 1}, got {perm.tolist()}"
            )
        self.register_buffer("perm", perm)
        self.register_buffer("inverse_perm", torch.argsort(perm))

    def weight(self) -> Tensor:
        return torch.eye(self.features, device=self.perm.device)[self.perm]

    def log_abs_det(self) -> Tensor:  # pragma: no cover - forward/inverse skip it
        return torch.zeros(())

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, "x")
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z, "z")
        return z[:, self.inverse_perm], z.new_zeros(z.shape[0])

    def extra_repr(self) -> str:
        return f"features={self.features}"


class RandomPermutation(Permutation):
    r"""A :class:`Permutation` drawn uniformly at random (reproducibly with ``seed``).

    Args:
        features: the dimension :math:`n`.
        seed: seed of the draw (``None``: a fresh random permutation).

    Example:
        >>> torch.equal(RandomPermutation(6, seed=0).perm, RandomPermutation(6, seed=0).perm)
        True
    """

    def __init__(self, features: int, seed: int | None = None) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        features = _check_features(features, "RandomPermutation")
        super().__init__(_random_permutation(features, seed))


class Reverse(Permutation):
    r"""Reverse the order of the coordinates, :math:`z_i = x_{n-1-i}` (its own inverse).

    Between two half-mask couplings it swaps the kept and transformed halves.

    Args:
        features: the dimension :math:`n`.

    Example:
        >>> Reverse(3)(torch.tensor([[1.0, 2.0, 3.0]]))[0]
        tensor([[3., 2., 1.]])
    """

    def __init__(self, features: int) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        features = _check_features(features, "Reverse")
        super().__init__(torch.arange(features - 1, -1, -1))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, "x")
        return x.flip(1), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z, "z")
        return z.flip(1), z.new_zeros(z.shape[0])


class LULinear(LinearTransform):
    r"""A learnable matrix in LU form, :math:`A = P L U` (Kingma & Dhariwal 2018, Glow,
    https://arxiv.org/abs/1807.03039):

    * :math:`P` a fixed random permutation,
    * :math:`L` unit lower triangular (ones on the diagonal, learnable below),
    * :math:`U` upper triangular with a positive learnable diagonal :math:`U_{ii} = e^{u_i}`.

    .. math::

        \log|\det Df(x)| = \log|\det P| + \log|\det L| + \log|\det U| = 0 + 0 + \sum_i u_i,

    and :math:`f^{-1}(z) = U^{-1} L^{-1} P^{\top}(z - b)`: two triangular solves,
    :math:`\mathcal{O}(n^2)` each.  As expressive as a full matrix (with a positive-diagonal
    :math:`U`, any matrix whose LU factors have that sign pattern), yet cheap to invert.
    Starts as :math:`A = P` (a permutation).

    Args:
        features: the dimension :math:`n`.
        bias: learn :math:`b`.
        seed: seed of the random permutation :math:`P` (``None``: random).
        permute: ``False`` makes :math:`P = I`.

    Example:
        >>> layer = LULinear(4, seed=0)
        >>> x = torch.randn(3, 4)
        >>> z, logabsdet = layer(x)
        >>> torch.allclose(layer.inverse(z)[0], x, atol=1e-6)
        True
    """

    def __init__(
        self, features: int, bias: bool = True, seed: int | None = None, permute: bool = True
    ) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__(features, bias)
        n = self.features
        perm = _random_permutation(n, seed) if permute else torch.arange(n)
        self.register_buffer("perm", perm)
        self.register_buffer("inverse_perm", torch.argsort(perm))
        self.lower = nn.Parameter(torch.zeros(n, n))
        self.upper = nn.Parameter(torch.zeros(n, n))
        self.log_diagonal = nn.Parameter(torch.zeros(n))

    def L(self) -> Tensor:
        """The unit lower triangular factor."""
        eye = torch.eye(self.features, dtype=self.lower.dtype, device=self.lower.device)
        return torch.tril(self.lower, -1) + eye

    def U(self) -> Tensor:
        """The upper triangular factor with diagonal :math:`e^{u}`."""
        return _triangular(self.upper, self.log_diagonal, lower=False)

    def weight(self) -> Tensor:
        return (self.L() @ self.U())[self.perm]

    def log_abs_det(self) -> Tensor:
        return self.log_diagonal.sum()

    def _solve(self, y: Tensor) -> Tensor:
        y = y[:, self.inverse_perm]  # P^T y per row
        y = torch.linalg.solve_triangular(
            self.L().T, y, upper=True, left=False, unitriangular=True
        )  # L^{-1}
        return torch.linalg.solve_triangular(self.U().T, y, upper=False, left=False)  # U^{-1}


class PermutedTriangular(LinearTransform):
    r"""The lecture's "permutation chained with a triangular matrix": :math:`A = T P`.

    First a fixed random permutation :math:`P`, then a learnable lower triangular :math:`T`
    with positive diagonal :math:`T_{ii} = e^{a_i}`:

    .. math::

        f(x) = T P x + b, \qquad \log|\det Df(x)| = \log|\det T| + \log|\det P|
        = \sum_i a_i + 0, \qquad f^{-1}(z) = P^{\top} T^{-1}(z - b).

    A triangular matrix alone lets :math:`z_i` depend only on :math:`x_1, \dots, x_i`;
    permuting first changes that order, so stacking several of these layers mixes all
    coordinates while each layer stays cheap to invert.  Starts as :math:`A = P`.

    Args:
        features: the dimension :math:`n`.
        bias: learn :math:`b`.
        seed: seed of the random permutation :math:`P` (``None``: random).

    Example:
        >>> layer = PermutedTriangular(4, seed=0)
        >>> torch.equal(layer.weight(), Permutation(layer.perm).weight())   # starts as P
        True
    """

    def __init__(self, features: int, bias: bool = True, seed: int | None = None) -> None:
        """Build the layer; the arguments are described in the class docstring."""
        super().__init__(features, bias)
        n = self.features
        perm = _random_permutation(n, seed)
        self.register_buffer("perm", perm)
        self.register_buffer("inverse_perm", torch.argsort(perm))
        self.off_diagonal = nn.Parameter(torch.zeros(n, n))
        self.log_diagonal = nn.Parameter(torch.zeros(n))

    def T(self) -> Tensor:
        """The lower triangular factor."""
        return _triangular(self.off_diagonal, self.log_diagonal, lower=True)

    def weight(self) -> Tensor:
        return self.T()[:, self.inverse_perm]

    def log_abs_det(self) -> Tensor:
        return self.log_diagonal.sum()

    def _matmul(self, x: Tensor) -> Tensor:
        return F.linear(x[:, self.perm], self.T())

    def _solve(self, y: Tensor) -> Tensor:
        y = torch.linalg.solve_triangular(self.T().T, y, upper=True, left=False)
        return y[:, self.inverse_perm]
