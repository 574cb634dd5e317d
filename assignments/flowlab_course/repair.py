r"""Preflight: make every submitted notebook one that nbgrader can grade, or say why it cannot.

nbgrader stops a whole ``autograde`` run at the first notebook whose nbgrader metadata has an
old or new ``schema_version`` (and fails a student whose cells have duplicated or missing
``grade_id``\ s, changed types, or whose file is not JSON).  About one submission in twenty has
such a structural edit: a cell copied (its ``grade_id`` with it), a cell deleted or moved, a
cell turned into Markdown, a notebook saved by another tool.  Before grading, every path
(``make autograde``, ``python -m flowlab_course autograde -j N`` and ``--scheduler``) passes each
notebook through :func:`inspect_notebook`:

* **no defect**: the file is graded as it is (byte for byte), so scores are nbgrader's;
* **repairable**: the release's cells are restored the way nbgrader's own ``OverwriteCells``
  restores locked cells: the student's cells are matched to the assignment's cells by
  ``grade_id`` (the last copy wins, as nbgrader's ``DeduplicateIds`` decides) or, where the id
  is gone, by content (the same text for an instructor's cell; for a solution cell, the names
  it defines, else :class:`difflib.SequenceMatcher` similarity to the released cell); each
  matched cell gets the instructor's metadata and cell type, instructor cells get the
  instructor's text, the cells are put back in the release's order (a student's own cells
  travel with the cell they followed), and a solution cell that cannot be found is the
  released stub (that part scores zero).  The submission is graded on its code and flagged
  ``repaired`` with the list of defects;
* **unreadable** (not JSON, not a notebook): graded zero on every test and flagged
  ``unreadable`` with the reason.

The student's file is never changed: :func:`preflight` writes what nbgrader grades into a
*staged* copy of ``submitted/`` (``.flowlab-grading/submitted/<student>/<assignment>/``), which
``nbgrader autograde --CourseDirectory.submitted_directory=.flowlab-grading/submitted`` grades
(``make autograde`` does exactly this), and records the flags in
``.flowlab-grading/<assignment>.preflight.json`` for the class report.
"""

from __future__ import annotations

import ast
import copy
import difflib
import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from typing import Any

import nbformat
from nbformat.notebooknode import NotebookNode, from_dict
from nbformat.v4.nbbase import random_cell_id

__all__ = ["PREFLIGHT_FILE", "STAGED_DIR", "NotebookCheck", "inspect_notebook", "preflight",
           "read_preflight", "release_view", "zero_submission"]

STAGED_DIR = os.path.join(".flowlab-grading", "submitted")   # relative to the course root
PREFLIGHT_FILE = "{assignment}.preflight.json"                # in .flowlab-grading/
SCHEMA_VERSION = 3                                            # nbgrader 0.9's cell metadata
_DEFAULT_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


@dataclass
class NotebookCheck:
    """What :func:`inspect_notebook` found in one submitted notebook.

    ``status`` is ``"ok"`` (graded as submitted), ``"repaired"`` (``notebook`` is what to grade)
    or ``"unreadable"`` (graded zero); ``defects`` name each problem found, in words an
    instructor can check against the file.
    """

    name: str
    status: str
    defects: list[str] = field(default_factory=list)
    notebook: NotebookNode | None = None

    def flag(self) -> dict[str, Any] | None:
        """The class report's flag for this notebook (``None`` when nothing was wrong)."""
        if self.status == "ok":
            return None
        if self.status == "unreadable":
            message = ("could not be read, graded zero on every test: " + "; ".join(self.defects)
                       + ". The student's file is unchanged; ask for a new copy.")
        else:
            message = ("nbgrader could not grade it as submitted; the release's cells were "
                       "restored and the student's code graded: " + "; ".join(self.defects))
        return {"part": None, "kind": self.status, "notebook": self.name, "message": message}


