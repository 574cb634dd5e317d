r"""Checks of one student layer against expected values, phrased in the lecture's terms.

A layer follows the flowlab contract: ``forward(x) -> (z, log|det Df(x)|)`` and
``inverse(z) -> (x, log|det Dg(z)|)`` with :math:`g = f^{-1}`, log-dets of shape ``(batch,)``.
The graders compute the expected values themselves (from the formula, from flowlab's reference
layer, or from the brute-force Jacobian) and call the functions below, which turn each kind of
disagreement into a sentence a student can act on.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .errors import GradingFailure
from .numerics import brute_force_logabsdet, expect_close, is_close

__all__ = [
    "call_layer",
    "check_output",
    "check_logabsdet",
    "check_logabsdet_vs_jacobian",
    "check_round_trip",
    "check_batch_independent",
]


def call_layer(fn: Callable, x: Tensor, direction: str, part: str) -> tuple[Tensor, Tensor]:
    """Call ``fn(x)`` and check the *form* of its answer: a pair ``(output, logabsdet)``."""
    try:
        out = fn(x)
    except NotImplementedError:
        raise GradingFailure(f"{direction} is not implemented yet (NotImplementedError).", part)
    except GradingFailure:
        raise
    except Exception as err:  # the student's own error, reported without the hidden test
        raise GradingFailure(
            f"{direction} raised {type(err).__name__}: {err}", part
        ) from None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise GradingFailure(
            f"{direction} must return a pair (output, logabsdet), got {type(out).__name__}.", part
        )
    y, ld = out
    if not isinstance(y, Tensor) or not isinstance(ld, Tensor):
        raise GradingFailure(
            f"{direction} must return two tensors (output, logabsdet), got "
            f"({type(y).__name__}, {type(ld).__name__}).",
            part,
        )
    batch = x.shape[0]
    if tuple(ld.shape) != (batch,):
        if tuple(ld.shape) == tuple(x.shape) or (ld.dim() > 1 and ld.shape[0] == batch):
            hint = (
                "It has one entry per dimension: sum the log-derivatives over every axis except "
                "the batch axis (log|det| of a diagonal Jacobian is the SUM of the logs)."
            )
        elif ld.numel() == 1:
            hint = (
                "It is a single number: either you summed over the whole batch, or returned a "
                "constant. Return one log|det| per sample, e.g. x.new_zeros(x.shape[0])."
            )
        else:
            hint = "Return one number per sample."
        raise GradingFailure(
            f"{direction}: logabsdet must have shape (batch,) = ({batch},), got "
            f"{tuple(ld.shape)}. {hint}",
            part,
        )
    return y, ld


def check_output(actual: Tensor, expected: Tensor, what: str, part: str, hints=None,
                 atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """The transformed batch equals the expected one."""
    expect_close(actual, expected, what, part=part, hints=hints, atol=atol, rtol=rtol)


def check_logabsdet(actual: Tensor, expected: Tensor, direction: str, part: str,
                    extra_hints=None, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """``log|det|`` equals the expected one; recognises the usual slips.

    ``direction`` is ``"forward"`` (expected :math:`\\log|\\det Df(x)|`) or ``"inverse"``
    (expected :math:`\\log|\\det Dg(z)|`).
    """
    if direction == "forward":
        sign = (
            "It has the wrong sign: did you compute log|det Dg| instead of log|det Df|? "
            "forward (the normalizing direction f) returns +log|det Df(x)|."
        )
    else:
        sign = (
            "It has the wrong sign: the inverse returns log|det Dg(z)| = -log|det Df(x)|, "
            "the negative of what forward returns."
        )
    hints = list(extra_hints or [])
    hints.append((-expected, sign))
    if expected.shape[0] > 1:
        hints.append(
            (
                expected.sum().expand_as(expected),
                "It looks summed over the whole batch: each sample has its own log|det|.",
            )
        )
    hints.append(
        (
            torch.zeros_like(expected),
            "It is zero: this layer changes volume, so its log|det| is not 0 — did you forget "
            "the log-det of the scale?",
        )
    )
    expect_close(actual, expected, f"{direction}: log|det D{'f' if direction == 'forward' else 'g'}|",
                 part=part, hints=hints, atol=atol, rtol=rtol)


def check_logabsdet_vs_jacobian(fn: Callable, x: Tensor, direction: str, part: str,
                                atol: float = 1e-6) -> None:
    """The layer's own log-det equals ``slogdet`` of its autograd Jacobian (float64 input)."""
    _, ld = call_layer(fn, x, direction, part)
    expected = brute_force_logabsdet(fn, x)
    if not is_close(ld, expected, atol=atol, rtol=1e-5):
        check_logabsdet(ld, expected, direction, part, atol=atol)
        raise GradingFailure(  # pragma: no cover - check_logabsdet already raised
            f"{direction}: log|det| does not match the Jacobian of your own output.", part
        )


def check_round_trip(layer, x: Tensor, part: str, atol: float = 1e-6) -> None:
    r"""``inverse(forward(x)) == x`` and the two log-dets cancel."""
    z, ld_f = call_layer(layer, x, "forward", part)
    x_back, ld_g = call_layer(layer.inverse, z, "inverse", part)
    if not is_close(x_back, x, atol=atol, rtol=1e-5):
        raise GradingFailure(
            "inverse(forward(x)) does not give x back: g = f^{-1} must undo f step by step in "
            "reverse order (subtract the shift, then divide by the scale).",
            part,
        )
    if not is_close(ld_f + ld_g, torch.zeros_like(ld_f), atol=max(atol, 1e-6) * 10, rtol=0):
        raise GradingFailure(
            "log|det Df(x)| + log|det Dg(z)| should be 0 (Dg(z) is the inverse matrix of Df(x)); "
            "the inverse must return -log|det Df|.",
            part,
        )


def check_batch_independent(fn: Callable, x: Tensor, direction: str, part: str) -> None:
    """Changing sample 0 changes no other sample's output or log-det."""
    y1, ld1 = call_layer(fn, x, direction, part)
    x2 = x.clone()
    x2[0] = x2[0] + 0.5 * torch.randn_like(x2[0])
    y2, ld2 = call_layer(fn, x2, direction, part)
    if not (is_close(y1[1:], y2[1:], atol=1e-9, rtol=0) and is_close(ld1[1:], ld2[1:], atol=1e-9, rtol=0)):
        raise GradingFailure(
            f"{direction}: changing one sample changed the result for other samples. Each sample "
            "must be transformed on its own (no mean/sum over the batch axis).",
            part,
        )
