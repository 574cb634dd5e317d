r"""The graders' side of the probes: what they ask a student's kernel, and the checks of the answers.

A grader never touches the student's objects: it names a probe (a function of
:mod:`flowlab_course.kernel.probes`, which runs in the kernel and builds the student's layer with
weights the grader chose and calls it) and sends its arguments as plain data through the
:class:`~flowlab_course.trusted.bridge.KernelBridge`, receives plain tensors and compares them in
its own process with flowlab's reference, the formula or the brute-force Jacobian.  The helpers
here are the patterns every assignment uses:

* :func:`mlp` — a random conditioner: its spec for the kernel and the same module for the grader;
* :func:`layer_call` — build a student's layer, call ``forward`` or ``inverse`` on a batch and on
  the batch with sample 0 changed, and return both answers, the gradient with respect to the
  conditioner's weights and the modules the layer's classes come from;
* :func:`check_pair` — the *form* of a layer's answer, ``(output, logabsdet)`` of the right shapes
  and dtype, finite — each violation explained in the lecture's terms;
* :func:`calls` — a function called on many inputs in ONE kernel round trip.

Deterministic by construction (issue 27).  Every part grades FIXED cases first: their structure
(sizes beyond small constants, depths beyond two, iteration counts, values beyond the usual ranges,
float32 as well as float64) is written next to them in each grader, and their values come from
:func:`fixed_generator`, a constant seed per part, so they are the same tensors at every grading.
Fresh random cases (:func:`fresh_generator`) follow as a second net.  Setting the environment
variable ``FLOWLAB_GRADER_FIXED_ONLY=1`` (:data:`FIXED_ONLY_ENV`, read by :func:`random_cases`)
switches the random cases off and seeds the probes' random directions with a constant: grading
is then one fixed computation, which is how ``tests/assignments/test_graders.py`` proves that
every catalogue mistake is caught by the fixed cases alone.

In-place writes: the probes hand the student's function the caller's own tensors (not copies)
and check afterwards that they are unchanged.  Float32: a float32 case builds the layer in
float32 (``layer.to(X.dtype)``), expects float32 answers and compares them with the float64
reference at float32 tolerances (:func:`tolerance`).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..trusted.bridge import KernelBridge, NoAnswer, StudentError
from ..trusted.wire import Opaque
from .errors import GradingFailure
from .numerics import is_close

__all__ = ["fresh_generator", "fixed_generator", "random_cases", "FIXED_ONLY_ENV", "calls",
           "check_unchanged", "as_float32", "tolerance", "randn", "mlp", "layer_call",
           "check_pair", "run", "LayerAnswer", "check_batch_independent", "check_grads"]


#: Set to ``1`` to grade with the FIXED cases only (no fresh random case is drawn, and the random
#: directions of the probes — the changed sample, the gradient weights — come from a constant
#: seed): every grading of a notebook is then the same computation, which is how the tests prove
#: that each catalogue mistake is caught by the fixed cases alone ("deterministic by
#: construction").  Unset or ``0`` (the default, and what nbgrader runs): fixed cases first, then
#: fresh random cases as a second net.
FIXED_ONLY_ENV = "FLOWLAB_GRADER_FIXED_ONLY"


def random_cases() -> bool:
    """Whether the graders add fresh random cases after their fixed ones (:data:`FIXED_ONLY_ENV`)."""
    return os.environ.get(FIXED_ONLY_ENV, "0").strip() in ("", "0")


def fixed_generator(name: str) -> torch.Generator:
    """A generator with a constant seed derived from ``name``: the values of a part's fixed cases.

    The fixed cases are therefore the same tensors at every grading; what they pin down (sizes,
    depths, signs, ranges, dtypes) is stated next to them in each grader.
    """
    import zlib

    gen = torch.Generator()
    gen.manual_seed(zlib.crc32(name.encode()))
    return gen


def fresh_generator() -> torch.Generator:
    """A generator seeded from the OS: new random inputs at every grading run.

    With ``FLOWLAB_GRADER_FIXED_ONLY=1`` it is seeded with a constant instead (deterministic).
    """
    if not random_cases():
        return fixed_generator("fresh")
    gen = torch.Generator()
    gen.manual_seed(int.from_bytes(os.urandom(6), "little"))
    return gen


def as_float32(t: Tensor) -> Tensor:
    """``t`` rounded to float32 and back: the values a float32 layer really holds."""
    return t.to(torch.float32).to(torch.float64)


def tolerance(x: Tensor, scale: float = 1.0) -> dict:
    """``atol``/``rtol`` for comparing an answer to a float64 reference: in float64 the graders'
    usual ``atol=1e-6, rtol=1e-5`` (never looser), and for float32 inputs tolerances suited to
    float32's 24-bit mantissa (``scale`` ~ the size of the values)."""
    if x.dtype == torch.float32:
        return {"atol": 2e-4 * scale, "rtol": 2e-4}
    return {"atol": 1e-6, "rtol": 1e-5}


