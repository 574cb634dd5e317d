r"""Brute-force checks of the layer contract, shared by the test suite and the graders.

For a layer :math:`f` and a batch :math:`x` (use float64):

* :func:`brute_force_logabsdet` builds the full Jacobian :math:`Df(x_b)` of every sample with
  autograd and returns :math:`\log|\det Df(x_b)|` from :func:`torch.linalg.slogdet`;
* :func:`assert_logabsdet_matches_jacobian` compares it with the layer's own ``logabsdet``;
* :func:`assert_inverse_round_trip` checks :math:`g(f(x)) = x` and that the two
  log-determinants cancel;
* :func:`assert_batch_independent` checks that changing one sample changes no other sample's
  output;
* :func:`check_transform` runs all of the above.

A conditional layer :math:`f(\cdot \mid c)` is checked with ``context=c``, one row per sample:
for every :math:`c` it must be an ordinary layer, so the Jacobian (in :math:`x`) of sample
:math:`b` is taken at the fixed context :math:`c_b`, and changing sample 0 must leave the other
samples alone while each keeps its own context.

Every failure message is phrased in the lecture's terms.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "brute_force_logabsdet",
    "assert_logabsdet_matches_jacobian",
    "assert_inverse_round_trip",
    "assert_batch_independent",
    "check_transform",
]


def _bind(fn, context: Tensor | None):
    """``fn`` with the context bound (``fn`` itself without one, so plain layers work)."""
    if context is None:
        return fn
    return lambda x: fn(x, context=context)


def _call(fn, x: Tensor) -> tuple[Tensor, Tensor]:
    out = fn(x)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise AssertionError(
            "a layer must return a pair (output, logabsdet); got "
            f"{type(out).__name__}. Did you forget to return the log-determinant?"
        )
    y, ld = out
    if tuple(y.shape) != tuple(x.shape):
        raise AssertionError(
            f"the output has shape {tuple(y.shape)} but the input had {tuple(x.shape)}: a flow "
            "layer must keep the dimension (z and x have the same size)."
        )
    if tuple(ld.shape) != (x.shape[0],):
        raise AssertionError(
            f"logabsdet must have shape (batch,) = ({x.shape[0]},), got {tuple(ld.shape)}. "
            "Sum the per-dimension log-derivatives over every axis except the batch axis."
        )
    return y, ld


def brute_force_logabsdet(fn, x: Tensor, *, context: Tensor | None = None) -> Tensor:
    r""":math:`\log|\det J_b|` for each sample, with :math:`J_b` the autograd Jacobian of ``fn``.

    ``fn`` maps a batch to ``(output, logabsdet)``; only the output is differentiated.  Each
    sample is pushed through alone, so the cost is one Jacobian of size :math:`D \times D` per
    sample: keep ``D`` small (tests use at most a few hundred dimensions).

    Args:
        fn: ``layer`` or ``layer.inverse``: a batch ``(batch, *event_shape)`` to
            ``(output, logabsdet)``.
        x: the batch at which to differentiate.
        context: per-sample contexts ``(batch, ...)`` of a conditional layer; sample ``b`` is
            differentiated at the fixed context ``context[b]`` (the context is not an input of
            the Jacobian).

    Example:
        >>> import torch
        >>> from flowlab.transforms import DiagonalLinear
        >>> layer = DiagonalLinear(2).double()
        >>> brute_force_logabsdet(layer, torch.randn(3, 2, dtype=torch.float64))
        tensor([0., 0., 0.], dtype=torch.float64)
    """
    out = []
    for b in range(x.shape[0]):
        xb = x[b : b + 1]
        fb = _bind(fn, None if context is None else context[b : b + 1])

        def single(v: Tensor) -> Tensor:
            return fb(v.reshape(xb.shape))[0].reshape(-1)

        jac = torch.autograd.functional.jacobian(single, xb.reshape(-1))
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def assert_logabsdet_matches_jacobian(
    fn, x: Tensor, *, atol: float = 1e-7, rtol: float = 1e-6, direction: str = "forward",
    context: Tensor | None = None,
) -> None:
    """The layer's ``logabsdet`` equals ``slogdet`` of its brute-force Jacobian.

    Args:
        fn: ``layer`` or ``layer.inverse``.
        x: the batch (float64).
        atol, rtol: tolerances of the comparison.
        direction: ``"forward"`` or ``"inverse"``, for the message.
        context: per-sample contexts of a conditional layer (see :func:`brute_force_logabsdet`).
    """
    _, ld = _call(_bind(fn, context), x)
    expected = brute_force_logabsdet(fn, x, context=context)
    if not torch.allclose(ld, expected, atol=atol, rtol=rtol):
        hint = ""
        if torch.allclose(ld, -expected, atol=atol, rtol=rtol):
            hint = (
                " It has the wrong sign: did you return log|det Dg| instead of log|det Df| "
                "(or forget the minus sign in the inverse)?"
            )
        elif x.shape[0] > 1 and torch.allclose(
            ld, expected.sum().expand_as(ld), atol=atol, rtol=rtol
        ):
            hint = " It looks summed over the whole batch: sum per sample only."
        raise AssertionError(
            f"{direction}: log|det| of the layer does not match the Jacobian computed by autograd."
            f"{hint}\n  layer:    {ld.detach().cpu().numpy()}\n  autograd: "
            f"{expected.detach().cpu().numpy()}"
        )


def assert_inverse_round_trip(
    layer, x: Tensor, *, atol: float = 1e-8, rtol: float = 1e-6, context: Tensor | None = None
) -> None:
    """``inverse(forward(x)) == x`` and ``logabsdet_f + logabsdet_g == 0``.

    Args:
        layer: the transform.
        x: the batch (float64).
        atol, rtol: tolerances of the round trip.
        context: per-sample contexts of a conditional layer (the same in both directions).
    """
    z, ld_f = _call(_bind(layer, context), x)
    x_back, ld_g = _call(_bind(layer.inverse, context), z)
    if not torch.allclose(x_back, x, atol=atol, rtol=rtol):
        err = (x_back - x).abs().max().item()
        raise AssertionError(
            f"inverse(forward(x)) differs from x by up to {err:.3g}: g = f^-1 does not undo f. "
            "Check that the inverse applies the steps of forward in reverse order with the "
            "opposite operations (subtract the shift, divide by the scale)."
        )
    if not torch.allclose(ld_f + ld_g, torch.zeros_like(ld_f), atol=max(atol, 1e-7) * 10):
        raise AssertionError(
            "log|det Df(x)| + log|det Dg(z)| should be 0 (the Jacobians are inverse matrices), "
            f"got {(ld_f + ld_g).detach().cpu().numpy()}. The inverse must return log|det Dg| = "
            "-log|det Df|."
        )


def assert_batch_independent(
    layer, x: Tensor, *, atol: float = 1e-10, context: Tensor | None = None
) -> None:
    """Changing sample 0 of the batch changes no other sample's output or log-det.

    Args:
        layer: the transform.
        x: a batch of at least 2 samples.
        atol: how much the other samples may change (rounding only).
        context: per-sample contexts of a conditional layer (kept while sample 0 changes).
    """
    if x.shape[0] < 2:
        raise ValueError("need a batch of at least 2 samples")
    fn = _bind(layer, context)
    z1, ld1 = _call(fn, x)
    x2 = x.clone()
    x2[0] = x2[0] + 0.5 * torch.randn_like(x2[0])
    z2, ld2 = _call(fn, x2)
    if not torch.allclose(z1[1:], z2[1:], atol=atol) or not torch.allclose(
        ld1[1:], ld2[1:], atol=atol
    ):
        raise AssertionError(
            "changing one sample changed the output of other samples: the layer mixes the batch "
            "(did you reduce over axis 0, e.g. a mean or sum over the batch?)."
        )


def check_transform(
    layer,
    x: Tensor,
    *,
    atol: float = 1e-7,
    check_inverse_jacobian: bool = True,
    context: Tensor | None = None,
) -> None:
    """Run every contract check on ``layer`` at ``x`` (use float64 and a small batch).

    Raises an ``AssertionError`` whose message says what is wrong (in the lecture's terms); returns
    ``None`` when the layer passes.

    Args:
        layer: a :class:`~flowlab.transforms.base.Transform`.
        x: a batch in the layer's domain, shape ``(batch, *event_shape)``.
        atol: tolerance of the log-determinant comparisons.
        check_inverse_jacobian: also compare ``inverse``'s log-determinant with its Jacobian.
        context: for a conditional layer, one context per sample, ``(batch, ...)``; every
            check holds each sample's context fixed.

    Example:
        >>> import torch
        >>> from flowlab.transforms import AffineCoupling
        >>> layer = AffineCoupling(torch.tensor([True, False, True]), hidden=(8,)).double()
        >>> check_transform(layer, torch.randn(4, 3, dtype=torch.float64))   # passes silently
        >>> conditional = AffineCoupling(torch.tensor([True, False, True]), hidden=(8,),
        ...                              context_features=2).double()
        >>> check_transform(conditional, torch.randn(4, 3, dtype=torch.float64),
        ...                 context=torch.randn(4, 2, dtype=torch.float64))
    """
    if context is not None and context.shape[0] != x.shape[0]:
        raise ValueError(
            f"check_transform: give one context per sample, shape ({x.shape[0]}, ...), got "
            f"{tuple(context.shape)}"
        )
    assert_logabsdet_matches_jacobian(layer, x, atol=atol, context=context)
    assert_inverse_round_trip(layer, x, context=context)
    if x.shape[0] > 1:
        assert_batch_independent(layer, x, context=context)
    if check_inverse_jacobian:
        with torch.no_grad():
            z, _ = _bind(layer, context)(x)
        assert_logabsdet_matches_jacobian(
            layer.inverse, z, atol=atol, direction="inverse", context=context
        )
