"""Tests of flowlab.plots.images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from flowlab.plots.images import make_grid, plot_bits_per_dim, real_vs_generated, sample_grid


def test_make_grid_layout_and_scaling():
    images = torch.arange(10).reshape(10, 1, 1, 1).expand(10, 1, 8, 8).float()
    grid = make_grid(images, nrow=4, padding=1, num_levels=17)
    assert grid.shape == (3 * 9 + 1, 4 * 9 + 1)  # 3 rows of 4, 1-pixel borders
    assert grid[1, 1] == 0.0  # first image, level 0
    assert grid[1, 1 + 9] == pytest.approx(1 / 16)  # second image, level 1
    assert grid[1 + 9, 1] == pytest.approx(4 / 16)  # second row starts with image 4
    assert grid[-2, -2] == 1.0  # the unused slot is padding
    rgb = make_grid(torch.rand(5, 3, 4, 4), nrow=5)
    assert rgb.shape == (6, 26, 3) and rgb.min() >= 0 and rgb.max() <= 1


def test_make_grid_errors():
    with pytest.raises(ValueError, match="C = 1 or 3"):
        make_grid(torch.rand(2, 2, 4, 4))
    with pytest.raises(ValueError, match="no images"):
        make_grid(torch.rand(0, 1, 4, 4))


def test_sample_grid_and_real_vs_generated():
    imgs = torch.randint(0, 17, (16, 1, 8, 8))
    fig = sample_grid(imgs, nrow=4, num_levels=17, title="digits")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "digits"
    assert ax.images[0].get_array().shape == (37, 37)
    fig2 = real_vs_generated(imgs, imgs.flip(0), nrow=4, num_levels=17)
    assert [a.get_title() for a in fig2.axes] == ["data", "samples"]


def test_plot_bits_per_dim():
    history = {"train": [4.0, 3.0, 2.5], "test": [(0, 4.1), (2, 2.9)]}
    fig = plot_bits_per_dim(history, reference=np.log2(17))
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3
    assert list(lines[1].get_xdata()) == [0, 2]
    assert fig.axes[0].get_ylabel() == "bits / dim"
    fig = plot_bits_per_dim([torch.tensor(3.0), torch.tensor(2.0)])
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == [3.0, 2.0]
    with pytest.raises(ValueError, match="curve"):
        plot_bits_per_dim({"bad": [[1, 2, 3]]})
