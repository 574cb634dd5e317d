r"""Every ready-made flow by name: the registry that ``flowlab train --model NAME`` reads.

A :class:`ModelSpec` says where a model's builder lives (imported only when it is used, so
listing the names imports no torch), what data it takes (``"vector"``: ``builder(features,
...)``; ``"image"``: ``builder(shape, num_levels, ...)``) and which keyword receives the size of
a context :math:`c` for a conditional flow :math:`p(x \mid c)` (``None``: unconditional only).
:func:`create` builds a model from a name, the data's shape and keyword arguments checked
against the builder's signature (:func:`check_model_args`: an unknown key or a value of the
wrong type is a ``ValueError`` that names the key, the expected type and the accepted keys).

====================  =======  ===============================================================
name                  data     builder (context keyword)
====================  =======  ===============================================================
``realnvp``           vectors  :func:`~flowlab.models.realnvp.realnvp`, affine couplings
                               (``context_features``)
``nsf``               vectors  :func:`~flowlab.models.realnvp.nsf`, spline couplings
                               (``context_features``)
``maf``               vectors  :func:`~flowlab.models.maf.maf` (``context_features``)
``iaf``               vectors  :func:`~flowlab.models.maf.iaf` (``context_features``)
``multiscale``        images   :class:`~flowlab.models.multiscale.MultiScaleFlow`
``glow``              images   :class:`~flowlab.models.glow.Glow`
``tarflow``           images   :class:`~flowlab.models.tarflow.TarFlow`
                               (``context_features``)
``class-conditional`` images   :class:`~flowlab.models.conditional.ClassConditionalFlow`
                               (``num_classes``; needs a context)
====================  =======  ===============================================================

Example:
    >>> "nsf" in model_names()
    True
    >>> flow = create("nsf", (2,), context_features=1, couplings=2, hidden=[16])
    >>> flow.conditional
    True
    >>> create("maf", (2,), hiden=[16])
    Traceback (most recent call last):
    ...
    ValueError: --model-args: --model maf (maf) has no argument 'hiden'. Did you mean 'hidden'? ...
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

__all__ = [
    "ModelSpec", "MODELS", "register_model", "model_names", "get_model", "create",
    "check_model_args",
]  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    Args:
        name: the command-line name.
        target: ``"module:attribute"`` of the builder (a function or a class).
        data: ``"vector"`` (called as ``builder(features, ...)``) or ``"image"``
            (``builder(shape, num_levels, ...)``).
        summary: one line for ``--help`` and error messages.
        context_arg: the keyword that receives the context size (``None``: the model cannot
            be conditional).
        needs_context: the model is always conditional (it cannot be built without a context).
    """

    name: str
    target: str
    data: str
    summary: str
    context_arg: str | None = None
    needs_context: bool = False

    @property
    def builder(self) -> Callable[..., Any]:
        """The builder itself (imported on first use)."""
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def positional(self) -> tuple[str, ...]:
        """The arguments the data fill in, before the keyword arguments."""
        return ("features",) if self.data == "vector" else ("shape", "num_levels")


