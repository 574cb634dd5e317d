r"""Grades out of the gradebook: CSV files that Canvas and Moodle import, and nbgrader's own.

:func:`read_grades` reads the gradebook (and the autograded notebooks, for the message of each
part) into one :class:`Grades` table; the writers turn it into:

* **Canvas** (:func:`export_canvas`) — the layout of Canvas's gradebook export, which its
  *Import* accepts: columns ``Student, ID, SIS User ID, SIS Login ID, Section`` (Canvas matches
  a row by ``ID``, ``SIS User ID`` or ``SIS Login ID``), then one column per assignment, and a
  second row ``Points Possible`` with each column's maximum.  A column that matches an existing
  Canvas assignment must be named like Canvas names it, ``Title (canvas id)``: give ``columns``
  (``{"01_change_of_variables": "Assignment 1 (12345)"}``); any other column makes Canvas
  create a new assignment.
* **Moodle** (:func:`export_moodle`) — for *Grades → Import → CSV file*: identity columns
  ``Username, Email address, ID number`` (choose one under *Identify user by → Map from*), one
  grade column per assignment and, with ``feedback=True``, a ``<assignment> feedback`` column
  that Moodle maps to that grade item's feedback (each part's points and message).
* **nbgrader** (:func:`export_nbgrader`) — exactly ``nbgrader export`` (its ``CsvExportPlugin``).
* **parts** (:func:`export_parts`) — one row per student, assignment and graded part: score,
  maximum and the part's message (partial credit with the reason).

Scores are those of nbgrader: per part the grade cell's score (manual if an instructor set one,
else the autograder's, partial credit included), per assignment the sum minus the late
penalty, zero for a student without a submission (as ``nbgrader export`` does).  Student
identities come from the gradebook (``id``, names, ``email``, ``lms_user_id``) unless a
*roster* CSV gives them: a column ``student_id`` and any of ``name, canvas_id, sis_user_id,
sis_login_id, section, username, email, idnumber``.

    python -m flowlab_course export --to grades/ [--roster roster.csv]
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Grades", "Part", "export_all", "export_canvas", "export_moodle", "export_nbgrader",
           "export_parts", "part_messages", "read_grades"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ROSTER_FIELDS = ("name", "canvas_id", "sis_user_id", "sis_login_id", "section", "username",
                 "email", "idnumber")


@dataclass
class Part:
    """One graded part (an nbgrader grade cell) of one student's submission."""

    notebook: str
    name: str
    score: float
    max_score: float
    message: str = ""


@dataclass
class Grades:
    """The gradebook as one table (see :func:`read_grades`)."""

    students: dict[str, dict[str, str]]              # id -> identity fields
    assignments: list[str]                           # in order of due date, then name
    max_score: dict[str, float]                      # assignment -> points possible
    score: dict[tuple[str, str], float]              # (student, assignment) -> final score
    parts: dict[tuple[str, str], list[Part]] = field(default_factory=dict)

    def total(self, student: str, assignments: Iterable[str] | None = None) -> float:
        return sum(self.score.get((student, a), 0.0) for a in (assignments or self.assignments))


