r"""Autograde a whole class on many workers, with one writer of the gradebook.

nbgrader's ``autograde`` grades one notebook after another, and its SQLite gradebook is not
safe for concurrent writers.  Grading splits into a slow part — *executing* the notebook — and a
fast part — sanitizing it, reading the scores off the executed cells and writing them.  Here:

1. the **client** (this process, the only writer of ``gradebook.db``) packs each submission to
   grade into a :class:`GradingJob`: the student's files, the assignment's ``source/`` folder,
   the course's ``nbgrader_config.py`` and a *skeleton* of the gradebook (the assignments and
   their cells, no student and no grade), all as bytes, so that a worker needs no shared file
   system;
2. a **worker** (:func:`grade_submission`) rebuilds a private scratch course from the job and
   runs nbgrader's own ``Autograde`` for that one student with the course's configuration
   (sandbox, timeouts, plug-ins), stopped right after the execute step; it *returns* the
   autograded folder (the executed notebook, and whatever the grader wrote next to it, such as
   ``flowlab-flags.json``) as bytes and deletes its scratch course;
3. the client then runs nbgrader's ``Autograde`` for that student on the real course, with the
   execute step replaced by :class:`ReplayExecution`, which takes the outputs from the returned
   notebook.  Everything else — sanitizing, hidden-test scores, late penalties, the
   ``autograded/`` notebook — is nbgrader's code path, so the grades are those of a sequential
   ``nbgrader autograde``.

The workers are those of a `Dask distributed <https://distributed.dask.org>`_ cluster
(:mod:`flowlab_course.distributed`): a ``LocalCluster`` of N processes on this machine by
default, or any cluster given its scheduler's address (Slurm/PBS through dask-jobqueue,
Kubernetes through dask-kubernetes).  A worker lost mid-job has its submissions re-run by Dask;
a submission that kills every worker it runs on (Dask's ``allowed-failures``) is graded zero on
every cell, flagged ``kernel_died`` for the instructor, and the others go on.

Bookkeeping, in ``.flowlab-grading/`` of the course:

* ``<assignment>.json`` — a fingerprint of every graded submission (its files and the
  assignment's source), so that a rerun grades only submissions that are new, changed, or not
  graded yet (an ordinary failure is not recorded, so it is retried by the next run);
* ``<assignment>.journal.jsonl`` — one line per submission written into the gradebook (run id,
  student, fingerprint, status, worker, seconds on the worker, seconds writing it here): the
  record that nothing was written twice.

Writing a student into the gradebook is idempotent (nbgrader updates that student's
submission in place), and a run consumes each Dask task once, so a retried task never grades a
submission twice into it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import socket
import sqlite3
import tempfile
import time
import traceback
import uuid
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
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

__all__ = ["GradingJob", "GradingResult", "ReplayExecution", "autograde_parallel",
           "grade_submission", "load_config", "read_journal", "submissions"]

STATE_DIR = ".flowlab-grading"
FLAGS_FILE = "flowlab-flags.json"   # written next to an autograded notebook by the grader


class ReplayExecution(NbGraderPreprocessor):
    """Stand in for nbgrader's ``Execute``: take the outputs of an already executed notebook.

    The executed notebook is ``{cache_dir}/{student}/{assignment}/{notebook}.ipynb``; its cells
    must have the same sources as the sanitized notebook being graded (they come from the same
    submission through the same sanitizing steps), otherwise grading fails.  With ``failure``
    set, no notebook is read: every code cell gets an error output with that message instead (a
    submission that could not be executed scores zero on every test).
    """

    cache_dir = Unicode("", help="Root of the executed notebooks.").tag(config=True)
    failure = Unicode("", help="If set: give every code cell an error with this message.").tag(
        config=True)

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        if self.failure:
            for cell in nb.cells:
                if cell.cell_type == "code":
                    cell.outputs = [nbformat.v4.new_output(
                        "error", ename="GradingWorkerDied", evalue=self.failure,
                        traceback=[f"GradingWorkerDied: {self.failure}"])]
            return nb, resources
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
    """What happened to one student's submission.

    ``status`` is ``"graded"``, ``"unchanged"`` (skipped: graded before, nothing changed),
    ``"failed"`` (not written into the gradebook; retried by the next run) or ``"zeroed"``
    (the submission killed every worker it ran on: zero on every test, flagged for review).
    """

    student: str
    ok: bool
    seconds: float = 0.0
    error: str = ""
    skipped: bool = False
    status: str = "graded"
    worker: str = ""


@dataclass
class GradingJob:
    """Everything a worker needs to grade one submission, as plain bytes (no shared disk)."""

    assignment: str
    student: str
    config_text: str          # the course's nbgrader_config.py
    source: bytes             # zip of source/<assignment>/
    submission: bytes         # zip of submitted/<student>/<assignment>/
    gradebook: bytes          # zip of the skeleton gradebook (no students, no grades)
    course_root: str = ""     # the client's course folder: hidden from the kernel if visible


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


# --------------------------------------------------------------------------- files as bytes
def _pack(folder: str) -> bytes:
    """The files under ``folder`` as one zip (deflated); empty zip if it does not exist."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for top, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(top, name)
                archive.write(path, os.path.relpath(path, folder))
    return buffer.getvalue()


