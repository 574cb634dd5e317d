"""Learning curves of a training run: the training loss and the test NLL against the step.

Reads what :class:`flowlab.train.Trainer` records: its ``history`` (a list of dicts) or the
``metrics.csv`` of a run folder.  Bits/dim is the NLL divided by :math:`D \\ln 2`, so the two
units give the same picture on different axes; ``unit="bpd"`` plots bits/dim.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["plot_learning_curve", "load_history"]


def load_history(source: str | Path | Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Rows of a run as dicts of floats (missing values left out).

    ``source`` is a ``metrics.csv`` file, a run folder holding one, or a list of dicts such as
    ``Trainer.history``.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            path = path / "metrics.csv"
        if not path.is_file():
            raise FileNotFoundError(f"no metrics file at {str(path)!r}")
        with open(path, newline="") as f:
            source = list(csv.DictReader(f))
    rows = []
    for row in source:
        clean = {}
        for key, value in row.items():
            if value is None or value == "":
                continue
            try:
                clean[key] = float(value)
            except (TypeError, ValueError):
                continue
        rows.append(clean)
    return rows


def plot_learning_curve(
    source: str | Path | Sequence[Mapping[str, Any]],
    *,
    unit: str = "nll",
    ax: Axes | None = None,
    reference: float | None = None,
    reference_label: str = "reference",
    title: str | None = None,
) -> Figure:
    """Plot the training loss and the test NLL (or bits/dim) of a run against the step.

    Args:
        source: ``Trainer.history``, a ``metrics.csv`` or the run folder.
        unit: ``"nll"`` (nats per sample) or ``"bpd"`` (bits per dimension).
        ax: draw into these axes (default: a new figure).
        reference: a horizontal line, e.g. the data's true entropy or a published result.
        title: the axes' title.

    Returns:
        The figure (``fig.savefig(...)`` to keep it).
    """
    if unit not in ("nll", "bpd"):
        raise ValueError(f"unit must be 'nll' or 'bpd', got {unit!r}")
    rows = load_history(source)
    train_key, test_key = ("loss", "test_nll") if unit == "nll" else (
        "bits_per_dim", "test_bits_per_dim"
    )
    curves = {
        "train (mean over the logging window)": _series(rows, train_key),
        "test": _series(rows, test_key),
    }
    if not any(steps for steps, _ in curves.values()):
        raise ValueError(f"the history has no {train_key!r} or {test_key!r} values to plot")
    if ax is None:
        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    for (label, (steps, values)), style in zip(curves.items(), ("-", "o-")):
        if steps:
            ax.plot(steps, values, style, label=label, markersize=4)
    if reference is not None:
        ax.axhline(reference, color="k", linestyle="--", linewidth=1, label=reference_label)
    ax.set_xlabel("step")
    ax.set_ylabel("negative log-likelihood (nats)" if unit == "nll" else "bits / dim")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return fig


def _series(rows: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    pts = [(r["step"], r[key]) for r in rows if key in r and "step" in r and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]
