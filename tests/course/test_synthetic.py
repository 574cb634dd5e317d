"""The synthetic class generator on the four real assignments; the class benchmark, quick."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nbformat
import pytest

from flowlab_course.synthetic import (
    HOSTILE, PROPORTIONS, load_catalogue, patch, solution_submission, synthetic_class)

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "tests" / "assignments" / "catalogue.py"
ASSIGNMENTS = sorted(p.name for p in (ROOT / "assignments" / "source").iterdir() if p.is_dir())


def _notebooks(assignment: str):
    """The source notebook and a release made by nbgrader's own preprocessors."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    source = nbformat.read(ROOT / "assignments" / "source" / assignment / f"{assignment}.ipynb",
                           as_version=4)
    release, _ = ClearSolutions().preprocess(copy.deepcopy(source), {})
    release, _ = ClearHiddenTests().preprocess(release, {})
    return source, release


def _solution_cells(nb):
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_class_of_300_has_realistic_proportions_and_each_kind_is_what_it_says(assignment):
    source, release = _notebooks(assignment)
    mistakes = load_catalogue(str(CATALOGUE), assignment)
    assert len(mistakes) >= 5
    klass = synthetic_class(source, release, mistakes, 300, seed=1)
    assert len(klass) == 300
    counts = Counter(label.split(":")[0] for label, _ in klass.values())
    assert counts == {k: round(300 * v) for k, v in PROPORTIONS.items()}
    solution = solution_submission(source, release)
    answers = _solution_cells(solution)
    assert "BEGIN SOLUTION" not in "".join(answers.values())
    assert "NotImplementedError" not in "".join(answers.values())
    by_name = {m.name: m for m in mistakes}
    for student, (label, nb) in klass.items():
        kind, _, detail = label.partition(":")
        assert student.endswith(kind)
        cells = _solution_cells(nb)
        if kind == "correct":
            assert cells == answers
        elif kind == "empty":
            assert nb == release
        elif kind == "partial":
            assert cells[detail] == _solution_cells(release)[detail]
            assert sum(cells[k] != answers[k] for k in answers) == 1
        elif kind == "hostile":
            assert cells == answers and len(nb.cells) == len(release.cells) + 1
            assert any(c.source == HOSTILE[detail].rstrip() for c in nb.cells)
        else:
            names = detail.split("+")
            expected = solution
            for name in names:
                expected = patch(expected, by_name[name].old, by_name[name].new)
            assert nb == expected and nb != solution
            assert len({by_name[n].part for n in names}) == len(names)  # different parts
    # reproducible, and another seed draws another class
    again = synthetic_class(source, release, mistakes, 300, seed=1)
    assert [lab for lab, _ in again.values()] == [lab for lab, _ in klass.values()]
    other = synthetic_class(source, release, mistakes, 300, seed=2)
    assert [lab for lab, _ in other.values()] != [lab for lab, _ in klass.values()]


def test_patch_must_match_exactly_once():
    source, release = _notebooks(ASSIGNMENTS[0])
    with pytest.raises(ValueError, match="exactly once"):
        patch(source, "this text is in no notebook", "")


@pytest.mark.slow
def test_class_benchmark_quick_mode(tmp_path):
    """``benchmarks/grading_class.py --quick``: 12 students, 2 workers, same scores as nbgrader."""
    out = tmp_path / "result.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "grading_class.py"), "--quick", "--course",
         "synthetic", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["students"] == 12 and result["workers"] == 2
    assert result["scores_identical"] is True and result["mismatches"] == []
    assert result["graded_once"] is True
    for key in ("wall_s", "worker_s_per_submission", "record_s_per_submission",
                "scheduler_overhead_s_per_submission", "sequential_wall_s"):
        assert result[key] > 0, key
    assert set(result["projected_wall_s"]) >= {"2", "8", "32"}


def test_two_mistakes_on_the_same_code_fall_back_to_one():
    """The one-cell course: every mistake rewrites the same line, so none can be combined."""
    from flowlab_course.synthetic import Mistake

    def cell(source, grade_id, solution):
        c = nbformat.v4.new_code_cell(source)
        c.metadata["nbgrader"] = {"grade_id": grade_id, "solution": solution, "grade": False}
        return c

    source = nbformat.v4.new_notebook(cells=[
        cell("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
             "square", True), cell("assert square(3) == 9", "test", False)])
    release = nbformat.v4.new_notebook(cells=[
        cell("def square(x):\n    raise NotImplementedError()", "square", True),
        cell("assert square(3) == 9", "test", False)])
    mistakes = [Mistake("abs", "a", "return x * x", "return abs(x) * x"),
                Mistake("plus", "b", "return x * x", "return x + x")]
    klass = synthetic_class(source, release, mistakes, 300, seed=0)
    labels = [label for label, _ in klass.values() if label.startswith("mistaken")]
    assert len(labels) == 90 and all("+" not in label for label in labels)
    assert {label for label in labels} == {"mistaken:abs", "mistaken:plus"}