# --------------------------------------------------------------------------- the template
def release_view(source_nb: NotebookNode, code_stub: dict | None = None) -> NotebookNode:
    """The source notebook as released: solution regions stubbed, hidden tests removed."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    nb = copy.deepcopy(source_nb)
    stub = ClearSolutions(code_stub=code_stub or {"python": _DEFAULT_STUB})
    nb, _ = stub.preprocess(nb, {})
    nb, _ = ClearHiddenTests().preprocess(nb, {})
    return nb


def _nbgrader(cell: Any) -> dict:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    value = meta.get("nbgrader") if isinstance(meta, dict) else None
    return value if isinstance(value, dict) else {}


def _text(source: Any) -> str:
    if isinstance(source, list):
        return "".join(str(s) for s in source)
    return source if isinstance(source, str) else ""


def _defined_names(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(re.findall(r"^(?:async\s+)?(?:def|class)\s+(\w+)", source, re.MULTILINE))
    return {node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _normalised(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


# --------------------------------------------------------------------------- one notebook
def _read(text: bytes | str) -> tuple[dict | None, list[str]]:
    """The notebook as a plain dict, or ``None`` and why not."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            return None, [f"not UTF-8 text ({err.reason} at byte {err.start})"]
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        return None, [f"invalid JSON: {err.msg} at line {err.lineno}, column {err.colno}"]
    if not isinstance(raw, dict):
        return None, [f"not a notebook: the file holds a JSON {type(raw).__name__}"]
    if isinstance(raw.get("worksheets"), list) and "cells" not in raw:   # nbformat 3
        try:
            raw = json.loads(nbformat.writes(nbformat.reads(text, as_version=4)))
        except Exception as err:  # noqa: BLE001 - any failure of the converter says the same
            return None, [f"an nbformat 3 notebook nbformat cannot convert ({err})"]
    if not isinstance(raw.get("cells"), list):
        return None, ["not a notebook: no list of cells"]
    return raw, []


def _fresh_cell(raw: Any) -> NotebookNode | None:
    if not isinstance(raw, dict):
        return None
    kind = raw.get("cell_type") if raw.get("cell_type") in ("code", "markdown", "raw") else "raw"
    meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    maker = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
             "raw": nbformat.v4.new_raw_cell}[kind]
    cell = maker(_text(raw.get("source")))
    cell.metadata = from_dict(copy.deepcopy(meta))
    return cell


def _as_type(cell: NotebookNode, kind: str) -> NotebookNode:
    if cell.cell_type == kind:
        return cell
    maker = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
             "raw": nbformat.v4.new_raw_cell}[kind]
    new = maker(cell.source)
    new.metadata = cell.metadata
    return new


