r"""Pictures of 2-D flows: density heat maps, sample scatters, and the data moving layer by layer.

All functions draw with matplotlib only, return the :class:`~matplotlib.figure.Figure` or
:class:`~matplotlib.axes.Axes` they drew on and never call ``plt.show()`` (the notebook or
the caller decides what to do with the figure).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor, nn

__all__ = ["density_grid", "plot_density_2d", "plot_flow_layers", "plot_samples_2d"]

LogProb = Callable[[Tensor], Tensor]


def _reference(model: object) -> tuple[torch.dtype, torch.device]:
    if isinstance(model, nn.Module):
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                return t.dtype, t.device
    return torch.get_default_dtype(), torch.device("cpu")


@torch.no_grad()
def density_grid(
    log_prob: nn.Module | LogProb,
    xlim: tuple[float, float] = (-4.0, 4.0),
    ylim: tuple[float, float] = (-4.0, 4.0),
    resolution: int = 200,
    chunk: int = 65536,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Evaluate :math:`\log p(x)` on a ``resolution`` x ``resolution`` grid.

    Args:
        log_prob: a :class:`~flowlab.flow.Flow` (its ``log_prob`` is used) or any function
            mapping a ``(batch, 2)`` tensor to ``(batch,)`` log-densities.
        xlim, ylim: the window.
        resolution: grid points per axis.
        chunk: evaluate at most this many points at once (bounds the memory).

    Returns:
        ``(xs, ys, logp)`` with ``logp[i, j]`` the log-density at ``(xs[j], ys[i])``
        (the layout of :func:`matplotlib.pyplot.pcolormesh`).
    """
    dtype, device = _reference(log_prob)
    fn = log_prob.log_prob if hasattr(log_prob, "log_prob") else log_prob
    xs = torch.linspace(xlim[0], xlim[1], resolution, dtype=dtype, device=device)
    ys = torch.linspace(ylim[0], ylim[1], resolution, dtype=dtype, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    logp = torch.cat([fn(p) for p in points.split(chunk)]).reshape(resolution, resolution)
    return xs.cpu().numpy(), ys.cpu().numpy(), logp.float().cpu().numpy()


def _axes(ax: Axes | None, size: float = 4.0) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(size, size))
    return ax


def _label(ax: Axes, title: str | None, xlim=None, ylim=None, variable: str = "x") -> None:
    ax.set_xlabel(f"${variable}_1$")
    ax.set_ylabel(f"${variable}_2$")
    if title:
        ax.set_title(title)
    if xlim is not None:
        ax.set_xlim(*xlim)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_aspect("equal")


def plot_density_2d(
    log_prob: nn.Module | LogProb,
    xlim: tuple[float, float] = (-4.0, 4.0),
    ylim: tuple[float, float] = (-4.0, 4.0),
    resolution: int = 200,
    ax: Axes | None = None,
    log: bool = False,
    cmap: str = "magma",
    title: str | None = "density $p_X(x)$",
    colorbar: bool = True,
) -> Axes:
    r"""Heat map of a 2-D density :math:`p_X(x) = p_Z(f(x))\,|\det Df(x)|` on a grid.

    Args:
        log_prob: a flow, or a function ``(batch, 2) -> (batch,)`` of log-densities (e.g.
            ``lambda x: toy_log_prob("checkerboard", x)`` for the true density).
        xlim, ylim, resolution: the grid (see :func:`density_grid`).
        ax: axes to draw on (a new figure if ``None``).
        log: show :math:`\log p` instead of :math:`p` (reveals the tails).
        cmap: a sequential colour map (dark = low density); ``"magma"`` by default.
        title: axes title.
        colorbar: add a colour bar labelled with the plotted quantity.
    """
    xs, ys, logp = density_grid(log_prob, xlim, ylim, resolution)
    if log:
        values = np.where(np.isfinite(logp), logp, np.nan)
        finite = values[np.isfinite(values)]
        vmin = max(finite.min(), finite.max() - 20.0) if finite.size else None
        label = r"$\log p(x)$"
    else:
        values, vmin, label = np.exp(logp), 0.0, r"$p(x)$"
    ax = _axes(ax)
    mesh = ax.pcolormesh(xs, ys, values, cmap=cmap, shading="auto", vmin=vmin)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label=label, fraction=0.046, pad=0.04)
    _label(ax, title, xlim, ylim)
    return ax


