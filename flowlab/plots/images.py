"""Figures for image flows: sample grids, real vs generated, bits/dim curves.

All functions return a :class:`matplotlib.figure.Figure` (or draw into a given ``ax``) and
never call ``plt.show()``, so the book, the training loop and the benchmarks can all reuse
them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["make_grid", "sample_grid", "real_vs_generated", "plot_bits_per_dim"]


def make_grid(
    images: Tensor | np.ndarray,
    nrow: int = 8,
    padding: int = 1,
    num_levels: int | None = None,
    pad_value: float = 1.0,
) -> np.ndarray:
    r"""Tile ``(N, C, H, W)`` images into one array ``(rows, cols)`` or ``(rows, cols, 3)``.

    Values are mapped to :math:`[0, 1]`: divided by :math:`K - 1` when ``num_levels`` :math:`K`
    is given, otherwise min-max scaled over the whole batch; then clipped.
    """
    x = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    if x.ndim == 3:  # (N, H, W): grey images without a channel axis
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            f"expected images of shape (N, C, H, W) with C = 1 or 3, got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError("no images to show")
    x = x.astype(np.float64)
    if num_levels is not None:
        x = x / (num_levels - 1)
    else:
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    x = np.clip(x, 0.0, 1.0)
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    nrows = -(-n // ncol)
    grid = np.full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    for k in range(n):  # a loop over images (not pixels): N is at most a few hundred
        r, q = divmod(k, ncol)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, top : top + h, left : left + w] = x[k]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def sample_grid(
    images: Tensor | np.ndarray,
    nrow: int = 8,
    *,
    num_levels: int | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    cmap: str = "gray",
) -> Figure:
    """Show a batch of images ``(N, C, H, W)`` as a grid with ``nrow`` images per row."""
    if ax is None:
        fig = Figure(figsize=(6, 6))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    grid = make_grid(images, nrow=nrow, num_levels=num_levels)
    ax.imshow(
        grid, cmap=cmap if grid.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest"
    )
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


def real_vs_generated(
    real: Tensor | np.ndarray,
    generated: Tensor | np.ndarray,
    nrow: int = 8,
    *,
    num_levels: int | None = None,
    titles: Sequence[str] = ("data", "samples"),
) -> Figure:
    """Two grids side by side: data images on the left, model samples on the right."""
    if len(titles) != 2:
        raise ValueError(f"titles must be two strings (data, samples), got {titles!r}")
    fig = Figure(figsize=(10, 5))
    axes = fig.subplots(1, 2)
    for ax, imgs, title in zip(axes, (real, generated), titles, strict=True):
        sample_grid(imgs, nrow, num_levels=num_levels, title=title, ax=ax)
    return fig


def plot_bits_per_dim(
    history: Mapping[str, Sequence[float] | Sequence[tuple[float, float]]] | Sequence[float],
    *,
    ax: Axes | None = None,
    xlabel: str = "epoch",
    reference: float | None = None,
) -> Figure:
    r"""Bits/dim curves, e.g. ``{"train": [...], "test": [...]}``.

    Each curve is a list of values (plotted against their index) or of ``(step, value)``
    pairs.  ``reference`` draws a horizontal line, e.g. :math:`\log_2 K` (the uniform model).
    """
    if ax is None:
        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    curves = history if isinstance(history, Mapping) else {"bits/dim": history}
    for name, values in curves.items():
        arr = np.asarray(
            [v.detach().cpu().numpy() if isinstance(v, Tensor) else v for v in values], dtype=float
        )
        if arr.ndim == 2 and arr.shape[1] == 2:
            ax.plot(arr[:, 0], arr[:, 1], label=name)
        elif arr.ndim == 1:
            ax.plot(np.arange(arr.size), arr, label=name)
        else:
            raise ValueError(f"curve {name!r}: expected a list of values or of (step, value) pairs")
    if reference is not None:
        ax.axhline(reference, color="gray", linestyle="--", label=f"reference {reference:.3g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("bits / dim")
    ax.legend()
    return fig