def inspect_notebook(data: bytes | str, template: NotebookNode, name: str = "") -> NotebookCheck:
    """Check one submitted notebook against the release (``template``, see :func:`release_view`).

    Returns the check; for ``status == "repaired"`` its ``notebook`` is the notebook to grade.

    Example:
        >>> import nbformat
        >>> cell = nbformat.v4.new_code_cell("x = 1")
        >>> cell.metadata["nbgrader"] = {"grade_id": "a", "grade": False, "solution": True,
        ...                              "locked": False, "schema_version": 3, "task": False}
        >>> release = nbformat.v4.new_notebook(cells=[cell])
        >>> broken = nbformat.writes(release).replace('"schema_version": 3', '"schema_version": 1')
        >>> check = inspect_notebook(broken, release, "nb")
        >>> check.status, check.defects
        ('repaired', ["cell 'a': nbgrader metadata schema_version 1 (this nbgrader reads 3)"])
    """
    raw, why = _read(data)
    if raw is None:
        return NotebookCheck(name, "unreadable", why)
    defects: list[str] = []
    cells = [_fresh_cell(c) for c in raw["cells"]]
    if any(c is None for c in cells):
        defects.append(f"{sum(c is None for c in cells)} cell(s) that are not JSON objects "
                       "(dropped)")
    cells = [c for c in cells if c is not None]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # missing or duplicated cell ids: nbformat fixes
            nbformat.validate(nbformat.reads(json.dumps(raw), as_version=4))
    except Exception as err:  # noqa: BLE001 - nbformat raises several kinds
        defects.append(f"not a valid nbformat 4 notebook ({str(err).splitlines()[0][:120]})")

    wanted = [c for c in template.cells if _nbgrader(c).get("grade_id")]
    order = {_nbgrader(c)["grade_id"]: i for i, c in enumerate(wanted)}
    by_id = {_nbgrader(c)["grade_id"]: c for c in wanted}
    anchor: list[str | None] = [None] * len(cells)
    last: dict[str, int] = {}
    for index, cell in enumerate(cells):
        meta = _nbgrader(cell)
        if "nbgrader" in cell.metadata and not meta:
            defects.append(f"cell {index + 1}: nbgrader metadata is not an object")
        if not meta:
            continue
        grade_id = meta.get("grade_id")
        if not isinstance(grade_id, str) or not grade_id:
            if meta.get("grade") or meta.get("solution") or meta.get("locked") or meta.get(
                    "task"):
                defects.append(f"cell {index + 1}: nbgrader metadata without a grade_id")
            continue
        if grade_id not in by_id:
            defects.append(f"cell {index + 1}: grade_id {grade_id!r} is not in the release")
            continue
        version = meta.get("schema_version")
        if version != SCHEMA_VERSION:
            defects.append(f"cell {grade_id!r}: nbgrader metadata schema_version {version} "
                           f"(this nbgrader reads {SCHEMA_VERSION})")
        if cell.cell_type != by_id[grade_id].cell_type:
            defects.append(f"cell {grade_id!r}: cell type {cell.cell_type} (the release has "
                           f"{by_id[grade_id].cell_type})")
        if grade_id in last:
            defects.append(f"cell {grade_id!r}: its grade_id appears more than once (a copied "
                           "cell; the last copy is graded)")
        last[grade_id] = index
    for grade_id, index in last.items():
        anchor[index] = grade_id
    for index, cell in enumerate(cells):   # earlier copies become the student's own cells
        if _nbgrader(cell) and anchor[index] is None:
            cell.metadata.pop("nbgrader", None)

    # cells whose id is gone: match by content
    free = [i for i, a in enumerate(anchor) if a is None]
    for grade_id, wanted_cell in by_id.items():
        if grade_id in last:
            continue
        meta = _nbgrader(wanted_cell)
        match = None
        if meta.get("solution") and wanted_cell.cell_type == "code":
            names = _defined_names(wanted_cell.source)
            best = 0.0
            for i in free:
                if cells[i].cell_type != "code":
                    continue
                got = _defined_names(cells[i].source)
                score = 1.0 + len(names & got) if names and names <= got else \
                    difflib.SequenceMatcher(None, wanted_cell.source, cells[i].source).ratio()
                if score > best and score >= 0.6:
                    best, match = score, i
        else:
            target = _normalised(wanted_cell.source)
            match = next((i for i in free if _normalised(cells[i].source) == target), None)
        if match is None:
            defects.append(f"cell {grade_id!r} is missing (restored from the release"
                           + (": this part has no code to grade)" if meta.get("solution")
                              else ")"))
        else:
            defects.append(f"cell {grade_id!r} lost its nbgrader metadata (found by content)")
            anchor[match] = grade_id
            free.remove(match)
    seen = [order[a] for a in anchor if a is not None]
    if seen != sorted(seen):
        defects.append("cells are not in the release's order (put back in order)")
    if not defects:
        return NotebookCheck(name, "ok")

    # rebuild: the release's cells in order, each followed by the student's own cells after it
    groups: dict[str | None, list[NotebookNode]] = {None: []}
    current: str | None = None
    for index, cell in enumerate(cells):
        if anchor[index] is not None:
            current = anchor[index]
            groups[current] = []
        else:
            cell.metadata.pop("nbgrader", None)
            groups[current].append(cell)
    out = list(groups[None])
    for wanted_cell in wanted:
        grade_id = _nbgrader(wanted_cell)["grade_id"]
        meta = _nbgrader(wanted_cell)
        if grade_id in groups:
            student = cells[anchor.index(grade_id)]
            if meta.get("locked") and not meta.get("solution"):
                cell = copy.deepcopy(wanted_cell)   # the instructor's text, as OverwriteCells
            else:
                cell = _as_type(student, wanted_cell.cell_type)
                cell.metadata["nbgrader"] = copy.deepcopy(meta)
            out.append(cell)
            out.extend(groups[grade_id])
        else:
            out.append(copy.deepcopy(wanted_cell))
    nb = nbformat.v4.new_notebook(cells=out)
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    nb.metadata = from_dict(copy.deepcopy(metadata)) or copy.deepcopy(template.metadata)
    if "kernelspec" not in nb.metadata and "kernelspec" in template.metadata:
        nb.metadata.kernelspec = copy.deepcopy(template.metadata.kernelspec)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.id = random_cell_id()   # copies share ids: give every cell its own
    nbformat.validate(nb)
    return NotebookCheck(name, "repaired", defects, nb)


# --------------------------------------------------------------------------- a class
def _code_stub(course_root: str) -> dict | None:
    from .parallel import load_config

    config = load_config(course_root)
    stub = config.ClearSolutions.get("code_stub") if "ClearSolutions" in config else None
    return dict(stub) if isinstance(stub, dict) else None


def templates(course_root: str, assignment: str) -> dict[str, NotebookNode]:
    """``{notebook name: release view}`` of every notebook in ``source/<assignment>/``."""
    folder = os.path.join(course_root, "source", assignment)
    stub = _code_stub(course_root)
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".ipynb"):
            source = nbformat.read(os.path.join(folder, name), as_version=4)
            out[name[:-len(".ipynb")]] = release_view(source, stub)
    return out


def stage_submission(submitted: str, staged: str,
                     release: dict[str, NotebookNode]) -> list[NotebookCheck]:
    """Copy one student's ``submitted`` folder to ``staged``, repaired; return the checks.

    Unreadable notebooks are left out of ``staged`` (nbgrader grades a missing notebook zero).
    """
    if os.path.isdir(staged):
        shutil.rmtree(staged)
    shutil.copytree(submitted, staged, ignore=shutil.ignore_patterns("*.ipynb"))
    checks = []
    for name in sorted(os.listdir(submitted)):
        path = os.path.join(submitted, name)
        if not name.endswith(".ipynb") or not os.path.isfile(path):
            continue
        notebook = name[:-len(".ipynb")]
        if notebook not in release:   # nbgrader skips notebooks it does not know
            shutil.copy2(path, os.path.join(staged, name))
            continue
        with open(path, "rb") as handle:
            check = inspect_notebook(handle.read(), release[notebook], notebook)
        checks.append(check)
        if check.status == "ok":
            shutil.copy2(path, os.path.join(staged, name))
        elif check.status == "repaired":
            nbformat.write(check.notebook, os.path.join(staged, name))
            shutil.copystat(path, os.path.join(staged, name))
    return checks


