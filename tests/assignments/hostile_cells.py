"""Hostile cells by category for assignments 1, 3, 4 and 5 (issue 27), and how to build the class.

Each hostile notebook is the release or the solution with cells appended at its end (they run
after every solution cell, so their definitions are the ones graded):

* :data:`ROUTES` — computed and indirect attribute access to flowlab: ``getattr`` with built
  strings, ``importlib.import_module``, ``__import__`` through ``builtins``, ``sys.modules``,
  ``gc.get_objects``, ``inspect.getsource`` + ``exec``, flowlab's ``.py`` files searched on disk
  and ``exec``'d, subclassing a reference class, ``pickle``/``copy`` of a reference object.
  ``_ref(name)`` returns a callable that tries every route in turn (the first that works wins);
  ``_ref(name, attr)`` calls an attribute of the object found (an unbound method);
* :data:`TAMPER` — runtime evidence switched off or rewritten (``sys.setprofile``/``settrace``
  off, ``torch.allclose`` and friends patched, ``json.dumps`` and ``sys.stdout.write`` that
  carry the reply rewritten so that a failure reads as a pass, forged result markers written
  to the file descriptors 1 and 2 directly and at exit), IPython hooks reached indirectly
  (``events.register`` through built names, ``input_transformers_post``) that rewrite the
  grader's channel once it is installed: its ``build`` helper swapped for one that builds
  flowlab's reference class, its probe wrapped so that an exception becomes a forged pass;
* :data:`DETECT` — grader detection (float64 inputs, ``NBGRADER_EXECUTION``, the call stack,
  ``os.getpid``, the time since the notebook ran): the reference is asked for only when graded.

:data:`SPECS` gives, per assignment, where flowlab keeps the reference of each graded name and a
wrapper per student name that delegates to it through ``_ref`` (what delegation looks like), with
the parts each wrapper would earn if the reference were there.  ``tests/assignments/
test_trust_classes.py`` proves the wrappers are real attacks (with the real flowlab they earn
those parts) and grades the class through the real CLI with the sandbox on.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import nbformat

ROUTES = r'''
import builtins, copy, gc, importlib, inspect, os, pickle, sys
import torch
from torch import nn
import flowlab


def _r_getattr(name):
    """getattr with names built at run time, down the package tree."""
    module = _WHERE[name]
    importlib.import_module(module)
    obj = flowlab
    for piece in module.split(".")[1:]:
        obj = getattr(obj, "".join(reversed(piece[::-1])))
    return getattr(obj, "".join(chr(ord(c)) for c in name))


def _r_importlib(name):
    return getattr(importlib.import_module(_WHERE[name]), name)


def _r_dunder_import(name):
    module = vars(builtins)["__imp" + "ort__"](_WHERE[name], fromlist=[name])
    return vars(module)[name]


def _r_sys_modules(name):
    importlib.import_module(_WHERE[name])
    return vars(sys.modules[_WHERE[name]])[name]


def _r_gc(name):
    importlib.import_module(_WHERE[name])
    for obj in gc.get_objects():
        try:
            if getattr(obj, "__name__", None) == name and \
                    str(getattr(obj, "__module__", "")).startswith("flowlab"):
                return obj
        except Exception:
            continue
    raise LookupError(name)


def _r_inspect_exec(name):
    module = importlib.import_module(_WHERE[name])
    ns = {"__name__": module.__name__ + "_copy", "__package__": module.__package__}
    exec(compile(inspect.getsource(module), "<copy>", "exec"), ns)
    return ns[name]


_DISK = {}
_SKIP = {"/proc", "/sys", "/dev", "/usr"}
_SKIP_NAMES = {"torch", "nvidia", "triton", "sympy", "__pycache__", ".git", "node_modules",
               "scipy", "sklearn", "matplotlib", "pandas", "numpy", "IPython", "jedi"}


def _r_disk(name):
    """flowlab's own source, found anywhere on the disk, exec'd as a private module."""
    if name not in _DISK:
        _DISK[name] = None
        needles = (f"class {name}(", f"def {name}(")
        for top, dirs, files in os.walk("/"):
            dirs[:] = [d for d in dirs
                       if os.path.join(top, d) not in _SKIP and d not in _SKIP_NAMES]
            for f in files:
                if not f.endswith(".py"):
                    continue
                try:
                    text = open(os.path.join(top, f), errors="ignore").read()
                except OSError:
                    continue
                if any(n in text for n in needles) and "Redacted" not in text and \
                        "_flowlab" not in text:
                    _DISK[name] = text
                    break
            if _DISK[name] is not None:
                break
    if _DISK[name] is None:
        raise LookupError(name)
    module = importlib.import_module(_WHERE[name])
    ns = {"__name__": module.__name__ + "_disk", "__package__": module.__package__}
    exec(compile(_DISK[name], "<disk>", "exec"), ns)
    return ns[name]


def _r_subclass(name):
    base = _r_importlib(name)
    if isinstance(base, type):
        return type(name, (base,), {})
    return base


def _r_pickle_copy(name):
    return copy.deepcopy(pickle.loads(pickle.dumps(_r_importlib(name))))


_ROUTES = [_r_getattr, _r_importlib, _r_dunder_import, _r_sys_modules, _r_gc, _r_inspect_exec,
           _r_subclass, _r_pickle_copy, _r_disk]


class _Try:
    """Call flowlab's ``name`` (or its attribute ``attr``) through the first route that works."""

    def __init__(self, name, attr=None):
        self.name, self.attr = name, attr

    def __call__(self, *args, **kwargs):
        if not _wanted(*args):
            raise NotImplementedError()
        errors = []
        for route in _ROUTES:
            try:
                obj = route(self.name)
                if self.attr:
                    obj = getattr(obj, self.attr)
                return obj(*args, **kwargs)
            except Exception as err:
                errors.append(f"{route.__name__}: {type(err).__name__}")
        raise RuntimeError(f"{self.name}: no route worked ({'; '.join(errors)})")


