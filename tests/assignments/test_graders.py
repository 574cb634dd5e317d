"""Fast, in-process checks of the graders — no nbgrader, no kernel (the trusted framework's LocalBridge).

The setup and solution cells of each source notebook are executed in a namespace; the hidden
tests (found from the ``# flowlab-grade:`` directives of the test cells) then call that namespace
through :class:`flowlab_course.trusted.bridge.LocalBridge`, the same kernel-side code and wire
format as a real kernel.  Every part must accept the solution; every mistake of the catalogue
must fail the part it breaks, with a message, at every grading (fresh random inputs each time)
and no other part.  (The slow round trips repeat this through the nbgrader CLI.)
"""

from __future__ import annotations

import re
import subprocess
import sys

import matplotlib
import nbformat
import pytest
import torch

from catalogue import CATALOGUE
from nbgrader_course import ASSIGNMENTS, patch

matplotlib.use("Agg")

ASSIGNMENT_IDS = sorted(CATALOGUE)
REPEATS = 20  # gradings of each mistake in CI; benchmarks/grading_determinism.py does 100
_DIRECTIVE = re.compile(r"#\s*flowlab-grade:\s*(\w+\.\w+)")
SLOW_PARTS = {"training"}  # parts that train a model (seconds each)


def _source(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(ASSIGNMENTS / "source" / assignment / f"{assignment}.ipynb", as_version=4)


def _namespace(nb: nbformat.NotebookNode) -> dict:
    """Run the setup and solution cells (not tests, not plots) in a fresh namespace."""
    ns: dict = {"__name__": "__student__"}
    for cell in nb.cells:
        kind = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (kind.get("solution") or (kind.get("locked") and not kind.get("grade"))):
            exec(compile(cell.source, f"<{kind.get('grade_id')}>", "exec"), ns)
    return ns


def _parts(assignment: str) -> dict[str, str]:
    """``grade_id -> part key`` from the test cells' directives."""
    out = {}
    for c in _source(assignment).cells:
        meta = c.metadata.get("nbgrader", {})
        if meta.get("grade") and c.cell_type == "code":
            match = _DIRECTIVE.search(c.source)
            assert match, f"{assignment}: test cell {meta['grade_id']} has no flowlab-grade directive"
            out[meta["grade_id"]] = match.group(1)
    return out


def _grade(key: str, ns: dict):
    from flowlab_course.trusted.bridge import LocalBridge
    from flowlab_course.trusted.parts import lookup

    return lookup(key).grade(LocalBridge(ns))


@pytest.fixture(autouse=True)
def _restore_torch():
    state = torch.get_default_dtype(), torch.get_num_threads()
    yield
    torch.set_default_dtype(state[0])
    torch.set_num_threads(state[1])


def _param(part: str, *values, id=None):
    marks = [pytest.mark.slow] if part in SLOW_PARTS else []
    return pytest.param(*values, marks=marks, id=id)


@pytest.mark.parametrize("assignment, grade_id", [_param(g, a, g, id=f"{a}-{g}")
                                                  for a in ASSIGNMENT_IDS for g in _parts(a)])
def test_solution_passes_every_part(assignment: str, grade_id: str) -> None:
    assert _grade(_parts(assignment)[grade_id], _namespace(_source(assignment))) is None


@pytest.mark.parametrize("assignment, mistake",
                         [_param(m.part, a, m, id=f"{a}-{m.name}")
                          for a in ASSIGNMENT_IDS for m in CATALOGUE[a]])
def test_mistake_fails_its_own_part_at_every_grading_and_no_other(assignment: str, mistake) -> None:
    from flowlab_course.graders.errors import GradingFailure

    parts = _parts(assignment)
    ns = _namespace(patch(_source(assignment), mistake.old, mistake.new))
    repeats = 3 if mistake.part in SLOW_PARTS else REPEATS
    for _ in range(repeats):
        with pytest.raises(GradingFailure) as info:
            _grade(parts[mistake.part], ns)
        assert len(info.value.message) > 30, info.value.message
    for grade_id, key in parts.items():
        if grade_id != mistake.part and grade_id not in SLOW_PARTS:
            assert _grade(key, ns) is None, f"{mistake.name} also fails {grade_id}"


def test_every_test_cell_names_a_registered_part() -> None:
    from flowlab_course.trusted.parts import lookup

    for a in ASSIGNMENT_IDS:
        for grade_id, key in _parts(a).items():
            assert lookup(key).key == key


def test_every_reference_of_every_part_exists_in_flowlab() -> None:
    """A reference that does not resolve (a renamed class) would silently never match."""
    import importlib

    from flowlab_course.trusted.parts import lookup

    for a in ASSIGNMENT_IDS:
        for key in _parts(a).values():
            part = lookup(key)
            for ref in (*part.reference, *part.reference_functions):
                pieces, obj = ref.split("."), None
                for cut in range(len(pieces), 0, -1):
                    try:
                        obj = importlib.import_module(".".join(pieces[:cut]))
                    except ImportError:
                        continue
                    for name in pieces[cut:]:
                        obj = getattr(obj, name)
                    break
                assert obj is not None, f"{key}: reference {ref} does not exist"


def test_source_notebooks_are_up_to_date() -> None:
    proc = subprocess.run([sys.executable, str(ASSIGNMENTS / "build_source.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
