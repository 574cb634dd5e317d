"""One call from a run folder to a trained model: :func:`load_run`.

Example::

    import flowlab.train as ft
    run = ft.load_run("runs/digits")        # the best-on-validation weights (EMA if kept)
    run.model.sample(16)                    # a flowlab Flow, in eval mode
    run.config.steps, run.recipe.model      # the loop settings and the recipe
    run.test                                # the test figures written at the end of training
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import load_checkpoint
from .config import TrainConfig
from .recipes import DataBundle, Recipe, build_data, build_model, split_settings

__all__ = ["TrainedRun", "load_run", "run_settings", "checkpoint_path"]


@dataclass
class TrainedRun:
    """What :func:`load_run` returns.

    Attributes:
        model: the trained flow with the chosen checkpoint's weights, in ``eval()`` mode.
        config: the run's :class:`~flowlab.train.TrainConfig`.
        recipe: the run's :class:`~flowlab.train.recipes.Recipe` (data and model).
        data: the data the run was trained on (train and test tensors).
        step: the training step of the loaded weights.
        test: the test figures written at the end of training (``None`` if it did not end).
        checkpoint: the file the weights came from.
        state: the whole checkpoint ``dict``.
    """

    model: nn.Module
    config: TrainConfig
    recipe: Recipe
    data: DataBundle
    step: int
    test: dict[str, Any] | None
    checkpoint: Path
    state: dict[str, Any]


def checkpoint_path(run_dir: str | Path, which: str = "best") -> Path:
    """The checkpoint file of ``run_dir`` for ``which`` = ``"best"`` (falls back to the last
    checkpoint of a run without validation), ``"last"``, ``"previous"`` or a file path."""
    run = Path(run_dir)
    if which in ("best", "last", "previous"):
        path = run / f"{which}.pt"
        if which == "best" and not path.is_file():
            path = run / "last.pt"
        if not path.is_file() and (run / "checkpoint.pt").is_file():
            path = run / "checkpoint.pt"  # a run folder from before best/last
        return path
    return Path(which)


def run_settings(state: dict[str, Any]) -> tuple[Recipe, TrainConfig]:
    """The recipe and loop settings stored in a checkpoint (also reads the single flat config
    of checkpoints written before recipes had their own spec)."""
    recipe_values = dict((state.get("metadata") or {}).get("recipe") or {})
    old_recipe, loop = split_settings(state.get("config") or {})
    recipe_values = {**old_recipe, **recipe_values}
    if not recipe_values:
        raise ValueError(
            "this checkpoint holds no recipe (it was written by a Trainer in Python, not by "
            "'flowlab train'): build the same model yourself and load state['model'] into it"
        )
    return Recipe.from_dict(recipe_values), TrainConfig.from_dict(loop)


def load_run(
    run_dir: str | Path,
    checkpoint: str = "best",
    *,
    use_ema: bool = True,
    device: str | torch.device = "cpu",
    data_root: str | None = None,
) -> TrainedRun:
    """Load a run folder written by ``flowlab train`` in one call.

    Args:
        run_dir: the run folder.
        checkpoint: ``"best"`` (best on validation, the default), ``"last"``, ``"previous"``
            or the path of a checkpoint file.
        use_ema: take the EMA weights if the run kept them.
        device: where to put the model.
        data_root: the folder of a torchvision data set, if it moved since training.

    Raises:
        FileNotFoundError: no such checkpoint.
        flowlab.train.checkpoint.CheckpointError: a damaged checkpoint (the message names the
            one kept beside it).
    """
    path = checkpoint_path(run_dir, checkpoint)
    state = load_checkpoint(path)
    recipe, config = run_settings(state)
    if data_root is not None:
        recipe.data_root = data_root
    data = build_data(recipe, seed=config.seed)
    model = build_model(recipe, data)
    weights = state["model"]
    if use_ema and state.get("ema"):
        weights = {k[len("module."):]: v for k, v in state["ema"].items()
                   if k.startswith("module.")}
    model.load_state_dict(weights)
    test_file = Path(run_dir) / "test.json"  # written at the end, after best.pt
    test = json.loads(test_file.read_text()) if test_file.is_file() else state.get("test")
    return TrainedRun(model.to(device).eval(), config, recipe, data, int(state["step"]),
                      test, path, state)
