"""Two small grade importers that follow Canvas's and Moodle's own import code, for the tests.

They read a CSV the way each LMS does and return what would land in its gradebook, so that a
test can compare that with nbgrader's gradebook.  Each follows the LMS's source, rule by rule:

**Canvas** — ``GradebookImporter`` (instructure/canvas-lms, ``app/models/gradebook_importer.rb``;
the instructors' guide *How do I import grades in the Gradebook?* says the same in words):

* the header row must start ``Student``, ``ID``; then ``SIS User ID`` and ``SIS Login ID`` (or
  ``SIS Login ID`` alone) may follow, and the last student column must be ``Section``;
  columns named like Canvas's computed ones (``Current Score``, ``Final Grade`` ...) are read-only
  and skipped;
* an assignment column is matched by the number in ``Title (id)``; a title without an id is
  matched by the exact title of an existing assignment; anything else becomes a *new assignment*;
* a row whose first cell contains ``Points Possible`` is the points row, not a student; a row of
  blanks is skipped;
* a student is found by ``ID`` (the Canvas user id), else ``SIS User ID``, else ``SIS Login ID``,
  else by name (``name`` or ``sortable_name``); anyone else is an unknown (new) student whose
  grades go nowhere;
* a cell is stripped; blank or ``-`` is *no score*; a cell whose value equals the current one (or
  both no score) is no change; any other value replaces the score.

**Moodle** — ``gradeimport_csv_load_data::prepare_import_grade_data`` (moodle/moodle,
``grade/import/csv/classes/load_data.php``; docs.moodle.org *Grade import*):

* the user picks one identity column (*Map from*) and its meaning (*Map to*: user id, ID number,
  email address or username), and maps other columns to grade items or their feedback;
* a line with one field or fewer is skipped; every value is trimmed;
* an identity value that is not empty is looked up: an unknown user aborts the *whole* import
  (``usermappingerror``); an *empty* identity leaves the previous row's user in place (the grades
  of that row are credited to the previous student); no user at all aborts the import;
* a grade that is ``""`` or ``-`` is *no grade*; a number is the grade; anything else aborts
  the import (``badgrade``);
* nothing is committed unless the whole file went through.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------------- Canvas

_TITLE_AND_ID = re.compile(r"\A(.*)\s\((\d+)\)\Z")      # Assignment.title_and_id
_READ_ONLY = re.compile("Current Score|Current Points|Current Grade|Final Score|Final Points|"
                        "Final Grade|Override Score|Override Grade|Override Status")


@dataclass
class CanvasStudent:
    id: int
    sortable_name: str                # "Last, First", as Canvas's export writes it
    sis_user_id: str = ""
    sis_login_id: str = ""

    @property
    def name(self) -> str:
        last, _, first = self.sortable_name.partition(", ")
        return f"{first} {last}".strip()


@dataclass
class CanvasCourse:
    students: list[CanvasStudent]
    assignments: dict[int, str]                                    # id -> title
    scores: dict[tuple[int, int], float | None] = field(default_factory=dict)


@dataclass
class CanvasResult:
    scores: dict[tuple[int, int], float | None]
    new_assignments: list[str]
    unknown_students: list[str]


def _no_score(value: str | None) -> bool:
    return value is None or value.strip() in ("", "-")


def canvas_import(course: CanvasCourse, path: str) -> CanvasResult:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    if not (len(header) > 3 and "Student" in header[0] and "ID" in header[1]):
        raise ValueError("Invalid header row")
    info = 3
    if re.search(r"SIS\s+Login\s+ID", header[2]):
        info += 1
    elif re.search(r"SIS\s+User\s+ID", header[2]) and re.search(r"SIS\s+Login\s+ID", header[3]):
        info += 2
    if "Section" not in header[info - 1]:
        raise ValueError("Invalid header row")
    columns: dict[int, int] = {}                 # csv index -> assignment id
    new: list[str] = []
    next_new = -1
    for index in range(info, len(header)):
        title = header[index]
        if _READ_ONLY.search(title):
            continue
        match = _TITLE_AND_ID.match(title)
        found = int(match.group(2)) if match and int(match.group(2)) in course.assignments \
            else next((i for i, t in course.assignments.items() if t == title), None)
        if found is None:
            new.append(title)
            found, next_new = next_new, next_new - 1
        columns[index] = found
    scores = dict(course.scores)
    unknown: list[str] = []
    by_id = {s.id: s for s in course.students}
    for row in rows[1:]:
        if row and "Points Possible" in row[0]:
            continue
        if all(not cell.strip() for cell in row):
            continue
        student = by_id.get(int(row[1])) if row[1].strip().isdigit() else None
        if student is None and info >= 5 and row[2].strip():
            student = next((s for s in course.students if s.sis_user_id == row[2].strip()), None)
        if student is None and info >= 4 and row[info - 2].strip():
            student = next((s for s in course.students
                            if s.sis_login_id == row[info - 2].strip()), None)
        if student is None:
            student = next((s for s in course.students
                            if row[0] in (s.name, s.sortable_name)), None)
        if student is None:
            unknown.append(row[0])
            continue
        for index, assignment in columns.items():
            if assignment < 0:
                continue                      # a new assignment: not one of the course's
            new_value = row[index].strip()
            current = scores.get((student.id, assignment))
            if _no_score(new_value) and current is None:
                continue                      # no change
            scores[(student.id, assignment)] = None if _no_score(new_value) \
                else float(new_value)
    return CanvasResult(scores, new, unknown)


# ---------------------------------------------------------------------------------- Moodle

_MAP_TO = {"userid": "id", "useridnumber": "idnumber", "useremail": "email",
           "username": "username"}
IDENTITY_COLUMN = {"username": "username", "email": "useremail", "idnumber": "useridnumber",
                   "id": "userid"}


@dataclass
class MoodleUser:
    id: int
    username: str
    email: str
    idnumber: str


@dataclass
class MoodleCourse:
    users: list[MoodleUser]
    items: list[str]                                               # grade item names
    grades: dict[tuple[int, str], float | None] = field(default_factory=dict)


@dataclass
class MoodleResult:
    grades: dict[tuple[int, str], float | None]
    feedback: dict[tuple[int, str], str]
    error: str | None = None


def moodle_import(course: MoodleCourse, path: str, identity: str,
                  map_from: str | None = None) -> MoodleResult:
    """Import ``path`` identifying users by ``identity`` (``username``, ``email``,
    ``idnumber``) read from the column titled ``map_from`` (default: the first).  Columns named
    like a grade item map to it, ``<item> feedback`` to its feedback, others are ignored."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    header = [h.strip() for h in rows[0]]
    id_col = header.index(map_from) if map_from else 0
    field_name = _MAP_TO[IDENTITY_COLUMN[identity]]
    grades_cols = {i: h for i, h in enumerate(header) if h in course.items and i != id_col}
    feedback_cols = {i: h[: -len(" feedback")] for i, h in enumerate(header)
                     if h.endswith(" feedback") and h[: -len(" feedback")] in course.items}
    pending_grades: dict[tuple[int, str], float | None] = {}
    pending_feedback: dict[tuple[int, str], str] = {}
    student: int | None = None               # NOT reset per line (load_data.php)
    for line in rows[1:]:
        if len(line) <= 1:
            continue
        new_grades: dict[str, float | None] = {}
        new_feedback: dict[str, str] = {}
        for index, value in enumerate(line):
            value = value.strip()
            if index == id_col:
                if value:
                    user = next((u for u in course.users if getattr(u, field_name) == value),
                                None)
                    if user is None:
                        return MoodleResult(dict(course.grades), {},
                                            f"usermappingerror: {identity} {value!r}")
                    student = user.id
            elif index in grades_cols:
                if value in ("", "-"):
                    new_grades[grades_cols[index]] = None          # no grade
                else:
                    try:
                        new_grades[grades_cols[index]] = float(value)
                    except ValueError:
                        return MoodleResult(dict(course.grades), {}, f"badgrade: {value!r}")
            elif index in feedback_cols:
                new_feedback[feedback_cols[index]] = value
        if student is None:
            return MoodleResult(dict(course.grades), {}, "usermappingerrorusernotfound")
        for item, value in new_grades.items():
            pending_grades[(student, item)] = value
        for item, value in new_feedback.items():
            pending_feedback[(student, item)] = value
    grades = dict(course.grades)
    grades.update(pending_grades)
    return MoodleResult(grades, pending_feedback)
