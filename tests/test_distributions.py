"""Base distributions against torch.distributions references; the lecture's U(0,1) example."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributions as D

from flowlab.distributions import DiagonalGaussian, StandardLogistic, StandardNormal, UniformBox
from flowlab.flow import Flow
from flowlab.transforms.pointwise import Elementwise


def test_standard_normal_matches_torch():
    z = torch.randn(7, 3, dtype=torch.float64)
    ref = D.Normal(0.0, 1.0).log_prob(z).sum(dim=1)
    assert torch.allclose(StandardNormal(3).double().log_prob(z), ref)


def test_standard_normal_image_event_shape():
    z = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    ref = D.Normal(0.0, 1.0).log_prob(z).sum(dim=(1, 2, 3))
    assert torch.allclose(StandardNormal((2, 3, 3)).double().log_prob(z), ref)


def test_diagonal_gaussian_matches_torch():
    dist = DiagonalGaussian(4).double()
    with torch.no_grad():
        dist.loc.normal_()
        dist.log_scale.normal_(0, 0.5)
    z = torch.randn(6, 4, dtype=torch.float64)
    ref = D.Independent(D.Normal(dist.loc, dist.log_scale.exp()), 1).log_prob(z)
    assert torch.allclose(dist.log_prob(z), ref)
    assert dist.log_prob(z).requires_grad  # learnable


def test_standard_logistic_matches_torch():
    logistic = D.TransformedDistribution(
        D.Uniform(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)),
        [D.transforms.SigmoidTransform().inv],
    )
    z = 3 * torch.randn(6, 2, dtype=torch.float64)
    ref = logistic.log_prob(z).sum(dim=1)
    assert torch.allclose(StandardLogistic(2).double().log_prob(z), ref)


def test_uniform_box_matches_torch_inside_and_is_minus_inf_outside():
    box = UniformBox(2, low=-1.0, high=3.0).double()
    inside = torch.tensor([[0.0, 2.9], [-1.0, 1.0]], dtype=torch.float64)
    ref = D.Uniform(-1.0, 3.0).log_prob(inside).sum(dim=1).double()
    assert torch.allclose(box.log_prob(inside), ref)
    outside = torch.tensor([[3.5, 0.0], [0.0, -1.01]], dtype=torch.float64)
    assert torch.equal(box.log_prob(outside), torch.full((2,), -math.inf, dtype=torch.float64))


def test_lecture_example_sqrt_of_uniform_has_density_2x():
    r"""X = sqrt(Z), Z ~ U(0,1)  =>  p_X(x) = 2x on (0, 1).

    The normalizing direction is f(x) = x^2 with f'(x) = 2x, so
    log p_X(x) = log p_Z(x^2) + log(2x) = log(2x).
    """
    Square = Elementwise.from_functions(
        lambda x: x * x, torch.sqrt, lambda x: torch.log(2 * x), name="Square"
    )
    flow = Flow(UniformBox(1).double(), [Square()])
    x = torch.linspace(0.05, 0.95, 19, dtype=torch.float64).unsqueeze(1)
    assert torch.allclose(flow.log_prob(x), torch.log(2 * x[:, 0]))
    torch.manual_seed(0)
    samples = flow.sample(20000)
    assert samples.min() >= 0 and samples.max() < 1
    assert samples.mean().item() == pytest.approx(2 / 3, abs=0.01)  # E[X] = int 2x^2 = 2/3


@pytest.mark.parametrize(
    "dist", [StandardNormal(3), DiagonalGaussian(3), StandardLogistic(3), UniformBox(3)],
    ids=lambda d: type(d).__name__,
)
def test_sampling_shape_dtype_and_moments(dist):
    torch.manual_seed(0)
    s = dist.double().sample(20000)
    assert s.shape == (20000, 3) and s.dtype == torch.float64
    means = {"StandardNormal": 0.0, "DiagonalGaussian": 0.0, "StandardLogistic": 0.0,
             "UniformBox": 0.5}
    var = {"StandardNormal": 1.0, "DiagonalGaussian": 1.0, "StandardLogistic": math.pi**2 / 3,
           "UniformBox": 1 / 12}
    name = type(dist).__name__
    assert torch.allclose(s.mean(0), torch.full((3,), means[name], dtype=torch.float64), atol=0.05)
    assert torch.allclose(s.var(0), torch.full((3,), var[name], dtype=torch.float64), rtol=0.06)


def test_temperature_scales_gaussian_samples():
    torch.manual_seed(0)
    s = StandardNormal(2).sample(20000, temperature=0.5)
    assert s.std().item() == pytest.approx(0.5, rel=0.03)


def test_bad_arguments():
    with pytest.raises(ValueError, match="high > low"):
        UniformBox(2, low=1.0, high=1.0)
    with pytest.raises(ValueError, match="temperature"):
        UniformBox(2).sample(3, temperature=0.5)
    with pytest.raises(ValueError, match="non-negative integer"):
        StandardNormal(2).sample(-1)
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        StandardNormal(2).log_prob(torch.randn(3, 4))
    with pytest.raises(TypeError, match="floating-point"):
        StandardNormal(2).log_prob(torch.ones(3, 2, dtype=torch.long))
