r"""Grades out of the gradebook: CSV files that Canvas and Moodle import, and nbgrader's own.

:func:`read_grades` reads the gradebook (and the autograded notebooks, for the message of each
part) into one :class:`Grades` table; the writers turn it into:

* **Canvas** (:func:`export_canvas`) — the layout of Canvas's gradebook export, which its
  *Grades → Import* reads: ``Student, ID, SIS User ID, SIS Login ID, Section``, one column per
  assignment, a second row ``Points Possible``.  Canvas finds the student by ``ID`` (its user
  id), then ``SIS User ID``, then ``SIS Login ID``, then the name; it finds the assignment by the
  number in ``Title (id)`` and creates a *new assignment* for any other title.  So every column
  must be named ``Title (canvas id)`` (``columns``; copy the titles off a Canvas export), unless
  you really want new assignments (``new_assignments=True``).
* **Moodle** (:func:`export_moodle`) — for *Grades → Import → CSV file*: one identity column
  (``identity``: ``username``, ``email`` or ``idnumber``, chosen under *Identify user by → Map
  from*), one grade column per assignment and, with ``feedback=True``, a ``<assignment>
  feedback`` column (each part's points and message).
* **nbgrader** (:func:`export_nbgrader`) — exactly ``nbgrader export`` (its ``CsvExportPlugin``).
* **parts** (:func:`export_parts`) — one row per student, assignment and graded part: score,
  maximum and the part's message (partial credit with the reason).

**No grade is lost or misplaced.**

* An assignment a student did not submit is *no grade*: blank in Canvas, ``-`` in Moodle (both
  importers read these as "no score"), never 0 — a 0 would overwrite a grade entered by hand or
  punish work that is not due yet.  Scores are those of nbgrader: per part the grade cell's
  score (manual if an instructor set one, else the autograder's, partial credit included), per
  submission the sum minus the late penalty.
* Identities come from a *roster* CSV: a column ``student_id`` (the nbgrader id) and the LMS
  keys, any of ``name, canvas_id, sis_user_id, sis_login_id, section, username, email,
  idnumber``.  Nothing is guessed from nbgrader's ids.  Before anything is written the export
  checks the roster against the gradebook and stops (:class:`RosterMismatch`, every name
  listed, no file written) when a student with a graded submission is not on the roster, a
  roster row has no key the LMS matches on (Canvas: ``canvas_id``, ``sis_user_id`` or
  ``sis_login_id``; Moodle: the chosen identity), or two rows share a key.  Moodle's importer
  gives a row with a blank identity to the previous row's student and aborts the whole import
  on one unknown user; Canvas creates a new student for an unknown one: hence the checks.
  Without a roster the LMS exports refuse (:data:`ROSTER_HOWTO` says how to make one).

    python -m flowlab_course export --roster roster.csv --to grades/ \
        [--lms canvas --canvas-column '01_change_of_variables=Assignment 1 (4711)' ...] \
        [--lms moodle --moodle-identity email]
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["CANVAS_KEYS", "Grades", "MOODLE_IDENTITIES", "Part", "ROSTER_HOWTO", "RosterMismatch",
           "check_roster", "export_all", "export_canvas", "export_moodle", "export_nbgrader",
           "export_parts", "part_messages", "read_grades"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ROSTER_FIELDS = ("name", "canvas_id", "sis_user_id", "sis_login_id", "section", "username",
                 "email", "idnumber")
#: The roster fields by which Canvas's importer finds a student (in its order), with the column.
CANVAS_KEYS = {"canvas_id": "ID", "sis_user_id": "SIS User ID", "sis_login_id": "SIS Login ID"}
#: Moodle's *Identify user by* choices: roster field -> the column's title in the file.
MOODLE_IDENTITIES = {"username": "Username", "email": "Email address", "idnumber": "ID number"}
#: Canvas's importer takes the assignment id from a title ``Title (id)``.
CANVAS_TITLE = re.compile(r"\A(.*)\s\((\d+)\)\Z")

ROSTER_HOWTO = (
    "Exports for an LMS need a roster, so that every grade goes to the right person: a CSV with "
    "a column student_id (each student's nbgrader id) and the LMS's keys: for Canvas canvas_id "
    "and/or sis_user_id, sis_login_id (Canvas: Grades > Export gives them in its columns ID, "
    "SIS User ID, SIS Login ID), for Moodle username, email or idnumber (Moodle: Participants, "
    "or Grades > Export > Plain text file). Add the student_id column, then run "
    "`python -m flowlab_course export --roster roster.csv --to grades/` "
    "(make export-lms ROSTER=roster.csv).")


class RosterMismatch(ValueError):
    """The roster and the gradebook disagree: exporting would lose or misplace grades."""


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
    """The gradebook as one table (see :func:`read_grades`).

    ``score`` holds only submitted work: ``score.get((student, assignment))`` is ``None`` for
    an assignment the student did not submit (no grade, never 0).
    """

    students: dict[str, dict[str, str]]              # id -> identity fields
    assignments: list[str]                           # in order of due date, then name
    max_score: dict[str, float]                      # assignment -> points possible
    score: dict[tuple[str, str], float]              # (student, assignment) -> final score
    parts: dict[tuple[str, str], list[Part]] = field(default_factory=dict)
    roster: dict[str, dict[str, str]] | None = None  # student_id -> roster row, if one was given

    def submitted(self, student: str, assignment: str) -> bool:
        return (student, assignment) in self.score

    def total(self, student: str, assignments: Iterable[str] | None = None) -> float | None:
        """Sum over the submitted ``assignments`` (default all); ``None`` if none submitted."""
        got = [self.score[(student, a)] for a in (assignments or self.assignments)
               if (student, a) in self.score]
        return sum(got) if got else None

    @property
    def graded(self) -> list[str]:
        """Students with at least one submission in the gradebook."""
        return sorted({s for (s, _) in self.score})


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
        roster: a roster CSV path (or ``{student_id: {field: value}}``): the students' LMS
            identities (see the module docstring).  Its students without a gradebook entry
            are in the table too (nothing submitted).
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
            identity = dict.fromkeys(ROSTER_FIELDS, "")
            identity["name"] = f"{last}, {first}" if first and last else (last or first)
            identity.update({k: v for k, v in people.get(student.id, {}).items() if v})
            students[student.id] = identity
            for assignment in assignments:
                try:
                    sub = gb.find_submission(assignment.name, student.id)
                except MissingEntry:
                    continue                     # not submitted: no grade (not 0)
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
    for sid, row in people.items():           # on the roster, never seen by nbgrader
        if sid not in students:
            students[sid] = {**dict.fromkeys(ROSTER_FIELDS, ""), **row}
    return Grades(students, names, max_score, score, parts,
                  roster=None if roster is None else people)


def _roster(roster: str | Mapping[str, Mapping[str, str]] | None
            ) -> dict[str, dict[str, str]]:
    if roster is None:
        return {}
    if not isinstance(roster, str):
        return {k: {f: (v.get(f) or "").strip() for f in ROSTER_FIELDS}
                for k, v in roster.items()}
    with open(roster, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "student_id" not in rows[0]:
        raise ValueError(f"the roster {roster} needs a column 'student_id' (the nbgrader id) "
                         f"and any of {', '.join(ROSTER_FIELDS)}; it has {list(rows[0])}")
    people: dict[str, dict[str, str]] = {}
    nameless = [i for i, row in enumerate(rows, 2) if not (row.get("student_id") or "").strip()]
    twice = sorted({row["student_id"].strip() for row in rows
                    if sum(r["student_id"].strip() == row["student_id"].strip()
                           for r in rows) > 1} - {""})
    if nameless or twice:
        raise RosterMismatch(
            f"the roster {roster}: "
            + (f"rows {nameless} have no student_id; " if nameless else "")
            + (f"student_id {twice} appear on more than one row; " if twice else "")
            + "fix it and export again (nothing was written)")
    for row in rows:
        people[row["student_id"].strip()] = {k: (row.get(k) or "").strip()
                                             for k in ROSTER_FIELDS}
    return people


def check_roster(grades: Grades, keys: Iterable[str], lms: str) -> None:
    """Raise :class:`RosterMismatch` (every name listed) unless each student is found by one
    of ``keys`` in the LMS: no roster, a graded student off the roster, a roster row without
    any of ``keys``, or two rows sharing a key's value."""
    keys = list(keys)
    if grades.roster is None:
        raise RosterMismatch(f"no roster: the {lms} file would have to guess who is who. "
                             + ROSTER_HOWTO)
    problems = []
    missing = [s for s in grades.graded if s not in grades.roster]
    if missing:
        problems.append(f"graded in nbgrader but not on the roster: {', '.join(missing)} "
                        "(add them to the roster, with their LMS keys)")
    keyless = sorted(s for s in grades.roster if not any(grades.roster[s].get(k) for k in keys))
    if keyless:
        problems.append(f"on the roster without {' or '.join(keys)}, so {lms} cannot find "
                        f"them: {', '.join(keyless)}")
    for key in keys:
        seen: dict[str, list[str]] = {}
        for s, row in grades.roster.items():
            if row.get(key):
                seen.setdefault(row[key], []).append(s)
        for value, who in sorted(seen.items()):
            if len(who) > 1:
                problems.append(f"{key} {value!r} is given to {', '.join(sorted(who))}")
    if problems:
        raise RosterMismatch(f"the roster does not match the gradebook; nothing was written "
                             f"for {lms}:\n  " + "\n  ".join(problems))