_INPLACE = ("{what} changed its input in place (e.g. x += ..., x[...] = ..., x.mul_(...)): the "
            "caller's tensor must stay as it was. Work on a new tensor (x = x + ..., x.clone()).")


def check_unchanged(flag: Any, what: str, part: str) -> None:
    """``flag`` (computed in the kernel) says the caller's input tensors were left unchanged."""
    if flag is not True:
        raise GradingFailure(_INPLACE.format(what=what), part)


def calls(k: KernelBridge, fn: str, cases: Sequence[Sequence[Any]], *, part: str,
          what: str) -> list:
    """``[fn(*case) for case in cases]`` in ONE kernel round trip, each case's input tensors handed
    to ``fn`` as they are (the caller's own tensors) and checked afterwards: a function that
    writes into its input in place fails ``part`` with :data:`_INPLACE`'s sentence."""
    raw = run(k, "calls", part=part, what=what, fn=fn, cases=[list(c) for c in cases])
    if not (isinstance(raw, list) and len(raw) == len(cases)):
        raise GradingFailure(f"{what}: the grader could not read your function's answers.", part)
    for item in raw:
        check_unchanged(item[1] if isinstance(item, list) and len(item) == 2 else None, what, part)
    return [item[0] for item in raw]


def randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    """Standard normal float64 batch (graders work in float64 so that tolerances are tight)."""
    return scale * torch.randn(*shape, generator=gen, dtype=torch.float64)


def mlp(gen: torch.Generator, n_in: int, n_out: int, hidden: int = 16, scale: float = 0.6,
        activation: str = "tanh") -> tuple[list, nn.Module]:
    """A random conditioner ``n_in -> hidden -> n_out``: ``(spec for the kernel, module here)``."""
    w1 = scale * torch.randn(hidden, n_in, generator=gen, dtype=torch.float64)
    b1 = scale * torch.randn(hidden, generator=gen, dtype=torch.float64)
    w2 = scale * torch.randn(n_out, hidden, generator=gen, dtype=torch.float64)
    b2 = scale * torch.randn(n_out, generator=gen, dtype=torch.float64)
    spec = [["linear", w1, b1], [activation], ["linear", w2, b2]]
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    module = nn.Sequential(nn.Linear(n_in, hidden), act(), nn.Linear(hidden, n_out)).double()
    with torch.no_grad():
        module[0].weight.copy_(w1)
        module[0].bias.copy_(b1)
        module[2].weight.copy_(w2)
        module[2].bias.copy_(b2)
    return spec, module


def run(k: KernelBridge, probe: str, /, *, part: str, what: str, pieces: Sequence[str] = (),
        **inputs: Any) -> Any:
    """``k.call(probe, pieces=pieces, **inputs)``, the student's errors turned into a message for
    ``part``.  ``probe`` names a function of :mod:`flowlab_course.kernel.probes` (it runs in the
    student's kernel); ``inputs`` are its arguments, plain values."""
    try:
        return k.call(probe, pieces=pieces, **inputs)
    except StudentError as err:
        if err.error == "NotImplementedError":
            raise GradingFailure(f"{what} is not implemented yet (NotImplementedError).", part) from None
        if err.error == "NameError":
            raise GradingFailure(f"{what}: {err.message}. Did the cell that defines it run without "
                                 "an error?", part) from None
        raise GradingFailure(err.describe(what), part) from None
    except NoAnswer as err:
        raise GradingFailure(f"{what}: {err}", part) from None


class LayerAnswer:
    """What a student's layer answered: ``y, ld`` for the batch, ``y2, ld2`` for the changed batch."""

    def __init__(self, raw: dict, direction: str, x: Tensor, part: str, what: str) -> None:
        self.direction, self.part, self.what = direction, part, what
        check_unchanged(raw.get("unchanged"), f"{what}.{direction}", part)
        self.y, self.ld = check_pair(raw.get("out"), x, f"{what}.{direction}", part)
        self.y2, self.ld2 = check_pair(raw.get("out2"), x, f"{what}.{direction}", part)
        self.grads = raw.get("grads")
        self.classes = [(str(c[0]), str(c[1])) for c in raw.get("classes") or []
                        if isinstance(c, list) and len(c) == 2]