def plot_samples_2d(
    samples: Tensor | np.ndarray,
    ax: Axes | None = None,
    title: str | None = "samples",
    xlim: tuple[float, float] | None = (-4.0, 4.0),
    ylim: tuple[float, float] | None = (-4.0, 4.0),
    color: str | Sequence | np.ndarray = "tab:blue",
    size: float = 2.0,
    alpha: float = 0.5,
    marker: str = "o",
    label: str | None = None,
) -> Axes:
    """Scatter plot of points of shape ``(n, 2)`` (data, or samples from ``flow.sample(n)``).

    ``marker`` tells point sets apart without colour (the book: data ``"o"``, samples
    ``"x"``; see :mod:`flowlab.plots.style`); ``label`` names them for a legend.
    """
    pts = samples.detach().float().cpu().numpy() if isinstance(samples, Tensor) else samples
    pts = np.asarray(pts)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"plot_samples_2d expects points of shape (n, 2), got {pts.shape}")
    ax = _axes(ax)
    line = {} if marker in ("o", "s", "^", "D", "v") else {"linewidths": 0.6}
    ax.scatter(pts[:, 0], pts[:, 1], s=size, alpha=alpha, c=color, marker=marker, label=label,
               **({"linewidths": 0} | line))
    _label(ax, title, xlim, ylim)
    return ax


@torch.no_grad()
def plot_flow_layers(
    flow: nn.Module,
    x: Tensor,
    layers: Sequence[int] | None = None,
    ncols: int = 3,
    size: float = 2.0,
    lim: float | None = 4.0,
    cmap: str = "viridis",
) -> Figure:
    r"""The data moving through the flow: one panel per intermediate
    :math:`y_k = f_k \circ \dots \circ f_1(x)`, from the data :math:`x` to the latent :math:`z`.

    Points are coloured by their first coordinate in the data, so one can follow each point
    from panel to panel.

    Args:
        flow: a :class:`~flowlab.flow.Flow` (or a :class:`~flowlab.transforms.base.Compose`)
            on 2-D data.
        x: data points, shape ``(n, 2)``.
        layers: which intermediate steps to show (0 = the data, ``len(flow)`` = the
            latent); default all.
        ncols: panels per row (three at most for the book's 6 in width,
            :mod:`flowlab.plots.style`).
        size: panel size in inches.
        lim: axis limits :math:`[-\text{lim}, \text{lim}]` (``None``: automatic).
        cmap: colour map of the points.
    """
    compose = getattr(flow, "transform", flow)
    if not hasattr(compose, "trajectory"):
        raise TypeError("plot_flow_layers needs a Flow or a Compose (with .trajectory)")
    dtype, device = _reference(flow)
    steps = compose.trajectory(x.to(dtype=dtype, device=device))
    names = ["data $x$"] + [f"after layer {k + 1}" for k in range(len(compose.transforms))]
    if len(names) > 1:
        names[-1] = "latent $z$"
    show = list(range(len(steps))) if layers is None else list(layers)
    colour = steps[0][:, 0].float().cpu().numpy()
    ncols = min(ncols, len(show))
    nrows = -(-len(show) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax, k in zip(axes.flat, show):
        pts = steps[k].float().cpu().numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=2, c=colour, cmap=cmap, linewidths=0)
        lims = None if lim is None else (-lim, lim)
        variable = "x" if k == 0 else ("z" if k == len(steps) - 1 else "y")
        _label(ax, names[k], lims, lims, variable=variable)
        if lim is not None:
            ax.set_xticks([-lim, 0, lim])
            ax.set_yticks([-lim, 0, lim])
    for ax in list(axes.flat)[len(show):]:
        ax.axis("off")
    if not fig.get_constrained_layout():
        fig.tight_layout()
    return fig