def _number(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _chosen(grades: Grades, assignments: Iterable[str] | None) -> list[str]:
    chosen = list(assignments) if assignments is not None else list(grades.assignments)
    unknown = [a for a in chosen if a not in grades.max_score]
    if unknown:
        raise ValueError(f"no assignment {unknown} in the gradebook; it has {grades.assignments}")
    return chosen


def _listed(grades: Grades) -> list[str]:
    """The students a file lists: the roster's (graded ones are on it, checked)."""
    return sorted(grades.roster or {})


def _write(path: str, rows: list[list[str]]) -> str:
    """Write ``rows`` to ``path`` whole or not at all (a temporary file, then a rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.part")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    os.replace(tmp, path)
    return path


def _canvas_titles(grades: Grades, chosen: list[str], columns: Mapping[str, str] | None,
                   new_assignments: bool) -> list[str]:
    columns = dict(columns or {})
    titles = [columns.get(a, a) for a in chosen]
    if not new_assignments:
        bad = [a for a, t in zip(chosen, titles) if not CANVAS_TITLE.match(t)]
        if bad:
            raise RosterMismatch(
                f"Canvas would create a new assignment for {', '.join(bad)}: name each column "
                "like Canvas's own export does, 'Title (canvas id)' (--canvas-column "
                f"'{bad[0]}=Assignment 1 (12345)'; the ids are in a Canvas gradebook export's "
                "header), or pass new_assignments=True (--canvas-new-assignments) if new "
                "assignments are what you want; nothing was written")
    return titles


def export_canvas(grades: Grades, path: str, assignments: Iterable[str] | None = None, *,
                  columns: Mapping[str, str] | None = None, new_assignments: bool = False,
                  total: bool = False) -> str:
    """Write the Canvas gradebook import CSV of ``assignments`` (default: all) to ``path``.

    Args:
        grades: from :func:`read_grades`, with a roster (checked: :func:`check_roster`).
        path: the CSV file to write (only after every check passed).
        assignments: the assignment columns, in this order.
        columns: Canvas column titles per assignment, ``"Title (canvas id)"``.
        new_assignments: allow titles without an id (Canvas then creates new assignments).
        total: add a column ``flowlab total`` (Canvas creates an assignment for it that counts
            towards the final grade unless you exclude it: off by default).

    Unsubmitted work is a blank cell (Canvas: no score), never 0.
    """
    chosen = _chosen(grades, assignments)
    titles = _canvas_titles(grades, chosen, columns, new_assignments or not chosen)
    check_roster(grades, CANVAS_KEYS, "Canvas")
    rows = [["Student", *CANVAS_KEYS.values(), "Section", *titles]
            + (["flowlab total"] if total else []),
            ["Points Possible", "", "", "", ""] + [_number(grades.max_score[a]) for a in chosen]
            + ([_number(sum(grades.max_score[a] for a in chosen))] if total else [])]
    for sid in _listed(grades):
        who = grades.students[sid]
        row = [who["name"], *(who[k] for k in CANVAS_KEYS), who["section"]]
        row += [_number(grades.score[(sid, a)]) if grades.submitted(sid, a) else ""
                for a in chosen]
        if total:
            got = grades.total(sid, chosen)
            row.append("" if got is None else _number(got))
        rows.append(row)
    return _write(path, rows)


def _feedback(parts: list[Part]) -> str:
    return "; ".join(f"{p.name}: {_number(p.score)}/{_number(p.max_score)}"
                     + (f" — {p.message}" if p.message and p.score < p.max_score else "")
                     for p in parts)


def export_moodle(grades: Grades, path: str, assignments: Iterable[str] | None = None, *,
                  identity: str = "username", feedback: bool = True,
                  total: bool = True) -> str:
    """Write the Moodle grade import CSV of ``assignments`` (default: all) to ``path``.

    Args:
        grades: from :func:`read_grades`, with a roster (checked: :func:`check_roster`).
        path: the CSV file to write (only after every check passed).
        assignments: the grade columns, in this order.
        identity: the roster field Moodle identifies users by (``username``, ``email`` or
            ``idnumber``); the file's first column, to choose under *Identify user by*.
        feedback: add ``<assignment> feedback`` columns: each part's points, and the message
            of every part that lost points (map them to the grade items' feedback in Moodle).
        total: add a column ``flowlab total`` (map it to a grade item of its own, or ignore it).

    Unsubmitted work is ``-`` (Moodle: no grade), never 0.
    """
    if identity not in MOODLE_IDENTITIES:
        raise ValueError(f"identity must be one of {sorted(MOODLE_IDENTITIES)}, not {identity!r}")
    chosen = _chosen(grades, assignments)
    check_roster(grades, [identity], "Moodle")
    header = [MOODLE_IDENTITIES[identity]]
    for a in chosen:
        header += [a] + ([f"{a} feedback"] if feedback else [])
    rows = [header + (["flowlab total"] if total else [])]
    for sid in _listed(grades):
        row = [grades.students[sid][identity]]
        for a in chosen:
            done = grades.submitted(sid, a)
            row.append(_number(grades.score[(sid, a)]) if done else "-")
            if feedback:
                row.append((_feedback(grades.parts.get((sid, a), [])) or "graded")
                           if done else "no submission")
        if total:
            got = grades.total(sid, chosen)
            row.append("-" if got is None else _number(got))
        rows.append(row)
    return _write(path, rows)


def export_parts(grades: Grades, path: str, assignments: Iterable[str] | None = None) -> str:
    """Write one row per student, assignment and part (score, max, message) to ``path``.

    Keyed by the nbgrader id (for the instructor, not for an LMS): needs no roster.
    """
    chosen = _chosen(grades, assignments)
    rows = [["student_id", "assignment", "notebook", "part", "score", "max_score", "message"]]
    for sid in sorted(grades.students):
        for a in chosen:
            for p in grades.parts.get((sid, a), []):
                rows.append([sid, a, p.notebook, p.name, _number(p.score),
                             _number(p.max_score), p.message])
    return _write(path, rows)


def export_nbgrader(course_root: str, path: str) -> str:
    """``nbgrader export`` to ``path``: nbgrader's own CSV (its ``CsvExportPlugin``)."""
    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin

    course_root = os.path.abspath(course_root)
    with Gradebook("sqlite:///" + os.path.join(course_root, "gradebook.db")) as gb:
        CsvExportPlugin(to=os.path.abspath(path)).export(gb)
    return path


def _lms_of(grades: Grades, moodle_identity: str) -> list[str]:
    """The LMSs whose keys the roster has (a column with at least one value)."""
    rows = list((grades.roster or {}).values())
    found = []
    if any(row.get(k) for row in rows for k in CANVAS_KEYS):
        found.append("canvas")
    if any(row.get(moodle_identity) for row in rows):
        found.append("moodle")
    return found


def export_all(course_root: str, out_dir: str, *, roster: str | None = None,
               columns: Mapping[str, str] | None = None, lms: Iterable[str] | None = None,
               moodle_identity: str = "username", canvas_new_assignments: bool = False
               ) -> dict[str, str]:
    """Every export into ``out_dir``, or none: class files and one file per assignment.

    Writes, for each LMS in ``lms`` (default: those whose keys the roster has),
    ``canvas.csv`` / ``moodle.csv`` (all assignments) and ``canvas-<a>.csv`` /
    ``moodle-<a>.csv`` (one each), then ``parts.csv`` and ``nbgrader.csv``; returns
    ``{name: path}``.  Every check (roster, Canvas titles) runs before the first file is
    written: a mismatch raises :class:`RosterMismatch` and writes nothing.
    """
    if roster is None:
        raise RosterMismatch("no roster given: " + ROSTER_HOWTO)
    grades = read_grades(course_root, roster=roster)
    if not grades.graded:
        raise ValueError(f"the gradebook of {course_root} has no submissions: autograde first")
    chosen_lms = list(lms) if lms is not None else _lms_of(grades, moodle_identity)
    unknown = set(chosen_lms) - {"canvas", "moodle"}
    if unknown or not chosen_lms:
        raise RosterMismatch(
            f"no LMS to export for (asked: {sorted(unknown) or 'none'}); the roster has "
            f"neither Canvas keys ({', '.join(CANVAS_KEYS)}) nor the Moodle identity "
            f"{moodle_identity!r}. " + ROSTER_HOWTO)
    if "canvas" in chosen_lms:                 # every check first: all files or none
        _canvas_titles(grades, grades.assignments, columns, canvas_new_assignments)
        check_roster(grades, CANVAS_KEYS, "Canvas")
    if "moodle" in chosen_lms:
        if moodle_identity not in MOODLE_IDENTITIES:
            raise ValueError(f"moodle_identity must be one of {sorted(MOODLE_IDENTITIES)}")
        check_roster(grades, [moodle_identity], "Moodle")
    os.makedirs(out_dir, exist_ok=True)
    out: dict[str, str] = {}
    one = {"canvas": lambda a, p: export_canvas(grades, p, a, columns=columns,
                                                new_assignments=canvas_new_assignments),
           "moodle": lambda a, p: export_moodle(grades, p, a, identity=moodle_identity,
                                                total=a is None or len(a) > 1)}
    for name in chosen_lms:
        out[name] = one[name](None, os.path.join(out_dir, f"{name}.csv"))
        for a in grades.assignments:
            out[f"{name}-{a}"] = one[name]([a], os.path.join(out_dir, f"{name}-{a}.csv"))
    out["parts"] = export_parts(grades, os.path.join(out_dir, "parts.csv"))
    out["nbgrader"] = export_nbgrader(course_root, os.path.join(out_dir, "nbgrader.csv"))
    return out
