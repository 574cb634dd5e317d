r"""Autograde a whole class on many workers, with one writer of the gradebook.

nbgrader's ``autograde`` grades one notebook after another, and its SQLite gradebook is not
safe for concurrent writers.  Grading splits into a slow part — *executing* the notebook — and a
fast part — sanitizing it, reading the scores off the executed cells and writing them.  Here:

1. the **client** (this process, the only writer of ``gradebook.db``) packs each submission to
   grade into a :class:`GradingJob`: the student's files, the assignment's ``source/`` folder,
   the course's ``nbgrader_config.py`` and a *skeleton* of the gradebook (the assignments and
   their cells, no student and no grade), all as bytes, so that a worker needs no shared file
   system;
2. a **worker** (:func:`grade_submission`) rebuilds a private scratch course from the job,
   stages the submission through the preflight of :mod:`flowlab_course.repair` (a notebook
   nbgrader cannot read is repaired from the release, or graded zero and flagged), and runs
   nbgrader's *whole* ``Autograde`` for that one student with the course's configuration
   (sanitize, execute in the sandbox, scores, late penalties, the ``autograded/`` notebook)
   into its scratch gradebook; it *returns* that student's rows of the gradebook (student,
   submission, notebooks, grades, comments) and the autograded folder as bytes, with its wall
   and CPU seconds, and deletes its scratch course;
3. the client only *writes* the rows (:func:`write_rows`): in batches, one transaction per
   batch through one SQLite connection, updating a regraded submission in place the way
   nbgrader's ``update_or_create_submission`` and ``SaveAutoGrades`` do (the automatic
   scores, comments, late penalty and timestamp change; manual scores, extra credit, manual
   comments and flags stay).  The grades are those of a sequential ``nbgrader autograde``.

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
  student, fingerprint, status, worker, wall and CPU seconds on the worker, seconds writing it
  here): the record that nothing was written twice;
* ``<assignment>.preflight.json`` — the preflight's flags (:mod:`flowlab_course.repair`).

Workers grade in scratch folders named after their process (``flowlab-grade-<pid>-<start>-``,
under ``$FLOWLAB_SCRATCH`` or the temporary folder); a worker removes the folders of processes
that no longer exist before each submission, and the client asks every worker to do so at the
end of a run, so a killed worker's scratch does not outlive the run.

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
import resource
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
from dataclasses import dataclass, field
from typing import Any

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

__all__ = ["GradingJob", "GradingResult", "autograde_parallel", "clean_stale_scratch",
           "grade_submission", "load_config", "read_journal", "submissions", "write_rows"]

STATE_DIR = ".flowlab-grading"
FLAGS_FILE = "flowlab-flags.json"   # written next to an autograded notebook by the grader
SCRATCH_PREFIX = "flowlab-grade-"
#: the gradebook tables that hold one student's submission, parents first
ROW_TABLES = ("student", "submitted_assignment", "submitted_notebook", "grade", "comment")


@dataclass
class GradingResult:
    """What happened to one student's submission.

    ``status`` is ``"graded"``, ``"unchanged"`` (skipped: graded before, nothing changed),
    ``"failed"`` (not written into the gradebook; retried by the next run) or ``"zeroed"``
    (the submission killed every worker it ran on, or no notebook of it could be read: zero on
    every test, flagged for review).  ``flags`` are the preflight's (a repaired notebook).
    """

    student: str
    ok: bool
    seconds: float = 0.0
    error: str = ""
    skipped: bool = False
    status: str = "graded"
    worker: str = ""
    cpu_seconds: float = 0.0
    flags: list = field(default_factory=list)


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


def _run_autograde(config: Config, assignment: str, student: str) -> None:
    """nbgrader's ``Autograde`` converter for one student, errors raised rather than logged."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory

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
    except (Exception, SystemExit) as err:  # nbgrader ends a failed run with SystemExit
        detail = "\n".join(m for m in messages if "Traceback" in m or "Error" in m)
        raise RuntimeError(f"{err}\n{detail}".strip()) from None
    finally:
        converter.log.removeHandler(handler)


