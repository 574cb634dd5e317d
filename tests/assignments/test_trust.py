"""The trust boundary, through the real nbgrader CLI with the sandbox on (assignment 2, one run).

Whatever a student's cells do to their own interpreter, a hidden test's verdict depends only on
the values their code computes (the hidden tests run in the grader's process and receive plain
tensors).  One class of submissions, graded once per session, one per category of issue 12:

* **attacks** — hooks that rewrite later cells, monkeypatched torch, tensor subclasses, delegation
  to flowlab (import, alias, exec of its source), killing the kernel inside a hidden call;
* **stderr** — tqdm, logging, warnings and prints to ``sys.stderr`` never cost a point;
* **cross-part** — a broken coupling costs the coupling parts only;
* **leaks** — what a student prints or raises during a hidden call never reaches the notebook.
"""

from __future__ import annotations

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
    # a correct submission with an innocent-looking hook: held for review, never silently passed
    subs["t_solution_ast_hook"] = (_insert_after_setup(solution, AST_HOOK), ALL)
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
    subs["t_delegate_import"] = (patch(solution, AFFINE_CLASS,
        "from flowlab.transforms.coupling import AffineCoupling as _Ref\n"
        "from flowlab.transforms.masks import Mask as _Mask\n\n" + AFFINE_CLASS), AFFINE)
    subs["t_delegate_alias"] = (patch(solution, AFFINE_CLASS,
        "import flowlab as _fl\n_Helper = _fl.AffineCoupling\n\n" + AFFINE_CLASS), AFFINE)
    subs["t_delegate_exec"] = (patch(solution, AFFINE_CLASS,
        "import flowlab.transforms\n_src = open(flowlab.transforms.coupling.__file__).read()\n"
        "_ns = {'__name__': 'flowlab.transforms._copy', '__package__': 'flowlab.transforms'}\nexec(_src, _ns)\n\n" + AFFINE_CLASS), AFFINE)
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


def test_undecidable_and_delegation_are_flagged_for_the_instructor(graded):
    course, _, _ = graded
    kinds = {s: {f["kind"] for f in _flags(course, s)} for s in
             ("t_solution_ast_hook", "t_delegate_import", "t_delegate_alias", "t_delegate_exec",
              "t_patch_torch", "t_solution")}
    assert "undecidable" in kinds["t_solution_ast_hook"]
    assert "delegation" in kinds["t_delegate_import"] and "delegation" in kinds["t_delegate_alias"]
    assert "undecidable" in kinds["t_delegate_exec"]
    assert "note" in kinds["t_patch_torch"]          # reported, but it changed nothing
    assert kinds["t_solution"] == set()


def test_messages_teach_and_name_the_idea(graded):
    course, _, _ = graded
    nb = course.autograded("t_cross_part", A)
    errors = [o.evalue for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"
              and c.metadata.get("nbgrader", {}).get("grade_id") == "affine_forward"]
    assert errors and "log|det Df|" in errors[0] and "sign" in errors[0], errors
    nb = course.autograded("t_exit_in_hidden_call", A)
    text = json.dumps(nb)
    assert "kernel died" in text


def test_nothing_hidden_reaches_the_notebook_or_the_feedback(graded):
    course, _, _ = graded
    decimals = re.compile(r"\d\.\d{10,}")  # hidden inputs: float64 reprs (timestamps have 6)
    for student in ("t_leak_message", "t_leak_display"):
        nb_text = json.dumps(course.autograded(student, A))
        feedback = (course.root / "feedback" / student / A / f"{A}.html").read_text()
        for text in (nb_text, feedback):
            assert "LEAK [" not in text and not decimals.search(text.split("application/vnd")[0]), student
            assert "flowlab-grade" not in feedback and "_flowlab_probe" not in text
    display = json.dumps(course.autograded("t_leak_display", A))
    assert "placeholder" in display