def layer_call(k: KernelBridge, cls: str, direction: str, x: Tensor, *, part: str,
               args: Sequence[Any] = (), kwargs: dict | None = None, cond: list | None = None,
               cond_at: int = 1, reference: Sequence[str] = (), what: str | None = None,
               seed: torch.Generator | None = None) -> LayerAnswer:
    """Build ``cls(*args)`` in the kernel (the conditioner ``cond`` inserted at ``cond_at``), call it.

    Returns a :class:`LayerAnswer`; fails with a message if the answer has the wrong form.
    (``reference`` is kept for the callers; flowlab's reference classes are stubs in the grading
    kernel, so nothing needs to be detected: see :mod:`flowlab_course.trusted.redaction`.)
    """
    gen = seed or fresh_generator()
    x2 = x.clone()
    x2[0] = x2[0] + 0.5 * torch.randn(x2[0].shape, generator=gen, dtype=x.dtype)
    w_out = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    w_ld = torch.randn(x.shape[0], generator=gen, dtype=torch.float64)
    what = what or cls
    raw = run(k, "layer_call", part=part, what=f"{what}.{direction}", cls=cls,
              direction=direction, x=x, x2=x2, w_out=w_out, w_ld=w_ld, args=list(args),
              kwargs=dict(kwargs or {}), cond=cond, cond_at=cond_at)
    if not isinstance(raw, dict):
        raise GradingFailure(f"{what}: the grader could not read your layer's answer.", part)
    answer = LayerAnswer(raw, direction, x, part, what)
    answer.w_out, answer.w_ld = w_out, w_ld
    return answer


def check_pair(out: Any, x: Tensor, what: str, part: str) -> tuple[Tensor, Tensor]:
    """``out`` is ``(y, logabsdet)``: y of x's shape, logabsdet of shape ``(batch,)``, finite."""
    if isinstance(out, Opaque) or not (isinstance(out, tuple) and len(out) == 2):
        got = out.what if isinstance(out, Opaque) else type(out).__name__
        if isinstance(out, list):
            got = "a list"
        raise GradingFailure(f"{what} must return a pair (output, logabsdet), got {got}.", part)
    y, ld = out
    if not isinstance(y, Tensor) or not isinstance(ld, Tensor):
        names = tuple(v.what if isinstance(v, Opaque) else type(v).__name__ for v in out)
        raise GradingFailure(f"{what} must return two tensors (output, logabsdet), got {names}.",
                             part)
    batch = x.shape[0]
    if tuple(y.shape) != tuple(x.shape):
        raise GradingFailure(
            f"{what}: the output has shape {tuple(y.shape)}, expected {tuple(x.shape)} (a flow "
            "layer keeps the shape of its input: it must be invertible).", part)
    if tuple(ld.shape) != (batch,):
        if tuple(ld.shape) == tuple(x.shape) or (ld.dim() > 1 and ld.shape[0] == batch):
            hint = ("It has one entry per dimension: sum the log-derivatives over every axis "
                    "except the batch axis (log|det| of a diagonal Jacobian is the SUM of the logs).")
        elif ld.numel() == 1:
            hint = ("It is a single number: either you summed over the whole batch, or returned "
                    "a constant. Return one log|det| per sample, e.g. x.new_zeros(x.shape[0]).")
        else:
            hint = "Return one number per sample."
        raise GradingFailure(f"{what}: logabsdet must have shape (batch,) = ({batch},), got "
                             f"{tuple(ld.shape)}. {hint}", part)
    for name, value in (("the output", y), ("logabsdet", ld)):
        if not value.is_floating_point():
            raise GradingFailure(f"{what}: {name} has dtype {value.dtype}; a flow works with "
                                 "floating-point tensors.", part)
        if value.dtype != x.dtype:
            raise GradingFailure(
                f"{what}: {name} has dtype {value.dtype} for a {x.dtype} input. Keep the input's "
                "dtype (create new tensors with x.new_zeros(...), torch.zeros_like(x) or "
                f"dtype=x.dtype, not a hard-coded {str(value.dtype).replace('torch.', '')}).",
                part)
        bad = ~torch.isfinite(value)
        if bool(bad.any()):
            kind = "NaN" if bool(torch.isnan(value).any()) else "inf"
            raise GradingFailure(
                f"{what}: {name} contains {kind} for ordinary inputs (a division by zero, the log "
                "of a non-positive number, or exp of a very large value?).", part)
    return y, ld


