r"""Model selection on validation: which weights a run ends with.

Every ``eval_every`` steps the trainer scores the validation split and hands the score to a
:class:`ModelSelection`.  It keeps the weights of the best score so far (a CPU copy; the
trainer also writes them to ``best.pt``), counts evaluations without improvement for
``patience`` (early stopping), and at the end of training the model is made to hold those
best weights (:meth:`ModelSelection.hold_best`), with the last weights kept aside so that a
longer run continues from where training stopped (:meth:`ModelSelection.release`), not from
the best step.

With an EMA of the weights both the averaged and the raw weights may be scored on the same
validation noise; :meth:`ModelSelection.choose` takes the better of the two (decision record
``decisions/0006-selection.md``).  Chosen raw weights are also written into the EMA slot, so
that everything that reads the EMA (evaluation, sampling, :func:`~flowlab.train.load_run`, the
shipped checkpoints) gets the weights chosen.

The object is given scores and modules and never reads the trainer; its state is the
``"selection"`` entry of a checkpoint.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(1, 1)
    >>> sel = ModelSelection(patience=2)
    >>> [sel.observe(step, score, model) for step, score in ((10, 3.0), (20, 2.5), (30, 2.7))]
    [True, True, False]
    >>> sel.best_step, sel.best_score, sel.evals_since_best, sel.stopped_early
    (20, 2.5, 1, False)
    >>> sel.observe(40, 2.6, model), sel.stopped_early    # 2 evaluations without progress
    (False, True)
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Callable

from torch import Tensor, nn

__all__ = ["ModelSelection", "copy_weights", "cpu_copy"]

Weights = dict[str, Any]  # {"model": state dict, "ema": state dict or None}


def cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    """A detached CPU copy of a state dict (tensors copied, other entries deep-copied)."""
    return {k: (v.detach().to("cpu", copy=True) if isinstance(v, Tensor) else copy.deepcopy(v))
            for k, v in state.items()}


def copy_weights(model: nn.Module, ema: nn.Module | None, kind: str = "ema") -> Weights:
    """A CPU copy ``{"model": ..., "ema": ...}`` of the live weights; for ``kind == "raw"``
    the EMA slot holds the raw weights too (``AveragedModel`` keys are ``module.<name>``)."""
    weights = cpu_copy(model.state_dict())
    if ema is None:
        return {"model": weights, "ema": None}
    averaged = cpu_copy(ema.state_dict())
    if kind == "raw":
        inner = {k[len("module."):] for k in averaged if k.startswith("module.")}
        if inner != set(weights):
            raise RuntimeError(
                "the EMA copy and the model have different state keys; cannot hold the raw "
                "weights in the EMA slot (set select_raw: false)")
        averaged.update({f"module.{k}": v for k, v in weights.items()})  # already a copy
    return {"model": weights, "ema": averaged}


def hold(weights: Weights, model: nn.Module, ema: nn.Module | None) -> None:
    """Load ``weights`` into the model (and the EMA copy, if both have one)."""
    model.load_state_dict(weights["model"])
    if ema is not None and weights.get("ema") is not None:
        ema.load_state_dict(weights["ema"])


class ModelSelection:
    """Best-on-validation bookkeeping (see the module docstring).

    Args:
        patience: stop after this many evaluations without improvement (0: never).
        has_ema: the run keeps an EMA; then the selected weights are ``"ema"`` (or
            ``"raw"``), else ``"model"``.

    Attributes:
        best_score: the best validation bits/dim so far (``inf`` before the first).
        best_step: the step it was reached at (``None`` before the first).
        selected_weights: ``"model"`` (no EMA), ``"ema"`` or ``"raw"``.
        evals_since_best: evaluations since the last improvement.
        stopped_early: patience ran out.
        best_weights: a CPU copy of the best weights (``None`` after a resume: they are in
            ``best.pt``).
        held: the last weights, while the model holds the best ones (after :meth:`hold_best`).
        last_score: the latest validation score.
    """

    def __init__(self, patience: int = 0, has_ema: bool = False) -> None:
        self.patience = patience
        self.has_ema = has_ema
        self.best_score = math.inf
        self.best_step: int | None = None
        self.selected_weights = "ema" if has_ema else "model"
        self.evals_since_best = 0
        self.stopped_early = False
        self.best_weights: Weights | None = None
        self.held: Weights | None = None
        self.last_score = math.nan

    @staticmethod
    def choose(averaged: dict[str, float], raw: dict[str, float] | None,
               has_ema: bool = True) -> tuple[dict[str, float], str]:
        """The better of the EMA's and the raw weights' validation metrics, and its kind
        (``raw`` only where it is strictly better; without an EMA, ``"model"``)."""
        if not has_ema:
            return averaged, "model"
        if raw is not None and raw["bits_per_dim"] < averaged["bits_per_dim"]:
            return raw, "raw"
        return averaged, "ema"

    def observe(self, step: int, score: float, model: nn.Module,
                ema: nn.Module | None = None, kind: str | None = None) -> bool:
        """Record the validation ``score`` of the weights at ``step``; returns whether it is
        the best so far (then a copy of the weights of ``kind`` is kept)."""
        self.last_score = score
        if score < self.best_score:
            self.best_score, self.best_step, self.evals_since_best = score, step, 0
            self.selected_weights = kind or ("ema" if ema is not None else "model")
            self.best_weights = copy_weights(model, ema, self.selected_weights)
            return True
        self.evals_since_best += 1
        if self.patience and self.evals_since_best >= self.patience:
            self.stopped_early = True
        return False

    def hold_best(self, model: nn.Module, ema: nn.Module | None,
                  load_best: Callable[[], Weights | None] | None = None) -> bool:
        """End of training: put the best weights into the model, keeping the last ones in
        :attr:`held`.  After a resume the best weights are only on disk: ``load_best()``
        reads them (e.g. from ``best.pt``).  Returns whether the model now holds them."""
        if self.best_step is None or self.held is not None:
            return False
        best = self.best_weights if self.best_weights is not None else (
            load_best() if load_best is not None else None)
        if best is None:
            return False
        self.held = {"model": cpu_copy(model.state_dict()),
                     "ema": None if ema is None else cpu_copy(ema.state_dict())}
        hold(best, model, ema)
        return True

    def release(self, model: nn.Module, ema: nn.Module | None) -> None:
        """Training goes on: give the model back the last weights (undo :meth:`hold_best`)."""
        if self.held is not None:
            hold(self.held, model, ema)
            self.held = None

    def report(self, metrics: dict[str, float], trained_steps: int) -> dict[str, Any]:
        """The test result of a run: the test ``metrics`` of the selected weights and how
        they were selected (``test.json``, :attr:`Trainer.test_result
        <flowlab.train.Trainer.test_result>`)."""
        validated = self.best_step is not None
        return {
            **metrics, "selected_step": self.best_step if validated else trained_steps,
            "trained_steps": trained_steps,
            "selected_on": "validation" if validated else "last step (no validation)",
            "best_val_bits_per_dim": self.best_score if validated else None,
            "selected_weights": self.selected_weights,
            "stopped_early": self.stopped_early,
        }

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's ``"selection"`` entry."""
        return {
            "best_score": self.best_score, "best_step": self.best_step,
            "selected_weights": self.selected_weights,
            "evals_since_best": self.evals_since_best, "stopped_early": self.stopped_early,
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore from a checkpoint's ``"selection"`` entry (missing entries: a fresh run)."""
        sel = state or {}
        self.best_score = float(sel.get("best_score", math.inf))
        self.best_step = sel.get("best_step")
        self.selected_weights = sel.get("selected_weights", "ema" if self.has_ema else "model")
        self.evals_since_best = int(sel.get("evals_since_best", 0))
        self.stopped_early = bool(sel.get("stopped_early", False))


def load_best_file(path: Path | None) -> Callable[[], Weights | None]:
    """A reader of the best weights from ``best.pt`` (``None`` if there is no such file)."""

    def read() -> Weights | None:
        if path is None or not path.is_file():
            return None
        from .checkpoint import load_checkpoint

        state = load_checkpoint(path, map_location="cpu")
        return {"model": state["model"], "ema": state.get("ema")}

    return read