# --------------------------------------------------------------------------- files as bytes
def _pack(folder: str) -> bytes:
    """The files under ``folder`` as one zip (deflated, modes kept); empty if it does not exist."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for top, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(top, name)
                archive.write(path, os.path.relpath(path, folder))
    return buffer.getvalue()


def _unpack(blob: bytes, folder: str) -> list[str]:
    """Write the zip ``blob`` under ``folder`` (file modes kept); return the paths written."""
    os.makedirs(folder, exist_ok=True)
    names = []
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        for info in archive.infolist():
            target = os.path.realpath(os.path.join(folder, info.filename))
            if not target.startswith(os.path.realpath(folder) + os.sep):
                raise ValueError(f"refusing to write {info.filename!r} outside {folder}")
            archive.extract(info, folder)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode)
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
        for table in reversed(ROW_TABLES):
            copy.execute(f"DELETE FROM {table}")
        copy.commit()
        copy.execute("VACUUM")
        copy.close()
        return _pack(tmp)


# --------------------------------------------------------------------------- scratch folders
def _process_tag(pid: int | None = None) -> str | None:
    """``"<pid>-<start time>"`` of a running process (``None`` if there is none)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return f"{process.pid}-{int(process.create_time())}"
    except psutil.Error:
        return None


def _scratch_root() -> str:
    return os.environ.get("FLOWLAB_SCRATCH") or tempfile.gettempdir()


def clean_stale_scratch(root: str | None = None) -> list[str]:
    """Remove grading scratch folders of processes that no longer run; return what was removed.

    A worker names its scratch ``flowlab-grade-<pid>-<start time>-...``: when that process is
    gone (a killed worker) or the pid now belongs to another process, the folder is stale.
    """
    root = root or _scratch_root()
    removed = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(SCRATCH_PREFIX):
            continue
        parts = name[len(SCRATCH_PREFIX):].split("-")
        if len(parts) < 3 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        if _process_tag(int(parts[0])) != f"{parts[0]}-{parts[1]}":
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            removed.append(name)
    return removed


# --------------------------------------------------------------------------- gradebook rows
def _read_rows(db_path: str, assignment: str, student: str) -> dict[str, list[dict]]:
    """One student's submission of ``assignment`` as rows of :data:`ROW_TABLES`."""
    db = sqlite3.connect(db_path)
    db.row_factory = sqlite3.Row
    try:
        def rows(sql: str, args: tuple) -> list[dict]:
            return [dict(r) for r in db.execute(sql, args)]

        out = {"student": rows("SELECT * FROM student WHERE id = ?", (student,))}
        out["submitted_assignment"] = rows(
            "SELECT s.* FROM submitted_assignment s JOIN assignment a ON a.id = s.assignment_id "
            "WHERE a.name = ? AND s.student_id = ?", (assignment, student))
        ids = tuple(r["id"] for r in out["submitted_assignment"])
        out["submitted_notebook"] = rows(
            f"SELECT * FROM submitted_notebook WHERE assignment_id IN ({','.join('?' * len(ids))})",
            ids) if ids else []
        nbs = tuple(r["id"] for r in out["submitted_notebook"])
        marks = ",".join("?" * len(nbs))
        for table in ("grade", "comment"):
            out[table] = rows(f"SELECT * FROM {table} WHERE notebook_id IN ({marks})",
                              nbs) if nbs else []
    finally:
        db.close()
    if len(out["submitted_assignment"]) != 1:
        raise RuntimeError(f"nbgrader wrote no submission of {assignment} for {student}")
    return out


def _insert(db: sqlite3.Connection, table: str, row: dict) -> None:
    names = list(row)
    db.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES "
               f"({', '.join('?' * len(names))})", [row[n] for n in names])


