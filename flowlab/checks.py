"""Input checks with error messages that say what was expected and what to do.

Layers call :func:`check_input` at the top of ``forward``/``inverse``.  The checks on shape,
dtype and device are plain Python comparisons (no GPU synchronisation); the finiteness check
reads the data and is done once per call by :class:`flowlab.Flow` (switch it off with
``Flow(..., validate=False)`` when every microsecond counts).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["check_input", "check_finite", "reference_tensor"]


def reference_tensor(module: nn.Module) -> Tensor | None:
    """The first parameter, else the first floating-point buffer, of ``module`` (the tensor
    whose dtype and device inputs must share), or ``None``.

    Layers without parameters keep a 0-d, non-persistent buffer named ``_ref`` for this (the
    one meaning of ``_ref`` in flowlab: a buffer, never a method).

    Args:
        module: the layer.

    Example:
        >>> reference_tensor(nn.Linear(2, 3)).shape       # its weight
        torch.Size([3, 2])
    """
    for p in module.parameters():
        return p
    for b in module.buffers():
        if b.is_floating_point():
            return b
    return None


def check_input(
    x: object,
    *,
    name: str = "input",
    layer: str = "layer",
    event_shape: Sequence[int] | None = None,
    event_dim: int | None = None,
    like: nn.Module | Tensor | None = None,
) -> Tensor:
    """Validate a batch ``x`` for a layer and return it unchanged.

    Args:
        x: the batch, a floating-point tensor of shape ``(batch, *event_shape)``.
        name: how to call ``x`` in the message (``"x"`` or ``"z"``).
        layer: the layer's name for the message.
        event_shape: the exact shape of one sample, if the layer knows it.
        event_dim: the number of axes of one sample, if only that is known.
        like: a module or tensor whose dtype and device ``x`` must share (under
            ``torch.autocast`` the autocast dtype is accepted too).

    Raises:
        TypeError: ``x`` is not a floating-point tensor, or its dtype/device differ from the
            layer's parameters.
        ValueError: ``x`` has the wrong shape, or is an empty batch.

    Example:
        >>> check_input(torch.zeros(3, 2), layer="MyLayer", event_shape=(3,))
        Traceback (most recent call last):
            ...
        ValueError: MyLayer expects input of shape (batch, 3), got (3, 2). The first axis ...
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{layer} expects {name} to be a torch.Tensor of shape (batch, ...), "
            f"got {type(x).__name__}. Convert it with torch.as_tensor(...)."
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{layer} expects a floating-point {name}, got dtype {x.dtype}. "
            "Densities are defined for real numbers: use x.float() (or dequantize integer "
            "data first, see flowlab.transforms.dequantize)."
        )
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(
            f"{layer} got an empty {name} (shape {tuple(x.shape)}): a batch needs at least one "
            "sample along its first axis. Check the slicing or the data loader that made it."
        )
    if event_shape is not None:
        event_shape = tuple(int(s) for s in event_shape)
        if x.dim() != len(event_shape) + 1 or tuple(x.shape[1:]) != event_shape:
            raise ValueError(
                f"{layer} expects {name} of shape (batch, {', '.join(map(str, event_shape))}), "
                f"got {tuple(x.shape)}. The first axis indexes samples: a single sample needs "
                f"{name}.unsqueeze(0)."
            )
    elif event_dim is not None and x.dim() != event_dim + 1:
        raise ValueError(
            f"{layer} expects {name} with {event_dim + 1} axes (batch first), got shape "
            f"{tuple(x.shape)}."
        )
    if like is not None:
        ref = like if isinstance(like, Tensor) else reference_tensor(like)
        if ref is not None:
            if ref.dtype != x.dtype and not _autocast_dtype(x):
                raise TypeError(
                    f"{layer} has {ref.dtype} parameters but {name} is {x.dtype}. "
                    f"Use {name}.to({ref.dtype}) or convert the model with .to({x.dtype})."
                )
            if ref.device != x.device:
                raise TypeError(
                    f"{layer} lives on {ref.device} but {name} is on {x.device}. "
                    f"Move one of them: {name}.to('{ref.device}') or model.to('{x.device}')."
                )
    return x


def _autocast_dtype(x: Tensor) -> bool:
    """Whether ``x`` has the lower precision that autocast gives activations on its device.

    Under ``torch.autocast`` a convolution returns bfloat16 (or float16) activations while the
    parameters stay float32: that mismatch is the point of mixed precision, not a mistake.
    """
    device = x.device.type
    try:
        return torch.is_autocast_enabled(device) and x.dtype == torch.get_autocast_dtype(device)
    except (RuntimeError, TypeError):  # a device type autocast does not know
        return False


def check_finite(x: Tensor, *, name: str = "input", layer: str = "layer") -> Tensor:
    """Raise a ``ValueError`` if ``x`` holds NaN or infinite values (one read of the data).

    Args:
        x: the batch.
        name, layer: how to name ``x`` and the layer in the message.

    Example:
        >>> check_finite(torch.tensor([[0.0], [float("nan")]]), name="x", layer="Flow")
        Traceback (most recent call last):
            ...
        ValueError: Flow: x contains NaN or infinite values (in sample(s) [1]). ...
    """
    if not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).reshape(x.shape[0], -1).any(dim=1).nonzero().flatten()
        rows = bad[:5].tolist()
        raise ValueError(
            f"{layer}: {name} contains NaN or infinite values (in sample(s) {rows}"
            f"{' ...' if len(bad) > 5 else ''}). Clean or clip the data before evaluating a "
            "density."
        )
    return x