def zero_submission(db_url: str, assignment: str, student: str,
                    timestamp: Any = None) -> None:
    """Grade ``student``'s submission zero on every test (nbgrader's way for a missing notebook)."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore")   # SQLAlchemy's session warnings inside nbgrader
        gb.update_or_create_student(student)
        extra = {"timestamp": timestamp} if timestamp else {}
        submission = gb.update_or_create_submission(assignment, student, **extra)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grade.auto_score = 0
                grade.needs_manual_grade = False
        gb.db.commit()


def _state(course_root: str, assignment: str) -> str:
    return os.path.join(course_root, ".flowlab-grading", PREFLIGHT_FILE.format(
        assignment=assignment))


def read_preflight(course_root: str, assignment: str) -> dict[str, list[dict]]:
    """``{student: [flag, ...]}`` recorded by the last preflight of each student."""
    path = _state(course_root, assignment)
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return json.load(handle)


def record_preflight(course_root: str, assignment: str,
                     flags: dict[str, list[dict]]) -> None:
    """Replace the recorded flags of the students in ``flags`` (an empty list clears them)."""
    state = read_preflight(course_root, assignment)
    for student, items in flags.items():
        if items:
            state[student] = items
        else:
            state.pop(student, None)
    path = _state(course_root, assignment)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".part", "w") as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    os.replace(path + ".part", path)


def _explain_zero(release: NotebookNode, check: NotebookCheck) -> NotebookNode:
    nb = copy.deepcopy(release)
    note = nbformat.v4.new_markdown_cell(
        "**Your submitted notebook could not be read, so it was graded zero.** "
        + "; ".join(check.defects) + ". Your file is kept unchanged: ask your instructor.")
    nb.cells.insert(0, note)
    return nb


def preflight(course_root: str, assignment: str, *, students: list[str] | None = None,
              db_url: str | None = None) -> dict[str, list[NotebookCheck]]:
    """Stage every submission of ``assignment`` for ``nbgrader autograde`` (module docstring).

    Writes ``.flowlab-grading/submitted/<student>/<assignment>/`` for each student, grades a
    student with no readable notebook zero in the gradebook (with an ``autograded/`` notebook
    that tells them why), records the flags, and returns ``{student: [check, ...]}``.
    """
    from .parallel import _gradebook_path, load_config, submissions

    course_root = os.path.abspath(course_root)
    release = templates(course_root, assignment)
    if db_url is None:
        db_url = "sqlite:///" + _gradebook_path(course_root, load_config(course_root))
    everyone = submissions(course_root, assignment)
    chosen = everyone if students is None else [s for s in everyone if s in set(students)]
    results: dict[str, list[NotebookCheck]] = {}
    staged_root = os.path.join(course_root, STAGED_DIR)
    if students is None and os.path.isdir(staged_root):   # withdrawn submissions
        for student in set(os.listdir(staged_root)) - set(everyone):
            shutil.rmtree(os.path.join(staged_root, student, assignment), ignore_errors=True)
    for student in chosen:
        submitted = os.path.join(course_root, "submitted", student, assignment)
        staged = os.path.join(course_root, STAGED_DIR, student, assignment)
        checks = stage_submission(submitted, staged, release)
        results[student] = checks
        readable = [c for c in checks if c.status != "unreadable"]
        if checks and not readable:   # nothing nbgrader could open: zero, and say why
            shutil.rmtree(staged, ignore_errors=True)   # nbgrader must not see this student
            stamp = os.path.join(submitted, "timestamp.txt")
            timestamp = None
            if os.path.exists(stamp):
                with open(stamp) as handle:
                    timestamp = handle.read().strip()
            from nbgrader.utils import parse_utc

            zero_submission(db_url, assignment, student,
                            parse_utc(timestamp) if timestamp else None)
            target = os.path.join(course_root, "autograded", student, assignment)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.makedirs(target)
            for check in checks:
                nbformat.write(_explain_zero(release[check.name], check),
                               os.path.join(target, check.name + ".ipynb"))
            if os.path.exists(stamp):
                shutil.copy2(stamp, os.path.join(target, "timestamp.txt"))
        record_preflight(course_root, assignment,
                         {student: [f for f in (c.flag() for c in checks) if f]})
    return results
