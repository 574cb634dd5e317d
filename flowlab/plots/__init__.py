"""Figures shared by the book, the training loop and the benchmarks (matplotlib; every
function returns its Figure and never calls ``plt.show()``).

The book's figure conventions (size, fonts, alt text, click to enlarge, legibility threshold)
live in :mod:`flowlab.plots.style`: ``use_book_style()``, ``book_figure(..., alt=...)``,
``set_alt``, ``animation_html``.
"""

from .curves import load_history, plot_learning_curve
from .density2d import density_grid, plot_density_2d, plot_flow_layers, plot_samples_2d
from .images import make_grid, plot_bits_per_dim, real_vs_generated, sample_grid

__all__ = [
    "plot_density_2d", "plot_samples_2d", "plot_flow_layers", "density_grid",
    "sample_grid", "make_grid", "real_vs_generated", "plot_bits_per_dim",
    "plot_learning_curve", "load_history",
]  # fmt: skip
