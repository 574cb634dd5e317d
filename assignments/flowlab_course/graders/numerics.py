r"""Tensor comparisons of the hidden tests, with messages in the lecture's terms.

They run in the trusted grading process, on plain tensors decoded from the kernel's answer, so
nothing a student's code does can change them.  The tolerance test is the usual one,
:math:`|a - b| \le \text{atol} + \text{rtol}\,|b|` elementwise, and every comparison rejects NaN
and inf (reported as such).
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
]



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
    both_inf = torch.isinf(a) & torch.isinf(b) & (torch.sign(a) == torch.sign(b))
    diff = torch.where(both_inf, torch.zeros_like(a), torch.abs(a - b))
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, math.inf), diff)
    return float(torch.max(diff))


def is_close(actual: Tensor, expected: Tensor, atol: float = 1e-6, rtol: float = 1e-5) -> bool:
    """``True`` when every entry satisfies :math:`|a-b| \\le atol + rtol|b|` (NaN never does)."""
    a = actual.detach().to(torch.float64)
    b = expected.detach().to(torch.float64)
    if tuple(a.shape) != tuple(b.shape):
        return False
    if a.numel() == 0:
        return True
    same_inf = torch.isinf(a) & torch.isinf(b) & (torch.sign(a) == torch.sign(b))
    # an infinite expected value is matched only by the same infinity (rtol * inf would be inf)
    ok = ((torch.abs(a - b) <= atol + rtol * torch.abs(b)) & torch.isfinite(b)) | same_inf
    return bool(torch.all(ok))


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
    if bool(torch.any(torch.isnan(actual_t.to(torch.float64)))):
        message = f"{what} contains NaN (a 0/0, the log of a negative number, inf - inf?)."
    elif bool(torch.any(torch.isinf(actual_t.to(torch.float64)))):
        message = f"{what} contains inf (a division by zero, the log of 0, exp of a huge value?)."
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
