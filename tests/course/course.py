"""A small synthetic nbgrader course for the grading tests and benchmarks.

One assignment ``ps1`` with one notebook: a solution cell (``square``), a visible test (1 point)
and a hidden test (2 points).  :func:`make_course` writes the course and generates the student
release; :func:`submit` writes a student's submission from the release, with the solution
region replaced.  :func:`once_per_session` runs an expensive grading once per test session,
however many pytest-xdist workers ask for it.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

import nbformat

ASSIGNMENT = "ps1"
HIDDEN_MARKER = "HIDDEN_MARKER_4711"
CORRECT = "def square(x):\n    return x * x\n"
MISTAKEN = "def square(x):\n    return abs(x) * x\n"  # right for x >= 0: 1 of 3 points

CONFIG = """\
c = get_config()
c.CourseDirectory.course_id = "synthetic"
c.Execute.timeout = {timeout}
c.Execute.shutdown_kernel = "immediate"   # as the course does: the sandbox dies with the kernel
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
from flowlab_course.sandbox import configure
configure(c, enabled={enabled}, memory_mb=1536, cpu_seconds=120, processes=64,
          scratch_mb=64, file_size_mb=16)
"""


def _cell(kind: str, source: str, grade_id: str | None = None, points: float = 0,
          solution: bool = False, grade: bool = False):
    cell = (nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell)(source)
    if grade_id:
        cell.metadata["nbgrader"] = {"grade_id": grade_id, "grade": grade, "solution": solution,
                                     "locked": not solution, "schema_version": 3}
        if grade:
            cell.metadata["nbgrader"]["points"] = points
    return cell


def source_notebook():
    cells = [
        _cell("markdown", "Write `square(x)` that returns $x^2$."),
        _cell("code", "def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n"
                      "    ### END SOLUTION", "square", solution=True),
        _cell("code", "assert square(3) == 9, 'square(3) should be 9'", "test_visible",
              points=1, grade=True),
        _cell("code", "assert square(2) == 4\n### BEGIN HIDDEN TESTS\n# " + HIDDEN_MARKER
              + "\nassert square(-4) == 16, 'negative inputs: (-4)**2 = 16'\n"
              "### END HIDDEN TESTS", "test_hidden", points=2, grade=True),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def nbgrader(course: str, *args: str, check: bool = True, env: dict | None = None):
    """Run the nbgrader CLI in ``course``."""
    env = dict(os.environ if env is None else env)
    # nbgrader creates a new gradebook with the `alembic` script of its environment
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course,
                            capture_output=True, text=True, env=env, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result


def make_course(root: str, timeout: int = 8, sandbox: str = "None") -> str:
    """Write the course into ``root`` and generate the release; return ``root``."""
    os.makedirs(os.path.join(root, "source", ASSIGNMENT), exist_ok=True)
    with open(os.path.join(root, "nbgrader_config.py"), "w") as handle:
        handle.write(CONFIG.format(timeout=timeout, enabled=sandbox))
    nbformat.write(source_notebook(), os.path.join(root, "source", ASSIGNMENT, ASSIGNMENT + ".ipynb"))
    nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")
    return root


def submit(root: str, student: str, solution: str) -> str:
    """Submit ``solution`` (the code of the solution cell) as ``student``; return the path."""
    release = os.path.join(root, "release", ASSIGNMENT, ASSIGNMENT + ".ipynb")
    nb = nbformat.read(release, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "square":
            cell.source = f"# STUDENT_{student}_MARK\n" + textwrap.dedent(solution)
    folder = os.path.join(root, "submitted", student, ASSIGNMENT)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, ASSIGNMENT + ".ipynb")
    nbformat.write(nb, path)
    with open(os.path.join(folder, "timestamp.txt"), "w") as handle:
        handle.write("2030-01-01 12:00:00.000000 UTC")
    return path


def scores(root: str) -> dict[str, dict[str, float]]:
    """``{student: {grade_id: auto_score}}`` read from the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    out: dict[str, dict[str, float]] = {}
    with Gradebook("sqlite:///" + os.path.join(root, "gradebook.db")) as gb:
        for student in gb.students:
            try:
                sub = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student.id)
            except MissingEntry:   # a student without this submission
                continue
            out[student.id] = {g.name: g.auto_score for g in sub.grades}
    return out


def autograded_text(root: str, student: str) -> str:
    """The autograded notebook of ``student`` as text (sources and outputs)."""
    path = os.path.join(root, "autograded", student, ASSIGNMENT, ASSIGNMENT + ".ipynb")
    with open(path) as handle:
        return handle.read()


def once_per_session(tmp_path_factory, name: str, build: Callable[[str], dict]) -> dict:
    """``build(folder)`` once per test session, shared by all pytest-xdist workers.

    ``build`` works in a fresh ``folder`` and returns a JSON-serialisable dict.  The first
    worker that asks runs it (under a file lock) and stores the result; the others wait for the
    lock and read the result (``folder`` and what ``build`` wrote there stay for the session).
    Without xdist, ``build`` simply runs.  Grading the same class twice at once, once on each
    worker, would only load the machine and the tests' timeouts.
    """
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        return build(str(tmp_path_factory.mktemp(name)))
    shared = tmp_path_factory.getbasetemp().parent / f"{name}-{run}"  # common to the workers
    shared.mkdir(exist_ok=True)
    result = shared / "result.json"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            try:
                value = {"ok": build(str(shared / "work"))}
            except BaseException as err:  # the other workers report it rather than rebuild
                value = {"error": f"{type(err).__name__}: {err}"}
                result.write_text(json.dumps(value))
                raise
            result.write_text(json.dumps(value))
    value = json.loads(result.read_text())
    if "error" in value:
        raise RuntimeError(f"{name} failed on another pytest-xdist worker: {value['error']}")
    return value["ok"]
