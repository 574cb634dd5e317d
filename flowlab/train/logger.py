"""Metrics on disk: one CSV row per logged step (and TensorBoard scalars when installed).

The CSV has a fixed header (:data:`COLUMNS`); a training row leaves the validation and test
columns empty, a validation row (every ``eval_every`` steps) the training and test columns,
and the one test row (at the end, on the best-on-validation weights) the others, so the file
reads directly into pandas or
:func:`flowlab.plots.curves.plot_learning_curve`.  Every row is flushed at once: a killed run
loses nothing that was logged.  On resume the rows after the checkpoint's step are dropped,
because the resumed run writes them again.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any, Mapping

__all__ = ["COLUMNS", "MetricsLogger", "StepWindow", "read_metrics"]

COLUMNS = [
    "step",
    "epoch",
    "lr",
    "loss",
    "bits_per_dim",
    "grad_norm",
    "samples_per_s",
    "skipped",
    "val_nll",
    "val_bits_per_dim",
    "val_ema_bits_per_dim",
    "val_raw_bits_per_dim",
    "test_nll",
    "test_bits_per_dim",
    "time_s",
]


class MetricsLogger:
    """Append metric rows to ``<run_dir>/metrics.csv`` (and ``<run_dir>/tb/`` for TensorBoard).

    Columns: ``loss`` and ``bits_per_dim`` are means over the steps since the previous row;
    ``grad_norm`` is the mean gradient norm over those steps with gradient clipping on, and
    the norm at the logged step with clipping off (the steps in between only check the
    gradients for NaN/inf, which is cheaper); ``skipped`` counts non-finite steps.

    Args:
        run_dir: the run folder; ``None`` keeps nothing on disk.
        resume_step: when resuming, drop the rows logged after this step.
        tensorboard: also write TensorBoard scalars if the ``tensorboard`` package is installed.
    """

    def __init__(
        self, run_dir: str | Path | None, resume_step: int | None = None, tensorboard: bool = True
    ) -> None:
        self.path = None if run_dir is None else Path(run_dir) / "metrics.csv"
        self._file = None
        self._writer = None
        self._tb = None
        if self.path is None:
            return
        kept: list[dict[str, str]] = []
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if int(float(r["step"])) <= resume_step]
        self._file = open(self.path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS, extrasaction="ignore")
        self._writer.writeheader()
        for row in kept:
            self._writer.writerow(row)
        self._file.flush()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the optional dependency flowlab[tensorboard]
                pass
            else:
                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tb"), purge_step=resume_step)

    def log(self, row: Mapping[str, Any]) -> None:
        """Write one row (keys outside :data:`COLUMNS` are ignored)."""
        if self._writer is not None:
            self._writer.writerow({k: _fmt(v) for k, v in row.items()})
            self._file.flush()
        if self._tb is not None:
            step = int(row["step"])
            for key, value in row.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._writer = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class StepWindow:
    """Running sums of the steps since the last logged row: the mean loss and gradient norm
    of its healthy steps, the skipped steps, and the samples per second.

    Example:
        >>> w = StepWindow()
        >>> w.add(2.0, 1.0, True, 64); w.add(float("nan"), float("nan"), False, 64)
        >>> w.mean_loss(), w.mean_gnorm(), w.skipped, w.samples
        (2.0, 1.0, 1, 128)
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss = self.gnorm = 0.0
        self.good = self.skipped = self.samples = 0
        self.start = time.perf_counter()

    def add(self, loss: float, gnorm: float, ok: bool, samples: int) -> None:
        self.samples += samples
        if ok:
            self.loss += loss
            self.gnorm += gnorm
            self.good += 1
        else:
            self.skipped += 1

    def mean_loss(self) -> float:
        return self.loss / self.good if self.good else math.nan

    def mean_gnorm(self) -> float:
        """Mean gradient norm (before clipping) over the healthy steps of the window."""
        return self.gnorm / self.good if self.good else math.nan

    def samples_per_s(self) -> float:
        return self.samples / max(time.perf_counter() - self.start, 1e-9)


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return v


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv`` as dicts of strings (empty string = not logged)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
