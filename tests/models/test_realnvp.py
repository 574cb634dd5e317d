"""RealNVP builders (and the 2-D density plots drawn from them)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from flowlab.data.toy2d import toy_log_prob, two_moons
from flowlab.flow import Flow
from flowlab.models.realnvp import realnvp
from flowlab.plots.density2d import (
    density_grid,
    plot_density_2d,
    plot_flow_layers,
    plot_samples_2d,
)
from flowlab.testing import check_transform
from flowlab.transforms.coupling import AdditiveCoupling, AffineCoupling
from flowlab.transforms.linear import DiagonalLinear, LULinear, RandomPermutation, Reverse
from flowlab.transforms.splines import RQSplineCoupling

COUPLING = {"affine": AffineCoupling, "additive": AdditiveCoupling, "spline": RQSplineCoupling}
MIXING = {"reverse": Reverse, "permutation": RandomPermutation, "lu": LULinear}


@pytest.mark.parametrize("kind", list(COUPLING))
@pytest.mark.parametrize("mask", ["half", "alternating"])
@pytest.mark.parametrize("mixing", [None, "reverse", "permutation", "lu"])
def test_structure(kind, mask, mixing):
    flow = realnvp(5, couplings=3, hidden=(8,), kind=kind, mask=mask, mixing=mixing)
    layers = list(flow.transform)
    couplings = [t for t in layers if isinstance(t, COUPLING[kind])]
    assert len(couplings) == 3
    # consecutive couplings transform complementary parts
    assert torch.equal(couplings[0].mask.mask, ~couplings[1].mask.mask)
    if mixing is not None:
        assert sum(isinstance(t, MIXING[mixing]) for t in layers) == 2
    if kind == "additive":
        assert isinstance(layers[-1], DiagonalLinear)  # NICE's scaling layer


@pytest.mark.parametrize("kind", list(COUPLING))
def test_starts_as_identity_and_passes_the_contract(kind, perturb):
    flow = realnvp(4, couplings=2, hidden=(8,), kind=kind)
    x = torch.randn(6, 4)
    assert torch.allclose(flow.log_prob(x), flow.base.log_prob(x), atol=1e-5)
    perturb(flow.double(), scale=0.3)
    check_transform(flow, torch.randn(3, 4, dtype=torch.float64))


def test_realnvp_2d_defaults():
    flow = realnvp(2)
    assert isinstance(flow, Flow) and flow.event_shape == (2,)
    assert len(flow.transform) == 8
    assert all(c.conditioner[0].out_features == 64 for c in flow.transform)
    spline = realnvp(2, kind="spline")
    assert realnvp(64).transform[0].conditioner[0].out_features == 256
    assert spline.transform[0].bound == 4.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 2 features"):
        realnvp(1)
    with pytest.raises(ValueError, match="kind"):
        realnvp(4, kind="glow")
    with pytest.raises(ValueError, match="mixing"):
        realnvp(4, mixing="shuffle")
    with pytest.raises(ValueError, match="mask"):
        realnvp(4, mask="checkerboard")


def test_density_grid_layout():
    xs, ys, logp = density_grid(lambda x: -x[:, 0] ** 2, xlim=(-1, 1), ylim=(0, 3), resolution=5)
    assert xs.shape == (5,) and ys.shape == (5,) and logp.shape == (5, 5)
    assert np.allclose(logp[2], -(xs**2))  # rows follow y, columns follow x
    flow = realnvp(2, couplings=2, hidden=(8,))
    _, _, logp = density_grid(flow, resolution=7)
    g = np.linspace(-4, 4, 7)
    expected = -0.5 * (g[None, :] ** 2 + g[:, None] ** 2) - np.log(2 * np.pi)  # identity flow
    assert np.allclose(logp, expected, atol=1e-5)


def test_plots_return_labelled_artists():
    flow = realnvp(2, couplings=2, hidden=(8,))
    ax = plot_density_2d(flow, resolution=20)
    assert isinstance(ax, Axes) and ax.get_xlabel() == "$x_1$" and ax.get_title()
    ax = plot_density_2d(lambda x: toy_log_prob("checkerboard", x), resolution=20, log=True)
    assert isinstance(ax, Axes)
    ax = plot_samples_2d(two_moons(100), title="moons")
    assert ax.get_title() == "moons" and len(ax.collections) == 1
    fig = plot_flow_layers(flow, two_moons(100))
    assert isinstance(fig, Figure)
    titled = [a for a in fig.axes if a.get_title()]
    assert len(titled) == 3 and titled[0].get_title() == "data $x$"
    assert titled[-1].get_title().startswith("latent $z$")
    assert (titled[0].get_xlabel(), titled[1].get_xlabel(), titled[-1].get_xlabel()) == (
        "$x_1$", "$y_1$", "$z_1$")
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        plot_samples_2d(torch.zeros(5, 3))
    plt.close("all")
