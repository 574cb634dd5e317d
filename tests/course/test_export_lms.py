"""A class of 40 through the Canvas and Moodle exports and back through each LMS's import rules.

The gradebook here is a :class:`flowlab_course.export.Grades` table built in the test (the graded
round trip through nbgrader is ``test_export.py``), with the cases that lose or misplace grades:
four assignments, some not submitted by some students (not yet due, or skipped), an LMS that
already holds grades typed by hand, students on the roster who never submitted, graded students
missing from the roster, roster rows without an identity.  :mod:`lms_import` reads the files
the way Canvas's and Moodle's importers do (their rules are cited there).
"""

from __future__ import annotations

import csv
import os
import random
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import lms_import

from flowlab_course.export import (Grades, RosterMismatch, check_roster, export_canvas,
                                   export_moodle)

ASSIGNMENTS = ["01_change_of_variables", "02_coupling", "03_image_flows", "04_glow"]
MAX = {"01_change_of_variables": 11.0, "02_coupling": 15.0, "03_image_flows": 15.0,
       "04_glow": 12.0}
CANVAS_IDS = {a: 9000 + i for i, a in enumerate(ASSIGNMENTS)}
COLUMNS = {a: f"Assignment {i + 1} ({CANVAS_IDS[a]})" for i, a in enumerate(ASSIGNMENTS)}


def klass(n: int = 40, seed: int = 0) -> tuple[Grades, dict[str, dict[str, str]]]:
    """n students, each assignment submitted with probability 0.9 (the rest: nothing)."""
    rng = random.Random(seed)
    roster: dict[str, dict[str, str]] = {}
    score: dict[tuple[str, str], float] = {}
    for i in range(n):
        sid = f"s{i:02d}"
        roster[sid] = {"name": f"Student{i:02d}, Pat", "canvas_id": str(5000 + i),
                       "sis_user_id": f"SIS-{i:02d}", "sis_login_id": f"{sid}@uni",
                       "section": "A" if i % 2 else "B", "username": f"user{i:02d}",
                       "email": f"{sid}@uni.edu", "idnumber": f"ID{i:02d}"}
        for a in ASSIGNMENTS:
            if rng.random() < 0.9:
                score[(sid, a)] = round(rng.uniform(0, MAX[a]) * 4) / 4   # 0 is a real score
    score[("s00", ASSIGNMENTS[0])] = 0.0                                  # a submitted zero
    students = {sid: dict(row) for sid, row in roster.items()}
    return Grades(students, list(ASSIGNMENTS), dict(MAX), score, {}, roster=roster), roster


def canvas_of(roster) -> lms_import.CanvasCourse:
    return lms_import.CanvasCourse(
        [lms_import.CanvasStudent(int(r["canvas_id"]), r["name"], r["sis_user_id"],
                                  r["sis_login_id"]) for r in roster.values()],
        {CANVAS_IDS[a]: f"Assignment {i + 1}" for i, a in enumerate(ASSIGNMENTS)})


def moodle_of(roster) -> lms_import.MoodleCourse:
    return lms_import.MoodleCourse(
        [lms_import.MoodleUser(100 + i, r["username"], r["email"], r["idnumber"])
         for i, r in enumerate(roster.values())], list(ASSIGNMENTS) + ["flowlab total"])


def test_the_class_has_unsubmitted_work_and_submitted_zeros() -> None:
    grades, _ = klass()
    missing = [(s, a) for s in grades.students for a in ASSIGNMENTS if (s, a) not in grades.score]
    assert len(missing) >= 4 and grades.score[("s00", ASSIGNMENTS[0])] == 0.0


def test_canvas_zero_lost_zero_misplaced(tmp_path) -> None:
    grades, roster = klass()
    path = export_canvas(grades, str(tmp_path / "canvas.csv"), columns=COLUMNS)
    course = canvas_of(roster)
    result = lms_import.canvas_import(course, path)
    assert result.new_assignments == [] and result.unknown_students == []
    lost, misplaced = [], []
    for sid, row in roster.items():
        for a in ASSIGNMENTS:
            got = result.scores.get((int(row["canvas_id"]), CANVAS_IDS[a]))
            want = grades.score.get((sid, a))
            if want is not None and got is None:
                lost.append((sid, a))
            elif got != want:
                misplaced.append((sid, a, want, got))
    assert lost == [] and misplaced == []
    # the unsubmitted stay without a score (a 0 would count against the student)
    assert all(result.scores.get((int(roster[s]["canvas_id"]), CANVAS_IDS[a])) is None
               for s in roster for a in ASSIGNMENTS if (s, a) not in grades.score)


