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
    # the worker's CPU seconds include its kernel's (a kernel alone imports far more than 0.1 s)
    assert all(r.cpu_seconds > 0.1 for r in results), [r.cpu_seconds for r in results]
    expected = synthetic.scores(sequential)
    assert set(expected) == set(STUDENTS)
    assert synthetic.scores(parallel) == expected     # student by student, cell by cell
    assert expected["ada"] == {"test_visible": 1.0, "test_hidden": 2.0}
    assert expected["bob"] == {"test_visible": 1.0, "test_hidden": 0.0}
    assert expected["dee"] == {"test_visible": 0.0, "test_hidden": 0.0}


def _gradebook_rows(root: str) -> dict[str, list[tuple]]:
    """Every submission row of the gradebook by names (not by the random ids)."""
    import sqlite3

    db = sqlite3.connect(os.path.join(root, "gradebook.db"))
    head = ("FROM submitted_notebook n JOIN submitted_assignment s ON s.id = n.assignment_id "
            "JOIN notebook nb ON nb.id = n.notebook_id")
    try:
        return {
            "submissions": sorted(db.execute(
                "SELECT s.student_id, s.timestamp, s.extension FROM submitted_assignment s")),
            "notebooks": sorted(db.execute(
                f"SELECT s.student_id, nb.name, n.flagged, n.late_submission_penalty {head}")),
            "grades": sorted(db.execute(
                "SELECT s.student_id, c.name, g.auto_score, g.manual_score, g.extra_credit, "
                f"g.needs_manual_grade FROM grade g JOIN base_cell c ON c.id = g.cell_id JOIN "
                f"({'SELECT n.id AS nid, s.student_id ' + head}) x ON x.nid = g.notebook_id "
                "JOIN submitted_assignment s ON s.student_id = x.student_id")),
            "comments": sorted(db.execute(
                "SELECT x.student_id, c.name, m.auto_comment, m.manual_comment FROM comment m "
                "JOIN base_cell c ON c.id = m.cell_id JOIN "
                f"({'SELECT n.id AS nid, s.student_id ' + head}) x ON x.nid = m.notebook_id")),
            "students": sorted(db.execute("SELECT * FROM student")),
        }
    finally:
        db.close()


def test_gradebook_rows_identical_to_sequential_nbgrader(courses):
    """Not only the scores: every row nbgrader's autograde writes, field by field."""
    sequential, parallel, _ = courses
    expected = _gradebook_rows(sequential)
    assert len(expected["grades"]) == 2 * len(STUDENTS)
    assert _gradebook_rows(parallel) == expected


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


def test_an_unreadable_submission_is_zeroed_flagged_and_the_rest_graded(graded_copy):
    from flowlab_course.report import read_flags

    parallel = graded_copy
    synthetic.submit(parallel, "zed", synthetic.CORRECT)
    synthetic.submit(parallel, "yan", synthetic.CORRECT)
    path = os.path.join(parallel, "submitted", "zed", "ps1", "ps1.ipynb")
    with open(path, "w") as handle:
        handle.write("{ this is not a notebook")
    results = {r.student: r for r in autograde_parallel(
        parallel, synthetic.ASSIGNMENT, workers=2, progress=False)}
    assert results["zed"].status == "zeroed" and not results["zed"].ok
    assert "invalid JSON" in results["zed"].error
    assert results["yan"].ok and not results["yan"].skipped
    scores = synthetic.scores(parallel)
    assert scores["yan"] == {"test_visible": 1.0, "test_hidden": 2.0}
    assert scores["zed"] == {"test_visible": 0.0, "test_hidden": 0.0}
    assert [f["kind"] for f in read_flags(parallel, synthetic.ASSIGNMENT, "zed")] == [
        "unreadable"]
    with open(path) as handle:
        assert handle.read() == "{ this is not a notebook"      # the student's file as it was
    # recorded (zero and flag): a rerun leaves it; a new submission is graded anew
    rerun = {r.student: r for r in autograde_parallel(
        parallel, synthetic.ASSIGNMENT, students=["zed", "yan"], workers=1, progress=False)}
    assert rerun["zed"].skipped and rerun["yan"].skipped
    synthetic.submit(parallel, "zed", synthetic.CORRECT)
    third = {r.student: r for r in autograde_parallel(
        parallel, synthetic.ASSIGNMENT, students=["zed"], workers=1, progress=False)}
    assert third["zed"].status == "graded"
    assert synthetic.scores(parallel)["zed"] == {"test_visible": 1.0, "test_hidden": 2.0}
    assert read_flags(parallel, synthetic.ASSIGNMENT, "zed") == []


def test_a_regrade_keeps_manual_grades_as_nbgrader_does(graded_copy):
    """The client updates a regraded submission in place: manual scores and comments stay."""
    import sqlite3

    parallel = graded_copy
    db = sqlite3.connect(os.path.join(parallel, "gradebook.db"))
    with db:
        db.execute("UPDATE grade SET manual_score = 0.5 WHERE notebook_id IN (SELECT n.id FROM "
                   "submitted_notebook n JOIN submitted_assignment s ON s.id = n.assignment_id "
                   "WHERE s.student_id = 'bob')")
        db.execute("UPDATE comment SET manual_comment = 'see me' WHERE notebook_id IN (SELECT "
                   "n.id FROM submitted_notebook n JOIN submitted_assignment s ON s.id = "
                   "n.assignment_id WHERE s.student_id = 'bob')")
    before = db.execute("SELECT id FROM submitted_assignment WHERE student_id = 'bob'").fetchall()
    db.close()
    synthetic.submit(parallel, "bob", synthetic.CORRECT)
    (result,) = autograde_parallel(parallel, synthetic.ASSIGNMENT, students=["bob"], workers=1,
                                   progress=False)
    assert result.status == "graded"
    db = sqlite3.connect(os.path.join(parallel, "gradebook.db"))
    rows = db.execute("SELECT g.auto_score, g.manual_score, g.needs_manual_grade FROM grade g "
                      "JOIN submitted_notebook n ON n.id = g.notebook_id JOIN "
                      "submitted_assignment s ON s.id = n.assignment_id WHERE s.student_id = "
                      "'bob' ORDER BY g.auto_score").fetchall()
    comments = db.execute("SELECT c.manual_comment FROM comment c JOIN submitted_notebook n ON "
                          "n.id = c.notebook_id JOIN submitted_assignment s ON s.id = "
                          "n.assignment_id WHERE s.student_id = 'bob'").fetchall()
    after = db.execute("SELECT id FROM submitted_assignment WHERE student_id = 'bob'").fetchall()
    db.close()
    assert after == before                                  # updated in place, not re-created
    assert rows == [(1.0, 0.5, 1), (2.0, 0.5, 1)]           # new auto scores, manual kept
    assert comments == [("see me",)]


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