def check_batch_independent(ans: LayerAnswer) -> None:
    """Changing sample 0 changed no other sample's output or log-det."""
    tol = ({"atol": 1e-9, "rtol": 0.0} if ans.y.dtype == torch.float64 else
           {"atol": 1e-5, "rtol": 1e-5})  # float32: a BLAS may block the batch differently
    if not (is_close(ans.y[1:], ans.y2[1:], **tol) and is_close(ans.ld[1:], ans.ld2[1:], **tol)):
        raise GradingFailure(
            f"{ans.what}.{ans.direction}: changing one sample changed the result for other "
            "samples. Each sample must be transformed on its own (no mean/sum over the batch axis).",
            ans.part)


def check_grads(ans: LayerAnswer, reference: nn.Module, y_ref: Tensor, ld_ref: Tensor) -> None:
    """The gradient reaches the conditioner, as it does in the reference (``.detach()`` slips)."""
    if ans.grads is None:
        return
    params = list(reference.parameters())
    expected = torch.autograd.grad((y_ref * ans.w_out).sum() + (ld_ref * ans.w_ld).sum(), params,
                                   allow_unused=True)
    for got, want in zip(ans.grads, expected):
        if want is None:
            continue
        tol = ({"atol": 1e-6, "rtol": 1e-4} if ans.y.dtype == torch.float64 else
               {"atol": 1e-3, "rtol": 1e-3})  # float32 gradients of a float32 layer
        if got is None or not isinstance(got, Tensor) or not is_close(got, want, **tol):
            raise GradingFailure(
                f"{ans.what}.{ans.direction}: the values are right, but the gradient does not "
                "flow back into the conditioner's weights as it should (a .detach(), .data, "
                "torch.no_grad() or a conversion to numpy/float breaks the graph, so training "
                "would never update theta).", ans.part)