#: The registry: name -> :class:`ModelSpec`, in the order ``--help`` lists them.
MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to :data:`MODELS` (a name already taken raises ``ValueError``)."""
    if spec.data not in ("vector", "image"):
        raise ValueError(f"ModelSpec.data must be 'vector' or 'image', got {spec.data!r}")
    if spec.name in MODELS or spec.name == "auto":
        raise ValueError(f"a model named {spec.name!r} is already registered")
    MODELS[spec.name] = spec
    return spec


for _spec in (
    ModelSpec("realnvp", "flowlab.models.realnvp:realnvp", "vector",
              "RealNVP: affine (or additive/spline) couplings with MLP conditioners",
              "context_features"),
    ModelSpec("nsf", "flowlab.models.realnvp:nsf", "vector",
              "neural spline flow: rational-quadratic spline couplings", "context_features"),
    ModelSpec("maf", "flowlab.models.maf:maf", "vector",
              "masked autoregressive flow (MADE conditioners)", "context_features"),
    ModelSpec("iaf", "flowlab.models.maf:iaf", "vector",
              "inverse autoregressive flow (one-pass sampling, D-pass density)",
              "context_features"),
    ModelSpec("multiscale", "flowlab.models.multiscale:MultiScaleFlow", "image",
              "multi-scale convolutional RealNVP"),
    ModelSpec("glow", "flowlab.models.glow:Glow", "image",
              "Glow: ActNorm, invertible 1x1 convolutions, affine couplings"),
    ModelSpec("tarflow", "flowlab.models.tarflow:TarFlow", "image",
              "TarFlow: autoregressive flow over patches with causal transformers",
              "context_features"),
    ModelSpec("class-conditional", "flowlab.models.conditional:ClassConditionalFlow", "image",
              "class-conditional MAF on flattened images (context: one-hot class)",
              "num_classes", needs_context=True),
):
    register_model(_spec)


def model_names() -> tuple[str, ...]:
    """The registered names, in order."""
    return tuple(MODELS)


def get_model(name: str) -> ModelSpec:
    """The :class:`ModelSpec` called ``name``; an unknown name raises ``ValueError`` with the
    closest names and the list."""
    spec = MODELS.get(name)
    if spec is None:
        close = difflib.get_close_matches(str(name), list(MODELS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Choose one of: auto, {', '.join(MODELS)}")
    return spec


def create(
    name: str,
    event_shape: Sequence[int],
    num_levels: int | None = None,
    context_features: int = 0,
    /,
    **kwargs: Any,
) -> Any:
    """Build the model ``name`` for data of shape ``event_shape``.

    Args:
        name: a registered name (:func:`model_names`).
        event_shape: the shape of one sample: ``(features,)`` for a vector model, ``(C, H, W)``
            for an image model.
        num_levels: pixel levels :math:`K` of image data (``None``: real-valued images).
        context_features: the data's context size (0: no context), positional: it is passed
            as the model's context keyword (``context_features``, ``num_classes``); the same
            keyword in ``kwargs`` must agree with it.
        kwargs: the builder's other arguments, checked by :func:`check_model_args`.

    Raises:
        ValueError: an unknown name, data of the wrong kind, a context the model cannot take
            (or none for a model that needs one), or bad ``kwargs``.
    """
    spec = get_model(name)
    shape = tuple(int(s) for s in event_shape)
    if spec.data == "vector":
        if len(shape) != 1 or num_levels is not None:
            vectors = ", ".join(n for n, s in MODELS.items() if s.data == "vector")
            images = ", ".join(n for n, s in MODELS.items() if s.data == "image")
            raise ValueError(
                f"--model {name} works on vectors ({vectors}); the data are images of shape "
                f"{shape}: use one of {images}"
            )
        positional: tuple[Any, ...] = (shape[0],)
    else:
        if len(shape) != 3:
            raise ValueError(
                f"--model {name} needs image data of shape (C, H, W) (e.g. --data digits), got "
                f"samples of shape {shape}"
            )
        positional = (shape, num_levels)
    args = check_model_args(spec.builder, kwargs, skip=len(positional), model=name)
    k = int(context_features)
    if k:
        if spec.context_arg is None:
            able = ", ".join(n for n, s in MODELS.items() if s.context_arg)
            raise ValueError(
                f"--model {name} cannot condition on a context (the data give {k} context "
                f"features): use one of {able}, or data without a context"
            )
        given = args.get(spec.context_arg)
        if given is not None and given != k:
            raise ValueError(
                f"--model-args: {spec.context_arg}={given!r} disagrees with the data's context "
                f"size {k}: leave it out (it is set from the data)"
            )
        args[spec.context_arg] = k
    elif spec.needs_context and args.get(spec.context_arg) is None:
        raise ValueError(
            f"--model {name} is conditional and needs data with a context, e.g. --data "
            "digits-labels (the one-hot class of every image)"
        )
    try:
        return spec.builder(*positional, **args)
    except (TypeError, ValueError) as err:
        raise ValueError(f"--model-args for --model {name} ({_name(spec.builder)}): {err}") from err


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
