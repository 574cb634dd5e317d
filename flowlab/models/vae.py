r"""A small Gaussian variational autoencoder (Kingma & Welling, 2014), the flows' rival.

The model, with a latent :math:`z \in \mathbb{R}^K` and data :math:`x \in \mathbb{R}^D`:

.. math::

    p(z) = \mathcal{N}(0, I_K), \qquad
    p_\theta(x \mid z) = \mathcal{N}\big(\mu_\theta(z), \operatorname{diag}\sigma^2\big), \qquad
    q_\phi(z \mid x) = \mathcal{N}\big(m_\phi(x), \operatorname{diag} s_\phi(x)^2\big),

where :math:`\mu_\theta` (decoder) and :math:`(m_\phi, \log s_\phi)` (encoder) are MLPs and the
decoder's noise scale :math:`\sigma` is one learnable number per data dimension.  Its density
:math:`p_\theta(x) = \int p_\theta(x\mid z)\,p(z)\,dz` has no closed form; the VAE maximises the
evidence lower bound (ELBO)

.. math::

    \log p_\theta(x) \;\ge\; \mathcal{L}(x) =
    \mathbb{E}_{q_\phi(z\mid x)}\big[\log p_\theta(x \mid z)\big]
    - D_{\mathrm{KL}}\big(q_\phi(z \mid x) \,\|\, p(z)\big).

Three ways to put a number on :math:`\log p_\theta(x)`, all here:

* :meth:`VAE.elbo` -- the bound itself (Monte Carlo reconstruction term, exact KL);
* :meth:`VAE.iwae_bound` -- the importance-weighted bound of Burda et al. (2016), tighter as
  the number of samples ``k`` grows;
* :meth:`VAE.log_prob_quadrature` -- the exact integral by numerical quadrature, possible when the
  latent is one-dimensional (the book's chapter 1 uses it to *measure* the gap).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

from ..checks import check_finite, check_input

__all__ = ["VAE", "gaussian_log_density", "kl_to_standard_normal"]

_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(x: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    r""":math:`\log \mathcal{N}(x; \mu, \operatorname{diag}\sigma^2)`, summed over the last axis:

    .. math:: \sum_i -\tfrac12 \Big(\frac{x_i-\mu_i}{\sigma_i}\Big)^2 - \log\sigma_i
              - \tfrac12 \log 2\pi .
    """
    u = (x - mean) * torch.exp(-log_std)
    return (-0.5 * u * u - log_std - 0.5 * _LOG_2PI).sum(dim=-1)


def kl_to_standard_normal(mean: Tensor, log_std: Tensor) -> Tensor:
    r""":math:`D_{\mathrm{KL}}\big(\mathcal{N}(m, \operatorname{diag} s^2) \,\|\, \mathcal{N}(0, I)\big)`
    in closed form, summed over the last axis:

    .. math:: \tfrac12 \sum_k \big(m_k^2 + s_k^2 - 1 - 2\log s_k\big).
    """
    return 0.5 * (mean * mean + torch.exp(2 * log_std) - 1 - 2 * log_std).sum(dim=-1)


def _mlp(n_in: int, n_out: int, hidden: Sequence[int]) -> nn.Sequential:
    sizes = [n_in, *hidden]
    layers: list[nn.Module] = []
    for a, b in pairwise(sizes):
        layers += [nn.Linear(a, b), nn.SiLU()]
    layers.append(nn.Linear(sizes[-1], n_out))
    return nn.Sequential(*layers)


class VAE(nn.Module):
    r"""Gaussian VAE with an MLP encoder and decoder (see the module docstring for the maths).

    Args:
        features: data dimension :math:`D` (inputs are ``(batch, D)``; flatten images first).
        latent: latent dimension :math:`K`.
        hidden: hidden widths of both MLPs; ``()`` makes encoder and decoder linear (then the
            model is probabilistic PCA and :math:`p_\theta(x)` is a known Gaussian).
        init_log_std: initial :math:`\log\sigma` of the decoder's noise.
        min_log_std: lower bound on :math:`\log\sigma` (a Gaussian decoder can otherwise shrink
            its noise without limit on data that lies on a lower-dimensional set).

    Example:
        >>> vae = VAE(features=2, latent=1, hidden=(64, 64))
        >>> x = torch.randn(8, 2)
        >>> vae.elbo(x).shape, vae.log_prob_quadrature(x).shape
        (torch.Size([8]), torch.Size([8]))
    """

    def __init__(
        self,
        features: int,
        latent: int,
        hidden: Sequence[int] = (64, 64),
        init_log_std: float = 0.0,
        min_log_std: float = -7.0,
    ) -> None:
        super().__init__()
        if features < 1 or latent < 1:
            raise ValueError(
                f"VAE needs features >= 1 and latent >= 1, got features={features}, "
                f"latent={latent}"
            )
        self.features = int(features)
        self.latent = int(latent)
        self.min_log_std = float(min_log_std)
        self.encoder = _mlp(self.features, 2 * self.latent, tuple(hidden))
        self.decoder = _mlp(self.latent, self.features, tuple(hidden))
        self.decoder_log_std = nn.Parameter(torch.full((self.features,), float(init_log_std)))

    # ------------------------------------------------------------------ the two networks
    def _check(self, x: Tensor) -> Tensor:
        check_input(x, name="x", layer="VAE", event_shape=(self.features,), like=self)
        return x

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""The encoder :math:`q_\phi(z\mid x)`: its mean :math:`m_\phi(x)` and
        :math:`\log s_\phi(x)`, each ``(batch, latent)``."""
        mean, log_std = self.encoder(self._check(x)).chunk(2, dim=-1)
        return mean, log_std

    def decode(self, z: Tensor) -> Tensor:
        r"""The decoder's mean :math:`\mu_\theta(z)` (the reconstruction :math:`\hat x`)."""
        return self.decoder(z)

    @property
    def log_std(self) -> Tensor:
        r""":math:`\log\sigma` of the decoder, clamped below at ``min_log_std``."""
        return self.decoder_log_std.clamp(min=self.min_log_std)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        r""":math:`\log p_\theta(x \mid z)`; ``z`` may carry leading sample axes, ``(..., batch, K)``."""
        return gaussian_log_density(x, self.decode(z), self.log_std)

    def _sample_posterior(self, mean: Tensor, log_std: Tensor, k: int) -> Tensor:
        # Reparameterisation: z = m + s * eps, eps ~ N(0, I); shape (k, batch, K).
        eps = torch.randn((k, *mean.shape), dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(log_std) * eps

    # ------------------------------------------------------------------ bounds on log p(x)
    def elbo_terms(self, x: Tensor, samples: int = 1) -> tuple[Tensor, Tensor]:
        r"""The two terms of the ELBO, per sample: the reconstruction term
        :math:`\mathbb{E}_q[\log p_\theta(x\mid z)]` (a ``samples``-point Monte Carlo average) and
        the exact :math:`D_{\mathrm{KL}}(q_\phi(z\mid x)\,\|\,p(z))`."""
        mean, log_std = self.encode(x)
        z = self._sample_posterior(mean, log_std, int(samples))
        reconstruction = self.log_likelihood(x, z).mean(dim=0)
        return reconstruction, kl_to_standard_normal(mean, log_std)

    def elbo(self, x: Tensor, samples: int = 1) -> Tensor:
        r"""The evidence lower bound :math:`\mathcal{L}(x) \le \log p_\theta(x)`, shape ``(batch,)``."""
        reconstruction, kl = self.elbo_terms(x, samples)
        return reconstruction - kl

    def loss(self, x: Tensor) -> Tensor:
        """Training loss: the negative ELBO averaged over the batch (nats per sample)."""
        return -self.elbo(x).mean()

    def iwae_bound(self, x: Tensor, k: int = 64) -> Tensor:
        r"""The importance-weighted bound (Burda et al., 2016), shape ``(batch,)``:

        .. math:: \mathcal{L}_k(x) = \log \frac1k \sum_{j=1}^{k}
                  \frac{p_\theta(x \mid z_j)\, p(z_j)}{q_\phi(z_j \mid x)}, \qquad
                  z_j \sim q_\phi(z\mid x).

        :math:`\mathcal{L}_1` is the ELBO, :math:`\mathbb{E}\,\mathcal{L}_k` grows with ``k`` and
        tends to :math:`\log p_\theta(x)`.
        """
        if int(k) < 1:
            raise ValueError(f"iwae_bound needs k >= 1 importance samples, got k={k}")
        mean, log_std = self.encode(x)
        z = self._sample_posterior(mean, log_std, int(k))
        log_w = (
            self.log_likelihood(x, z)
            + gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
            - gaussian_log_density(z, mean, log_std)
        )
        return torch.logsumexp(log_w, dim=0) - math.log(int(k))

    def log_prob_quadrature(
        self, x: Tensor, low: float = -8.0, high: float = 8.0, points: int = 2001
    ) -> Tensor:
        r"""The exact :math:`\log p_\theta(x) = \log\int p_\theta(x\mid z)\,p(z)\,dz` by the
        trapezoidal rule on ``points`` equally spaced latents in ``[low, high]``.

        Only for a one-dimensional latent (the cost is ``points`` decoder passes per sample);
        the prior's mass outside ``[-8, 8]`` is below :math:`10^{-15}`.
        """
        if self.latent != 1:
            raise ValueError(
                f"log_prob_quadrature integrates over a 1-D latent, but this VAE has "
                f"latent={self.latent}; use iwae_bound(x, k) for an estimate instead."
            )
        self._check(x)
        grid = torch.linspace(low, high, int(points), dtype=x.dtype, device=x.device)
        z = grid.reshape(-1, 1, 1)  # (points, 1, 1): broadcast over the batch
        log_joint = self.log_likelihood(x, z) - 0.5 * grid.reshape(-1, 1) ** 2 - 0.5 * _LOG_2PI
        # Trapezoid weights: dz for inner points, dz/2 at both ends.
        dz = (high - low) / (int(points) - 1)
        log_weights = torch.full_like(grid, math.log(dz))
        log_weights[[0, -1]] = math.log(dz / 2)
        return torch.logsumexp(log_joint + log_weights.reshape(-1, 1), dim=0)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def sample(self, n: int, mean_only: bool = False) -> Tensor:
        r""":math:`x \sim p_\theta(x)`: :math:`z \sim p(z)`, then :math:`x \sim p_\theta(x\mid z)`
        (or the decoder's mean :math:`\mu_\theta(z)` when ``mean_only``)."""
        if int(n) != n or n < 0:
            raise ValueError(f"number of samples must be a non-negative integer, got {n!r}")
        ref = self.decoder_log_std
        z = torch.randn(int(n), self.latent, dtype=ref.dtype, device=ref.device)
        mean = self.decode(z)
        if mean_only:
            return mean
        return mean + torch.exp(self.log_std) * torch.randn_like(mean)

    def forward(self, x: Tensor) -> Tensor:
        """The ELBO of each sample (so that ``vae(x)`` is a per-sample score like a flow's)."""
        check_finite(self._check(x), name="x", layer="VAE")
        return self.elbo(x)

    def extra_repr(self) -> str:
        return f"features={self.features}, latent={self.latent}"
