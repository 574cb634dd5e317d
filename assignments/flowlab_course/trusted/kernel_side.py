"""The kernel side of the grader's channel: the only grader code that runs in a student's kernel.

The trusted process (:mod:`flowlab_course.trusted.bridge`) sends this file's text to the kernel
once, after the student's notebook has run, and then one *probe* per graded question: a few lines
that call the student's functions on inputs chosen by the grader.  Here a probe is executed in a
copy of the student's namespace, and whatever it leaves in ``result`` goes back as **plain
data**: JSON with tensors as raw bytes.  Nothing is decided here: the checks, the tolerances, the
reference computations and the verdict are in the trusted process, which only ever sees values.
Nothing produced here is evidence (no profiler, no module walk): a student's code can change
everything in this file at run time (it is their interpreter); that can only change the values
sent back, which the grader then checks like any other answer.

Standard library and torch only.  Names start with ``_flowlab`` so that they do not collide with
a student's.
"""


def _flowlab_channel():  # noqa: C901 - one closure, so that only one name enters the namespace
    import base64
    import json
    import sys
    import traceback
    import types

    import torch

    marker = "\x1eFLOWLAB-GRADER-RESULT "
    shell = get_ipython()  # noqa: F821 - defined in the kernel

    def encode(obj, depth=0):
        if depth > 20:
            return {"$opaque": "nested too deeply"}
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, torch.Tensor):
            t = torch.Tensor.detach(obj)
            if t.is_complex() or t.layout != torch.strided:
                return {"$opaque": f"a {t.dtype} {t.layout} tensor"}
            t = t.cpu().clone(memory_format=torch.contiguous_format)  # standard strides for view()
            if t.dtype == torch.bfloat16:
                t = t.float()
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            return {"$tensor": [str(t.dtype).replace("torch.", ""), list(t.shape),
                                base64.b64encode(raw).decode("ascii"), type(obj).__name__]}
        if isinstance(obj, (tuple, list)):
            items = [encode(v, depth + 1) for v in obj]
            return {"$tuple": items} if isinstance(obj, tuple) else items
        if isinstance(obj, dict):
            return {"$dict": [[str(k), encode(v, depth + 1)] for k, v in obj.items()]}
        return {"$opaque": type(obj).__name__}

    def decode(obj):
        if isinstance(obj, list):
            return [decode(v) for v in obj]
        if isinstance(obj, dict):
            if "$tensor" in obj:
                dtype, shape, data = obj["$tensor"][:3]
                raw = bytearray(base64.b64decode(data))
                flat = torch.frombuffer(raw, dtype=getattr(torch, dtype)) if raw else \
                    torch.empty(0, dtype=getattr(torch, dtype))
                return flat.reshape(shape).clone()
            if "$tuple" in obj:
                return tuple(decode(v) for v in obj["$tuple"])
            if "$dict" in obj:
                return {k: decode(v) for k, v in obj["$dict"]}
            return {k: decode(v) for k, v in obj.items()}
        return obj

    def student_line(err):
        """Where in the student's own cells the error was raised (their code, never ours)."""
        for frame in reversed(traceback.extract_tb(err.__traceback__)):
            name = frame.filename or ""
            if "ipykernel_" in name or name.startswith("<ipython-input"):
                return [frame.lineno, (frame.line or "").strip()[:160]]
        return None

    def probe(code, payload):
        namespace = dict(shell.user_ns)
        namespace.update(decode(json.loads(payload)))
        namespace["grader"] = types.SimpleNamespace(**helpers)
        reply = {}
        try:
            exec(compile(code, "<flowlab-grader>", "exec"), namespace)
            reply = {"ok": True, "result": encode(namespace.get("result"))}
        except BaseException as err:  # noqa: BLE001 - every failure of the student's code is data
            reply = {"ok": False, "error": type(err).__name__, "message": str(err)[:2000],
                     "where": student_line(err)}
        text = json.dumps(reply)
        sys.stdout.write(marker + base64.b64encode(text.encode()).decode("ascii") + "\n")
        sys.stdout.flush()

    # ---- helpers a probe may call as grader.<name> (plain torch; the grader chooses every weight)
    def build(factory, *args, **kwargs):
        """Call the student's constructor; modules are moved to float64 like the grader's data."""
        obj = factory(*args, **kwargs)
        if isinstance(obj, torch.nn.Module):
            obj = obj.double()
        return obj

    def mlp(spec):
        """An ``nn.Sequential`` from the grader's spec: ``[["linear", W, b], ["tanh"], ...]``."""
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
        params = list(params)
        got = torch.autograd.grad(output, params, allow_unused=True)
        return [None if g is None else g for g in got]

    class replacing:
        """``with grader.replacing(causal_mask=fn): ...`` — the student's *global* names replaced.

        A student's function looks its globals up in the notebook's namespace, whatever
        decorator (``@torch.no_grad()``, ``functools.wraps``) wraps it, so the grader's piece is
        put there for the duration of the call and the student's own object put back after.
        """

        def __init__(self, **names):
            self.names, self.saved = names, {}

        def __enter__(self):
            ns = shell.user_ns
            for name, value in self.names.items():
                self.saved[name] = (name in ns, ns.get(name))
                ns[name] = value
            return self

        def __exit__(self, *exc):
            ns = shell.user_ns
            for name, (had, value) in self.saved.items():
                if had:
                    ns[name] = value
                else:
                    ns.pop(name, None)
            return False

    helpers = {"build": build, "mlp": mlp, "classes_of": classes_of, "grads": grads,
               "torch": torch, "replacing": replacing}
    return probe


_flowlab_probe = _flowlab_channel()
del _flowlab_channel