@pytest.mark.parametrize("identity", ["username", "email", "idnumber"])
def test_moodle_zero_lost_zero_misplaced(tmp_path, identity) -> None:
    grades, roster = klass()
    path = export_moodle(grades, str(tmp_path / "moodle.csv"), identity=identity)
    course = moodle_of(roster)
    result = lms_import.moodle_import(course, path, identity=identity)
    assert result.error is None, result.error
    users = {sid: 100 + i for i, sid in enumerate(roster)}
    lost, misplaced = [], []
    for sid in roster:
        for a in ASSIGNMENTS:
            got = result.grades.get((users[sid], a))
            want = grades.score.get((sid, a))
            if want is not None and got is None:
                lost.append((sid, a))
            elif got != want:
                misplaced.append((sid, a, want, got))
    assert lost == [] and misplaced == []
    totals = {sid: result.grades[(users[sid], "flowlab total")] for sid in roster}
    assert totals == {sid: grades.total(sid) for sid in roster}


def test_the_old_zeros_would_have_been_written(tmp_path) -> None:
    """What the tests guard against: 0 for unsubmitted work is a grade in both LMSs."""
    grades, roster = klass()
    path = tmp_path / "zeros.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Username", *ASSIGNMENTS])
        for sid, row in roster.items():
            writer.writerow([row["username"]] + [grades.score.get((sid, a), 0) for a in ASSIGNMENTS])
    result = lms_import.moodle_import(moodle_of(roster), str(path), identity="username")
    zeros = [k for k, v in result.grades.items() if v == 0.0]
    assert len(zeros) > 1          # the real submitted zero and every unsubmitted assignment


def test_the_moodle_importer_misplaces_a_blank_identity_and_aborts_on_a_stranger(tmp_path):
    """The two hazards the roster check prevents, shown on Moodle's rules."""
    _, roster = klass(3)
    course = moodle_of(roster)
    blank = tmp_path / "blank.csv"
    blank.write_text("Username,04_glow\nuser00,7\n,12\n")
    result = lms_import.moodle_import(course, str(blank), identity="username")
    assert result.grades[(100, "04_glow")] == 12.0        # the second row went to user00
    stranger = tmp_path / "stranger.csv"
    stranger.write_text("Username,04_glow\nuser00,7\nnobody,3\n")
    result = lms_import.moodle_import(course, str(stranger), identity="username")
    assert result.error and "nobody" in result.error and (100, "04_glow") not in result.grades


def test_roster_problems_are_listed_by_name_and_nothing_is_written(tmp_path) -> None:
    grades, roster = klass(6)
    grades.roster = {k: v for k, v in roster.items() if k not in ("s01", "s04")}
    with pytest.raises(RosterMismatch, match="not on the roster: s01, s04"):
        export_canvas(grades, str(tmp_path / "c.csv"), columns=COLUMNS)
    with pytest.raises(RosterMismatch, match="not on the roster: s01, s04"):
        export_moodle(grades, str(tmp_path / "m.csv"))
    grades.roster = {k: dict(v) for k, v in roster.items()}
    grades.roster["s02"]["email"] = ""
    with pytest.raises(RosterMismatch, match="without email.*: s02"):
        export_moodle(grades, str(tmp_path / "m.csv"), identity="email")
    grades.roster["s03"].update(canvas_id="", sis_user_id="", sis_login_id="")
    with pytest.raises(RosterMismatch, match="s03"):
        export_canvas(grades, str(tmp_path / "c.csv"), columns=COLUMNS)
    grades.roster = None
    with pytest.raises(RosterMismatch, match="no roster.*student_id"):
        export_canvas(grades, str(tmp_path / "c.csv"), columns=COLUMNS)
    assert os.listdir(tmp_path) == []
    check_roster(klass(6)[0], ["username"], "Moodle")       # a good roster passes


def test_canvas_columns_need_their_id_unless_new_assignments_are_wanted(tmp_path) -> None:
    grades, roster = klass(5)
    with pytest.raises(RosterMismatch, match="new assignment for 01_change_of_variables"):
        export_canvas(grades, str(tmp_path / "c.csv"))
    assert not (tmp_path / "c.csv").exists()
    path = export_canvas(grades, str(tmp_path / "c.csv"), ASSIGNMENTS[:1], new_assignments=True)
    result = lms_import.canvas_import(canvas_of(roster), path)
    assert result.new_assignments == [ASSIGNMENTS[0]]       # what Canvas would do with it
