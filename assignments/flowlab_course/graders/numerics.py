r"""Comparisons that the hidden tests trust: no ``torch.allclose``, no helper a student can patch.

A submission runs in the same Python process as the hidden tests, so it could replace
``torch.allclose`` (or ``flowlab.testing``'s helpers) by a function that always says "equal".
The graders therefore compare tensors with the elementary operations below, taken from
``torch._C`` (the compiled functions, not the Python names a notebook can rebind), and compute
the brute-force Jacobian with their own copy of the autograd loop.

The tolerance test is the usual one, :math:`|a - b| \le \text{atol} + \text{rtol}\,|b|`
elementwise, and every comparison also rejects NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import GradingFailure

__all__ = [
    "as_tensor_pair",
    "max_error",
    "is_close",
    "expect_close",
    "brute_force_logabsdet",
    "restore_torch",
]

_VF = torch._C._VariableFunctions
# Compiled originals, looked up in torch._C so that rebinding torch.<name> has no effect here.
_ORIGINALS = {name: getattr(_VF, name) for name in ("allclose", "isclose", "equal")}


def restore_torch() -> list[str]:
    """Put back ``torch.allclose``/``isclose``/``equal`` if a notebook replaced them.

    Returns the names that had been replaced (the graders say so in their log).
    """
    replaced = []
    for name, fn in _ORIGINALS.items():
        if getattr(torch, name, None) is not fn:
            setattr(torch, name, fn)
            replaced.append(name)
    return replaced


def as_tensor_pair(actual: object, expected: Tensor, what: str, part: str | None) -> Tensor:
    """``actual`` as a tensor of ``expected``'s shape, or a :class:`GradingFailure` saying why not."""
    if isinstance(actual, (int, float)) and expected.dim() == 0:
        actual = torch.tensor(float(actual), dtype=expected.dtype)
    if not isinstance(actual, Tensor):
        raise GradingFailure(
            f"{what} should be a torch.Tensor, got {type(actual).__name__}.", part
        )
    if tuple(actual.shape) != tuple(expected.shape):
        raise GradingFailure(
            f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}.", part
        )
    return actual.detach().to(device=expected.device, dtype=expected.dtype)


def max_error(actual: Tensor, expected: Tensor) -> float:
    """Largest absolute difference, ``inf`` where either side is NaN."""
    a = actual.detach().to(torch.float64)
    b = expected.detach().to(torch.float64)
    if a.numel() == 0:
        return 0.0
    both_inf = _VF.isinf(a) & _VF.isinf(b) & (_VF.sign(a) == _VF.sign(b))
    diff = _VF.where(both_inf, _VF.zeros_like(a), _VF.abs(a - b))
    diff = _VF.where(_VF.isnan(diff), _VF.full_like(diff, math.inf), diff)
    return float(_VF.max(diff))


def is_close(actual: Tensor, expected: Tensor, atol: float = 1e-6, rtol: float = 1e-5) -> bool:
    """``True`` when every entry satisfies :math:`|a-b| \\le atol + rtol|b|` (NaN never does)."""
    a = actual.detach().to(torch.float64)
    b = expected.detach().to(torch.float64)
    if tuple(a.shape) != tuple(b.shape):
        return False
    if a.numel() == 0:
        return True
    same_inf = _VF.isinf(a) & _VF.isinf(b) & (_VF.sign(a) == _VF.sign(b))
    ok = (_VF.abs(a - b) <= atol + rtol * _VF.abs(b)) | same_inf
    return bool(_VF.all(ok))


def expect_close(
    actual: object,
    expected: Tensor,
    what: str,
    *,
    part: str | None = None,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    hints: list[tuple[Tensor, str]] | None = None,
) -> None:
    """Fail with a lecture-style message unless ``actual`` matches ``expected``.

    ``hints`` pairs a *typical wrong answer* (computed by the grader) with the sentence that
    explains it; the first one that ``actual`` matches is added to the message.
    """
    actual_t = as_tensor_pair(actual, expected, what, part)
    if is_close(actual_t, expected, atol, rtol):
        return
    message = f"{what} is wrong (largest error {max_error(actual_t, expected):.3g})."
    if bool(_VF.any(_VF.isnan(actual_t.to(torch.float64)))):
        message = f"{what} contains NaN."
    for wrong, sentence in hints or []:
        if tuple(wrong.shape) == tuple(expected.shape) and is_close(actual_t, wrong, atol, rtol):
            message += " " + sentence
            break
    raise GradingFailure(message, part)


def brute_force_logabsdet(fn, x: Tensor) -> Tensor:
    r""":math:`\log|\det J_b|` of the autograd Jacobian of ``x \mapsto fn(x)[0]``, per sample.

    The same computation as :func:`flowlab.testing.brute_force_logabsdet`, kept here so that
    a notebook that patches ``flowlab.testing`` cannot change what the graders compute.
    """
    out = []
    for b in range(x.shape[0]):
        xb = x[b : b + 1].detach()

        def single(v: Tensor) -> Tensor:
            return fn(v.reshape(xb.shape))[0].reshape(-1)

        jac = torch.autograd.functional.jacobian(single, xb.reshape(-1))
        if jac.shape[0] != jac.shape[1]:
            raise GradingFailure(
                f"the layer maps {jac.shape[1]} numbers to {jac.shape[0]}: a flow layer must keep "
                "the dimension, otherwise it cannot be invertible."
            )
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)