def write_rows(db: sqlite3.Connection, rows: dict[str, list[dict]]) -> None:
    """Write one student's rows (from a worker) into the gradebook ``db``, inside the caller's
    transaction.

    A new submission is inserted as the worker's nbgrader wrote it.  An existing one is updated
    in place as nbgrader's ``autograde`` updates it: its timestamp (when the submission has
    one), each notebook's late penalty, each grade's automatic score and ``needs_manual_grade``
    (true where a manual score exists, as ``SaveAutoGrades`` decides), each automatic comment;
    manual scores, extra credit, manual comments and flags are kept.
    """
    for student in rows["student"]:
        if db.execute("SELECT 1 FROM student WHERE id = ?", (student["id"],)).fetchone() is None:
            _insert(db, "student", student)
    (submission,) = rows["submitted_assignment"]
    found = db.execute("SELECT id FROM submitted_assignment WHERE assignment_id = ? AND "
                       "student_id = ?", (submission["assignment_id"],
                                          submission["student_id"])).fetchone()
    if found is None:
        for table in ROW_TABLES[1:]:
            for row in rows[table]:
                _insert(db, table, row)
        return
    submission_id = found[0]
    if submission["timestamp"] is not None:
        db.execute("UPDATE submitted_assignment SET timestamp = ? WHERE id = ?",
                   (submission["timestamp"], submission_id))
    notebook_ids = {}
    for notebook in rows["submitted_notebook"]:
        old = db.execute("SELECT id FROM submitted_notebook WHERE assignment_id = ? AND "
                         "notebook_id = ?", (submission_id, notebook["notebook_id"])).fetchone()
        if old is None:
            _insert(db, "submitted_notebook", dict(notebook, assignment_id=submission_id))
            notebook_ids[notebook["id"]] = notebook["id"]
        else:
            notebook_ids[notebook["id"]] = old[0]
            db.execute("UPDATE submitted_notebook SET late_submission_penalty = ? WHERE id = ?",
                       (notebook["late_submission_penalty"], old[0]))
    for grade in rows["grade"]:
        notebook_id = notebook_ids[grade["notebook_id"]]
        old = db.execute("SELECT id, manual_score FROM grade WHERE notebook_id = ? AND "
                         "cell_id = ?", (notebook_id, grade["cell_id"])).fetchone()
        if old is None:
            _insert(db, "grade", dict(grade, notebook_id=notebook_id))
        else:
            needs = grade["needs_manual_grade"] or old[1] is not None
            db.execute("UPDATE grade SET auto_score = ?, needs_manual_grade = ? WHERE id = ?",
                       (grade["auto_score"], int(bool(needs)), old[0]))
    for comment in rows["comment"]:
        notebook_id = notebook_ids[comment["notebook_id"]]
        old = db.execute("SELECT id FROM comment WHERE notebook_id = ? AND cell_id = ?",
                         (notebook_id, comment["cell_id"])).fetchone()
        if old is None:
            _insert(db, "comment", dict(comment, notebook_id=notebook_id))
        else:
            db.execute("UPDATE comment SET auto_comment = ? WHERE id = ?",
                       (comment["auto_comment"], old[0]))


# --------------------------------------------------------------------------- the worker side
class _TreeCPU:
    """CPU seconds of this process and of every process it starts while in the ``with`` block.

    A sandboxed kernel is killed at the end of a notebook (``shutdown_kernel = "immediate"``),
    so its CPU never reaches ``getrusage(RUSAGE_CHILDREN)``: a thread samples the user and
    system time of every descendant (launcher, bubblewrap, kernel, the grader's helpers) every
    ``interval`` seconds and keeps each one's last value.  What a process uses after its last
    sample is missed (at most ``interval`` seconds of it).
    """

    def __init__(self, interval: float = 0.1) -> None:
        import threading

        self.interval, self.seen = interval, {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            children = psutil.Process().children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            try:
                times = child.cpu_times()
                self.seen[(child.pid, child.create_time())] = times.user + times.system
            except psutil.Error:
                continue

    def _watch(self) -> None:
        while not self.stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> _TreeCPU:
        own = resource.getrusage(resource.RUSAGE_SELF)
        self.start = own.ru_utime + own.ru_stime
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sample()
        self.stop.set()
        self.thread.join()
        own = resource.getrusage(resource.RUSAGE_SELF)
        self.seconds = own.ru_utime + own.ru_stime - self.start + sum(self.seen.values())


def _zero_in(scratch: str, job: GradingJob, release: dict, why: str, kind: str,
             notebooks: list[str]) -> list[dict]:
    """Grade the submission zero in the scratch gradebook; write notebooks that say why."""
    import nbformat
    from nbgrader.utils import parse_utc

    from .repair import zero_submission

    stamp = os.path.join(scratch, "raw", "timestamp.txt")
    timestamp = None
    if os.path.exists(stamp):
        with open(stamp) as handle:
            timestamp = parse_utc(handle.read().strip())
    zero_submission("sqlite:///" + os.path.join(scratch, "gradebook.db"), job.assignment,
                    job.student, timestamp)
    target = os.path.join(scratch, "autograded", job.student, job.assignment)
    os.makedirs(target, exist_ok=True)
    for name in notebooks or sorted(release):
        nb = nbformat.from_dict(json.loads(nbformat.writes(release[name])))
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(
            f"**Your submission was graded zero:** {why}. Your files are kept unchanged; "
            "ask your instructor."))
        nbformat.write(nb, os.path.join(target, name + ".ipynb"))
    flags = [{"part": None, "kind": kind, "message": why}]
    if kind == "kernel_died":
        with open(os.path.join(target, FLAGS_FILE), "w") as handle:
            json.dump(flags, handle, indent=1)
    if os.path.exists(stamp):
        shutil.copy2(stamp, os.path.join(target, "timestamp.txt"))
    return flags