def conv_net(gen: torch.Generator, c_in: int, c_out: int, hidden: int = 6, kernel: int = 3,
             scale: float = 0.3) -> tuple[list, nn.Module]:
    """A random CNN conditioner ``c_in -> hidden -> c_out`` (3x3, same padding, tanh).

    Returns ``(spec for the kernel, identical module here)``; the kernel's ``grader.mlp(spec)``
    builds it from ``["conv", W, b]`` items.  Each pixel's output depends on its 5x5
    neighbourhood, so odd and non-square images exercise the borders.
    """
    shapes = [(hidden, c_in, kernel, kernel), (c_out, hidden, kernel, kernel)]
    spec: list = []
    layers: list[nn.Module] = []
    for i, shape in enumerate(shapes):
        w = scale * torch.randn(*shape, generator=gen, dtype=torch.float64)
        b = scale * torch.randn(shape[0], generator=gen, dtype=torch.float64)
        spec.append(["conv", w, b])
        conv = nn.Conv2d(shape[1], shape[0], kernel, padding=kernel // 2).double()
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(b)
        layers.append(conv)
        if i == 0:
            spec.append(["tanh"])
            layers.append(nn.Tanh())
    return spec, nn.Sequential(*layers)


def check_tensor(value: Any, shape: Sequence[int], what: str, part: str, *,
                 floating: bool = True, dtype: torch.dtype | None = None) -> Tensor:
    """``value`` is a plain tensor of ``shape`` (floating point / ``dtype`` if asked), finite.

    Every violation is explained: a list or an opaque object, the wrong shape, a boolean or
    integer tensor where a float one is expected, NaN/inf reported as such.
    """
    if isinstance(value, Opaque) or not isinstance(value, Tensor):
        got = value.what if isinstance(value, Opaque) else type(value).__name__
        raise GradingFailure(f"{what} must return a torch.Tensor, got {got}.", part)
    if tuple(value.shape) != tuple(shape):
        raise GradingFailure(f"{what} has shape {tuple(value.shape)}, expected {tuple(shape)}.",
                             part)
    if floating and not value.is_floating_point():
        raise GradingFailure(
            f"{what} has dtype {value.dtype}; it must be a floating-point tensor (e.g. "
            "`.float()` or `.to(x.dtype)`), so that arithmetic like 1 - b and b * x works.", part)
    if dtype is not None and value.dtype != dtype:
        raise GradingFailure(f"{what} has dtype {value.dtype} for a {dtype} input; keep the "
                             "input's dtype.", part)
    if value.is_floating_point() and value.numel():
        bad = ~torch.isfinite(value)
        if bool(bad.any()):
            kind = "NaN" if bool(torch.isnan(value).any()) else "inf"
            raise GradingFailure(f"{what} contains {kind} for ordinary inputs.", part)
    return value


# ------------------------------------------------------------- layers whose tensors the grader sets
# (assignments 1 and 4: TriangularLinear.weight/bias, ActNorm.loc/log_scale, LUConv1x1's factors)

def check_pair_floating(out: Any, x: Tensor, what: str, part: str,
                        nan_hint: str = "") -> tuple[Tensor, Tensor]:
    """Like :func:`check_pair`, but a float32 answer to a float64 input is accepted (as float64).

    Code written for the notebook's default float32 (``torch.zeros(n)``, ``torch.where(c, 0.0,
    math.log(a))``, ``mask.sum(1) * math.log(a)``) returns float32 log-dets for a float64 input;
    in these assignments no later part composes the layer, so that costs no points.  Integer,
    boolean and half-precision answers are still refused, NaN/inf reported as such (``nan_hint``
    says what usually causes it in this layer).
    """
    if isinstance(out, Opaque) or not (isinstance(out, tuple) and len(out) == 2):
        got = out.what if isinstance(out, Opaque) else type(out).__name__
        if isinstance(out, list):
            got = "a list"
        raise GradingFailure(f"{what} must return a pair (output, logabsdet), got {got}.", part)
    y, ld = out
    for name, value in (("the output", y), ("logabsdet", ld)):
        if isinstance(value, Tensor) and value.dtype not in (torch.float32, torch.float64) \
                and value.is_floating_point():
            raise GradingFailure(f"{what}: {name} has dtype {value.dtype}, which is too coarse "
                                 "for a log-density; keep the input's dtype.", part)
    # a float64 output for a float32 input would make the next float32 layer fail (x @ W with
    # mismatched dtypes): only the log-det may come back in the other precision
    y32 = y.to(x.dtype) if isinstance(y, Tensor) and y.is_floating_point() and not (
        x.dtype == torch.float32 and y.dtype == torch.float64) else y
    ld32 = ld.to(x.dtype) if isinstance(ld, Tensor) and ld.is_floating_point() else ld
    try:
        return check_pair((y32, ld32), x, what, part)
    except GradingFailure as err:
        if nan_hint and ("NaN" in err.message or " inf " in err.message):
            raise GradingFailure(f"{err.message} {nan_hint}", part) from None
        raise


class SetAnswer:
    """What a layer answered after the grader set its tensors (see :func:`set_layer_call`)."""

    def __init__(self, raw: dict, direction: str, x: Tensor, part: str, what: str,
                 nan_hint: str) -> None:
        self.direction, self.part, self.what = direction, part, what
        check_unchanged(raw.get("unchanged"), f"{what}.{direction}", part)
        self.y, self.ld = check_pair_floating(raw.get("out"), x, f"{what}.{direction}", part,
                                              nan_hint)
        self.y2, self.ld2 = check_pair_floating(raw.get("out2"), x, f"{what}.{direction}", part,
                                                nan_hint)
        grads = raw.get("grads")
        self.grads = grads if isinstance(grads, dict) else None
        self.classes = [(str(c[0]), str(c[1])) for c in raw.get("classes") or []
                        if isinstance(c, list) and len(c) == 2]


def set_layer_call(k: KernelBridge, cls: str, direction: str, x: Tensor, *, part: str,
                   args: Sequence[Any] = (), tensors: dict | None = None,
                   layouts: dict | None = None, flags: dict | None = None,
                   grads: Sequence[str] | None = None, patch: str | None = None,
                   reference: Sequence[str] = (), what: str | None = None,
                   nan_hint: str = "") -> SetAnswer:
    """Build ``cls(*args)`` in the kernel, copy ``tensors`` into its attributes, call ``direction``.

    Args:
        tensors: ``{attribute: value}`` copied into the layer's tensors (the documented
            convention of the notebook; ``layouts[attribute]`` explains it when it is missing).
        flags: plain attributes set afterwards (``{"initialized": True}``).
        grads: attribute names whose gradient (and the input's, key ``"input"``) is sent back;
            ``None``: no gradients (inverse directions).
        patch: a grader's piece (:mod:`flowlab_course.kernel.pieces`) whose ``patch(layer)``
            runs after the tensors are set (the grader's correct ``weight()`` for parts that
            must not depend on another part; such a part ``reveals`` what the piece computes).

    The answer is checked by :func:`check_pair_floating` (both calls: the batch and the batch
    with sample 0 changed).
    """
    gen = fresh_generator()
    x2 = x.clone()
    x2[0] = x2[0] + 0.5 * torch.randn(x2[0].shape, generator=gen, dtype=x.dtype)
    w_out = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    w_ld = torch.randn(x.shape[0], generator=gen, dtype=torch.float64)
    what = what or cls
    raw = run(k, "set_layer_call", part=part, what=f"{what}.{direction}",
              pieces=() if patch is None else (patch,), cls=cls, direction=direction, x=x,
              x2=x2, w_out=w_out, w_ld=w_ld, args=list(args), tensors=dict(tensors or {}),
              flags=dict(flags or {}), grads_of=None if grads is None else list(grads),
              patch=patch)
    if not isinstance(raw, dict):
        raise GradingFailure(f"{what}: the grader could not read your layer's answer.", part)
    layouts = layouts or {}
    if "missing" in raw:
        name = raw["missing"]
        raise GradingFailure(
            f"{what} has no tensor attribute `{name}` (got {raw.get('got')}). The instructions "
            f"ask you to keep {layouts.get(name, 'it')} in self.{name}, so that the grader can set "
            "it.", part)
    if "bad_shape" in raw:
        name = raw["bad_shape"]
        want = tuple((tensors or {})[name].shape)
        raise GradingFailure(f"{what}.{name} has shape {tuple(raw.get('shape') or ())}, expected "
                             f"{want} ({layouts.get(name, 'see the instructions')}).", part)
    answer = SetAnswer(raw, direction, x, part, what, nan_hint)
    answer.w_out, answer.w_ld = w_out, w_ld
    return answer


def reference_grads(fn, x: Tensor, params: dict, w_out: Tensor, w_ld: Tensor) -> dict:
    """Gradients of ``sum(y * w_out) + sum(ld * w_ld)`` for ``y, ld = fn(x, **params)``.

    Keys: ``"input"`` and the names of ``params`` (zeros where the output does not depend on it).
    """
    leaf = x.detach().clone().requires_grad_(True)
    leaves = {name: p.detach().clone().to(torch.float64).requires_grad_(True)
              for name, p in params.items()}
    y, ld = fn(leaf, **leaves)
    total = (y * w_out).sum() + (ld * w_ld).sum()
    names = ["input", *leaves]
    tensors = [leaf, *leaves.values()]
    got = torch.autograd.grad(total, tensors, allow_unused=True)
    return {n: torch.zeros_like(t) if g is None else g for n, g, t in zip(names, got, tensors)}


def check_named_grads(ans: SetAnswer, expected: dict, *, atol: float = 1e-5,
                      rtol: float = 1e-4) -> None:
    """The gradients sent back match ``expected`` (from :func:`reference_grads`).

    A parameter that no longer requires a gradient, a ``.detach()``/``.item()``/``no_grad`` that
    cuts the graph, or a wrong derivative each gets its own sentence.
    """
    grads = ans.grads if isinstance(ans.grads, dict) else {}
    where = f"{ans.what}.{ans.direction}"
    if ans.y.dtype == torch.float32:  # a float32 layer's gradients: float32 round-off
        atol, rtol = max(atol, 1e-3), max(rtol, 1e-3)
    for name, want in expected.items():
        if name != "input" and name not in grads:
            raise GradingFailure(
                f"{where}: self.{name} does not require a gradient any more; keep it a trainable "
                "nn.Parameter (set its values under torch.no_grad() with .copy_(), do not replace "
                "it by a plain tensor).", ans.part)
        got = grads.get(name)
        if got is None:
            got = torch.zeros_like(want)
        if isinstance(got, Opaque) or not isinstance(got, Tensor) or tuple(got.shape) != tuple(want.shape):
            raise GradingFailure(f"{where}: the grader could not read the gradient of {name}.",
                                 ans.part)
        if is_close(got.to(torch.float64), want, atol=atol, rtol=rtol):
            continue
        if name == "input":
            target = "the input"
            why = ("layers before this one (and the data) could not be trained through it")
        else:
            target = f"self.{name}"
            why = f"training could never update self.{name} as it should"
        missing = not bool(torch.any(got != 0))
        raise GradingFailure(
            f"{where}: the values are right, but the gradient with respect to {target} is "
            f"{'missing' if missing else 'wrong'}: {why}. A .detach(), .data, .item(), "
            "torch.no_grad() or a conversion to numpy/float inside the layer breaks the graph.",
            ans.part)
