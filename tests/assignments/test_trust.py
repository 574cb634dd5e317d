"""The trust boundary, through the real nbgrader CLI with the sandbox on (assignment 2).

Whatever a student's cells do to their own interpreter, a hidden test's verdict depends only on
the values their code computes (the hidden tests run in the grader's process and receive plain
tensors), and flowlab's reference code of what is graded is not in the kernel at all (separation,
issue 27: the sandbox mounts a redacted flowlab).  One class of submissions, graded once per
session through ``nbgrader autograde`` (sequential) and once more, the hostile and honest-style
ones, through :func:`flowlab_course.parallel.autograde_parallel`:

* **attacks** (issue 12) — hooks that rewrite later cells, monkeypatched torch, tensor
  subclasses, killing the kernel inside a hidden call;
* **a hostile class by categories** (issue 27, :data:`HOSTILE`) — the release with one last cell
  that reaches flowlab's reference through computed and indirect attribute access (built
  ``getattr`` strings, ``importlib``, ``sys.modules``, ``gc.get_objects``, ``inspect.getsource``,
  the files on disk, subclassing), with the runtime evidence switched off or rewritten
  (``sys.setprofile(None)``, patched ``json``/stdout), IPython hooks reached indirectly, reply and
  request tampering and grader detection by dtype, environment and call stack.  Fair is 0 on
  every part (nothing of their own is right); each must score exactly that;
* **honest styles** (:data:`HONEST`) — autoreload, ``%pip``, ``pathlib``, ``operator``,
  ``getattr(torch, name)``, ``vars(cls)``: full marks, no review, no note;
* **stderr** — tqdm, logging, warnings and prints to ``sys.stderr`` never cost a point;
* **cross-part** — a broken coupling costs the coupling parts only;
* **leaks** — what a student prints or raises during a hidden call, the probe request in any
  encoding included, never reaches the notebook or the feedback.
"""

from __future__ import annotations

import base64
import copy
import json
import re

import nbformat
import pytest

from nbgrader_course import grade_cells, make_course, patch, shared_run

A = "02_coupling"
pytestmark = [pytest.mark.slow, pytest.mark.sandbox, pytest.mark.xdist_group("trust"),
              pytest.mark.usefixtures("bwrap")]

ALL = {"additive_forward", "additive_inverse", "affine_forward", "affine_inverse", "realnvp",
       "training"}
AFFINE = {"affine_forward", "affine_inverse"}

# An IPython AST transformer that wraps every later cell in try/except: the visible checks of
# the test cells can no longer fail.
AST_HOOK = '''
import ast as _ast
class _Swallow(_ast.NodeTransformer):
    def visit_Module(self, node):
        handler = _ast.ExceptHandler(type=None, name=None, body=[_ast.Pass()])
        node.body = [_ast.Try(body=node.body or [_ast.Pass()], handlers=[handler], orelse=[], finalbody=[])]
        return _ast.fix_missing_locations(node)
get_ipython().ast_transformers.append(_Swallow())
'''
PATCH_TORCH = '''
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.Tensor.__eq__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)
'''
TENSOR_SUBCLASS = '''
class _Agreeable(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        return out
'''
WRONG_AFFINE = ("z[:, ~self.mask] = x_b * torch.exp(s) + t", "z[:, ~self.mask] = (x_b + t) * torch.exp(s)")
AFFINE_CLASS = "class AffineCoupling(Transform):"


