"""The tiny VAE of the book: its three numbers on log p(x) are ordered and exact where known."""

from __future__ import annotations

import math

import pytest
import torch

from flowlab.models.vae import VAE, gaussian_log_density, kl_to_standard_normal


def _linear_vae(features: int = 2) -> VAE:
    torch.manual_seed(0)
    vae = VAE(features=features, latent=1, hidden=()).double()
    with torch.no_grad():
        vae.decoder_log_std.fill_(math.log(0.3))
    return vae


def test_quadrature_matches_the_linear_gaussian_marginal():
    # With a linear decoder mu(z) = W z + b, p(x) = N(b, W W^T + diag(sigma^2)) exactly.
    vae = _linear_vae()
    lin = vae.decoder[0]
    cov = lin.weight @ lin.weight.T + torch.diag(torch.exp(2 * vae.log_std))
    exact = torch.distributions.MultivariateNormal(lin.bias, covariance_matrix=cov)
    x = torch.randn(16, 2, dtype=torch.float64)
    torch.testing.assert_close(vae.log_prob_quadrature(x), exact.log_prob(x), atol=1e-8, rtol=0)


def test_bounds_are_below_the_exact_log_likelihood_and_iwae_is_tighter():
    torch.manual_seed(1)
    vae = VAE(features=2, latent=1, hidden=(16,)).double()
    x = torch.randn(8, 2, dtype=torch.float64)
    exact = vae.log_prob_quadrature(x)
    elbo = vae.elbo(x, samples=4000)
    iwae = vae.iwae_bound(x, k=8192)
    assert (elbo < exact + 1e-3).all()
    # IWAE is a stochastic lower bound that tends to log p(x) as k grows: close, and tighter.
    torch.testing.assert_close(iwae, exact, atol=2e-2, rtol=0)
    assert (iwae > elbo).all()


def test_elbo_equals_log_px_when_the_encoder_is_the_true_posterior():
    # Linear-Gaussian model: the true posterior is Gaussian; set q to it and the gap vanishes.
    vae = _linear_vae()
    lin_dec, lin_enc = vae.decoder[0], vae.encoder[0]
    w = lin_dec.weight[:, 0]
    prec = 1 + (w * w / torch.exp(2 * vae.log_std)).sum()
    gain = w / torch.exp(2 * vae.log_std) / prec  # posterior mean = gain . (x - b)
    with torch.no_grad():
        lin_enc.weight.zero_()
        lin_enc.bias.zero_()
        lin_enc.weight[0] = gain
        lin_enc.bias[0] = -(gain * lin_dec.bias).sum()
        lin_enc.bias[1] = -0.5 * torch.log(prec)
    x = torch.randn(4, 2, dtype=torch.float64)
    torch.testing.assert_close(vae.iwae_bound(x, k=1000), vae.log_prob_quadrature(x), atol=1e-8,
                               rtol=0)
    torch.manual_seed(3)
    torch.testing.assert_close(vae.elbo(x, samples=20000), vae.log_prob_quadrature(x), atol=2e-2,
                               rtol=0)


def test_closed_forms():
    m = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    ls = torch.tensor([[0.1, -0.3]], dtype=torch.float64)
    q = torch.distributions.Normal(m, ls.exp())
    p = torch.distributions.Normal(torch.zeros_like(m), torch.ones_like(m))
    torch.testing.assert_close(kl_to_standard_normal(m, ls), torch.distributions.kl_divergence(q, p).sum(-1))
    x = torch.tensor([[0.2, 0.4]], dtype=torch.float64)
    torch.testing.assert_close(gaussian_log_density(x, m, ls), q.log_prob(x).sum(-1))


def test_training_raises_the_elbo_and_sampling_has_the_right_shape():
    torch.manual_seed(0)
    x = torch.randn(256, 2) * torch.tensor([1.0, 0.1]) @ torch.tensor([[0.8, 0.6], [-0.6, 0.8]])
    vae = VAE(2, 1, hidden=(32,))
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    before = vae.elbo(x, samples=64).mean().item()
    for _ in range(200):
        opt.zero_grad()
        vae.loss(x).backward()
        opt.step()
    assert vae.elbo(x, samples=64).mean().item() > before + 0.5
    assert vae.sample(5).shape == (5, 2) and vae.sample(3, mean_only=True).shape == (3, 2)


def test_bad_input_says_what_to_do():
    vae = VAE(4, 2)
    with pytest.raises(ValueError, match="shape"):
        vae.elbo(torch.randn(3, 5))
    with pytest.raises(TypeError, match="floating-point"):
        vae.elbo(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="1-D latent"):
        vae.log_prob_quadrature(torch.randn(3, 4))
    with pytest.raises(ValueError, match="k >= 1"):
        vae.iwae_bound(torch.randn(3, 4), k=0)
