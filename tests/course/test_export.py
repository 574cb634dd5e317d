"""Grades out: the Canvas and Moodle import CSVs, nbgrader's own CSV, per-part partial credit.

One small class is graded once per session by the real ``nbgrader autograde``, in a course whose
notebook also has a partial-credit test (it prints its reason and returns the points, the way
the course's trusted grader reports partial credit).
"""

from __future__ import annotations

import csv
import json
import os
import sys

import nbformat
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import course as synthetic

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lms-class")]

PARTIAL = (
    "_cases = [1, 2, -3, -4]\n"
    "_ok = [square(v) == v * v for v in _cases]\n"
    "if not all(_ok):\n"
    "    print('◐ partial credit: square is wrong for negative inputs')\n"
    "2.0 * sum(_ok) / len(_ok)"
)
STUDENTS = {
    "ada": synthetic.CORRECT,                                    # 1 + 2 + 2 = 5
    "bob": synthetic.MISTAKEN,                                   # 1 + 0 + 1 = 2
    "dee": "def square(x):\n    raise NotImplementedError\n",    # 0
    "fay": synthetic.CORRECT,                                    # 5, flagged by "the grader"
}
FLAGS = [{"part": "test_hidden", "kind": "delegation",
          "message": "square calls flowlab's reference implementation"},
         {"part": None, "kind": "note", "message": "cell 2, line 1: exec of a built string"}]


def build_graded_class(root: str) -> dict:
    """The class above, graded by ``nbgrader autograde``; ``fay`` gets the grader's flags."""
    synthetic.make_course(root)
    path = os.path.join(root, "source", synthetic.ASSIGNMENT, synthetic.ASSIGNMENT + ".ipynb")
    nb = nbformat.read(path, as_version=4)
    cell = nbformat.v4.new_code_cell(PARTIAL)
    cell.metadata["nbgrader"] = {"grade_id": "test_partial", "grade": True, "solution": False,
                                 "locked": True, "points": 2, "schema_version": 3}
    nb.cells.append(cell)
    nbformat.write(nb, path)
    synthetic.nbgrader(root, "generate_assignment", synthetic.ASSIGNMENT, "--force")
    for student, code in STUDENTS.items():
        synthetic.submit(root, student, code)
    synthetic.nbgrader(root, "autograde", synthetic.ASSIGNMENT)
    folder = os.path.join(root, "autograded", "fay", synthetic.ASSIGNMENT)
    with open(os.path.join(folder, "flowlab-flags.json"), "w") as handle:
        json.dump(FLAGS, handle)
    return {"root": root}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> str:
    return synthetic.once_per_session(tmp_path_factory, "lms-class", build_graded_class)["root"]


def _rows(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_partial_credit_is_in_the_gradebook(graded):
    scores = synthetic.scores(graded)
    assert scores["ada"] == {"test_visible": 1.0, "test_hidden": 2.0, "test_partial": 2.0}
    assert scores["bob"] == {"test_visible": 1.0, "test_hidden": 0.0, "test_partial": 1.0}
    assert scores["dee"] == {"test_visible": 0.0, "test_hidden": 0.0, "test_partial": 0.0}


def test_canvas_csv_has_canvas_columns_points_possible_and_scores(graded, tmp_path):
    from flowlab_course.export import export_all

    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,name,canvas_id,sis_user_id,section\n"
                      "ada,\"Lovelace, Ada\",1001,S-1,Lab A\n")
    out = export_all(graded, str(tmp_path / "grades"), roster=str(roster),
                     columns={synthetic.ASSIGNMENT: "Problem set 1 (4711)"})
    rows = _rows(out["canvas"])
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
                       "Problem set 1 (4711)", "flowlab total"]
    assert rows[1] == ["Points Possible", "", "", "", "", "5", "5"]
    body = {r[3]: r for r in rows[2:]}            # by SIS Login ID (the nbgrader id)
    assert body["ada"] == ["Lovelace, Ada", "1001", "S-1", "ada", "Lab A", "5", "5"]
    assert [body[s][5] for s in ("bob", "dee", "fay")] == ["2", "0", "5"]
    per = _rows(out[f"canvas-{synthetic.ASSIGNMENT}"])
    assert per[0][-1] == "Problem set 1 (4711)" and len(per[0]) == 6   # no total column
    assert len(per) == 2 + len(STUDENTS)


def test_moodle_csv_has_identities_grades_and_per_part_feedback(graded, tmp_path):
    from flowlab_course.export import export_moodle, read_grades

    path = export_moodle(read_grades(graded), str(tmp_path / "moodle.csv"))
    rows = _rows(path)
    a = synthetic.ASSIGNMENT
    assert rows[0] == ["Username", "Email address", "ID number", a, f"{a} feedback",
                       "flowlab total"]
    body = {r[0]: r for r in rows[1:]}
    assert body["bob"][3] == "2" and body["bob"][5] == "2"
    feedback = body["bob"][4]
    assert "test_visible: 1/1" in feedback
    assert "test_hidden: 0/2 — AssertionError: negative inputs: (-4)**2 = 16" in feedback
    assert ("test_partial: 1/2 — ◐ partial credit: square is wrong for negative inputs"
            in feedback)
    assert "—" not in body["ada"][4]              # full marks: points only, no message
    assert synthetic.HIDDEN_MARKER not in open(path, encoding="utf-8").read()


def test_nbgrader_csv_is_nbgraders_own_export(graded, tmp_path):
    from flowlab_course.export import export_nbgrader

    ours = export_nbgrader(graded, str(tmp_path / "ours.csv"))
    synthetic.nbgrader(graded, "export", "--to", str(tmp_path / "theirs.csv"))
    assert open(ours).read() == open(tmp_path / "theirs.csv").read()
    assert len(_rows(ours)) == 1 + len(STUDENTS)


def test_parts_csv_has_partial_credit_with_its_message(graded, tmp_path):
    from flowlab_course.export import export_parts, read_grades

    rows = _rows(export_parts(read_grades(graded), str(tmp_path / "parts.csv")))
    assert rows[0] == ["student_id", "assignment", "notebook", "part", "score", "max_score",
                       "message"]
    bob = [r for r in rows[1:] if r[0] == "bob"]
    assert [r[3] for r in bob] == ["test_visible", "test_hidden", "test_partial"]  # cell order
    assert bob[2][4:] == ["1", "2", "◐ partial credit: square is wrong for negative inputs"]


def test_cli_export_and_clear_errors(graded, tmp_path):
    from flowlab_course.__main__ import main
    from flowlab_course.export import export_canvas, read_grades

    assert main(["export", "--course", graded, "--to", str(tmp_path / "out")]) == 0
    assert {"canvas.csv", "moodle.csv", "parts.csv", "nbgrader.csv",
            f"canvas-{synthetic.ASSIGNMENT}.csv"} <= set(os.listdir(tmp_path / "out"))
    with pytest.raises(ValueError, match="no assignment"):
        export_canvas(read_grades(graded), str(tmp_path / "x.csv"), ["nope"])
    bad = tmp_path / "bad_roster.csv"
    bad.write_text("login,section\nada,A\n")
    with pytest.raises(ValueError, match="student_id"):
        read_grades(graded, roster=str(bad))