def _unpack(blob: bytes, folder: str) -> list[str]:
    """Write the zip ``blob`` under ``folder``; return the relative paths written."""
    os.makedirs(folder, exist_ok=True)
    names = []
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        for info in archive.infolist():
            target = os.path.realpath(os.path.join(folder, info.filename))
            if not target.startswith(os.path.realpath(folder) + os.sep):
                raise ValueError(f"refusing to write {info.filename!r} outside {folder}")
            archive.extract(info, folder)
            names.append(info.filename)
    return names


def _skeleton_gradebook(db_path: str) -> bytes:
    """The gradebook without students and grades (what a worker needs), as a zip of one file.

    nbgrader's ``Autograde`` needs the assignment, its notebooks and their cells (to restore
    locked cells and read the points); it creates the student and the submission itself.
    """
    with tempfile.TemporaryDirectory(prefix="flowlab-skeleton-") as tmp:
        target = os.path.join(tmp, "gradebook.db")
        source = sqlite3.connect(db_path)
        copy = sqlite3.connect(target)
        with copy:
            source.backup(copy)
        source.close()
        for table in ("comment", "grade", "submitted_notebook", "submitted_assignment",
                      "student"):
            copy.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        copy.commit()
        copy.execute("VACUUM")
        copy.close()
        return _pack(tmp)


# --------------------------------------------------------------------------- the worker side
def grade_submission(job: GradingJob) -> dict[str, Any]:
    """Worker: execute one submission in a private scratch course; return what it produced.

    Returns ``{"student", "files" (zip of autograded/<student>/<assignment>/), "seconds",
    "worker" ("host:pid")}``.  Raises if nbgrader cannot grade the submission.
    """
    logging.getLogger("traitlets").setLevel(logging.CRITICAL)
    start = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix=f"flowlab-grade-{job.student}-",
                               dir=os.environ.get("FLOWLAB_SCRATCH"))
    try:
        with open(os.path.join(scratch, "nbgrader_config.py"), "w") as handle:
            handle.write(job.config_text)
        _unpack(job.source, os.path.join(scratch, "source", job.assignment))
        _unpack(job.submission, os.path.join(scratch, "submitted", job.student, job.assignment))
        _unpack(job.gradebook, scratch)
        config = load_config(scratch)
        steps, index = _split_pipeline(config)
        config.Autograde.autograde_preprocessors = steps[: index + 1]
        config.Autograde.force = True
        config.CourseDirectory.db_url = "sqlite:///" + os.path.join(scratch, "gradebook.db")
        hidden = list(config.SandboxKernelManager.get("hidden_paths", []))
        config.SandboxKernelManager.hidden_paths = hidden + [p for p in (job.course_root, scratch)
                                                             if p]
        _run_autograde(config, job.assignment, job.student)
        files = _pack(os.path.join(scratch, "autograded", job.student, job.assignment))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"student": job.student, "files": files, "seconds": time.perf_counter() - start,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


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


def _state_path(course_root: str, assignment: str, suffix: str = ".json") -> str:
    return os.path.join(course_root, STATE_DIR, f"{assignment}{suffix}")


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


