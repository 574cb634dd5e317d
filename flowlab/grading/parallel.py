r"""Autograde a whole class on N worker processes, with one writer of the gradebook.

nbgrader's ``autograde`` grades one notebook after another, and its SQLite gradebook is not
safe for concurrent writers.  Grading splits into a slow part — *executing* the notebook — and a
fast part — sanitizing it, reading the scores off the executed cells and writing them.  Here:

1. each **worker** runs nbgrader's own ``Autograde`` for one student in a private scratch course
   (a copy of the submission and a snapshot of the gradebook), with the course's configuration
   (sandbox, timeouts, plug-ins), but stops right after the execute step: the result is the
   executed notebook;
2. the **parent** (this process, the only writer of ``gradebook.db``) then runs nbgrader's
   ``Autograde`` for that student on the real course, with the execute step replaced by
   :class:`ReplayExecution`, which takes the outputs from the worker's notebook.  Everything
   else — sanitizing, hidden-test scores, late penalties, the ``autograded/`` notebook — is
   nbgrader's code path, so the grades are those of a sequential ``nbgrader autograde``.

A failed student is reported and the others go on.  A small state file
(``.flowlab-grading/<assignment>.json`` in the course) remembers a fingerprint of every graded
submission (its files and the assignment's source), so that a rerun grades only submissions that
are new, changed, or not graded yet.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor
from nbgrader.converters import Autograde
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader
from traitlets.utils.importstring import import_item

__all__ = ["GradingResult", "ReplayExecution", "autograde_parallel", "load_config", "submissions"]

STATE_DIR = ".flowlab-grading"


class ReplayExecution(NbGraderPreprocessor):
    """Stand in for nbgrader's ``Execute``: take the outputs from an already executed notebook.

    The executed notebook is ``{cache_dir}/{student}/{assignment}/{notebook}.ipynb``; its cells
    must have the same sources as the sanitized notebook being graded (they come from the same
    submission through the same sanitizing steps), otherwise grading this student fails.
    """

    cache_dir = Unicode("", help="Root of the executed notebooks.").tag(config=True)

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        info = resources["nbgrader"]
        path = os.path.join(self.cache_dir, info["student"], info["assignment"],
                            info["notebook"] + ".ipynb")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no executed notebook for {info['student']}: {path}")
        executed = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if [c.source for c in executed.cells] != [c.source for c in nb.cells]:
            raise ValueError(f"the executed notebook {path} does not match the sanitized "
                             "submission (cells differ); grade this student again")
        for cell, done in zip(nb.cells, executed.cells):
            cell.metadata = done.metadata
            if cell.cell_type == "code":
                cell.outputs = done.outputs
                cell.execution_count = done.execution_count
        nb.metadata = executed.metadata
        return nb, resources


@dataclass
class GradingResult:
    """What happened to one student's submission."""

    student: str
    ok: bool
    seconds: float = 0.0
    error: str = ""
    skipped: bool = False


# --------------------------------------------------------------------------- configuration
def load_config(course_root: str) -> Config:
    """The course's ``nbgrader_config.py`` as a traitlets ``Config``, rooted at ``course_root``."""
    course_root = os.path.abspath(course_root)
    config = Config()
    if os.path.exists(os.path.join(course_root, "nbgrader_config.py")):
        here = os.getcwd()
        os.chdir(course_root)  # the config may use relative paths or os.getcwd()
        try:
            config = PyFileConfigLoader("nbgrader_config.py", path=course_root).load_config()
        finally:
            os.chdir(here)
    config.CourseDirectory.root = course_root
    return config


def _split_pipeline(config: Config) -> tuple[list[Any], int]:
    """The autograde preprocessors and the index of the execute step."""
    if "autograde_preprocessors" in config.Autograde:
        steps = list(config.Autograde.autograde_preprocessors)
    else:
        steps = list(Autograde().autograde_preprocessors)
    for index, step in enumerate(steps):
        cls = import_item(step) if isinstance(step, str) else step
        if isinstance(cls, type) and issubclass(cls, ExecutePreprocessor):
            return steps, index
    raise ValueError("the autograde pipeline has no execute step (an ExecutePreprocessor)")


