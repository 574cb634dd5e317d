"""Grades out: the Canvas and Moodle import CSVs, nbgrader's own CSV, per-part partial credit.

One small class is graded once per session by the real ``nbgrader autograde``, in a course whose
notebook also has a partial-credit test (it prints its reason and returns the points, the way
the course's trusted grader reports partial credit).  The LMS files are read back by
:mod:`lms_import` (beside this file), two small importers that follow Canvas's and Moodle's own
import code, and compared with the gradebook: no grade lost, none misplaced.
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
import lms_import

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
NOT_SUBMITTED = "gus"       # in the gradebook (nbgrader db student add), no submission
# The class's LMS identities: Canvas user ids, SIS ids, Moodle usernames and emails.  "eve" is on
# the roster only: enrolled, never submitted.
ROSTER = [
    # student_id, name, canvas_id, sis_user_id, sis_login_id, section, username, email
    ("ada", "Lovelace, Ada", "1001", "S-1", "ada@uni", "Lab A", "alovelace", "ada@uni.edu"),
    ("bob", "Bobson, Bob", "1002", "S-2", "bob@uni", "Lab A", "bbobson", "bob@uni.edu"),
    ("dee", "Dee, Dee", "1003", "S-3", "dee@uni", "Lab B", "ddee", "dee@uni.edu"),
    ("eve", "Eve, Eve", "1004", "S-4", "eve@uni", "Lab B", "eeve", "eve@uni.edu"),
    ("fay", "Fay, Fay", "1005", "S-5", "fay@uni", "Lab B", "ffay", "fay@uni.edu"),
    ("gus", "Gus, Gus", "1006", "S-6", "gus@uni", "Lab A", "ggus", "gus@uni.edu"),
]
FIELDS = ("student_id", "name", "canvas_id", "sis_user_id", "sis_login_id", "section",
          "username", "email")
CANVAS_TITLE = "Problem set 1 (4711)"


def write_roster(path, rows=ROSTER, fields=FIELDS) -> str:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        writer.writerows(rows)
    return str(path)


def canvas_course() -> lms_import.CanvasCourse:
    """The Canvas course the class is enrolled in, before any import (no scores yet)."""
    return lms_import.CanvasCourse(
        students=[lms_import.CanvasStudent(int(r[2]), r[1], r[3], r[4]) for r in ROSTER],
        assignments={4711: "Problem set 1"})


def moodle_course() -> lms_import.MoodleCourse:
    return lms_import.MoodleCourse(
        users=[lms_import.MoodleUser(100 + i, r[6], r[7], r[3]) for i, r in enumerate(ROSTER)],
        items=[synthetic.ASSIGNMENT, "flowlab total"])
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
    synthetic.nbgrader(root, "db", "student", "add", NOT_SUBMITTED)
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

    out = export_all(graded, str(tmp_path / "grades"), roster=write_roster(tmp_path / "r.csv"),
                     columns={synthetic.ASSIGNMENT: CANVAS_TITLE})
    rows = _rows(out["canvas"])
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", CANVAS_TITLE]
    assert rows[1] == ["Points Possible", "", "", "", "", "5"]
    body = {r[1]: r for r in rows[2:]}            # by Canvas user id
    assert body["1001"] == ["Lovelace, Ada", "1001", "S-1", "ada@uni", "Lab A", "5"]
    assert [body[i][5] for i in ("1002", "1003", "1005")] == ["2", "0", "5"]
    assert body["1004"][5] == "" and body["1006"][5] == ""   # not submitted: blank, not 0
    per = _rows(out[f"canvas-{synthetic.ASSIGNMENT}"])
    assert per[0][-1] == CANVAS_TITLE and len(per[0]) == 6
    assert len(per) == 2 + len(ROSTER)


def test_canvas_import_puts_every_grade_on_its_student(graded, tmp_path):
    """Read back by Canvas's importer rules: every score where the gradebook has it, the
    unsubmitted without a score, no new assignment, no unknown student."""
    from flowlab_course.export import export_all

    out = export_all(graded, str(tmp_path / "g"), roster=write_roster(tmp_path / "r.csv"),
                     columns={synthetic.ASSIGNMENT: CANVAS_TITLE}, lms=["canvas"])
    course = canvas_course()
    result = lms_import.canvas_import(course, out["canvas"])
    assert result.new_assignments == [] and result.unknown_students == []
    expected = {1001: 5.0, 1002: 2.0, 1003: 0.0, 1005: 5.0}
    got = {uid: result.scores.get((uid, 4711)) for uid in (1001, 1002, 1003, 1004, 1005, 1006)}
    assert got == {**expected, 1004: None, 1006: None}


def test_moodle_csv_has_identities_grades_and_per_part_feedback(graded, tmp_path):
    from flowlab_course.export import export_moodle, read_grades

    grades = read_grades(graded, roster=write_roster(tmp_path / "r.csv"))
    path = export_moodle(grades, str(tmp_path / "moodle.csv"))
    rows = _rows(path)
    a = synthetic.ASSIGNMENT
    assert rows[0] == ["Username", a, f"{a} feedback", "flowlab total"]
    body = {r[0]: r for r in rows[1:]}
    assert body["bbobson"][1] == "2" and body["bbobson"][3] == "2"
    feedback = body["bbobson"][2]
    assert "test_visible: 1/1" in feedback
    assert "test_hidden: 0/2 — AssertionError: negative inputs: (-4)**2 = 16" in feedback
    assert ("test_partial: 1/2 — ◐ partial credit: square is wrong for negative inputs"
            in feedback)
    assert "—" not in body["alovelace"][2]        # full marks: points only, no message
    assert body["eeve"][1:] == ["-", "no submission", "-"]      # not submitted: "-", not 0
    assert body["ggus"][1] == "-"
    assert synthetic.HIDDEN_MARKER not in open(path, encoding="utf-8").read()
    by_email = _rows(export_moodle(grades, str(tmp_path / "m2.csv"), identity="email",
                                   feedback=False, total=False))
    assert by_email[0] == ["Email address", a]
    assert ["bob@uni.edu", "2"] in by_email


def test_moodle_import_puts_every_grade_on_its_student(graded, tmp_path):
    from flowlab_course.export import export_all

    out = export_all(graded, str(tmp_path / "g"), roster=write_roster(tmp_path / "r.csv"),
                     lms=["moodle"], moodle_identity="username")
    result = lms_import.moodle_import(moodle_course(), out["moodle"], identity="username")
    assert result.error is None, result.error
    users = {u.username: u.id for u in moodle_course().users}
    a = synthetic.ASSIGNMENT
    got = {name: result.grades[(uid, a)] for name, uid in users.items()}
    assert got == {"alovelace": 5.0, "bbobson": 2.0, "ddee": 0.0, "eeve": None, "ffay": 5.0,
                   "ggus": None}


def test_nbgrader_csv_is_nbgraders_own_export(graded, tmp_path):
    from flowlab_course.export import export_nbgrader

    ours = export_nbgrader(graded, str(tmp_path / "ours.csv"))
    synthetic.nbgrader(graded, "export", "--to", str(tmp_path / "theirs.csv"))
    assert open(ours).read() == open(tmp_path / "theirs.csv").read()
    assert len(_rows(ours)) == 1 + len(STUDENTS) + 1          # and gus, with no submission


def test_parts_csv_has_partial_credit_with_its_message(graded, tmp_path):
    from flowlab_course.export import export_parts, read_grades

    rows = _rows(export_parts(read_grades(graded), str(tmp_path / "parts.csv")))
    assert rows[0] == ["student_id", "assignment", "notebook", "part", "score", "max_score",
                       "message"]
    bob = [r for r in rows[1:] if r[0] == "bob"]
    assert [r[3] for r in bob] == ["test_visible", "test_hidden", "test_partial"]  # cell order
    assert bob[2][4:] == ["1", "2", "◐ partial credit: square is wrong for negative inputs"]


def test_cli_export_and_clear_errors(graded, tmp_path, capsys):
    from flowlab_course.__main__ import main
    from flowlab_course.export import export_canvas, read_grades

    roster = write_roster(tmp_path / "roster.csv")
    assert main(["export", "--course", graded, "--to", str(tmp_path / "out"), "--roster", roster,
                 "--canvas-column", f"{synthetic.ASSIGNMENT}={CANVAS_TITLE}"]) == 0
    assert {"canvas.csv", "moodle.csv", "parts.csv", "nbgrader.csv",
            f"canvas-{synthetic.ASSIGNMENT}.csv", f"moodle-{synthetic.ASSIGNMENT}.csv"} \
        == set(os.listdir(tmp_path / "out"))
    # no roster: refused, with how to make one, nothing written
    assert main(["export", "--course", graded, "--to", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "roster" in err and "student_id" in err and "Grades > Export" in err
    assert not (tmp_path / "none").exists()
    # a Canvas column without its id: Canvas would create a new assignment
    assert main(["export", "--course", graded, "--to", str(tmp_path / "noid"), "--roster",
                 roster, "--lms", "canvas"]) == 2
    assert "new assignment" in capsys.readouterr().err
    assert not (tmp_path / "noid").exists()
    with pytest.raises(ValueError, match="no assignment"):
        export_canvas(read_grades(graded, roster=roster), str(tmp_path / "x.csv"), ["nope"],
                      columns={"nope": "Nope (1)"})
    bad = tmp_path / "bad_roster.csv"
    bad.write_text("login,section\nada,A\n")
    with pytest.raises(ValueError, match="student_id"):
        read_grades(graded, roster=str(bad))


def test_a_roster_mismatch_stops_the_export_and_writes_nothing(graded, tmp_path):
    from flowlab_course.export import RosterMismatch, export_all

    out = tmp_path / "out"
    # bob and fay were graded but are not on the roster
    short = write_roster(tmp_path / "short.csv", [r for r in ROSTER if r[0] not in ("bob", "fay")])
    with pytest.raises(RosterMismatch, match=r"not on the roster: bob, fay"):
        export_all(graded, str(out), roster=short, columns={synthetic.ASSIGNMENT: CANVAS_TITLE})
    assert not out.exists()
    # a row without any key Canvas or Moodle finds a student by
    keyless = [r if r[0] != "dee" else ("dee", "Dee, Dee", "", "", "", "Lab B", "", "")
               for r in ROSTER]
    path = write_roster(tmp_path / "keyless.csv", keyless)
    with pytest.raises(RosterMismatch, match=r"without canvas_id or sis_user_id or "
                                             r"sis_login_id.*: dee"):
        export_all(graded, str(out), roster=path, lms=["canvas"],
                   columns={synthetic.ASSIGNMENT: CANVAS_TITLE})
    with pytest.raises(RosterMismatch, match=r"without username.*: dee"):
        export_all(graded, str(out), roster=path, lms=["moodle"])
    # two students with one username: Moodle would give both grades to one
    twins = [r if r[0] != "fay" else r[:6] + ("bbobson", r[7]) for r in ROSTER]
    with pytest.raises(RosterMismatch, match=r"username 'bbobson' is given to bob, fay"):
        export_all(graded, str(out), roster=write_roster(tmp_path / "t.csv", twins),
                   lms=["moodle"])
    assert not out.exists()
