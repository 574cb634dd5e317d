"""Training flows by maximum likelihood: one loop for the book, the CLI and the benchmarks.

=====================  ============================================================
file                   contents
=====================  ============================================================
``trainer.py``         ``Trainer``: the loop (AMP, compile, DDP, EMA), feeding the objects below
``callbacks.py``       ``StepRecord``: what the per-step hook (``Trainer.on_step``) is given
``batching.py``        ``Batches``: which batches each step of each process reads, ``(x, c)``
``selection.py``       ``ModelSelection``: best-on-validation weights, EMA or raw, patience
``persistence.py``     ``RunWriter``: the run's files and the rescue policy of a failed write
``interrupts.py``      Ctrl-C at a step boundary, ``TrainingInterrupted``
``loss.py``            ``NegativeLogLikelihood``: the loss as a module (DDP, compile)
``config.py``          ``TrainConfig``: every setting the loop reads, from flags or a file
``recipes.py``         ``Recipe``: what to train (data, model, threads), for the CLI
``split.py``           the validation split carved from the training data
``runfolder.py``       the run folder: its files, the overwrite/resume rules, the resume
                       checkpoint (``resume_checkpoint``), the fallback folder
``checkpoint.py``      atomic checkpoints, ``last.pt`` + ``previous.pt``
``rng.py``             ``seed_everything`` and the random states a resume restores
``health.py``          the gradient check and the divergence diagnosis
``schedule.py``        linear warm-up + cosine decay of the learning rate; what a resume may change
``ema.py``             exponential moving average of the weights
``distributed.py``     ``torchrun`` process groups and device choice
``evaluate.py``        validation/test NLL and bits/dim (through ``flowlab.metrics``)
``logger.py``          metrics.csv (and TensorBoard when installed)
``samples.py``         sample grids and scatter plots as PNG
``load.py``            ``load_run``: a CLI run folder back into Python in one call
=====================  ============================================================
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; at run time each name loads on first use
    from .batching import Batches
    from .callbacks import StepRecord
    from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from .config import TrainConfig, load_config_file
    from .distributed import DistInfo, resolve_device, setup, teardown
    from .ema import make_ema
    from .evaluate import evaluate_nll, gaussian_baseline_nll, nll_to_bits_per_dim
    from .health import TrainingDiverged
    from .interrupts import TrainingInterrupted
    from .load import TrainedRun, load_run
    from .logger import MetricsLogger, read_metrics
    from .loss import NegativeLogLikelihood
    from .persistence import RunWriter
    from .recipes import Recipe
    from .rng import rng_state, seed_everything, set_rng_state
    from .runfolder import RunDirExistsError, RunFolder, RunFolderError, resume_checkpoint
    from .samples import save_samples
    from .schedule import warmup_cosine
    from .selection import ModelSelection
    from .split import ValidationSplit
    from .trainer import Trainer

# name -> submodule that defines it, imported on first attribute access (PEP 562), so that
# ``import flowlab.train.config`` (the command line's --help) does not load torch.
_LAZY = {
    **dict.fromkeys(("CheckpointError", "load_checkpoint", "save_checkpoint"), ".checkpoint"),
    **dict.fromkeys(("TrainConfig", "load_config_file"), ".config"),
    **dict.fromkeys(("DistInfo", "resolve_device", "setup", "teardown"), ".distributed"),
    **dict.fromkeys(("make_ema",), ".ema"),
    **dict.fromkeys(("evaluate_nll", "gaussian_baseline_nll", "nll_to_bits_per_dim"), ".evaluate"),
    **dict.fromkeys(("TrainingDiverged",), ".health"),
    **dict.fromkeys(("TrainedRun", "load_run"), ".load"),
    **dict.fromkeys(("MetricsLogger", "read_metrics"), ".logger"),
    **dict.fromkeys(("Recipe",), ".recipes"),
    **dict.fromkeys(("rng_state", "seed_everything", "set_rng_state"), ".rng"),
    **dict.fromkeys(("RunDirExistsError", "RunFolder", "RunFolderError", "resume_checkpoint"),
                    ".runfolder"),
    **dict.fromkeys(("save_samples",), ".samples"),
    **dict.fromkeys(("warmup_cosine",), ".schedule"),
    **dict.fromkeys(("ValidationSplit",), ".split"),
    **dict.fromkeys(("Trainer",), ".trainer"),
    **dict.fromkeys(("StepRecord",), ".callbacks"),
    **dict.fromkeys(("Batches",), ".batching"),
    **dict.fromkeys(("ModelSelection",), ".selection"),
    **dict.fromkeys(("RunWriter",), ".persistence"),
    **dict.fromkeys(("TrainingInterrupted",), ".interrupts"),
    **dict.fromkeys(("NegativeLogLikelihood",), ".loss"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'flowlab.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Batches",
    "CheckpointError",
    "DistInfo",
    "MetricsLogger",
    "ModelSelection",
    "NegativeLogLikelihood",
    "Recipe",
    "RunDirExistsError",
    "RunFolder",
    "RunFolderError",
    "RunWriter",
    "StepRecord",
    "TrainConfig",
    "TrainedRun",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "ValidationSplit",
    "evaluate_nll",
    "gaussian_baseline_nll",
    "load_checkpoint",
    "load_config_file",
    "load_run",
    "make_ema",
    "nll_to_bits_per_dim",
    "read_metrics",
    "resolve_device",
    "resume_checkpoint",
    "rng_state",
    "save_checkpoint",
    "save_samples",
    "seed_everything",
    "set_rng_state",
    "setup",
    "teardown",
    "warmup_cosine",
]
