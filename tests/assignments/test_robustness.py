"""Submissions that try to crash, hang, flood or fool the grader (assignment 1, one autograde run).

Each hostile submission must lose exactly the points of what it broke, the other students
must be graded normally, and the gradebook must stay consistent.
"""

from __future__ import annotations

import copy
import csv

import pytest

import json

from nbgrader_course import Course, grade_cells, make_course, patch, shared_run

A = "01_change_of_variables"
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("robustness")]

CELL_TIMEOUT = 20  # seconds; the course uses 60, a shorter one keeps this test quick


def _without_cell(nb, grade_id):
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != grade_id]
    return nb


def _edit_cell(nb, grade_id, source):
    nb = copy.deepcopy(nb)
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            c.source = source
    return nb


def _submissions(solution):
    subs = {}
    # an infinite loop: the cell times out, the rest is graded
    subs["r1_infinite_loop"] = (patch(
        solution, "return torch.where(inside, 2 * x, torch.zeros_like(x))\n    ### END SOLUTION",
        "return torch.where(inside, 2 * x, torch.zeros_like(x))\n    ### END SOLUTION\n\nwhile True:\n    pass",
    ), {"density_uniform"})
    # the kernel dies (exit) in the cell that defines TriangularLinear
    subs["r2_kernel_exit"] = (patch(
        solution, 'class TriangularLinear(Transform):',
        'import os\nos._exit(1)\n\nclass TriangularLinear(Transform):',
    ), {"triangular_forward", "triangular_inverse"})
    # memory exhaustion: a 64 GiB allocation before the class is defined
    subs["r3_memory_hog"] = (patch(
        solution, 'class LeakyReLU(Transform):',
        'hog = torch.empty(16 * 2**30, dtype=torch.float32)\n\nclass LeakyReLU(Transform):',
    ), {"leaky_forward", "leaky_inverse"})
    # killed like the OOM killer does (SIGKILL) in the permutation cell
    subs["r4_sigkill"] = (patch(
        solution, 'class Permutation(Transform):',
        'import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n\nclass Permutation(Transform):',
    ), {"permutation"})
    # megabytes of output: limited, and printing is not an error
    subs["r5_big_output"] = (patch(
        solution, "    return torch.where(positive, log_p, torch.full_like(x, -math.inf))\n    ### END SOLUTION",
        "    return torch.where(positive, log_p, torch.full_like(x, -math.inf))\n    ### END SOLUTION\n\n"
        "print('x' * 5_000_000)\nfor i in range(20000):\n    print(i)",
    ), set())
    # wrong inverse + its test cell emptied; wrong permutation + its test cell deleted
    tampered = patch(solution, "x = torch.where(z >= 0, z, z / a)", "x = torch.where(z >= 0, z, z * a)")
    tampered = patch(tampered, "return z[:, torch.argsort(self.perm)]", "return z[:, self.perm]")
    tampered = _edit_cell(tampered, "leaky_inverse", "pass")
    tampered = _without_cell(tampered, "permutation")
    subs["r6_tampered_tests"] = (tampered, {"leaky_inverse", "permutation"})
    # delegation: subclassing the reference, and calling it inside forward
    delegating = patch(
        solution, "class TriangularLinear(Transform):",
        "from flowlab.transforms.linear import TriangularLinear as _Reference\n\n"
        "class TriangularLinear(_Reference):\n    pass\n\nclass _Unused(Transform):",
    )
    delegating = patch(
        delegating,
        "        a = self.negative_slope\n        z = torch.where(x >= 0, x, a * x)",
        "        from flowlab.transforms.pointwise import LeakyReLU as _R\n"
        "        return _R(self.negative_slope).forward(x)\n"
        "        a = self.negative_slope\n        z = torch.where(x >= 0, x, a * x)",
    )
    # delegation: the reference is a stub in the grading kernel (separation, issue 27), so what
    # calls it loses its part; the student's own leaky inverse is graded on its values
    subs["r7_delegation"] = (delegating, {"triangular_forward", "triangular_inverse", "leaky_forward"})
    # monkeypatching torch and flowlab's own checks, with a wrong permutation inverse: the hidden
    # tests run in the grader's process, so this changes nothing (and is reported as a note)
    patched = patch(solution, "return z[:, torch.argsort(self.perm)]", "return z[:, self.perm]")
    patched = patch(
        patched, "class Permutation(Transform):",
        "import flowlab.testing\n"
        "torch.allclose = lambda *a, **k: True\n"
        "torch.Tensor.allclose = lambda *a, **k: True\n"
        "torch.equal = lambda *a, **k: True\n"
        "flowlab.testing.check_transform = lambda *a, **k: None\n\n"
        "class Permutation(Transform):",
    )
    subs["r8_monkeypatch"] = (patched, {"permutation"})
    # warnings on stderr from a correct solution (a torch UserWarning and a plain one)
    subs["r9_warnings"] = (patch(
        solution, "        a = self.negative_slope\n        z = torch.where(x >= 0, x, a * x)",
        "        warnings.warn('a harmless warning from the student')\n"
        "        float(torch.ones((), requires_grad=True) * 2)  # torch warns on stderr\n"
        "        a = self.negative_slope\n        z = torch.where(x >= 0, x, a * x)",
    ), set())
    # graded after all of the above
    subs["z_after"] = (solution, set())
    return subs


