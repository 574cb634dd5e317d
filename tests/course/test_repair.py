"""One notebook never stops the class: structural defects are repaired from the release or zeroed.

The fast tests check :func:`flowlab_course.repair.inspect_notebook` on each defect; the slow
one grades a class with one notebook per defect through ``make autograde`` (the preflight and
the nbgrader CLI), and the same class with ``python -m flowlab_course autograde -j 2``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import course as synthetic
from flowlab_course.repair import inspect_notebook, release_view

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FULL = {"test_visible": 1.0, "test_hidden": 2.0}
ZERO = {"test_visible": 0.0, "test_hidden": 0.0}


def _release() -> dict:
    """The release notebook of the synthetic course, as JSON, with a correct solution."""
    nb = release_view(synthetic.source_notebook())
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "square":
            cell.source = synthetic.CORRECT
    return json.loads(nbformat.writes(nb))


def _index(nb: dict, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb["cells"])
                if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def _old_schema(nb):
    nb["cells"][_index(nb, "square")]["metadata"]["nbgrader"]["schema_version"] = 1
    return nb


def _new_schema(nb):
    for cell in nb["cells"]:
        if "nbgrader" in cell["metadata"]:
            cell["metadata"]["nbgrader"]["schema_version"] = 4
    return nb


def _copied_cells(nb):
    """The student copied the test cell above the solution, and the solution cell below it."""
    solution = nb["cells"][_index(nb, "square")]
    test = copy.deepcopy(nb["cells"][_index(nb, "test_visible")])
    wrong = copy.deepcopy(solution)
    wrong["source"] = "def square(x):\n    return 0\n"    # an early attempt, superseded
    nb["cells"].insert(_index(nb, "square"), test)
    nb["cells"].insert(_index(nb, "square"), wrong)
    return nb


def _missing_id(nb):
    del nb["cells"][_index(nb, "square")]["metadata"]["nbgrader"]["grade_id"]
    return nb


def _no_metadata(nb):
    """Pasted into a fresh notebook: no nbgrader metadata anywhere."""
    for cell in nb["cells"]:
        cell["metadata"].pop("nbgrader", None)
    return nb


def _markdown_cell(nb):
    cell = nb["cells"][_index(nb, "square")]
    cell["cell_type"] = "markdown"
    cell.pop("outputs", None)
    cell.pop("execution_count", None)
    return nb


def _deleted_test(nb):
    del nb["cells"][_index(nb, "test_hidden")]
    return nb


def _reordered(nb):
    cells = nb["cells"]
    solution = cells.pop(_index(nb, "square"))
    cells.append(solution)                          # the solution after both tests
    return nb


def _deleted_solution(nb):
    del nb["cells"][_index(nb, "square")]
    return nb


#: defect -> (build, expected status, expected scores)
DEFECTS = {
    "old_schema": (_old_schema, "repaired", FULL),
    "new_schema": (_new_schema, "repaired", FULL),
    "copied_cells": (_copied_cells, "repaired", FULL),
    "missing_id": (_missing_id, "repaired", FULL),
    "no_metadata": (_no_metadata, "repaired", FULL),
    "markdown_cell": (_markdown_cell, "repaired", FULL),
    "deleted_test": (_deleted_test, "repaired", FULL),
    "reordered": (_reordered, "repaired", FULL),
    "deleted_solution": (_deleted_solution, "repaired", ZERO),
}
UNREADABLE = {"invalid_json": b'{"cells": [ this is not JSON',
              "not_a_notebook": b'["a", "list"]'}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_structural_defect_is_found_and_repaired(defect):
    build, status, _ = DEFECTS[defect]
    template = release_view(synthetic.source_notebook())
    check = inspect_notebook(json.dumps(build(_release())), template, "ps1")
    assert check.status == status and check.defects, check
    nb = check.notebook
    nbformat.validate(nb)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    assert [i for i in ids if i] == ["square", "test_visible", "test_hidden"]  # release order
    solution = nb.cells[ids.index("square")]
    assert solution.cell_type == "code" and solution.metadata.nbgrader["schema_version"] == 3
    if defect == "deleted_solution":
        assert "NotImplementedError" in solution.source
        assert any("'square' is missing" in d for d in check.defects)
    else:
        assert solution.source.strip() == synthetic.CORRECT.strip()
    flag = check.flag()
    assert flag["kind"] == "repaired" and "restored" in flag["message"]


def test_a_clean_notebook_is_left_as_it_is():
    template = release_view(synthetic.source_notebook())
    check = inspect_notebook(json.dumps(_release()), template, "ps1")
    assert check.status == "ok" and check.notebook is None and check.flag() is None


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_an_unreadable_file_says_why(name):
    template = release_view(synthetic.source_notebook())
    check = inspect_notebook(UNREADABLE[name], template, "ps1")
    assert check.status == "unreadable"
    assert ("invalid JSON" if name == "invalid_json" else "not a notebook") in check.defects[0]
    assert check.flag()["kind"] == "unreadable"


def test_copied_cells_keep_the_last_copy_and_the_students_own_cells():
    template = release_view(synthetic.source_notebook())
    nb = _release()
    helper = nbformat.v4.new_code_cell("HELPER = 1")
    nb["cells"].insert(_index(nb, "square") + 1, json.loads(json.dumps(helper)))
    check = inspect_notebook(json.dumps(_copied_cells(nb)), template, "ps1")
    sources = [c.source for c in check.notebook.cells]
    assert "HELPER = 1" in sources                          # travels with its solution cell
    assert sources.index("HELPER = 1") == sources.index(synthetic.CORRECT) + 1
    assert "def square(x):\n    return 0\n" in sources       # an earlier copy stays, demoted
    assert sources.index("def square(x):\n    return 0\n") < sources.index(synthetic.CORRECT)


def _digests(root: str) -> dict[str, str]:
    out = {}
    for top, _, files in os.walk(os.path.join(root, "submitted")):
        for name in files:
            with open(os.path.join(top, name), "rb") as handle:
                out[os.path.join(top, name)] = hashlib.sha256(handle.read()).hexdigest()
    return out


def _defective_class(root: str) -> str:
    """ada and zoe (correct) around one student per defect, alphabetically in between."""
    synthetic.make_course(root)
    synthetic.submit(root, "ada", synthetic.CORRECT)
    synthetic.submit(root, "zoe", synthetic.CORRECT)
    for defect, (build, _, _) in {**DEFECTS, **{k: (None, None, None) for k in UNREADABLE}}.items():
        path = synthetic.submit(root, defect, synthetic.CORRECT)
        with open(path, "rb") as handle:
            nb = json.load(handle)
        data = UNREADABLE[defect] if build is None else json.dumps(build(nb)).encode()
        with open(path, "wb") as handle:
            handle.write(data)
    return root


def _check_class(root: str, originals: dict[str, str]) -> None:
    from flowlab_course.report import class_report

    assert _digests(root) == originals                        # nothing the students made changed
    scores = synthetic.scores(root)
    assert scores["ada"] == FULL and scores["zoe"] == FULL
    for defect, (_, _, expected) in DEFECTS.items():
        assert scores[defect] == expected, defect
    for name in UNREADABLE:
        assert scores[name] == ZERO, name
    report = class_report(root, synthetic.ASSIGNMENT, os.path.join(root, "report"))
    flagged = {(f["student"], f["kind"]) for f in report.flags}
    for defect in DEFECTS:
        assert (defect, "repaired") in flagged, defect
    for name in UNREADABLE:
        assert (name, "unreadable") in flagged, name
    assert not any(s in ("ada", "zoe") for s, _ in flagged)
    assert not any(k == "not_graded" for _, k in flagged), flagged
    page = open(report.html_path, encoding="utf-8").read()
    assert "invalid JSON" in page and "schema_version 1" in page


@pytest.mark.slow
def test_make_autograde_grades_everyone_and_flags_the_defective(tmp_path):
    root = _defective_class(str(tmp_path / "course"))
    originals = _digests(root)
    venv = os.path.dirname(os.path.dirname(sys.executable))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        ["make", "-C", REPO, "-o", "venv", "-o", os.path.join(venv, ".installed"), "autograde",
         f"GRADING_COURSE={root}", f"VENV={venv}"],
        capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 unreadable" in result.stdout and "9 notebooks repaired" in result.stdout
    _check_class(root, originals)
    # feedback for everyone, the unreadable ones told why
    result = subprocess.run(
        ["make", "-C", REPO, "-o", "venv", "-o", os.path.join(venv, ".installed"), "feedback",
         f"GRADING_COURSE={root}", f"VENV={venv}"],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    page = open(os.path.join(root, "feedback", "invalid_json", "ps1", "ps1.html")).read()
    assert "could not be read" in page


@pytest.mark.slow
def test_parallel_cli_grades_everyone_and_flags_the_defective(tmp_path):
    from flowlab_course.__main__ import main

    root = _defective_class(str(tmp_path / "course"))
    originals = _digests(root)
    code = main(["autograde", synthetic.ASSIGNMENT, "--course", root, "-j", "2",
                 "--no-progress"])
    assert code == 0
    _check_class(root, originals)
    shutil.rmtree(os.path.join(root, "report"))
