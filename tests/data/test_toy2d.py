"""Toy 2-D data: reproducible, the right shapes, and correct analytic densities."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributions as D

from flowlab.data.toy2d import (
    TOY_DATASETS,
    checkerboard,
    eight_gaussians,
    toy_dataset,
    toy_log_prob,
    two_moons,
)


@pytest.mark.parametrize("name", list(TOY_DATASETS))
def test_shapes_seeds_and_range(name):
    x = toy_dataset(name, 500, seed=3)
    assert x.shape == (500, 2) and x.dtype == torch.get_default_dtype()
    assert torch.equal(x, toy_dataset(name, 500, seed=3))
    assert not torch.equal(x, toy_dataset(name, 500, seed=4))
    assert x.abs().max() < 4.5  # every set fits the common [-4, 4]^2 window (up to noise)
    assert toy_dataset(name, 0).shape == (0, 2)
    assert toy_dataset(name, 10, dtype=torch.float64).dtype == torch.float64


def test_two_moons_structure():
    x = two_moons(4000, seed=0, noise=0.0)
    # Without noise every point lies on one of the two (scaled) unit circles.
    centres = torch.tensor([[-1.0, -0.5], [1.0, 0.5]])
    radius = torch.cdist(x, centres).sub(2.0).abs().min(dim=1).values
    assert radius.max() < 1e-5


def test_eight_gaussians_density_matches_torch_mixture():
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = 2.5 * torch.stack([angles.cos(), angles.sin()], 1)
    mixture = D.MixtureSameFamily(
        D.Categorical(torch.full((8,), 1 / 8, dtype=torch.float64)),
        D.Independent(D.Normal(centres, 0.25), 1),
    )
    x = 3 * torch.randn(100, 2, dtype=torch.float64)
    assert torch.allclose(toy_log_prob("eight_gaussians", x), mixture.log_prob(x))
    # and the sampler draws from it: the mean log-density of the samples matches
    samples = eight_gaussians(20000, seed=0, dtype=torch.float64)
    ref = mixture.log_prob(mixture.sample((20000,))).mean()
    mean_logp = toy_log_prob("eight_gaussians", samples).mean().item()
    assert mean_logp == pytest.approx(ref.item(), abs=0.03)


def test_checkerboard_samples_are_on_black_squares_uniformly():
    x = checkerboard(40000, seed=0, dtype=torch.float64)
    logp = toy_log_prob("checkerboard", x)
    assert torch.allclose(logp, torch.full_like(logp, -math.log(8 * 1.5**2)))
    cells = torch.floor((x + 3) / 1.5).long()
    counts = torch.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16).double()
    black = counts[counts > 0]
    assert black.numel() == 8 and (black / 5000 - 1).abs().max() < 0.06
    white = torch.tensor([[-2.0, -0.5], [0.5, 2.0], [5.0, 0.0]], dtype=torch.float64)
    assert torch.isinf(toy_log_prob("checkerboard", white)).all()


@pytest.mark.parametrize("name", ["eight_gaussians", "checkerboard"])
def test_analytic_densities_integrate_to_one(name):
    g = torch.linspace(-4.5, 4.5, 901, dtype=torch.float64)
    gx, gy = torch.meshgrid(g, g, indexing="ij")
    p = toy_log_prob(name, torch.stack([gx.flatten(), gy.flatten()], 1)).exp().reshape(901, 901)
    # trapezoid on a 0.01 grid; the checkerboard's jumps cost about one cell row of error
    assert torch.trapezoid(torch.trapezoid(p, g), g).item() == pytest.approx(1.0, abs=5e-3)


def test_errors():
    with pytest.raises(ValueError, match="unknown toy data set"):
        toy_dataset("spiral", 10)
    with pytest.raises(ValueError, match="no analytic density"):
        toy_log_prob("two_moons", torch.zeros(3, 2))
    with pytest.raises(ValueError, match="non-negative integer"):
        two_moons(-3)
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        toy_log_prob("checkerboard", torch.zeros(3, 3))