# ------------------------------------------------------------------ the hostile class (issue 27)
# Each attack cell defines `_get(name)`: how it reaches a flowlab object ("AffineCoupling",
# "AdditiveCoupling", "Mask"); WRAPPERS then builds the two couplings as thin wrappers around
# flowlab's reference (what delegation looks like), and build_realnvp around flowlab.realnvp.
WRAPPERS = '''
class AffineCoupling(Transform):
    def __init__(self, mask, conditioner):
        super().__init__()
        self.mask = mask
        self.ref = _get("Affine" + "Coupling")(_get("Mask")(mask), conditioner=conditioner,
                                               scale_bound=None)

    def forward(self, x):
        return self.ref(x)

    def inverse(self, z):
        return self.ref.inverse(z)


class AdditiveCoupling(Transform):
    def __init__(self, mask, conditioner):
        super().__init__()
        self.mask = mask
        self.ref = _get("Additive" + "Coupling")(_get("Mask")(mask), conditioner=conditioner)

    def forward(self, x):
        return self.ref(x)

    def inverse(self, z):
        return self.ref.inverse(z)


def build_realnvp(features, n_couplings, coupling=None, hidden=64):
    return _get("real" + "nvp")(features, couplings=n_couplings, hidden=(hidden, hidden))
'''
_MODULES = '''
_WHERE = {"AffineCoupling": "flowlab.transforms.coupling", "AdditiveCoupling": "flowlab.transforms.coupling",
          "Mask": "flowlab.transforms.masks", "realnvp": "flowlab.models.realnvp"}
'''
HOSTILE = {
    # computed and indirect attribute access
    "h_getattr_built": '''
import flowlab
def _get(name):
    return getattr(flowlab, "".join(reversed(name[::-1])))
''',
    "h_importlib": _MODULES + '''
import importlib
def _get(name):
    return getattr(importlib.import_module(_WHERE[name]), name)
''',
    "h_sys_modules": _MODULES + '''
import sys, flowlab.transforms, flowlab.models.realnvp
def _get(name):
    return vars(sys.modules[_WHERE[name]])[name]
''',
    "h_gc_objects": '''
import gc, flowlab, flowlab.models.realnvp
def _get(name):
    for obj in gc.get_objects():
        if callable(obj) and getattr(obj, "__name__", "") == name and (
                name in ("Mask", "realnvp") or "forward" in vars(obj)):
            return obj
    raise LookupError(name)
''',
    "h_inspect_exec": _MODULES + '''
import importlib, inspect
def _get(name):
    module = importlib.import_module(_WHERE[name])
    ns = {"__name__": module.__name__ + "_copy", "__package__": module.__package__}
    exec(compile(inspect.getsource(module), "<copy>", "exec"), ns)
    return ns[name]
''',
    "h_files_on_disk": _MODULES + '''
import importlib, os
def _source_of(name):
    for top, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.join(top, d) not in ("/proc", "/sys", "/dev", "/usr")]
        for f in files:
            if f.endswith(".py"):
                try:
                    text = open(os.path.join(top, f), errors="ignore").read()
                except OSError:
                    continue
                if f"class {name}(" in text and "def forward" in text and "Redacted" not in text:
                    return os.path.join(top, f), text
    return None, None
def _get(name):
    module = importlib.import_module(_WHERE[name])
    path, text = _source_of(name)
    if text is None:
        return getattr(module, name)
    ns = {"__name__": module.__name__ + "_disk", "__package__": module.__package__}
    exec(compile(text, path, "exec"), ns)
    return ns[name]
''',
    "h_subclass": '''
import flowlab
from flowlab.transforms.masks import Mask as _Mask
try:
    class _Sub(flowlab.AffineCoupling):
        pass
except Exception as err:
    print("subclassing refused:", type(err).__name__)
    _Sub = None
def _get(name):
    return {"AffineCoupling": _Sub, "Mask": _Mask}.get(name) or getattr(flowlab, name)
''',
    # runtime evidence switched off or rewritten
    "h_evidence_off": '''
import sys, json, flowlab
sys.setprofile(None)
sys.settrace(None)
_dumps = json.dumps
json.dumps = lambda obj, *a, **k: _dumps({k2: v for k2, v in obj.items() if k2 != "reference_calls"}
                                         if isinstance(obj, dict) else obj, *a, **k)
def _get(name):
    return getattr(flowlab, name)
''',
    "h_reply_forgery": '''
import sys, json, base64, flowlab
_marker = next(c for c in _flowlab_probe.__code__.co_consts if isinstance(c, str) and "GRADER" in c) \\
    if any(isinstance(c, str) and "GRADER" in c for c in _flowlab_probe.__code__.co_consts) \\
    else "\\x1eFLOWLAB-GRADER-RESULT "
_write = sys.stdout.write
def _forge(text):
    if "FLOWLAB-GRADER-RESULT" in text:
        text = _marker + base64.b64encode(json.dumps({"ok": True, "result": {"out": None},
                                                      "reference_calls": []}).encode()).decode() + "\\n"
    return _write(text)
sys.stdout.write = _forge
def _get(name):
    return getattr(flowlab, name)
''',
    # IPython hooks reached indirectly; the request tampered with and leaked
    "h_ipython_hooks": '''
import base64, flowlab
from IPython.display import display
_shell = globals()["get_" + "ipython"]()
_seen = []
def _remember(info):
    _seen.append(getattr(info, "raw_cell", "") or "")
getattr(getattr(_shell, "ev" + "ents"), "regi" + "ster")("pre_run_cell", _remember)
def _rewrite(lines):
    return [line.replace("X2=", "X2 =") for line in lines]
getattr(_shell, "input_transformers_" + "post").append(_rewrite)
_handle = display("placeholder", display_id=True)
def _get(name):
    request = _seen[-1] if _seen else ""
    if request:
        _handle.update("LEAK " + base64.b64encode(request.encode()).decode())
        print("LEAK", request.encode().hex())
        raise ValueError(base64.b64encode(request.encode()).decode()[:500] + " " +
                         request.encode().hex()[:500] + " " + request[::-1][:500])
    return getattr(flowlab, name)
''',
    # grader detection by dtype, environment and call stack: the reference only when graded
    "h_grader_detection": '''
import os, inspect, flowlab
def _graded():
    stack = " ".join(f.filename for f in inspect.stack())
    return bool(os.environ.get("NBGRADER_EXECUTION")) or "flowlab-grader" in stack
def _get(name):
    if not _graded():
        raise NotImplementedError(name)
    return getattr(flowlab, name)
''',
}
#: honest styles of issue 27, each on the solution: full marks, no review, no note
HONEST_SETUP = '''
%load_ext autoreload
%autoreload 2
%pip install -q tqdm
from pathlib import Path
import operator
ACTIVATION = "exp"
'''
HONEST_AFFINE = ("        z[:, ~self.mask] = x_b * torch.exp(s) + t",
                 "        scale = getattr(torch, vars(AffineCoupling)[\"SCALE\"])\n"
                 "        z[:, ~self.mask] = operator.add(x_b * scale(s), t)")