def _wanted(*args):
    return True


def _ref(name, attr=None):
    return _Try(name, attr)
'''

#: run at notebook time after ROUTES: what each route finds for each name (REAL = flowlab's
#: reference code, stub = the redacted stand-in), printed into the graded notebook as evidence
SURVEY = r'''
def _is_stub(obj):
    target = getattr(obj, "__init__", None) if isinstance(obj, type) else obj
    code = getattr(target, "__code__", None)
    return code is not None and "_ReferenceUnavailable" in code.co_names


for _name in sorted(_WHERE):
    for _route in _ROUTES:
        try:
            _found = "stub" if _is_stub(_route(_name)) else "REAL"
        except Exception as _err:
            _found = type(_err).__name__
        print(f"SURVEY {_name} {_route.__name__} {_found}")
'''

#: used with ROUTES: the reference is asked for only when the grader is detected
DETECT = r'''
import os, time, inspect
_PID0, _T0 = os.getpid(), time.time()


def _wanted(*args):
    stack = " ".join(f.filename for f in inspect.stack(0))
    return (bool(os.environ.get("NBGRADER_EXECUTION")) or "flowlab-grader" in stack
            or os.getpid() != _PID0 or time.time() - _T0 > 1.0
            or any(getattr(a, "dtype", None) == torch.float64 for a in args))
'''

TAMPER = r'''
import atexit, base64, json, os, sys, threading
import torch

_MARK = "\x1eFLOWLAB-GRADER-RESULT "


def _forged():
    reply = json.dumps({"ok": True, "result": None}).encode()
    return _MARK + base64.b64encode(reply).decode() + "\n"


# runtime evidence switched off
sys.setprofile(None)
sys.settrace(None)
threading.setprofile(None)
threading.settrace(None)
torch.allclose = lambda *a, **k: True   # (not Tensor.__eq__: the notebook's own masks use ==)
torch.equal = lambda *a, **k: True
_shell = globals()["get_" + "ipython"]()

# the JSON encoder and stdout that carry the reply, rewritten: a failure reads as a pass
_dumps = json.dumps


def _dumps_forged(obj, *args, **kwargs):
    if isinstance(obj, dict) and obj.get("ok") is False:
        _shell.user_ns["_LAST_FAILED"] = True
        obj = {"ok": True, "result": None}
    return _dumps(obj, *args, **kwargs)