def _journal(course_root: str, assignment: str, entry: dict[str, Any]) -> None:
    path = _state_path(course_root, assignment, ".journal.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_journal(course_root: str, assignment: str) -> list[dict[str, Any]]:
    """Every write into the gradebook by :func:`autograde_parallel`, oldest first."""
    path = _state_path(course_root, assignment, ".journal.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _gradebook_path(course_root: str, config) -> str:
    db_url = config.CourseDirectory.get("db_url", "sqlite:///" + os.path.join(course_root,
                                                                               "gradebook.db"))
    if not db_url.startswith("sqlite:///"):
        raise ValueError(f"parallel autograde needs a SQLite gradebook, got {db_url!r}")
    path = db_url[len("sqlite:///"):]
    return path if os.path.isabs(path) else os.path.join(course_root, path)


# --------------------------------------------------------------------------- the client side
def autograde_parallel(
    course_root: str,
    assignment: str,
    *,
    students: Iterable[str] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    progress: bool = True,
    allowed_failures: int = 3,
) -> list[GradingResult]:
    """Autograde ``assignment`` for every submitted student on a Dask cluster.

    Args:
        course_root: the course folder (with ``nbgrader_config.py``, ``source/``,
            ``submitted/`` and ``gradebook.db``).
        assignment: the assignment's name (a folder of ``source/``).
        students: only these students (default: every submission).
        workers: worker processes of the local cluster (default: the number of cores);
            ignored with ``scheduler``.
        scheduler: address of a running Dask scheduler (``tcp://host:8786``); default: start
            a ``LocalCluster`` of ``workers`` processes, one thread each, on the loopback.
        force: regrade submissions graded before whose files and source are unchanged.
        progress: show a progress bar.
        allowed_failures: how many workers a submission may take down with it before it is
            graded zero (Dask's ``distributed.scheduler.allowed-failures``; for the local
            cluster only: a running scheduler keeps its own setting).

    Returns one :class:`GradingResult` per student considered; failures are in there
    (``ok=False`` with the error), never raised.

    Example::

        results = autograde_parallel("assignments", "01_change_of_variables", workers=8)
        results = autograde_parallel("assignments", "01_change_of_variables",
                                     scheduler="tcp://login-node:8786")
    """
    from tqdm.auto import tqdm

    from .distributed import WorkerDied, run_on_dask

    course_root = os.path.abspath(course_root)
    config = load_config(course_root)
    db_path = _gradebook_path(course_root, config)
    if not os.path.exists(db_path):
        raise FileNotFoundError(f"{db_path} does not exist: run `nbgrader generate_assignment "
                                f"{assignment}` first")
    everyone = submissions(course_root, assignment)
    chosen = everyone if students is None else [s for s in everyone if s in set(students)]
    state = _load_state(course_root, assignment)
    source_dir = os.path.join(course_root, "source", assignment)
    source_digest = _digest(source_dir)
    fingerprints = {s: hashlib.sha256((source_digest + _digest(
        os.path.join(course_root, "submitted", s, assignment))).encode()).hexdigest()
        for s in chosen}
    results: list[GradingResult] = []
    todo = []
    for student in chosen:
        graded = os.path.isdir(os.path.join(course_root, "autograded", student, assignment))
        if not force and graded and state.get(student) == fingerprints[student]:
            results.append(GradingResult(student, ok=True, skipped=True, status="unchanged"))
        else:
            todo.append(student)
    if not todo:
        return results

    with open(os.path.join(course_root, "nbgrader_config.py")) as handle:
        config_text = handle.read()
    source = _pack(source_dir)
    skeleton = _skeleton_gradebook(db_path)
    jobs = {student: GradingJob(
        assignment, student, config_text, source,
        _pack(os.path.join(course_root, "submitted", student, assignment)), skeleton,
        course_root) for student in todo}
    steps, index = _split_pipeline(config)
    grade_config = load_config(course_root)
    grade_config.Autograde.autograde_preprocessors = (
        steps[:index] + [ReplayExecution] + steps[index + 1:])
    grade_config.Autograde.force = True
    run_id = uuid.uuid4().hex[:12]
    keys = {s: f"flowlab-grade-{assignment}-{s}-{fingerprints[s][:12]}-{run_id}" for s in todo}
    bar = tqdm(total=len(todo), desc=f"autograde {assignment}", unit="nb", disable=not progress)
    try:
        with tempfile.TemporaryDirectory(prefix="flowlab-autograde-") as run_dir:
            for student, outcome in run_on_dask(grade_submission, jobs, keys,
                                                scheduler=scheduler, workers=workers,
                                                allowed_failures=allowed_failures):
                began = time.perf_counter()
                if isinstance(outcome, WorkerDied):
                    result = _record_zero(student, assignment, grade_config, course_root,
                                          str(outcome))
                elif isinstance(outcome, BaseException):
                    result = GradingResult(student, ok=False, status="failed",
                                           error=f"executing failed: {outcome}")
                else:
                    result = _record(student, assignment, grade_config, course_root,
                                     run_dir, outcome)
                if result.status in ("graded", "zeroed"):
                    state[student] = fingerprints[student]
                    _save_state(course_root, assignment, state)
                    _journal(course_root, assignment, {
                        "run": run_id, "student": student, "status": result.status,
                        "fingerprint": fingerprints[student], "worker": result.worker,
                        "seconds": round(result.seconds, 3),
                        "record_seconds": round(time.perf_counter() - began, 3),
                        "time": time.time()})
                results.append(result)
                bar.update(1)
                bar.set_postfix(failed=sum(not r.ok for r in results))
    finally:
        bar.close()
    return results


def _record(student: str, assignment: str, config, course_root: str, run_dir: str,
            outcome: dict[str, Any]) -> GradingResult:
    """Client: write the grades of one executed submission into the real gradebook."""
    cache = os.path.join(run_dir, student)
    folder = os.path.join(cache, student, assignment)
    config = config.copy()
    config.ReplayExecution.cache_dir = cache
    try:
        returned = _unpack(outcome["files"], folder)
        _run_autograde(config, assignment, student)
        _keep_extra_files(folder, returned, os.path.join(course_root, "autograded", student,
                                                         assignment))
    except Exception as err:
        return GradingResult(student, ok=False, seconds=outcome["seconds"], status="failed",
                             worker=outcome["worker"],
                             error=f"grading failed: {err}\n{traceback.format_exc(limit=2)}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return GradingResult(student, ok=True, seconds=outcome["seconds"], worker=outcome["worker"])


def _keep_extra_files(folder: str, returned: list[str], target: str) -> None:
    """Put what the grader produced besides the grades next to the autograded notebook.

    Files the worker's grader wrote (``flowlab-flags.json``) are copied; the flags the trusted
    grader leaves in an executed notebook's metadata (``metadata.flowlab.flags``, which
    nbgrader's ``ClearMetadataPreprocessor`` removes from the autograded copy) are saved as
    ``flowlab-flags.json`` when no such file came back.
    """
    for name in returned:
        if name.endswith(".ipynb") or os.path.exists(os.path.join(target, name)):
            continue
        os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
        shutil.copy(os.path.join(folder, name), os.path.join(target, name))
    if FLAGS_FILE in returned:
        return
    flags = []
    for name in sorted(n for n in returned if n.endswith(".ipynb")):
        meta = nbformat.read(os.path.join(folder, name), as_version=4).metadata
        for flag in meta.get("flowlab", {}).get("flags", []) or []:
            flags.append(dict(flag, notebook=os.path.splitext(name)[0]))
    if flags:
        with open(os.path.join(target, FLAGS_FILE), "w") as handle:
            json.dump(flags, handle, indent=1)


def _record_zero(student: str, assignment: str, config, course_root: str,
                 why: str) -> GradingResult:
    """Client: grade a submission that killed its workers zero on every test, flag it."""
    message = ("grading this submission killed the grading worker every time it ran; it is "
               f"graded zero and flagged for review ({why})")
    config = config.copy()
    config.ReplayExecution.failure = message
    try:
        _run_autograde(config, assignment, student)
        target = os.path.join(course_root, "autograded", student, assignment)
        with open(os.path.join(target, FLAGS_FILE), "w") as handle:
            json.dump([{"part": None, "kind": "kernel_died", "message": message}], handle,
                      indent=1)
    except Exception as err:
        return GradingResult(student, ok=False, status="failed",
                             error=f"{message}; writing the zero failed too: {err}")
    return GradingResult(student, ok=False, status="zeroed", error=message)