HONEST_CLASS = ('    """z_A = x_A, z_B = x_B * exp(s(x_A)) + t(x_A)."""\n',
                '    """z_A = x_A, z_B = x_B * exp(s(x_A)) + t(x_A)."""\n\n    SCALE = ACTIVATION\n'
                '    HERE = Path(".")\n')


def _insert_after_setup(nb, source: str):
    nb = copy.deepcopy(nb)
    index = next(i for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("locked"))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return nb


def _submissions(solution, release):
    subs = {}
    subs["t_solution"] = (solution, set())
    subs["t_release"] = (release, ALL)
    subs["t_release_ast_hook"] = (_insert_after_setup(release, AST_HOOK), ALL)
    # a correct submission with an innocent-looking hook: graded on its values (full marks)
    subs["t_solution_ast_hook"] = (_insert_after_setup(solution, AST_HOOK), set())
    # the grader's tolerance cannot be patched: the wrong coupling still fails, nothing else does
    subs["t_patch_torch"] = (_insert_after_setup(patch(solution, *WRONG_AFFINE), PATCH_TORCH),
                             {"affine_forward"})
    subs["t_tensor_subclass"] = (patch(patch(solution, *WRONG_AFFINE),
                                       "        return z, s.sum(dim=1)",
                                       "        return z.as_subclass(_Agreeable), s.sum(dim=1)"),
                                 {"affine_forward"})
    subs["t_tensor_subclass"] = (_insert_after_setup(subs["t_tensor_subclass"][0], TENSOR_SUBCLASS),
                                 {"affine_forward"})
    # delegation to flowlab's reference, three ways: a direct import, an alias, exec of its source
    # (the affine coupling only: with separation the reference is a stub, so the part is lost)
    delegate = ("\nclass AffineCoupling(Transform):\n    def __init__(self, mask, conditioner):\n"
                "        super().__init__()\n        self.mask = mask\n"
                "        self.ref = _Ref(_Mask(mask), conditioner=conditioner, scale_bound=None)\n"
                "    def forward(self, x):\n        return self.ref(x)\n"
                "    def inverse(self, z):\n        return self.ref.inverse(z)\n")
    subs["t_delegate_import"] = (_append(solution,
        "from flowlab.transforms.coupling import AffineCoupling as _Ref\n"
        "from flowlab.transforms.masks import Mask as _Mask\n" + delegate), AFFINE)
    subs["t_delegate_alias"] = (_append(solution,
        "import flowlab as _fl\n_Ref, _Mask = _fl.AffineCoupling, _fl.Mask\n" + delegate), AFFINE)
    subs["t_delegate_exec"] = (_append(solution,
        "import flowlab.transforms.coupling, flowlab.transforms.masks\n"
        "_src = open(flowlab.transforms.coupling.__file__).read()\n"
        "_ns = {'__name__': 'flowlab.transforms._copy', '__package__': 'flowlab.transforms'}\n"
        "exec(_src, _ns)\n_Ref, _Mask = _ns['AffineCoupling'], flowlab.transforms.masks.Mask\n"
        + delegate), AFFINE)
    # the kernel dies inside a hidden call (only there: the visible checks use float32)
    subs["t_exit_in_hidden_call"] = (patch(solution,
        "        x_a, x_b = x[:, self.mask], x[:, ~self.mask]\n        s, t",
        "        if x.dtype == torch.float64:\n            os._exit(3)\n"
        "        x_a, x_b = x[:, self.mask], x[:, ~self.mask]\n        s, t"), {"affine_forward"})
    # honest stderr: tqdm in the training loop, warnings, logging and prints to stderr
    subs["t_stderr"] = (patch(patch(solution,
        "    for _ in range(steps):\n",
        "    import sys, logging, warnings\n    from tqdm.auto import tqdm\n"
        "    print('training', file=sys.stderr)\n    logging.getLogger('student').warning('go')\n"
        "    warnings.warn('a student warning')\n    for _ in tqdm(range(steps)):\n"),
        "        z = x.clone()\n        z[:, ~self.mask] = x_b + self.conditioner(x_a)",
        "        print('debug: additive forward', x.shape, file=sys.stderr)\n"
        "        z = x.clone()\n        z[:, ~self.mask] = x_b + self.conditioner(x_a)"), set())
    subs["t_stderr"] = (_insert_after_setup(subs["t_stderr"][0], "import sys"), set())
    # leaks: hidden inputs in an exception message and in a display updated from a hidden call
    subs["t_leak_message"] = (patch(solution,
        "        x_a, x_b = x[:, self.mask], x[:, ~self.mask]\n        s, t",
        "        if x.dtype == torch.float64:\n            raise ValueError('inputs ' + repr(x.tolist()))\n"
        "        x_a, x_b = x[:, self.mask], x[:, ~self.mask]\n        s, t"), {"affine_forward"})
    subs["t_leak_display"] = (_insert_after_setup(patch(solution,
        "    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:\n        ### BEGIN SOLUTION\n"
        "        x_a, x_b = x[:, self.mask], x[:, ~self.mask]\n        z = x.clone()",
        "    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:\n        ### BEGIN SOLUTION\n"
        "        if x.dtype == torch.float64:  # the grader's hidden calls\n"
        "            _handle.update('LEAK ' + repr(x.tolist()))\n            print('LEAK', x.tolist())\n"
        "        x_a, x_b = x[:, self.mask], x[:, ~self.mask]\n        z = x.clone()"),
        "from IPython.display import display\n_handle = display('placeholder', display_id=True)"),
        set())
    # cross-part: a broken coupling does not cost the RealNVP or training parts
    subs["t_cross_part"] = (patch(solution, "return z, s.sum(dim=1)", "return z, -s.sum(dim=1)"),
                            {"affine_forward"})
    subs.update(_hostile_and_honest(solution, release))
    return subs