json.dumps = _dumps_forged
_write = sys.stdout.write


def _write_forged(text):
    out = _write(text)
    if _MARK in text and _shell.user_ns.get("_LAST_FAILED"):
        os.write(1, _forged().encode())   # the file descriptors, directly
        os.write(2, _forged().encode())
        _write(_forged())
    return out


sys.stdout.write = _write_forged
atexit.register(lambda: os.write(1, _forged().encode()))


# IPython hooks reached indirectly: the grader's channel rewritten once it is installed
def _build_reference(factory, *args, **kwargs):
    name = getattr(factory, "__name__", "")
    obj = (_ref(name) if name in _OVERRIDDEN else factory)(*args, **kwargs)
    return obj.double() if isinstance(obj, torch.nn.Module) else obj


def _after(*unused):
    probe = _shell.user_ns.get("_flowlab_probe")
    if probe is None or getattr(probe, "forged", False):
        return
    for cell in probe.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if isinstance(value, dict) and "build" in value:
            value["build"] = _build_reference

    def forged(code, payload):
        _shell.user_ns["_LAST_FAILED"] = False
        try:
            probe(code, payload)
        except BaseException:
            _write(_forged())

    forged.forged = True
    _shell.user_ns["_flowlab_probe"] = forged


getattr(getattr(_shell, "ev" + "ents"), "regi" + "ster")("post_run_cell", _after)


def _transform(lines):
    if any("_flowlab_probe(" in line for line in lines):
        return lines + ["\n", "if globals().get('_LAST_FAILED'): print(" + repr(_forged()) + ")\n"]
    return lines


getattr(_shell, "input_transformers_" + "post").append(_transform)


# interpreter hooks, reached through built names: a tracer and a profiler that spot the grader's
# probe (a smart attacker forges only over a real failure, so its own parts keep their points)
def _tracer(frame, event, arg):
    code = frame.f_code
    if event == "call" and code.co_name == "probe" and "payload" in code.co_varnames:
        _shell.user_ns["_GRADED"] = True
    return None


