r"""Base distributions :math:`p_Z` of a flow.

Each has ``log_prob(z) -> (batch,)`` (the log-density of one whole sample, summed over its
event axes) and ``sample(n) -> (n, *event_shape)``.  They are :class:`torch.nn.Module` so that
they move with the model (``.to(device)``, ``.double()``) and may hold learnable parameters.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_input
from .transforms.base import sum_except_batch

__all__ = [
    "BaseDistribution",
    "StandardNormal",
    "DiagonalGaussian",
    "StandardLogistic",
    "UniformBox",
    "check_temperature",
    "temper",
]


def check_temperature(temperature: float) -> float:
    r"""``temperature`` if it is a finite number :math:`T \ge 0`, else a ``ValueError`` that
    says what it means: the latent is drawn with its spread scaled by :math:`T` (0 gives the
    latent's mode, every draw the same).

    Example:
        >>> check_temperature(0.7)
        0.7
        >>> check_temperature(-1)
        Traceback (most recent call last):
        ...
        ValueError: temperature must be a finite number >= 0 (1.0 samples the model itself, ...
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        if not (isinstance(temperature, Tensor) and temperature.numel() == 1):
            raise TypeError(
                f"temperature must be a number, got {type(temperature).__name__}"
            )
        temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(
            "temperature must be a finite number >= 0 (1.0 samples the model itself, < 1 "
            f"concentrates the draws, e.g. 0.7; 0 gives the mode), got {temperature!r}"
        )
    return temperature


def temper(noise: Tensor, temperature: float) -> Tensor:
    r"""The latent of a reduced-temperature draw, :math:`z = T\,\varepsilon`: ``noise``
    :math:`\varepsilon` (a draw at temperature 1, centred at the mode) with its spread scaled by
    ``temperature`` :math:`T` (checked with :func:`check_temperature`).

    Every ``sample(n, temperature)`` of flowlab (the base distributions, and through them
    :meth:`flowlab.flow.Flow.sample`) scales its noise here and nowhere else, so that this one
    function is Glow's temperature sampling (https://arxiv.org/abs/1807.03039).

    Example:
        >>> temper(torch.ones(2), 0.5)
        tensor([0.5000, 0.5000])
    """
    return check_temperature(temperature) * noise


def _tempered(noise: Tensor, temperature: float) -> Tensor:
    """``noise`` itself at temperature 1 (no scaling to do), else :func:`temper`."""
    return noise if temperature == 1.0 else temper(noise, temperature)


def _as_shape(event_shape: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(event_shape, int):
        event_shape = (event_shape,)
    shape = tuple(int(s) for s in event_shape)
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"event_shape must be positive sizes, got {event_shape!r}")
    return shape


class BaseDistribution(nn.Module):
    """A distribution over events of shape ``event_shape`` (the base class).

    Subclasses implement ``log_prob(z) -> (batch,)`` and ``sample(n, temperature) ->
    (n, *event_shape)``; ``sample`` is reparameterised (a differentiable function of the
    parameters and of noise) and checks ``temperature`` with :func:`check_temperature`.  A
    0-d buffer ``_ref`` (not saved) follows ``.to()``/``.double()`` and
    gives the dtype and device of the samples.

    Args:
        event_shape: the shape of one sample, e.g. ``2`` or ``(1, 8, 8)``.
    """

    def __init__(self, event_shape: int | Sequence[int]) -> None:
        """Build the distribution; the arguments are described in the class docstring."""
        super().__init__()
        self.event_shape = _as_shape(event_shape)
        # A zero-size buffer that tells us the module's dtype and device.
        self.register_buffer("_ref", torch.zeros(()), persistent=False)

    @property
    def dim(self) -> int:
        """Number of scalar dimensions of one event."""
        return math.prod(self.event_shape)

    def _check(self, z: Tensor) -> Tensor:
        return check_input(
            z, name="z", layer=type(self).__name__, event_shape=self.event_shape, like=self._ref
        )

    def _flat(self, per_element: Tensor) -> Tensor:
        return sum_except_batch(per_element)

    def log_prob(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def _noise_shape(self, n: int) -> tuple[int, ...]:
        if int(n) != n or n < 0:
            raise ValueError(f"number of samples must be a non-negative integer, got {n!r}")
        return (int(n), *self.event_shape)

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}"


class StandardNormal(BaseDistribution):
    r"""Isotropic Gaussian :math:`\mathcal{N}(0, I)`:
    :math:`\log p(z) = -\tfrac12 \lVert z \rVert^2 - \tfrac{D}{2}\log 2\pi`.

    ``sample(n, temperature=T)`` draws from :math:`\mathcal{N}(0, T^2 I)` (Glow's
    reduced-temperature sampling, https://arxiv.org/abs/1807.03039).

    Args:
        event_shape: the shape of one sample, e.g. ``2`` or ``(1, 8, 8)``.

    Example:
        >>> base = StandardNormal(2)
        >>> base.log_prob(torch.zeros(1, 2))             # -log(2 pi)
        tensor([-1.8379])
        >>> base.sample(5, temperature=0.7).shape
        torch.Size([5, 2])
    """

    def log_prob(self, z: Tensor) -> Tensor:
        z = self._check(z)
        return -0.5 * self._flat(z * z) - 0.5 * self.dim * math.log(2 * math.pi)

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        temperature = check_temperature(temperature)
        shape = self._noise_shape(n)
        return _tempered(torch.randn(shape, dtype=self._ref.dtype, device=self._ref.device),
                         temperature)


class DiagonalGaussian(BaseDistribution):
    r"""Gaussian with learnable mean and diagonal scale,
    :math:`\mathcal{N}(\mu, \operatorname{diag}(\sigma^2))`, :math:`\sigma = e^{\log\sigma}`:

    .. math:: \log p(z) = \sum_i -\tfrac12 \Big(\frac{z_i-\mu_i}{\sigma_i}\Big)^2
              - \log\sigma_i - \tfrac12\log 2\pi .

    Both start at :math:`\mu = 0, \sigma = 1` (the standard normal).

    Args:
        event_shape: the shape of one sample.
        learnable: make :math:`\mu` and :math:`\log\sigma` trainable parameters (otherwise
            fixed buffers).

    Example:
        >>> base = DiagonalGaussian(3)
        >>> sorted(name for name, _ in base.named_parameters())
        ['loc', 'log_scale']
        >>> base.log_prob(torch.zeros(2, 3)).shape
        torch.Size([2])
    """

    def __init__(self, event_shape: int | Sequence[int], learnable: bool = True) -> None:
        """Build the distribution; the arguments are described in the class docstring."""
        super().__init__(event_shape)
        loc = torch.zeros(self.event_shape)
        log_scale = torch.zeros(self.event_shape)
        if learnable:
            self.loc = nn.Parameter(loc)
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("loc", loc)
            self.register_buffer("log_scale", log_scale)

    def log_prob(self, z: Tensor) -> Tensor:
        z = self._check(z)
        u = (z - self.loc) * torch.exp(-self.log_scale)
        return self._flat(-0.5 * u * u - self.log_scale.expand_as(u)) - 0.5 * self.dim * math.log(
            2 * math.pi
        )

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        temperature = check_temperature(temperature)
        eps = torch.randn(self._noise_shape(n), dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + torch.exp(self.log_scale) * _tempered(eps, temperature)


class StandardLogistic(BaseDistribution):
    r"""Standard logistic distribution, used by NICE (Dinh et al. 2014):

    .. math:: \log p(z) = \sum_i -\operatorname{softplus}(z_i) - \operatorname{softplus}(-z_i).

    Its heavier tails give larger gradients to outliers than a Gaussian.  Sampling inverts the
    CDF: :math:`z = \log u - \log(1-u)`, :math:`u \sim U(0,1)`.  NICE:
    https://arxiv.org/abs/1410.8516.

    Args:
        event_shape: the shape of one sample.

    Example:
        >>> StandardLogistic(1).log_prob(torch.zeros(1, 1))     # log(1/4)
        tensor([-1.3863])
    """

    def log_prob(self, z: Tensor) -> Tensor:
        z = self._check(z)
        return self._flat(-F.softplus(z) - F.softplus(-z))

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        temperature = check_temperature(temperature)
        u = torch.rand(self._noise_shape(n), dtype=self._ref.dtype, device=self._ref.device)
        tiny = torch.finfo(u.dtype).tiny
        u = u.clamp(tiny, 1 - torch.finfo(u.dtype).eps)
        return _tempered(torch.log(u) - torch.log1p(-u), temperature)


class UniformBox(BaseDistribution):
    r"""Uniform distribution on the box :math:`[\mathrm{low}, \mathrm{high})^D` (the lecture's
    :math:`U(0,1)` example for the defaults):

    .. math:: \log p(z) = -\sum_i \log(\mathrm{high}-\mathrm{low})
              \text{ inside the box, } -\infty \text{ outside.}

    Args:
        event_shape: the shape of one sample.
        low, high: the box's edges, ``low < high`` (the same for every coordinate).

    Example:
        >>> UniformBox(2, low=-1.0, high=1.0).log_prob(torch.tensor([[0.0, 0.5], [0.0, 2.0]]))
        tensor([-1.3863,    -inf])
    """

    def __init__(
        self, event_shape: int | Sequence[int], low: float = 0.0, high: float = 1.0
    ) -> None:
        """Build the distribution; the arguments are described in the class docstring."""
        super().__init__(event_shape)
        if not high > low:
            raise ValueError(f"UniformBox needs high > low, got low={low}, high={high}")
        self.low = float(low)
        self.high = float(high)

    def log_prob(self, z: Tensor) -> Tensor:
        z = self._check(z)
        inside = ((z >= self.low) & (z < self.high)).reshape(z.shape[0], -1).all(dim=1)
        logp = torch.full_like(z[:, ...].reshape(z.shape[0], -1)[:, 0], -self.dim * math.log(
            self.high - self.low
        ))
        return torch.where(inside, logp, torch.full_like(logp, -math.inf))

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        if check_temperature(temperature) != 1.0:
            raise ValueError("UniformBox has no temperature: sample with temperature=1.0")
        u = torch.rand(self._noise_shape(n), dtype=self._ref.dtype, device=self._ref.device)
        return self.low + (self.high - self.low) * u

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}, low={self.low}, high={self.high}"