def _scratch_course(job: GradingJob, scratch: str) -> tuple[Config, dict]:
    from .repair import templates

    with open(os.path.join(scratch, "nbgrader_config.py"), "w") as handle:
        handle.write(job.config_text)
    _unpack(job.source, os.path.join(scratch, "source", job.assignment))
    _unpack(job.submission, os.path.join(scratch, "raw"))
    _unpack(job.gradebook, scratch)
    config = load_config(scratch)
    config.CourseDirectory.db_url = "sqlite:///" + os.path.join(scratch, "gradebook.db")
    return config, templates(scratch, job.assignment)


def grade_submission(job: GradingJob) -> dict[str, Any]:
    """Worker: preflight, execute and score one submission in a private scratch course.

    Returns ``{"student", "rows" (see :func:`write_rows`), "files" (zip of
    autograded/<student>/<assignment>/), "status" ("graded" or "zeroed"), "flags" (the
    preflight's), "seconds", "cpu_seconds" (this process and its kernels), "worker"
    ("host:pid")}``.  Raises if nbgrader cannot grade the submission.
    """
    logging.getLogger("traitlets").setLevel(logging.CRITICAL)
    start = time.perf_counter()
    with _TreeCPU() as cpu:
        outcome = _grade_in_scratch(job)
    return dict(outcome, seconds=time.perf_counter() - start, cpu_seconds=cpu.seconds,
                worker=f"{socket.gethostname()}:{os.getpid()}")


def _grade_in_scratch(job: GradingJob) -> dict[str, Any]:
    from .repair import stage_submission

    root = _scratch_root()
    clean_stale_scratch(root)
    scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{_process_tag()}-{job.student}-",
                               dir=root)
    try:
        config, release = _scratch_course(job, scratch)
        checks = stage_submission(os.path.join(scratch, "raw"), os.path.join(
            scratch, "submitted", job.student, job.assignment), release)
        flags = [f for f in (c.flag() for c in checks) if f]
        status = "graded"
        if checks and all(c.status == "unreadable" for c in checks):
            why = "; ".join(f"{c.name}: {'; '.join(c.defects)}" for c in checks)
            _zero_in(scratch, job, release, f"no notebook could be read ({why})", "unreadable",
                     [c.name for c in checks])
            status = "zeroed"
        else:
            config.Autograde.force = True
            hidden = list(config.SandboxKernelManager.get("hidden_paths", []))
            config.SandboxKernelManager.hidden_paths = hidden + [
                p for p in (job.course_root, scratch) if p]
            _run_autograde(config, job.assignment, job.student)
        rows = _read_rows(os.path.join(scratch, "gradebook.db"), job.assignment, job.student)
        files = _pack(os.path.join(scratch, "autograded", job.student, job.assignment))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"student": job.student, "rows": rows, "files": files, "status": status,
            "flags": flags}


def zero_outcome(job: GradingJob, why: str) -> dict[str, Any]:
    """Client: what a worker would return for a submission graded zero (its workers died)."""
    scratch = tempfile.mkdtemp(prefix="flowlab-zero-")
    try:
        _, release = _scratch_course(job, scratch)
        flags = _zero_in(scratch, job, release, why, "kernel_died", [])
        rows = _read_rows(os.path.join(scratch, "gradebook.db"), job.assignment, job.student)
        files = _pack(os.path.join(scratch, "autograded", job.student, job.assignment))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"student": job.student, "rows": rows, "files": files, "status": "zeroed",
            "flags": [], "seconds": 0.0, "cpu_seconds": 0.0, "worker": "", "error": why,
            "kernel_flags": flags}


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