def _run_autograde(config: Config, assignment: str, student: str) -> None:
    """nbgrader's ``Autograde`` converter for one student, errors raised rather than logged."""
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = assignment
    coursedir.student_id = student
    converter = Autograde(coursedir=coursedir, config=config)
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                messages.append(record.getMessage())

    handler = _Collect()
    converter.log.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SQLAlchemy's session warnings inside nbgrader
            converter.start()
    except Exception as err:
        detail = "\n".join(m for m in messages if "Traceback" in m or "Error" in m)
        raise RuntimeError(f"{err}\n{detail}".strip()) from None
    finally:
        converter.log.removeHandler(handler)


# --------------------------------------------------------------------------- the worker side
def _quiet_logs() -> None:
    logging.getLogger("traitlets").setLevel(logging.CRITICAL)


def _execute(course_root: str, assignment: str, student: str, snapshot: str, scratch: str) -> float:
    """Worker: execute one submission in a scratch course; return the seconds it took."""
    _quiet_logs()
    start = time.perf_counter()
    os.makedirs(os.path.join(scratch, "submitted", student), exist_ok=True)
    shutil.copytree(os.path.join(course_root, "submitted", student, assignment),
                    os.path.join(scratch, "submitted", student, assignment), symlinks=False)
    os.symlink(os.path.join(course_root, "source"), os.path.join(scratch, "source"))
    shutil.copy(snapshot, os.path.join(scratch, "gradebook.db"))
    config = load_config(course_root)
    steps, index = _split_pipeline(config)
    config.Autograde.autograde_preprocessors = steps[: index + 1]
    config.CourseDirectory.root = scratch
    config.CourseDirectory.db_url = "sqlite:///" + os.path.join(scratch, "gradebook.db")
    hidden = list(config.SandboxKernelManager.get("hidden_paths", []))
    config.SandboxKernelManager.hidden_paths = hidden + [course_root, scratch]
    _run_autograde(config, assignment, student)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- bookkeeping
def submissions(course_root: str, assignment: str) -> list[str]:
    """Students with a submission of ``assignment`` in ``submitted/``."""
    folder = os.path.join(course_root, "submitted")
    if not os.path.isdir(folder):
        return []
    return sorted(s for s in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, s, assignment)))


def _digest(folder: str) -> str:
    sha = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            sha.update(os.path.relpath(path, folder).encode() + b"\0")
            with open(path, "rb") as handle:
                sha.update(hashlib.sha256(handle.read()).digest())
    return sha.hexdigest()


def _state_path(course_root: str, assignment: str) -> str:
    return os.path.join(course_root, STATE_DIR, f"{assignment}.json")


def _load_state(course_root: str, assignment: str) -> dict[str, str]:
    path = _state_path(course_root, assignment)
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return json.load(handle)


def _save_state(course_root: str, assignment: str, state: dict[str, str]) -> None:
    path = _state_path(course_root, assignment)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".part", "w") as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    os.replace(path + ".part", path)


def _snapshot(db_path: str, target: str) -> None:
    """A consistent copy of the gradebook (SQLite's online backup)."""
    source = sqlite3.connect(db_path)
    copy = sqlite3.connect(target)
    with copy:
        source.backup(copy)
    source.close()
    copy.close()