def part_messages(course_root: str, assignment: str, student: str) -> dict[str, str]:
    """``{grade_id: message}`` for every graded cell of one student, in notebook order.

    The message of a test cell is its error (``GradingFailure: log|det| has the wrong sign``),
    or, for a cell without an error, the last line it printed (where the grader reports
    partial credit: ``◐ partial credit: ...``); ``""`` when it has neither.
    """
    import nbformat

    folder = os.path.join(course_root, "autograded", student, assignment)
    found: dict[str, str] = {}
    if not os.path.isdir(folder):
        return found
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".ipynb"):
            continue
        for cell in nbformat.read(os.path.join(folder, name), as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            grade_id = meta.get("grade_id")
            if not grade_id or not meta.get("grade") or cell.cell_type != "code":
                continue
            outputs = cell.get("outputs", [])
            errors = [o for o in outputs if o.get("output_type") == "error"]
            if errors:
                err = errors[-1]
                text = f"{err.get('ename', 'Error')}: {err.get('evalue', '')}"
            else:
                text = "".join(o.get("text", "") for o in outputs
                               if o.get("output_type") == "stream")[-2000:]
            lines = [line for line in _ANSI.sub("", text).strip().splitlines() if line.strip()]
            found[grade_id] = ((lines[0] if errors else lines[-1])[:300]) if lines else ""
    return found


def read_grades(course_root: str, messages: bool = True,
                roster: str | Mapping[str, Mapping[str, str]] | None = None,
                only: Iterable[str] | None = None) -> Grades:
    """Read the gradebook of the course at ``course_root`` into a :class:`Grades` table.

    Args:
        course_root: the course folder (its ``gradebook.db``).
        messages: also read each part's message off the autograded notebooks.
        roster: a roster CSV path (or ``{student_id: {field: value}}``) that overrides the
            gradebook's identities (see the module docstring).
        only: read only these assignments (default: all).
    """
    from nbgrader.api import Gradebook, MissingEntry

    course_root = os.path.abspath(course_root)
    people = _roster(roster)
    students: dict[str, dict[str, str]] = {}
    score: dict[tuple[str, str], float] = {}
    parts: dict[tuple[str, str], list[Part]] = {}
    with Gradebook("sqlite:///" + os.path.join(course_root, "gradebook.db")) as gb:
        wanted = None if only is None else set(only)
        assignments = sorted((a for a in gb.assignments if wanted is None or a.name in wanted),
                             key=lambda a: (a.duedate is None, str(a.duedate or ""), a.name))
        names = [a.name for a in assignments]
        max_score = {a.name: float(a.max_score) for a in assignments}
        for student in gb.students:
            first, last = student.first_name or "", student.last_name or ""
            identity = {
                "name": f"{last}, {first}" if first and last else (last or first or student.id),
                "canvas_id": str(student.lms_user_id or ""), "sis_user_id": "",
                "sis_login_id": student.id, "section": "", "username": student.id,
                "email": student.email or "", "idnumber": str(student.lms_user_id or ""),
            }
            identity.update({k: v for k, v in people.get(student.id, {}).items() if v})
            students[student.id] = identity
            for assignment in assignments:
                try:
                    sub = gb.find_submission(assignment.name, student.id)
                except MissingEntry:
                    score[(student.id, assignment.name)] = 0.0
                    continue
                score[(student.id, assignment.name)] = max(
                    0.0, float(sub.score) - float(sub.late_submission_penalty or 0.0))
                said = (part_messages(course_root, assignment.name, student.id)
                        if messages else {})
                order = {name: i for i, name in enumerate(said)}
                parts[(student.id, assignment.name)] = [
                    Part(notebook.name, grade.name, float(grade.score or 0.0),
                         float(grade.max_score), said.get(grade.name, ""))
                    for notebook in sorted(sub.notebooks, key=lambda n: n.name)
                    for grade in sorted(notebook.grades,
                                        key=lambda g: (order.get(g.name, len(order)), g.name))
                    if grade.max_score > 0]
    return Grades(students, names, max_score, score, parts)


def _roster(roster: str | Mapping[str, Mapping[str, str]] | None
            ) -> dict[str, dict[str, str]]:
    if roster is None:
        return {}
    if not isinstance(roster, str):
        return {k: dict(v) for k, v in roster.items()}
    with open(roster, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "student_id" not in rows[0]:
        raise ValueError(f"the roster {roster} needs a column 'student_id' (the nbgrader id) "
                         f"and any of {', '.join(ROSTER_FIELDS)}; it has {list(rows[0])}")
    return {row["student_id"]: {k: (row.get(k) or "") for k in ROSTER_FIELDS} for row in rows}


def _number(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _chosen(grades: Grades, assignments: Iterable[str] | None) -> list[str]:
    chosen = list(assignments) if assignments is not None else list(grades.assignments)
    unknown = [a for a in chosen if a not in grades.max_score]
    if unknown:
        raise ValueError(f"no assignment {unknown} in the gradebook; it has {grades.assignments}")
    return chosen


def export_canvas(grades: Grades, path: str, assignments: Iterable[str] | None = None, *,
                  columns: Mapping[str, str] | None = None, total: bool = True) -> str:
    """Write the Canvas gradebook import CSV of ``assignments`` (default: all) to ``path``.

    Args:
        grades: from :func:`read_grades`.
        path: the CSV file to write.
        assignments: the assignment columns, in this order.
        columns: Canvas column titles per assignment (``"Title (canvas id)"`` to update an
            existing Canvas assignment); default the nbgrader name.
        total: add a column ``flowlab total`` with the sum (Canvas imports it as an assignment
            of its own: make it not count towards the final grade, or leave it out).
    """
    chosen = _chosen(grades, assignments)
    columns = dict(columns or {})
    header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    header += [columns.get(a, a) for a in chosen] + (["flowlab total"] if total else [])
    possible = ["Points Possible", "", "", "", ""] + [_number(grades.max_score[a])
                                                      for a in chosen]
    possible += [_number(sum(grades.max_score[a] for a in chosen))] if total else []
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerow(possible)
        for sid, who in sorted(grades.students.items()):
            row = [who["name"], who["canvas_id"], who["sis_user_id"], who["sis_login_id"],
                   who["section"]]
            row += [_number(grades.score[(sid, a)]) for a in chosen]
            row += [_number(grades.total(sid, chosen))] if total else []
            writer.writerow(row)
    return path


def _feedback(parts: list[Part]) -> str:
    return "; ".join(f"{p.name}: {_number(p.score)}/{_number(p.max_score)}"
                     + (f" — {p.message}" if p.message and p.score < p.max_score else "")
                     for p in parts)


def export_moodle(grades: Grades, path: str, assignments: Iterable[str] | None = None, *,
                  feedback: bool = True, total: bool = True) -> str:
    """Write the Moodle grade import CSV of ``assignments`` (default: all) to ``path``.

    Args:
        grades: from :func:`read_grades`.
        path: the CSV file to write.
        assignments: the grade columns, in this order.
        feedback: add ``<assignment> feedback`` columns: each part's points, and the message
            of every part that lost points (map them to the grade items' feedback in Moodle).
        total: add a column ``flowlab total`` (a grade item of its own in Moodle).
    """
    chosen = _chosen(grades, assignments)
    header = ["Username", "Email address", "ID number"]
    for a in chosen:
        header += [a] + ([f"{a} feedback"] if feedback else [])
    header += ["flowlab total"] if total else []
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for sid, who in sorted(grades.students.items()):
            row = [who["username"], who["email"], who["idnumber"]]
            for a in chosen:
                row.append(_number(grades.score[(sid, a)]))
                if feedback:
                    row.append(_feedback(grades.parts.get((sid, a), [])) or "no submission")
            row += [_number(grades.total(sid, chosen))] if total else []
            writer.writerow(row)
    return path


def export_parts(grades: Grades, path: str, assignments: Iterable[str] | None = None) -> str:
    """Write one row per student, assignment and part (score, max, message) to ``path``."""
    chosen = _chosen(grades, assignments)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "assignment", "notebook", "part", "score", "max_score",
                         "message"])
        for sid in sorted(grades.students):
            for a in chosen:
                for p in grades.parts.get((sid, a), []):
                    writer.writerow([sid, a, p.notebook, p.name, _number(p.score),
                                     _number(p.max_score), p.message])
    return path


def export_nbgrader(course_root: str, path: str) -> str:
    """``nbgrader export`` to ``path``: nbgrader's own CSV (its ``CsvExportPlugin``)."""
    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin

    course_root = os.path.abspath(course_root)
    with Gradebook("sqlite:///" + os.path.join(course_root, "gradebook.db")) as gb:
        CsvExportPlugin(to=os.path.abspath(path)).export(gb)
    return path


def export_all(course_root: str, out_dir: str, *, roster: str | None = None,
               columns: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every export into ``out_dir``: class files, one Canvas and Moodle file per assignment.

    Writes ``canvas.csv``, ``moodle.csv`` (all assignments and the total), ``canvas-<a>.csv``
    and ``moodle-<a>.csv`` (one assignment each, no total), ``parts.csv`` and ``nbgrader.csv``;
    returns ``{name: path}``.
    """
    os.makedirs(out_dir, exist_ok=True)
    grades = read_grades(course_root, roster=roster)
    if not grades.students:
        raise ValueError(f"the gradebook of {course_root} has no students: autograde first")
    out = {"canvas": export_canvas(grades, os.path.join(out_dir, "canvas.csv"),
                                   columns=columns),
           "moodle": export_moodle(grades, os.path.join(out_dir, "moodle.csv")),
           "parts": export_parts(grades, os.path.join(out_dir, "parts.csv")),
           "nbgrader": export_nbgrader(course_root, os.path.join(out_dir, "nbgrader.csv"))}
    for a in grades.assignments:
        out[f"canvas-{a}"] = export_canvas(grades, os.path.join(out_dir, f"canvas-{a}.csv"), [a],
                                           columns=columns, total=False)
        out[f"moodle-{a}"] = export_moodle(grades, os.path.join(out_dir, f"moodle-{a}.csv"), [a],
                                           total=False)
    return out
