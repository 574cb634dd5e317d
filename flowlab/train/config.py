"""Every setting the training loop reads, in one dataclass, readable from YAML or TOML.

The same :class:`TrainConfig` drives the book, the command line and the benchmarks.  Values
come, in increasing priority, from the dataclass defaults, a config file
(:meth:`TrainConfig.from_file`) and explicit command-line flags (:meth:`TrainConfig.updated`).
Every field's help text lives next to it (``metadata["help"]``); ``flowlab train --help``
prints it.

What to train (the data set, the model and its arguments, the number of threads) is not a
loop setting: the command line reads it into a :class:`flowlab.train.recipes.Recipe` and
hands the :class:`~flowlab.train.Trainer` the data and model themselves.  Passing such a
setting here raises a ``TypeError`` that says where it belongs, so nothing is silently ignored.

Example:
    >>> TrainConfig(steps=100).steps
    100
    >>> TrainConfig(data="moons")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: 'data' is not a training-loop setting: it belongs to the recipe (flowlab.train...
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = ["TrainConfig", "load_config_file", "parse_yaml", "RECIPE_FIELDS"]

#: Settings that choose *what* to train; they live in :class:`flowlab.train.recipes.Recipe`.
RECIPE_FIELDS = ("data", "data_root", "n_train", "model", "model_args", "threads")


def _not_a_loop_setting(name: str) -> TypeError:
    return TypeError(
        f"{name!r} is not a training-loop setting: it belongs to the recipe "
        "(flowlab.train.Recipe, the command line's --data/--model flags), which builds the "
        "data and model you pass to the Trainer."
    )


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with its help text (shown by ``flowlab train --help``)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Settings of one maximum-likelihood training run (all have working defaults)."""

    # --- optimisation ---------------------------------------------------------------------
    steps: int = _f(3000, "number of optimisation steps")
    batch_size: int = _f(
        128, "global batch size (split evenly over the processes of a multi-process run)"
    )
    lr: float = _f(1e-3, "peak learning rate of Adam(W)")
    weight_decay: float = _f(0.0, "decoupled weight decay of AdamW")
    warmup_steps: int = _f(100, "steps of linear learning-rate warm-up from 0 to --lr")
    min_lr_ratio: float = _f(0.01, "final learning rate of the cosine decay, as a fraction of --lr")
    grad_clip: float = _f(
        10.0, "clip the global gradient norm to this value (0 turns clipping off)"
    )
    ema_decay: float = _f(
        0.0, "decay of an exponential moving average of the weights (0 = off; 0.999 is common)"
    )
    select_raw: bool = _f(
        True,
        "with an EMA, score the raw (not averaged) weights too at every validation and keep "
        "whichever is better: early in a run, or with a long EMA, the average lags far behind",
    )
    val_fraction: float = _f(
        0.1,
        "fraction of the training data held out (seeded, stratified by label where there are "
        "labels) for validation: model selection, early stopping and the progress bar use it, "
        "never the test set (0 = no validation split)",
    )
    patience: int = _f(
        0,
        "stop early after this many validations in a row without a better validation "
        "bits/dim (0 = never stop early)",
    )
    max_bad_steps: int = _f(
        20, "stop after this many consecutive steps with a non-finite loss or gradient"
    )
    # --- hardware -------------------------------------------------------------------------
    device: str = _f("auto", "'auto' (CUDA if available, else CPU), 'cpu', 'cuda', 'cuda:1', ...")
    bf16: bool = _f(
        False,
        "bfloat16 autocast for the forward pass (the loss, optimiser and evaluation stay "
        "float32); on CPUs the effect depends on the chip: the image models' steps ran 1.9x "
        "faster on an AMD EPYC and 1.1-1.3x slower on an Intel Xeon, both with avx512_bf16 "
        "(benchmarks/results/bf16_cpu*.md); measure with benchmarks/bf16_cpu.py first",
    )
    compile: bool = _f(False, "compile the loss with torch.compile")
    num_workers: int = _f(0, "DataLoader worker processes (in-memory tensors need none)")
    seed: int = _f(0, "random seed (model initialisation, data order, noise)")
    # --- bookkeeping ----------------------------------------------------------------------
    run_dir: str | None = _f(
        None,
        "folder for last.pt, previous.pt, best.pt, metrics.csv, config.yaml, split.json, "
        "test.json and samples/ (none: keep nothing on disk; the command line uses "
        "runs/<data>)",
    )
    resume: bool = _f(
        False,
        "continue the run in --run-dir from its last checkpoint, with its settings; a new "
        "--steps N rebuilds the learning-rate schedule for the new horizon: from the current "
        "step the rate decays by a cosine from its current value to the floor at step N (it "
        "never rises again, so a finished run continues at the floor)",
    )
    resume_from: str | None = _f(
        None,
        "checkpoint file to resume from instead of <run-dir>/last.pt (e.g. <run-dir>/"
        "previous.pt when last.pt is damaged); implies --resume",
    )
    overwrite: bool = _f(
        False, "delete flowlab's results already in --run-dir (listed as they go) and start over"
    )
    log_every: int = _f(50, "write training metrics every this many steps")
    eval_every: int = _f(
        500, "evaluate the validation NLL and bits/dim (and keep best.pt) every this many steps"
    )
    checkpoint_every: int = _f(500, "write the checkpoint every this many steps")
    sample_every: int = _f(1000, "write a PNG of samples every this many steps (0 = never)")
    n_samples: int = _f(64, "number of samples in each sample grid")
    eval_batch_size: int = _f(1000, "batch size of the evaluation pass")
    progress: bool = _f(True, "show a progress bar (only on a terminal, only on rank 0)")

    def __post_init__(self) -> None:
        if self.resume_from is not None:
            self.resume = True
        self.validate()

    # ------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        positive = ["steps", "batch_size", "log_every", "eval_every", "checkpoint_every",
                    "eval_batch_size", "max_bad_steps"]
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ["warmup_steps", "sample_every", "num_workers", "n_samples", "seed",
                     "patience"]:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(
                f"ema_decay must lie in [0, 1) (0 turns the EMA off), got {self.ema_decay!r}"
            )
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("grad_clip and weight_decay must be >= 0")
        if not (isinstance(self.val_fraction, (int, float)) and 0.0 <= self.val_fraction < 1.0):
            raise ValueError(
                f"val_fraction must lie in [0, 1) (0 = no validation split), got "
                f"{self.val_fraction!r}"
            )
        if self.patience and not self.val_fraction:
            raise ValueError(
                "patience (early stopping) needs a validation split: set val_fraction > 0"
            )
        if self.resume and self.overwrite:
            raise ValueError("choose one of resume (continue the run) and overwrite (start over)")

    # ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of every setting (what checkpoints and ``config.yaml`` store)."""
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build a config from a mapping; unknown keys raise ``ValueError`` with a suggestion.

        Keys may use dashes (``batch-size``) as on the command line.
        """
        return cls().updated(values)

    def updated(self, values: Mapping[str, Any]) -> "TrainConfig":
        """A copy with ``values`` replacing the current settings (types are checked)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        clean: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name in RECIPE_FIELDS:
                raise _not_a_loop_setting(name)
            if name not in fields:
                close = difflib.get_close_matches(name, list(fields), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown training setting {key!r}.{hint}")
            clean[name] = _coerce(name, value, fields[name].default)
        return dataclasses.replace(self, **clean)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """Read a ``.yaml``/``.yml`` or ``.toml`` file; ``overrides`` win over the file."""
        values = load_config_file(path)
        values.update(overrides)
        return cls.from_dict(values)


_dataclass_init = TrainConfig.__init__


def _init(self: TrainConfig, *args: Any, **kwargs: Any) -> None:
    for name in kwargs:
        if name in RECIPE_FIELDS:
            raise _not_a_loop_setting(name)
    _dataclass_init(self, *args, **kwargs)


_init.__doc__ = _dataclass_init.__doc__
_init.__signature__ = __import__("inspect").signature(_dataclass_init)  # type: ignore[attr-defined]
TrainConfig.__init__ = _init  # type: ignore[method-assign]


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Check a value against the type of the field's default (ints accepted for floats)."""
    if default is dataclasses.MISSING or default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a YAML or TOML file, as a ``dict`` (a top-level ``train:`` table is
    unwrapped, so one file can also hold other sections)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        values = parse_yaml(path.read_text(), f"config file {str(path)!r}") or {}
    elif suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]

        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:  # its text names the line and column
            raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    else:
        raise ValueError(
            f"config file {str(path)!r} must end in .yaml, .yml or .toml, got {suffix!r}"
        )
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of settings")
    if set(values) == {"train"} and isinstance(values["train"], dict):
        values = values["train"]
    return dict(values)


def parse_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load(text)``; malformed YAML raises ``ValueError`` naming ``what``, the line
    and the column (counted from 1) and the problem, instead of PyYAML's multi-line error.

    Example:
        >>> parse_yaml("{hidden: [64, 64]}", "--model-args")
        {'hidden': [64, 64]}
        >>> parse_yaml("{hidden: [64, 64}", "--model-args")
        Traceback (most recent call last):
        ...
        ValueError: --model-args is not valid YAML: line 1, column 17: expected ',' or ']'...
    """
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        context = getattr(err, "context", None)
        raise ValueError(
            f"{what} is not valid YAML: {where}{problem}" + (f" ({context})" if context else "")
        ) from None