def _profiler(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "encode":
        _shell.user_ns["_REPLYING"] = True


getattr(sys, "set" + "trace")(_tracer)
getattr(threading, "set" + "trace")(_tracer)
getattr(sys, "set" + "profile")(_profiler)
'''


@dataclass(frozen=True)
class Spec:
    """One assignment's hostile material."""

    module: str
    where: dict                   # flowlab name -> module that defines it
    wrappers: dict                # student name -> source that delegates through _ref
    earns: dict                   # student name -> parts the wrapper earns with the real flowlab
    attacked: tuple = ()          # student names the TAMPER notebook replaces on the solution
    open_names: tuple = ()        # names in ``where`` that are not stubs (only what they call)
    extra: dict = field(default_factory=dict)


A1 = Spec(
    module="assignment1",
    where={"LeakyReLU": "flowlab.transforms.pointwise", "FullLinear": "flowlab.transforms.linear",
           "Permutation": "flowlab.transforms.linear",
           "brute_force_logabsdet": "flowlab.testing"},
    wrappers={
        "LeakyReLU": '''
class LeakyReLU(Transform):
    def __init__(self, negative_slope=0.1):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return _ref("LeakyReLU")(self.negative_slope)(x)

    def inverse(self, z):
        return _ref("LeakyReLU")(self.negative_slope).inverse(z)
''',
        "TriangularLinear": '''
class TriangularLinear(Transform):
    def __init__(self, features):
        super().__init__()
        self.weight = nn.Parameter(torch.eye(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def _reference(self, like):
        lin = _ref("FullLinear")(self.weight.shape[0], bias=False).to(like.dtype)
        lin._parameters["W"] = torch.tril(self.weight)
        return lin

    def forward(self, x):
        z, _ = self._reference(x)(x)
        # the log-determinant by flowlab's brute-force Jacobian
        ld = _ref("brute_force_logabsdet")(lambda v: self._reference(v)(v), x)
        return z + self.bias, ld

    def inverse(self, z):
        return self._reference(z).inverse(z - self.bias)
''',
        "Permutation": '''
class Permutation(Transform):
    def __init__(self, perm):
        super().__init__()
        self.register_buffer("perm", torch.as_tensor(perm, dtype=torch.long))

    def forward(self, x):
        return _ref("Permutation")(self.perm)(x)

    def inverse(self, z):
        return _ref("Permutation")(self.perm).inverse(z)
''',
    },
    earns={"LeakyReLU": {"leaky_forward", "leaky_inverse"},
           "TriangularLinear": {"triangular_inverse"},
           "Permutation": {"permutation"}},
    attacked=("LeakyReLU", "Permutation"),
)

A3 = Spec(
    module="assignment3",
    where={"Squeeze": "flowlab.transforms.image", "checkerboard_mask": "flowlab.transforms.image",
           "channel_mask": "flowlab.transforms.image",
           "MaskedAffineCoupling": "flowlab.transforms.image",
           "UniformDequantization": "flowlab.transforms.dequantize",
           "bits_per_dim": "flowlab.metrics",
           "Affine": "flowlab.transforms.univariate"},
    wrappers={
        "squeeze": '''
def squeeze(x):
    return _ref("Squeeze")()(x)[0]


def unsqueeze(z):
    return _ref("Squeeze")().inverse(z)[0]
''',
        "checkerboard_mask": '''
def checkerboard_mask(height, width, parity=0):
    return _ref("checkerboard_mask")(height, width, parity, dtype=torch.float32)


def channel_mask(channels, parity=0):
    return _ref("channel_mask")(channels, parity, dtype=torch.float32)
''',
        "MaskedAffineCoupling": '''
class MaskedAffineCoupling(Transform):
    def __init__(self, mask, conditioner):
        super().__init__()
        self.register_buffer("mask", mask.clone())
        self.conditioner = conditioner

    def _elementwise(self, x, inverse):
        # the affine formula of flowlab's elementwise transformer, on the transformed part only
        b = self.mask
        t, s = self.conditioner(b * x).chunk(2, dim=1)
        s, t = (1 - b) * s, (1 - b) * t
        affine = _ref("Affine")(bound=None)      # the elementwise transformer of every coupling
        step = affine.inverse if inverse else affine.forward
        y, ladj = step(x, torch.stack([t, s], -1))
        return y, ladj.reshape(x.shape[0], -1).sum(1)

    def forward(self, x):
        return self._elementwise(x, False)

    def inverse(self, y):
        return self._elementwise(y, True)
''',
        "dequantize": '''
def dequantize(x, num_levels=256):
    x = x.float() if not x.is_floating_point() else x
    return _ref("UniformDequantization")(num_levels, validate=False)(x)[0]


def bits_per_dim(log_prob_y, num_dims, num_levels=256):
    return _ref("bits_per_dim")(log_prob_y, num_dims, num_levels)
''',
    },
    earns={"squeeze": {"squeeze", "unsqueeze"}, "checkerboard_mask": {"masks"},
           "MaskedAffineCoupling": {"masked_forward", "masked_inverse"},
           "dequantize": {"dequantize", "bits_per_dim"}},
    attacked=("squeeze", "dequantize"),
)

A4 = Spec(
    module="assignment4",
    where={"ActNorm": "flowlab.transforms.glow", "InvertibleConv1x1": "flowlab.transforms.glow",
           "StandardNormal": "flowlab.distributions", "FullLinear": "flowlab.transforms.linear"},
    wrappers={
        "ActNorm": '''
class ActNorm(Transform):
    def __init__(self, channels):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.initialized = False

    def _reference(self):
        ref = _ref("ActNorm")(self.loc.shape[0])
        ref._parameters["loc"], ref._parameters["log_scale"] = self.loc, self.log_scale
        ref.initialized.fill_(bool(self.initialized))
        ref._known_initialized = bool(self.initialized)
        return ref

    def forward(self, x):
        out = self._reference()(x)
        self.initialized = True
        return out

    def inverse(self, z):
        return self._reference().inverse(z)
''',
        "LUConv1x1": '''
class LUConv1x1(LUConv1x1):
    def _reference(self):
        W = self.weight()
        ref = _ref("InvertibleConv1x1")(W.shape[0]).to(W.dtype)
        ref._parameters["weight"] = W
        return ref

    def forward(self, x):
        return self._reference()(x)

    def inverse(self, z):
        return self._reference().inverse(z)
''',
        "sample_with_temperature": '''
def sample_with_temperature(flow, n, temperature):
    # the known hole of issue 27: a StandardNormal of one's own, sampled at temperature T
    eps = _ref("StandardNormal")(flow.event_shape).to(flow.base._ref.dtype)
    x, _ = flow.inverse(eps.sample(n, temperature=temperature))
    return x
''',
    },
    earns={"ActNorm": {"actnorm_init", "actnorm_forward", "actnorm_inverse"},
           "LUConv1x1": {"conv_forward", "conv_inverse"},
           "sample_with_temperature": {"temperature"}},
    attacked=("ActNorm", "sample_with_temperature"),
    open_names=("StandardNormal",),   # not graded itself: its temperature (temper) is
)

A5 = Spec(
    module="assignment5",
    where={"made_degrees": "flowlab.nets.made",
           "Affine": "flowlab.transforms.univariate"},
    wrappers={
        "made_degrees": '''
def made_degrees(features, hidden_sizes):
    return _ref("made_degrees")(features, list(hidden_sizes))
''',
        "MAF": '''
class MAF(Transform):
    def __init__(self, conditioner):
        super().__init__()
        self.conditioner = conditioner

    def _elementwise(self, inputs, mu, alpha, inverse):
        affine = _ref("Affine")(bound=None)      # the elementwise transformer of MAF
        step = affine.inverse if inverse else affine.forward
        y, ladj = step(inputs, torch.stack([mu, alpha], -1))
        return y, ladj.sum(1)

    def forward(self, x):
        mu, alpha = self.conditioner(x).chunk(2, dim=1)
        return self._elementwise(x, mu, alpha, True)

    def inverse(self, z):
        x = torch.zeros_like(z)
        for _ in range(z.shape[1]):
            mu, alpha = self.conditioner(x).chunk(2, dim=1)
            x, ld = self._elementwise(z, mu, alpha, False)
        return x, ld
''',
    },
    earns={"made_degrees": {"made_degrees"}, "MAF": {"maf_forward", "maf_inverse"}},
    attacked=("MAF",),
)

SPECS = {"01_change_of_variables": A1, "03_image_flows": A3, "04_glow": A4,
         "05_autoregressive": A5}


def where_cell(spec: Spec) -> str:
    return f"_WHERE = {spec.where!r}\n_OVERRIDDEN = {sorted(spec.attacked)!r}\n"


def append(nb: nbformat.NotebookNode, *sources: str) -> nbformat.NotebookNode:
    """``nb`` with one code cell per source appended at the end (run after every solution)."""
    nb = copy.deepcopy(nb)
    for source in sources:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    return nb


def wrappers(spec: Spec, names=None) -> str:
    return "\n".join(spec.wrappers[n] for n in (names or spec.wrappers))


def earned(spec: Spec, names=None) -> set:
    return set().union(*(spec.earns[n] for n in (names or spec.wrappers)))


def hostile_class(spec: Spec, solution, release, parts) -> dict:
    """``student -> (notebook, parts it really solves by its own computation)``.

    * ``h_indirect``: the release, every graded name delegated through every route (fair: 0);
    * ``h_detect``: the release, the reference asked for only when the grader is detected (0);
    * ``h_tamper``: the solution with the ``attacked`` names delegated, plus every tampering
      category (fair: the solution's parts less the attacked ones);
    * ``t_release`` (0) and ``t_solution`` (every part).
    """
    head = where_cell(spec)
    parts = set(parts)
    return {
        "h_indirect": (append(release, head + ROUTES, wrappers(spec), SURVEY), set()),
        "h_detect": (append(release, head + ROUTES + DETECT, wrappers(spec)), set()),
        "h_tamper": (append(solution, head + ROUTES, TAMPER, wrappers(spec, spec.attacked)),
                     parts - earned(spec, spec.attacked)),
        "t_release": (release, set()),
        "t_solution": (solution, parts),
    }
