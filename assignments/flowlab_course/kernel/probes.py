"""The probes: what the grader may ask a student's kernel to do, one function each.

The channel (:mod:`.channel`) defines this module in the kernel once; every request then *names*
one function registered here (:data:`PROBES`) and passes its arguments as plain data (JSON,
tensors as raw bytes).  A probe builds the student's objects from that data (the grader chooses
every weight and input), calls them, and returns plain values: tensors, numbers, strings, lists,
dicts.  It decides nothing and computes nothing graded: the checks, tolerances and references
are in the trusted process (:mod:`flowlab_course.graders`).  Grader-written computations that a
probe needs (a coupling, a ``weight()``, a ``causal_mask``) are *pieces* (:mod:`.pieces`),
defined in the kernel only when a part that ``reveals`` them asks.

Each probe receives a :class:`Context` first: a **copy** of the student's namespace (the probe's
own names never enter theirs), the live namespace for :meth:`Context.replacing`, and the pieces
defined so far.  The student's names are looked up with :meth:`Context.student`, which raises
``NameError`` as Python would, so "name 'AffineCoupling' is not defined" reaches the student.

Standard library and torch only, no ``flowlab_course`` (there is none in the kernel), so the
functions also run in-process on a plain dict for tests (``tests/course/test_kernel_probes.py``).
"""

import contextlib

import torch

__all__ = ["PROBES", "Context", "build", "classes_of", "grads", "mlp", "probe"]

#: ``name -> function``: the only things a request may name.
PROBES = {}


def probe(fn):
    """Register ``fn`` as a probe (its ``__name__`` is what a request names)."""
    PROBES[fn.__name__] = fn
    return fn


class Context:
    """What a probe sees of the kernel.

    Args:
        user_ns: the student's (live) namespace; the probe works on a copy (:attr:`ns`).
        pieces: ``{name: module}`` of the grader's pieces defined in this kernel.
    """

    def __init__(self, user_ns, pieces=None):
        self.user_ns = user_ns
        self.ns = dict(user_ns)
        self.pieces = dict(pieces or {})

    def student(self, name):
        """The student's object ``name`` (``NameError`` as Python words it if they have none)."""
        if not isinstance(name, str) or name not in self.ns:
            raise NameError(f"name {name!r} is not defined")
        return self.ns[name]

    def piece(self, name):
        """The grader's piece module ``name`` (defined before the probe by the request)."""
        try:
            return self.pieces[name]
        except KeyError:
            raise LookupError(f"the grader's piece {name!r} is not defined in this kernel") from None

    @contextlib.contextmanager
    def replacing(self, **names):
        """``with ctx.replacing(causal_mask=fn): ...`` — the student's *global* names replaced.

        A student's function looks its globals up in the notebook's namespace, whatever
        decorator (``@torch.no_grad()``, ``functools.wraps``) wraps it, so the grader's piece is
        put there for the duration of the call and the student's own object put back after.
        """
        ns = self.user_ns
        saved = {name: (name in ns, ns.get(name)) for name in names}
        ns.update(names)
        try:
            yield self
        finally:
            for name, (had, value) in saved.items():
                if had:
                    ns[name] = value
                else:
                    ns.pop(name, None)


# ------------------------------------------------------------------------------------ helpers
def build(factory, *args, **kwargs):
    """Call the student's constructor; modules are moved to float64 like the grader's data."""
    obj = factory(*args, **kwargs)
    if isinstance(obj, torch.nn.Module):
        obj = obj.double()
    return obj