def _journal(course_root: str, assignment: str, entries: list[dict[str, Any]]) -> None:
    path = _state_path(course_root, assignment, ".journal.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as handle:
        handle.write("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
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
    batch: int = 32,
    dashboard: str | None = None,
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
        batch: write the gradebook after this many results (or two seconds), one transaction
            each.
        dashboard: the local cluster's dashboard address (``"127.0.0.1:8787"``, ``":0"`` for
            any free port on the loopback); default none.

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
    run_id = uuid.uuid4().hex[:12]
    keys = {s: f"flowlab-grade-{assignment}-{s}-{fingerprints[s][:12]}-{run_id}" for s in todo}
    writer = _Writer(course_root, assignment, db_path, run_id, state, fingerprints)
    bar = tqdm(total=len(todo), desc=f"autograde {assignment}", unit="nb", disable=not progress)
    try:
        for student, outcome in run_on_dask(grade_submission, jobs, keys,
                                            scheduler=scheduler, workers=workers,
                                            allowed_failures=allowed_failures,
                                            dashboard=dashboard, finally_run=clean_stale_scratch):
            if isinstance(outcome, WorkerDied):
                message = ("grading this submission killed the grading worker every time it "
                           f"ran; it is graded zero and flagged for review ({outcome})")
                try:
                    outcome = zero_outcome(jobs[student], message)
                except Exception as err:  # noqa: BLE001 - reported with the student
                    outcome = RuntimeError(f"{message}; writing the zero failed too: {err}")
            if isinstance(outcome, BaseException):
                results.append(GradingResult(student, ok=False, status="failed",
                                             error=f"grading failed: {outcome}"))
            else:
                writer.add(outcome)
            if writer.due(batch):
                results += writer.flush()
            bar.update(1)
            bar.set_postfix(failed=sum(not r.ok for r in results))
        results += writer.flush()
    finally:
        writer.close()
        bar.close()
    return results


class _Writer:
    """The client's only job: write the workers' results, a batch per transaction."""

    def __init__(self, course_root: str, assignment: str, db_path: str, run_id: str,
                 state: dict[str, str], fingerprints: dict[str, str]) -> None:
        self.course_root, self.assignment, self.run_id = course_root, assignment, run_id
        self.state, self.fingerprints = state, fingerprints
        self.db = sqlite3.connect(db_path, timeout=120)
        self.pending: list[dict[str, Any]] = []
        self.since = time.monotonic()

    def add(self, outcome: dict[str, Any]) -> None:
        if not self.pending:
            self.since = time.monotonic()
        self.pending.append(outcome)

    def due(self, batch: int) -> bool:
        return len(self.pending) >= batch or (
            bool(self.pending) and time.monotonic() - self.since > 2.0)

    def flush(self) -> list[GradingResult]:
        from .repair import record_preflight

        if not self.pending:
            return []
        began = time.perf_counter()
        results, written = [], []
        try:
            with self.db:   # one transaction: all of the batch or none
                for outcome in self.pending:
                    write_rows(self.db, outcome["rows"])
        except Exception as err:  # noqa: BLE001 - the batch is reported, nothing written
            why = f"writing the gradebook failed: {err}\n{traceback.format_exc(limit=2)}"
            out = [GradingResult(o["student"], ok=False, status="failed", error=why,
                                 seconds=o["seconds"], worker=o["worker"]) for o in self.pending]
            self.pending = []
            return out
        for outcome in self.pending:
            student = outcome["student"]
            target = os.path.join(self.course_root, "autograded", student, self.assignment)
            try:
                if os.path.isdir(target):
                    shutil.rmtree(target)
                _unpack(outcome["files"], target)
            except Exception as err:  # noqa: BLE001 - grades are in; the files are reported
                results.append(GradingResult(student, ok=False, status="failed",
                                             error=f"writing autograded/ failed: {err}"))
                continue
            zeroed = outcome["status"] == "zeroed"
            results.append(GradingResult(
                student, ok=not zeroed, seconds=outcome["seconds"], status=outcome["status"],
                worker=outcome["worker"], cpu_seconds=outcome["cpu_seconds"],
                flags=outcome["flags"], error=outcome.get("error", "") or (
                    "; ".join(f["message"] for f in outcome["flags"]) if zeroed else "")))
            self.state[student] = self.fingerprints[student]
            written.append(outcome)
        record_preflight(self.course_root, self.assignment,
                         {o["student"]: o["flags"] for o in written})
        _save_state(self.course_root, self.assignment, self.state)
        seconds = (time.perf_counter() - began) / max(len(self.pending), 1)
        _journal(self.course_root, self.assignment, [{
            "run": self.run_id, "student": o["student"], "status": o["status"],
            "fingerprint": self.fingerprints[o["student"]], "worker": o["worker"],
            "seconds": round(o["seconds"], 3), "cpu_seconds": round(o["cpu_seconds"], 3),
            "record_seconds": round(seconds, 5), "time": time.time()} for o in written])
        self.pending = []
        return results

    def close(self) -> None:
        self.db.close()