def _append(nb, source: str):
    """``nb`` with one more code cell at the end (it runs after every solution cell)."""
    nb = copy.deepcopy(nb)
    nb.cells.append(nbformat.v4.new_code_cell(source))
    return nb


def _hostile_and_honest(solution, release):
    subs = {name: (_append(release, attack + WRAPPERS), ALL) for name, attack in HOSTILE.items()}
    honest = _insert_after_setup(patch(patch(solution, *HONEST_AFFINE), *HONEST_CLASS),
                                 HONEST_SETUP)
    subs["s_honest_styles"] = (honest, set())
    return subs


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    with shared_run(tmp_path_factory, "trust-a2") as (folder, first):
        course = make_course(folder, [A]) if first else None
        if course is None:
            from nbgrader_course import Course

            course = Course(folder / "course")
        solution, release = course.source_notebook(A), course.release_notebook(A)
        subs = _submissions(solution, release)
        if first:
            for student, (nb, _) in subs.items():
                course.submit(student, A, nb)
            course.nbgrader("autograde", A, timeout=2400)
            course.nbgrader("generate_feedback", A, timeout=900)
        yield course, subs, grade_cells(solution)


def _lost(course, student, points):
    scores = course.scores(A)[student]
    return {p for p, full in points.items() if scores[p] < full}


def test_each_submission_loses_exactly_what_it_broke(graded):
    course, subs, points = graded
    wrong = {s: (_lost(course, s, points), expected) for s, (_, expected) in subs.items()
             if _lost(course, s, points) != expected}
    assert wrong == {}, json.dumps({s: [sorted(a), sorted(b)] for s, (a, b) in wrong.items()})


