"""Parallel autograde gives nbgrader's grades, survives a broken submission, and resumes."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import course as synthetic

from flowlab_course.parallel import GradingResult, autograde_parallel

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("graded-twice")]

STUDENTS = {
    "ada": synthetic.CORRECT,
    "bob": synthetic.MISTAKEN,
    "cy": "def square(x):\n    return x ** 2.0\n",
    "dee": "def square(x):\n    raise NotImplementedError\n",
    "eve": synthetic.CORRECT + "import os\nprint(os.environ)\n",
}


def _grade_both_ways(folder: str) -> dict:
    """The class graded by ``nbgrader autograde`` and by ``autograde_parallel``, in two courses."""
    from dataclasses import asdict

    base = os.path.join(folder, "base")
    synthetic.make_course(base)
    for student, solution in STUDENTS.items():
        synthetic.submit(base, student, solution)
    sequential = shutil.copytree(base, os.path.join(folder, "sequential"))
    parallel = shutil.copytree(base, os.path.join(folder, "parallel"))
    synthetic.nbgrader(sequential, "autograde", synthetic.ASSIGNMENT)
    results = autograde_parallel(parallel, synthetic.ASSIGNMENT, workers=2, progress=False)
    return {"sequential": sequential, "parallel": parallel,
            "results": [asdict(r) for r in results]}


@pytest.fixture(scope="module")
def courses(tmp_path_factory):
    """Both graded courses, once per test session; tests that change one work on a copy."""
    data = synthetic.once_per_session(tmp_path_factory, "graded-twice", _grade_both_ways)
    return data["sequential"], data["parallel"], [GradingResult(**r) for r in data["results"]]


@pytest.fixture
def graded_copy(courses, tmp_path) -> str:
    """A private copy of the course graded by ``autograde_parallel``."""
    return str(shutil.copytree(courses[1], tmp_path / "parallel"))


def test_scores_identical_to_sequential_nbgrader(courses):
    sequential, parallel, results = courses
    assert all(r.ok for r in results), [r.error for r in results]
    expected = synthetic.scores(sequential)
    assert set(expected) == set(STUDENTS)
    assert synthetic.scores(parallel) == expected     # student by student, cell by cell
    assert expected["ada"] == {"test_visible": 1.0, "test_hidden": 2.0}
    assert expected["bob"] == {"test_visible": 1.0, "test_hidden": 0.0}
    assert expected["dee"] == {"test_visible": 0.0, "test_hidden": 0.0}


def test_rerun_grades_only_missing_or_changed(graded_copy):
    parallel = graded_copy
    again = autograde_parallel(parallel, synthetic.ASSIGNMENT, workers=2, progress=False)
    assert all(r.skipped for r in again)
    synthetic.submit(parallel, "bob", synthetic.CORRECT)                 # changed
    shutil.rmtree(os.path.join(parallel, "autograded", "cy"))            # missing
    third = autograde_parallel(parallel, synthetic.ASSIGNMENT, workers=2, progress=False)
    regraded = sorted(r.student for r in third if not r.skipped)
    assert regraded == ["bob", "cy"] and all(r.ok for r in third)
    assert synthetic.scores(parallel)["bob"] == {"test_visible": 1.0, "test_hidden": 2.0}


def test_a_broken_submission_is_reported_and_the_rest_graded(graded_copy):
    parallel = graded_copy
    synthetic.submit(parallel, "zed", synthetic.CORRECT)
    synthetic.submit(parallel, "yan", synthetic.CORRECT)
    with open(os.path.join(parallel, "submitted", "zed", "ps1", "ps1.ipynb"), "w") as handle:
        handle.write("{ this is not a notebook")
    results = {r.student: r for r in autograde_parallel(
        parallel, synthetic.ASSIGNMENT, workers=2, progress=False)}
    assert not results["zed"].ok and results["zed"].error
    assert results["yan"].ok and not results["yan"].skipped
    assert synthetic.scores(parallel)["yan"] == {"test_visible": 1.0, "test_hidden": 2.0}
    # a failure is retried on the next run (it was not recorded as graded)
    rerun = {r.student: r for r in autograde_parallel(
        parallel, synthetic.ASSIGNMENT, students=["zed", "yan"], workers=1, progress=False)}
    assert not rerun["zed"].ok and rerun["yan"].skipped


def test_cli_and_class_report(graded_copy, tmp_path):
    from flowlab_course.__main__ import main

    parallel = graded_copy
    synthetic.submit(parallel, "mo", synthetic.MISTAKEN)
    assert main(["autograde", synthetic.ASSIGNMENT, "--course", parallel, "--student", "mo",
                 "--no-progress"]) == 0
    assert main(["report", synthetic.ASSIGNMENT, "--course", parallel, "--out",
                 str(tmp_path)]) == 0
    folder = tmp_path / synthetic.ASSIGNMENT
    assert (folder / "scores.png").stat().st_size > 1000
    rows = (folder / "scores.csv").read_text().splitlines()
    assert rows[0] == "student,part,score,max" and len(rows) > 2 * len(STUDENTS)
    failures = (folder / "failures.csv").read_text()
    assert "negative inputs: (-4)**2 = 16" in failures   # the mistaken students' hidden test
    assert "Most frequently failed checks" in (folder / "report.html").read_text()
