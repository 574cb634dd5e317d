"""Helpers for the nbgrader round trips: a throw-away copy of the course, the real CLI, scores.

Every test works in a temporary copy of ``assignments/`` (config + source), runs the nbgrader
command line exactly as an instructor would (``generate_assignment``, ``autograde``,
``generate_feedback``, ``validate``) and reads the scores back from the gradebook.  Expensive
autograde runs are grouped: one ``nbgrader autograde`` call grades many submissions at once.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENTS = ROOT / "assignments"
BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # nbgrader calls `alembic` from PATH when it creates a gradebook.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("NBGRADER_EXECUTION", None)
    env["MPLBACKEND"] = "Agg"
    env["OMP_NUM_THREADS"] = "1"
    return env


@dataclass
class Course:
    """A temporary nbgrader course directory."""

    root: Path
    timings: dict[str, float] = field(default_factory=dict)

    def nbgrader(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        cmd = [str(BIN / "nbgrader"), *args]
        start = time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=self.root, env=_env(), capture_output=True, text=True, timeout=timeout
        )
        self.timings[" ".join(args[:2])] = time.perf_counter() - start
        if check and proc.returncode != 0:
            raise AssertionError(
                f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                f"{proc.stderr[-6000:]}"
            )
        return proc

    def source_notebook(self, assignment: str) -> nbformat.NotebookNode:
        return nbformat.read(self.root / "source" / assignment / f"{assignment}.ipynb", as_version=4)

    def release_notebook(self, assignment: str) -> nbformat.NotebookNode:
        return nbformat.read(self.root / "release" / assignment / f"{assignment}.ipynb", as_version=4)

    def submit(self, student: str, assignment: str, nb: nbformat.NotebookNode) -> None:
        folder = self.root / "submitted" / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / f"{assignment}.ipynb")

    def scores(self, assignment: str) -> dict[str, dict[str, float]]:
        """``student -> grade_id -> score`` from the gradebook (the instructor's record)."""
        from nbgrader.api import Gradebook

        out: dict[str, dict[str, float]] = {}
        with Gradebook(f"sqlite:///{self.root / 'gradebook.db'}") as gb:
            for student in gb.students:
                try:
                    sub = gb.find_submission(assignment, student.id)
                except Exception:
                    continue
                grades = {}
                for nb in sub.notebooks:
                    for g in nb.grades:
                        grades[g.name] = g.score
                out[student.id] = grades
        return out

    def autograded(self, student: str, assignment: str) -> nbformat.NotebookNode:
        return nbformat.read(
            self.root / "autograded" / student / assignment / f"{assignment}.ipynb", as_version=4
        )


def make_course(tmp: Path, assignments: list[str]) -> Course:
    root = tmp / "course"
    (root / "source").mkdir(parents=True)
    shutil.copy(ASSIGNMENTS / "nbgrader_config.py", root / "nbgrader_config.py")
    for a in assignments:
        shutil.copytree(ASSIGNMENTS / "source" / a, root / "source" / a)
    course = Course(root)
    for a in assignments:
        course.nbgrader("generate_assignment", a, "--force")
    return course


def patch(nb: nbformat.NotebookNode, old: str, new: str) -> nbformat.NotebookNode:
    """A copy of ``nb`` with ``old`` replaced by ``new`` in exactly one cell (once)."""
    nb = copy.deepcopy(nb)
    hits = [c for c in nb.cells if old in c.source]
    if len(hits) != 1 or hits[0].source.count(old) != 1:
        raise AssertionError(f"patch target must occur exactly once, found {len(hits)} cells: {old!r}")
    hits[0].source = hits[0].source.replace(old, new)
    return nb


def grade_cells(nb: nbformat.NotebookNode) -> dict[str, float]:
    """``grade_id -> points`` of the autograded cells of a notebook."""
    return {
        c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"])
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade")
    }


def text_of(nb: nbformat.NotebookNode) -> str:
    return json.dumps(nb)


@pytest.fixture
def course_factory(tmp_path_factory):
    def factory(assignments: list[str]) -> Course:
        return make_course(tmp_path_factory.mktemp("nbgrader"), assignments)

    return factory


@contextlib.contextmanager
def shared_run(tmp_path_factory, name: str):
    """A folder shared by all xdist workers of this session, built by whichever comes first.

    Yields ``(folder, first)``; ``first`` is True for the worker that must do the work (the
    others wait on a file lock, then reuse the folder).  An expensive ``nbgrader autograde``
    thus runs once per session even when its tests land on several workers.
    """
    base = tmp_path_factory.getbasetemp()
    if base.name.startswith("popen-gw"):
        base = base.parent
    folder = base / f"shared-{name}"
    with open(base / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            first = not (folder / "done").exists()
            if first:
                if folder.exists():
                    shutil.rmtree(folder)
                folder.mkdir(parents=True)
            yield folder, first
            if first:
                (folder / "done").write_text("ok")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