class _Run:
    def __init__(self, folder, first: bool) -> None:
        if first:
            course = make_course(folder, [A])
            for student, (nb, _) in _submissions(course.source_notebook(A)).items():
                course.submit(student, A, nb)
            proc = course.nbgrader("autograde", A, f"--Execute.timeout={CELL_TIMEOUT}", check=False)
            (folder / "record.json").write_text(json.dumps(
                {"returncode": proc.returncode, "stderr": proc.stderr[-6000:]}))
        record = json.loads((folder / "record.json").read_text())
        self.course = Course(folder / "course")
        solution = self.course.source_notebook(A)
        self.subs = _submissions(solution)
        self.points = grade_cells(solution)
        self.returncode, self.stderr = record["returncode"], record["stderr"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with shared_run(tmp_path_factory, "robustness") as (folder, first):
        r = _Run(folder, first)
    return r.course, r.subs, r.points, r


@pytest.mark.parametrize("student", [
    "r1_infinite_loop", "r2_kernel_exit", "r3_memory_hog", "r4_sigkill", "r5_big_output",
    "r6_tampered_tests", "r7_delegation", "r8_monkeypatch", "r9_warnings", "z_after",
])
def test_loses_exactly_what_it_broke(run, student) -> None:
    course, subs, points, proc = run
    scores = course.scores(A)
    assert student in scores, f"{student} was not graded:\n{proc.stderr[-3000:]}"
    broken = subs[student][1]
    expected = {k: (0.0 if k in broken else v) for k, v in points.items()}
    assert scores[student] == expected, proc.stderr[-3000:]


def test_grading_run_completes_and_gradebook_is_intact(run) -> None:
    course, subs, points, proc = run
    assert proc.returncode == 0, proc.stderr[-4000:]
    course.nbgrader("export", "--to", "grades.csv")
    with open(course.root / "grades.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["student_id"] for r in rows} == set(subs)
    assert all(float(r["max_score"]) == sum(points.values()) for r in rows)


def test_output_is_limited(run) -> None:
    course, *_ = run
    nb = course.autograded("r5_big_output", A)
    size = sum(len(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert size < 50_000, size


def test_messages_explain(run) -> None:
    course, *_ = run

    def message(student, grade_id):
        nb = course.autograded(student, A)
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
        return " ".join(o.get("evalue", "") for o in cell.outputs if o.output_type == "error")

    assert "reference" in message("r7_delegation", "leaky_forward")
    # (the subclass already fails the visible test: the reference has no `weight` tensor)
    assert message("r7_delegation", "triangular_forward")
    assert "argsort" in message("r8_monkeypatch", "permutation")
    nb = course.autograded("r2_kernel_exit", A)
    assert any(o.get("ename") == "DeadKernelError" for c in nb.cells if c.cell_type == "code"
               for o in c.outputs)
