"""The kernel side of the grader's channel: the wire between a student's kernel and the grader.

The trusted process (:class:`flowlab_course.trusted.bridge.KernelBridge`) sends this file's text
and the text of :mod:`.probes` to the kernel once, after the student's notebook has run, as::

    <this file>
    _flowlab_probe = _flowlab_channel(<the text of probes.py>, get_ipython())
    del _flowlab_channel

Every request then *names* a probe function and passes its arguments as JSON (tensors as raw
bytes): ``_flowlab_probe("layer_call", '{"$dict": [...]}')``.  A name that is not a probe is
refused; no code string is ever executed per request.  The probe runs on a copy of the student's
namespace (:class:`.probes.Context`), and what it returns goes back as **plain data** on stdout
after a marker.  A grader's piece (:mod:`.pieces`) travels inside the first request that needs
it (the payload's ``"$pieces"`` entry, ``{name: <the piece module's text>}``) and stays defined for
the kernel's later requests: the channel has **one** entry point with one signature, so whatever
a student's code wraps it with and passes requests through also passes the pieces.

Nothing is decided here: the checks, the tolerances, the reference computations and the verdict
are in the trusted process, which only ever sees values.  Nothing produced here is evidence (no
profiler, no module walk): a student's code can change everything in this file at run time (it
is their interpreter); that can only change the values sent back, which the grader then checks
like any other answer.

Standard library and torch only.  Names start with ``_flowlab`` so that they do not collide with
a student's; only ``_flowlab_probe`` stays in their namespace.
"""


def _flowlab_channel(probes_source, shell):
    """The channel's one entry point ``probe(name, payload)``.

    Args:
        probes_source: the text of :mod:`flowlab_course.kernel.probes`.
        shell: the kernel's IPython shell (``get_ipython()``); anything with ``user_ns``.
    """
    import base64
    import json
    import sys
    import traceback
    import types

    import torch

    marker = "\x1eFLOWLAB-GRADER-RESULT "

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

    def reply(answer):
        text = json.dumps(answer)
        sys.stdout.write(marker + base64.b64encode(text.encode()).decode("ascii") + "\n")
        sys.stdout.flush()

    def load(name, text):
        """A module from its source text (the grader's own modules, sent as they are)."""
        module = types.ModuleType(f"_flowlab_{name.replace('/', '_')}")
        exec(compile(text, f"<flowlab-grader-{name}>", "exec"), module.__dict__)  # noqa: S102
        return module

    registry = load("probes", probes_source)
    probes, context = registry.PROBES, registry.Context
    pieces = {}

    def probe(name, payload):
        """Run the probe function ``name`` on the arguments in ``payload`` (JSON); reply."""
        fn = probes.get(name) if isinstance(name, str) else None
        if fn is None:  # the trusted side never asks for one: a request that was tampered with
            reply({"ok": False, "error": "LookupError", "message": "", "where": None})
            return
        try:
            kwargs = decode(json.loads(payload))
            for piece, text in kwargs.pop("$pieces", {}).items():  # first needed by this request
                pieces[piece] = load(f"pieces/{piece}", text)
            result = fn(context(shell.user_ns, pieces), **kwargs)
            answer = {"ok": True, "result": encode(result)}
        except BaseException as err:  # noqa: BLE001 - every failure of the student's code is data
            answer = {"ok": False, "error": type(err).__name__, "message": str(err)[:2000],
                      "where": student_line(err)}
        reply(answer)

    return probe