def _flags(course, student):
    return course.autograded(student, A).metadata.get("flowlab", {}).get("flags", [])


def test_static_findings_are_notes_that_cost_nothing(graded):
    """The static reader's findings reach the instructor as notes; nothing is held for review."""
    course, subs, _ = graded
    for student in subs:
        kinds = {f["kind"] for f in _flags(course, student)}
        assert kinds <= {"note", "delegation", "failure", "timeout", "kernel_died"}, (student, kinds)
        assert "undecidable" not in kinds
    notes = " ".join(f["message"] for f in _flags(course, "t_delegate_import"))
    assert "AffineCoupling" in notes and "no points depend on it" in notes
    assert "note" in {f["kind"] for f in _flags(course, "t_patch_torch")}
    assert _flags(course, "t_solution") == []
    assert _flags(course, "s_honest_styles") == []   # honest styles: not even a note


def test_hostile_class_scores_at_most_fair_and_delegation_teaches(graded):
    course, subs, points = graded
    scores = course.scores(A)
    for student in HOSTILE:
        assert sum(scores[student].values()) == 0, (student, scores[student])
    nb = course.autograded("h_importlib", A)
    errors = [o.evalue for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"
              and c.metadata.get("nbgrader", {}).get("grade_id") == "affine_forward"]
    assert errors and "ReferenceUnavailable" in errors[0] and "yourself" in errors[0], errors
    assert sum(scores["t_release"].values()) == 0   # the empty release scores 0
    assert scores["s_honest_styles"] == points


def test_messages_teach_and_name_the_idea(graded):
    course, _, _ = graded
    nb = course.autograded("t_cross_part", A)
    errors = [o.evalue for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"
              and c.metadata.get("nbgrader", {}).get("grade_id") == "affine_forward"]
    assert errors and "log|det Df|" in errors[0] and "sign" in errors[0], errors
    nb = course.autograded("t_exit_in_hidden_call", A)
    text = json.dumps(nb)
    assert "kernel died" in text


def _encodings(text: str) -> list[str]:
    raw = text.encode()
    return [text, base64.b64encode(raw).decode()[:40], raw.hex()[:40], text[::-1]]


def test_nothing_hidden_reaches_the_notebook_or_the_feedback(graded):
    course, _, _ = graded
    decimals = re.compile(r"\d\.\d{10,}")  # hidden inputs: float64 reprs (timestamps have 6)
    for student in ("t_leak_message", "t_leak_display", "h_ipython_hooks"):
        nb_text = json.dumps(course.autograded(student, A))
        feedback = (course.root / "feedback" / student / A / f"{A}.html").read_text()
        for text in (nb_text, feedback):
            assert "LEAK [" not in text and not decimals.search(text.split("application/vnd")[0]), student
            assert "flowlab-grade" not in feedback and "_flowlab_probe" not in text
            # the probe request in any encoding the student might choose
            for encoded in _encodings("_flowlab_probe("):
                assert encoded not in text, (student, encoded)
    display = json.dumps(course.autograded("t_leak_display", A))
    assert "placeholder" in display


# ------------------------------------------------------------------ the same class, in parallel
@pytest.fixture(scope="module")
def graded_parallel(tmp_path_factory):
    with shared_run(tmp_path_factory, "trust-a2-parallel") as (folder, first):
        course = make_course(folder, [A]) if first else None
        if course is None:
            from nbgrader_course import Course

            course = Course(folder / "course")
        solution, release = course.source_notebook(A), course.release_notebook(A)
        subs = {"t_release": (release, ALL), **_hostile_and_honest(solution, release)}
        if first:
            import os

            from flowlab_course.parallel import autograde_parallel

            for student, (nb, _) in subs.items():
                course.submit(student, A, nb)
            cwd = os.getcwd()
            try:
                os.chdir(course.root)   # nbgrader_config.py is read from the course folder
                results = autograde_parallel(str(course.root), A, workers=2, progress=False)
            finally:
                os.chdir(cwd)
            assert all(r.ok for r in results), [r for r in results if not r.ok]
        yield course, subs, grade_cells(solution)


def test_hostile_class_in_parallel_scores_at_most_fair(graded_parallel):
    course, subs, points = graded_parallel
    scores = course.scores(A)
    for student, (_, lost) in subs.items():
        got = {p for p, full in points.items() if scores[student][p] < full}
        assert got == lost, (student, sorted(got))
    assert _flags(course, "s_honest_styles") == []
