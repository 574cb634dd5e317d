"""Write a batch of samples as a PNG: a scatter plot for 2-D points, a grid for images.

Used by the trainer every ``sample_every`` steps and by ``flowlab sample``.  Figures are drawn
with :class:`matplotlib.figure.Figure` directly (no ``pyplot`` state), so this works in
scripts, notebooks and worker processes alike.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["as_image_batch", "image_grid", "save_samples"]


def as_image_batch(x: Tensor) -> Tensor | None:
    """``x`` as ``(N, C, H, W)`` images if it looks like images, else ``None``.

    Accepts ``(N, C, H, W)``, ``(N, H, W)`` and flat ``(N, D)`` with :math:`D` a perfect square
    larger than 4 (e.g. the 64 pixels of an 8x8 digit).
    """
    if x.dim() == 4:
        return x
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() == 2 and x.shape[1] > 4:
        side = math.isqrt(x.shape[1])
        if side * side == x.shape[1]:
            return x.reshape(x.shape[0], 1, side, side)
    return None


def image_grid(images: Tensor, nrow: int | None = None, pad: int = 1) -> Tensor:
    """Tile ``(N, C, H, W)`` images into one ``(H', W', C)`` array scaled to [0, 1].

    Values are mapped to [0, 1] by the 1st and 99th percentiles of the batch, so any data
    scale (counts, [0, 1], logit space) gives a readable picture.
    """
    images = images.detach().float().cpu()
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol = math.ceil(n / nrow)
    flat = images.reshape(-1)
    if flat.numel() > 1:
        lo, hi = torch.quantile(flat[:100_000], torch.tensor([0.01, 0.99])).tolist()
    else:
        lo, hi = 0.0, 1.0
    images = ((images - lo) / max(hi - lo, 1e-8)).clamp(0, 1)
    grid = torch.ones(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, k = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid.permute(1, 2, 0)


def save_samples(x: Tensor, path: str | Path, title: str | None = None) -> Path | None:
    """Save samples ``x`` as a PNG at ``path``; returns the path, or ``None`` if ``x`` has a
    shape that is neither 2-D points nor images."""
    from matplotlib.figure import Figure

    path = Path(path)
    x = x.detach().float().cpu()
    images = as_image_batch(x)
    if images is None and not (x.dim() == 2 and x.shape[1] == 2):
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(4, 4), dpi=100)
    ax = fig.add_subplot()
    if images is None:
        ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2, alpha=0.5)
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    else:
        grid = image_grid(images)
        ax.imshow(grid.squeeze(-1).numpy() if grid.shape[-1] == 1 else grid.numpy(),
                  cmap="gray", interpolation="nearest")
        ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return path