# --------------------------------------------------------------------------- the parent side
def autograde_parallel(
    course_root: str,
    assignment: str,
    *,
    students: Iterable[str] | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> list[GradingResult]:
    """Autograde ``assignment`` for every submitted student on ``workers`` processes.

    ``workers`` defaults to the number of cores.  ``force=False`` skips submissions graded
    before whose files and source are unchanged.  Returns one :class:`GradingResult` per
    student considered; failures are in there (``ok=False`` with the error), never raised.
    """
    from tqdm.auto import tqdm

    course_root = os.path.abspath(course_root)
    config = load_config(course_root)
    db_url = config.CourseDirectory.get("db_url", "sqlite:///" + os.path.join(course_root,
                                                                               "gradebook.db"))
    if not db_url.startswith("sqlite:///"):
        raise ValueError(f"parallel autograde needs a SQLite gradebook, got {db_url!r}")
    db_path = db_url[len("sqlite:///"):]
    if not os.path.exists(db_path):
        raise FileNotFoundError(f"{db_path} does not exist: run `nbgrader generate_assignment "
                                f"{assignment}` first")
    everyone = submissions(course_root, assignment)
    chosen = everyone if students is None else [s for s in everyone if s in set(students)]
    state = _load_state(course_root, assignment)
    source_digest = _digest(os.path.join(course_root, "source", assignment))
    fingerprints = {s: hashlib.sha256((source_digest + _digest(
        os.path.join(course_root, "submitted", s, assignment))).encode()).hexdigest()
        for s in chosen}
    results: list[GradingResult] = []
    todo = []
    for student in chosen:
        graded = os.path.isdir(os.path.join(course_root, "autograded", student, assignment))
        if not force and graded and state.get(student) == fingerprints[student]:
            results.append(GradingResult(student, ok=True, skipped=True))
        else:
            todo.append(student)
    if not todo:
        return results

    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    steps, index = _split_pipeline(config)
    with tempfile.TemporaryDirectory(prefix="flowlab-autograde-") as run_dir:
        snapshot = os.path.join(run_dir, "gradebook.db")
        _snapshot(db_path, snapshot)
        grade_config = load_config(course_root)
        grade_config.Autograde.autograde_preprocessors = (
            steps[:index] + [ReplayExecution] + steps[index + 1:])
        grade_config.Autograde.force = True
        # fork: workers start at once with everything imported (the parent runs no kernels and
        # has no threads yet); the progress bar's thread starts after the pool
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"))
        bar = tqdm(total=len(todo), desc=f"autograde {assignment}", unit="nb",
                   disable=not progress)
        try:
            jobs: dict[Future, str] = {}
            for student in todo:
                scratch = os.path.join(run_dir, "jobs", student)
                jobs[pool.submit(_execute, course_root, assignment, student, snapshot,
                                 scratch)] = student
            pending = dict(jobs)
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    student = pending.pop(future)
                    results.append(_finish(future, student, assignment, grade_config,
                                           run_dir, course_root, state, fingerprints))
                    bar.update(1)
                    bar.set_postfix(failed=sum(not r.ok for r in results))
                    _save_state(course_root, assignment, state)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
    return results


def _finish(future: Future, student: str, assignment: str, config: Config, run_dir: str,
            course_root: str, state: dict[str, str], fingerprints: dict[str, str]
            ) -> GradingResult:
    """Parent: write the grades of one executed submission into the real gradebook."""
    try:
        seconds = future.result()
    except BrokenProcessPool:
        return GradingResult(student, ok=False, error="the worker process died")
    except Exception as err:  # reported, and the others go on
        return GradingResult(student, ok=False, error=f"executing failed: {err}")
    config = config.copy()
    config.ReplayExecution.cache_dir = os.path.join(run_dir, "jobs", student, "autograded")
    try:
        _run_autograde(config, assignment, student)
    except Exception as err:
        return GradingResult(student, ok=False, seconds=seconds,
                             error=f"grading failed: {err}\n{traceback.format_exc(limit=2)}")
    finally:
        shutil.rmtree(os.path.join(run_dir, "jobs", student), ignore_errors=True)
    state[student] = fingerprints[student]
    return GradingResult(student, ok=True, seconds=seconds)