def mlp(spec):
    """An ``nn.Sequential`` from the grader's spec: ``[["linear", W, b], ["tanh"], ["conv", W, b]]``."""
    layers = []
    for item in spec:
        kind = item[0]
        if kind == "linear":
            weight, bias = item[1], item[2]
            lin = torch.nn.Linear(weight.shape[1], weight.shape[0]).double()
            with torch.no_grad():
                lin.weight.copy_(weight)
                lin.bias.copy_(bias)
            layers.append(lin)
        elif kind == "conv":
            weight, bias = item[1], item[2]
            conv = torch.nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2],
                                   padding=weight.shape[2] // 2).double()
            with torch.no_grad():
                conv.weight.copy_(weight)
                conv.bias.copy_(bias)
            layers.append(conv)
        else:
            layers.append({"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[kind]())
    return torch.nn.Sequential(*layers)


def classes_of(obj):
    """``[module, qualified name]`` of the object's classes and its sub-modules' classes."""
    def name(c):
        return [getattr(c, "__module__", "") or "",
                f"{getattr(c, '__module__', '')}.{getattr(c, '__qualname__', '')}"]
    found = [name(c) for c in type(obj).__mro__]
    if isinstance(obj, torch.nn.Module):
        found += [name(type(m)) for m in obj.modules()]
    return found


def grads(output, params):
    """d(output)/d(params), with ``None`` for a parameter the output does not depend on."""
    return list(torch.autograd.grad(output, list(params), allow_unused=True))


def _pair_of_tensors(out):
    return isinstance(out, tuple) and len(out) == 2 and all(isinstance(v, torch.Tensor)
                                                            for v in out)


def _set_tensors(layer, tensors):
    """Copy ``tensors`` into the layer's attributes; a dict describing the first problem, or None."""
    for name, value in tensors.items():
        target = getattr(layer, name, None)
        if not isinstance(target, torch.Tensor):
            return {"missing": name, "got": type(target).__name__}
        if tuple(target.shape) != tuple(value.shape):
            return {"bad_shape": name, "shape": list(target.shape)}
        with torch.no_grad():
            target.copy_(value)
    return None


# ------------------------------------------------------------------------------------ probes
@probe
def calls(ctx, fn, cases):
    """``[[fn(*case), unchanged], ...]``: the student's function ``fn`` called on every case.

    Each case's tensors are handed over as they are (the caller's own tensors) and compared
    afterwards with a copy taken before: ``unchanged`` is False if ``fn`` wrote into them.
    """
    function = ctx.student(fn)
    out = []
    for args in cases:
        saved = [a.clone() if isinstance(a, torch.Tensor) else None for a in args]
        value = function(*args)
        same = all(s is None or (isinstance(a, torch.Tensor) and a.shape == s.shape
                                 and bool(torch.equal(a, s))) for a, s in zip(args, saved))
        out.append([value, same])
    return out


@probe
def layer_call(ctx, cls, direction, x, x2, w_out, w_ld, args=(), kwargs=None, cond=None,
               cond_at=1):
    """Build the student's layer ``cls(*args, **kwargs)`` and call ``direction`` on x and on x2.

    ``cond`` is an :func:`mlp` spec of a conditioner, inserted into ``args`` at ``cond_at``;
    float32 inputs build the layer (and conditioner) in float32, the notebook's dtype.  Returns
    both answers, whether x and x2 were left unchanged, the gradient of
    ``sum(y * w_out) + sum(logabsdet * w_ld)`` with respect to the conditioner's weights, and
    the classes of the layer.
    """
    factory = ctx.student(cls)
    net = mlp(cond) if cond is not None else None
    if net is not None and x.dtype != torch.float64:
        net = net.to(x.dtype)
    args = list(args)
    if net is not None:
        args.insert(cond_at, net)
    layer = build(factory, *args, **dict(kwargs or {}))
    if x.dtype != torch.float64 and isinstance(layer, torch.nn.Module):
        layer = layer.to(x.dtype)  # the notebook's own dtype (float32 cases)
    fn = layer if direction == "forward" else layer.inverse
    saved, saved2 = x.clone(), x2.clone()
    out = fn(x)  # the caller's own tensors: an in-place write shows below
    out2 = fn(x2)
    unchanged = bool(torch.equal(x, saved)) and bool(torch.equal(x2, saved2))
    gradients = None
    if net is not None and _pair_of_tensors(out):
        total = (out[0] * w_out).sum() + (out[1] * w_ld).sum()
        params = list(net.parameters())
        gradients = grads(total, params) if total.requires_grad else [None] * len(params)
    return {"out": out, "out2": out2, "grads": gradients, "classes": classes_of(layer),
            "unchanged": unchanged}


@probe
def set_layer_call(ctx, cls, direction, x, x2, w_out, w_ld, args=(), tensors=None, flags=None,
                   grads_of=None, patch=None):
    """Build ``cls(*args)``, copy ``tensors`` into its attributes, set ``flags``, call ``direction``.

    ``patch`` names a piece whose ``patch(layer)`` replaces a method by the grader's (the LU
    ``weight()``).  ``grads_of``: attribute names whose gradients (and the input's, key
    ``"input"``) are returned; ``None``: no gradients.  A missing or misshapen attribute is
    answered as ``{"missing": name, "got": type}`` or ``{"bad_shape": name, "shape": shape}``.
    """
    layer = build(ctx.student(cls), *args)
    if x.dtype != torch.float64 and isinstance(layer, torch.nn.Module):
        layer = layer.to(x.dtype)  # the notebook's own dtype (float32 cases)
    problem = _set_tensors(layer, dict(tensors or {}))
    if problem is not None:
        return problem
    for name, value in dict(flags or {}).items():
        setattr(layer, name, value)
    if patch is not None:
        ctx.piece(patch).patch(layer)
    fn = layer if direction == "forward" else getattr(layer, direction)
    leaf = x.clone().requires_grad_(grads_of is not None)
    out = fn(leaf * 1)
    saved2 = x2.clone()
    out2 = fn(x2)  # the caller's own tensor: an in-place write shows in "unchanged"
    unchanged = bool(torch.equal(x2, saved2))
    gradients = None
    if (grads_of is not None and _pair_of_tensors(out)
            and tuple(out[0].shape) == tuple(w_out.shape)
            and tuple(out[1].shape) == tuple(w_ld.shape)):
        names = ["input"] + [n for n in grads_of if isinstance(getattr(layer, n, None),
                                                                 torch.Tensor)
                             and getattr(layer, n).requires_grad]
        leaves = [leaf] + [getattr(layer, n) for n in names[1:]]
        total = (out[0] * w_out).sum() + (out[1] * w_ld).sum()
        got = grads(total, leaves) if total.requires_grad else [None] * len(leaves)
        gradients = dict(zip(names, got))
    return {"out": out, "out2": out2, "grads": gradients, "classes": classes_of(layer),
            "unchanged": unchanged}


# ---------------------------------------------------------------------- assignment 2: RealNVP
@probe
def realnvp(ctx, features, n, weights, x):
    """``build_realnvp(features, n, coupling=GraderCoupling)`` (piece ``coupling``): its form,
    its masks, its conditioners' parameter shapes and, with ``weights`` copied into the
    conditioners, ``log_prob(x)``."""
    piece = ctx.piece("coupling")
    flow = ctx.student("build_realnvp")(features, n, coupling=piece.GraderCoupling)
    couplings = [m for m in flow.modules() if isinstance(m, piece.GraderCoupling)]
    info = {"is_flow": isinstance(flow, piece.Flow),
            "base": type(getattr(flow, "base", None)).__name__,
            "n": len(couplings), "masks": [c.mask.clone() for c in couplings]}
    if info["is_flow"]:
        flow = flow.double()
        for coupling, ws in zip(couplings, weights):
            with torch.no_grad():
                params = list(coupling.conditioner.parameters())
                info.setdefault("shapes", []).append([list(p.shape) for p in params])
                if len(params) == len(ws) and all(p.shape == w.shape for p, w in zip(params, ws)):
                    for p, w in zip(params, ws):
                        p.copy_(w)
        info["log_prob"] = flow.log_prob(x)
    return info


@probe
def record_training(ctx, data, steps, lr, batch_size):
    """The student's ``train`` on a recording Gaussian (piece ``recorder``): the losses it
    returned, every batch the model saw, its parameters before each call and at the end."""
    model = ctx.piece("recorder").Recorder(data.shape[1])
    losses = ctx.student("train")(model, data, steps=steps, lr=lr, batch_size=batch_size)
    return {"losses": [float(v) if isinstance(v, (int, float)) or hasattr(v, "item") else None
                       for v in losses] if isinstance(losses, (list, tuple)) else None,
            "type": type(losses).__name__,
            "seen": model.seen, "snapshots": model.snapshots,
            "final": torch.cat([model.mu.detach(), model.log_sigma.detach()])}


@probe
def train_realnvp(ctx, seed, init, data, steps, lr, batch_size):
    """The student's ``train`` on the grader's RealNVP (piece ``coupling``) started from ``init``,
    with one thread and a fixed seed; returns the trained parameters."""
    piece = ctx.piece("coupling")
    train = ctx.student("train")
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        flow = piece.grader_realnvp(2, couplings=6, hidden=(64, 64)).double()
        with torch.no_grad():
            for p, w in zip(flow.parameters(), init):
                p.copy_(w)
        losses = train(flow, data, steps=steps, lr=lr, batch_size=batch_size)
    finally:
        torch.set_num_threads(threads)
    return {"params": [p.detach().clone() for p in flow.parameters()],
            "n": len(losses) if isinstance(losses, (list, tuple)) else None}


# ---------------------------------------------------------------------- assignment 3: images
@probe
def dequantize(ctx, x, x_k, levels, x32, levels32):
    """``dequantize(x)`` twice (fresh noise?), ``dequantize(x_k, levels)``,
    ``dequantize(x32, levels32)``, and whether the inputs were left unchanged."""
    fn = ctx.student("dequantize")
    saved, saved32 = x.clone(), x32.clone()
    first = fn(x)
    second = fn(x)
    other = fn(x_k, levels)
    big = fn(x32, levels32)
    return {"first": first, "second": second, "other": other, "big": big,
            "unchanged": bool(torch.equal(x, saved)) and bool(torch.equal(x32, saved32))}


@probe
def multiscale(ctx, x, params):
    """``multiscale_forward(x, blocks)`` with the grader's blocks (piece ``multiscale``)."""
    blocks = ctx.piece("multiscale").blocks(params)
    saved = x.clone()
    latents, logabsdet = ctx.student("multiscale_forward")(x, blocks)
    return {"latents": list(latents) if isinstance(latents, (list, tuple)) else latents,
            "kind": type(latents).__name__, "logabsdet": logabsdet,
            "unchanged": bool(torch.equal(x, saved))}


# ---------------------------------------------------------------------- assignment 4: Glow
def _actnorm_params(layer):
    out = {}
    for name in ("loc", "log_scale"):
        value = getattr(layer, name, None)
        out[name] = torch.Tensor.detach(value).clone() if isinstance(value, torch.Tensor) else None
    flag = getattr(layer, "initialized", None)
    if isinstance(flag, torch.Tensor):
        flag = bool(flag.reshape(-1)[0]) if flag.numel() == 1 else None
    elif not isinstance(flag, (bool, int)):
        flag = None
    out["flag"] = flag
    return out


@probe
def actnorm_init(ctx, c, x1, x2):
    """``ActNorm(c)`` called on x1, x2, x1: its ``loc``, ``log_scale`` and ``initialized`` before
    and after the first two calls, and the outputs of the first and third."""
    layer = build(ctx.student("ActNorm"), c)
    before = _actnorm_params(layer)
    out1 = layer(x1)
    first = _actnorm_params(layer)
    layer(x2)
    second = _actnorm_params(layer)
    out3 = layer(x1)
    return {"before": before, "first": first, "second": second, "out1": out1, "out3": out3,
            "classes": classes_of(layer)}


@probe
def lu_weight(ctx, c, tensors, w_out):
    """``LUConv1x1(c).weight()`` with the grader's factors, and the gradient of
    ``sum(W * w_out)`` with respect to ``lower``, ``upper``, ``log_abs_diag``."""
    layer = build(ctx.student("LUConv1x1"), c)
    problem = _set_tensors(layer, tensors)
    if problem is not None:
        return problem
    weight = layer.weight()
    names = [n for n in ("lower", "upper", "log_abs_diag")
             if isinstance(getattr(layer, n), torch.Tensor) and getattr(layer, n).requires_grad]
    gradients = None
    if isinstance(weight, torch.Tensor) and tuple(weight.shape) == tuple(w_out.shape):
        total = (weight * w_out).sum()
        leaves = [getattr(layer, n) for n in names]
        got = grads(total, leaves) if total.requires_grad else [None] * len(leaves)
        gradients = dict(zip(names, got))
    return {"W": weight, "grads": gradients, "classes": classes_of(layer)}


@probe
def temperature(ctx, event, temperature, n, scale, shift):
    """``sample_with_temperature(flow, n, temperature)`` on a recorded flow (piece
    ``temperature``): the samples and the record of the calls the student made."""
    flow, log = ctx.piece("temperature").flow(event, scale, shift)
    x = ctx.student("sample_with_temperature")(flow, n, temperature)
    return {"x": x, "log": log}


# ---------------------------------------------------------------------- assignment 5: MAF, attention
@probe
def maf(ctx, cond, direction, x, x2, perturbed, w_out, w_ld):
    """``MAF(conditioner)`` called in ``direction`` on x, on x2 and on every perturbed input;
    the conditioner's gradients (forward only) and whether x was left unchanged."""
    net = mlp(cond)
    layer = build(ctx.student("MAF"), net)
    if x.dtype != torch.float64:
        net, layer = net.to(x.dtype), layer.to(x.dtype)  # the notebook's float32
    fn = layer if direction == "forward" else layer.inverse
    saved = x.clone()
    gradients = None
    if direction == "forward":
        out = fn(x)
        params = list(net.parameters())
        if _pair_of_tensors(out):
            total = (out[0] * w_out).sum() + (out[1] * w_ld).sum()
            gradients = grads(total, params) if total.requires_grad else [None] * len(params)
        with torch.no_grad():
            out2 = fn(x2)
            moved = [fn(v)[0] for v in perturbed]
    else:
        with torch.no_grad():
            out = fn(x)
            out2 = fn(x2)
            moved = [fn(v)[0] for v in perturbed]
    return {"out": out, "out2": out2, "moved": moved, "grads": gradients,
            "classes": classes_of(layer), "unchanged": bool(torch.equal(x, saved))}


@probe
def attention(ctx, x, wq, wk, wv, shift, perturbed):
    """``causal_attention`` on x and on every perturbed x, with the grader's ``causal_mask``
    (piece ``causal_mask``) in the notebook's namespace for the calls."""
    fn = ctx.student("causal_attention")
    with ctx.replacing(causal_mask=ctx.piece("causal_mask").causal_mask):
        out = fn(x, wq, wk, wv, shift)
        moved = [fn(v, wq, wk, wv, shift) for v in perturbed]
    return {"out": out, "moved": moved}
