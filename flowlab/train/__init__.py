"""Training flows by maximum likelihood: one loop for the book, the CLI and the benchmarks.

=====================  ============================================================
file                   contents
=====================  ============================================================
``config.py``          ``TrainConfig``: every setting, from flags or a YAML/TOML file
``trainer.py``         ``Trainer``: the loop (AMP, compile, DDP, EMA, guards, logging)
``schedule.py``        linear warm-up + cosine decay of the learning rate
``ema.py``             exponential moving average of the weights
``checkpoint.py``      atomic checkpoints and random states
``distributed.py``     ``torchrun`` process groups and device choice
``evaluate.py``        test NLL and bits/dim
``logger.py``          metrics.csv (and TensorBoard when installed)
``samples.py``         sample grids and scatter plots as PNG
``recipes.py``         data and model by name, for the command line
=====================  ============================================================
"""

from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig, load_config_file
from .distributed import DistInfo, resolve_device, setup, teardown
from .ema import make_ema
from .evaluate import evaluate_nll, nll_to_bits_per_dim
from .logger import MetricsLogger, read_metrics
from .samples import save_samples
from .schedule import warmup_cosine
from .trainer import NegativeLogLikelihood, RunDirExistsError, Trainer, TrainingDiverged

__all__ = [
    "Trainer",
    "TrainConfig",
    "TrainingDiverged",
    "RunDirExistsError",
    "NegativeLogLikelihood",
    "load_config_file",
    "warmup_cosine",
    "make_ema",
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "DistInfo",
    "setup",
    "teardown",
    "resolve_device",
    "evaluate_nll",
    "nll_to_bits_per_dim",
    "MetricsLogger",
    "read_metrics",
    "save_samples",
]
