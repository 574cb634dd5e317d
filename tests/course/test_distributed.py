"""Distributed autograding on a real Dask scheduler with worker processes on the loopback.

No mocks: a ``LocalCluster`` (a scheduler and two worker processes, each watched by a nanny),
the real ``python -m flowlab_course autograde --scheduler`` command, nbgrader, and SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import psutil
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import course as synthetic

from flowlab_course.parallel import autograde_parallel, read_journal

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dask-cluster")]

SLOW = "slow"
STUDENTS = {
    "ada": synthetic.CORRECT,
    "bob": synthetic.MISTAKEN,
    "dee": "def square(x):\n    raise NotImplementedError\n",
    SLOW: synthetic.CORRECT + "import time\ntime.sleep(12)\n",
    "eve": "def square(x):\n    return x ** 2\n",
}
# without the sandbox a kernel's parent is the worker process: this cell kills the worker
KILLER = synthetic.CORRECT + "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _class(root: str, students: dict[str, str], **course) -> str:
    synthetic.make_course(root, **course)
    for student, code in students.items():
        synthetic.submit(root, student, code)
    return root


def _gradebook_intact(root: str, students) -> None:
    db = sqlite3.connect(os.path.join(root, "gradebook.db"))
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT student.id, COUNT(*) FROM submitted_assignment JOIN student "
                          "ON student.id = submitted_assignment.student_id GROUP BY student.id"
                          ).fetchall()
    finally:
        db.close()
    assert dict(rows) == {s: 1 for s in students}   # one submission row per student


def _worker_running(client, needle: str, timeout: float = 240.0) -> str:
    """The address of the worker processing the task whose key contains ``needle``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for address, keys in client.processing().items():
            if any(needle in str(k) for k in keys):
                return address
        time.sleep(0.2)
    raise AssertionError(f"no worker started a task with {needle!r} in {timeout} s")


def test_a_worker_killed_mid_run_is_regraded_once_and_the_gradebook_is_intact(tmp_path):
    import dask
    from distributed import Client, LocalCluster

    orphans: list = []
    base = _class(str(tmp_path / "base"), STUDENTS, timeout=60)
    sequential = shutil.copytree(base, tmp_path / "sequential")
    graded = str(shutil.copytree(base, tmp_path / "distributed"))
    synthetic.nbgrader(str(sequential), "autograde", synthetic.ASSIGNMENT)

    with dask.config.set({"distributed.scheduler.allowed-failures": 3}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
    client = Client(cluster)
    try:
        assert len(client.scheduler_info()["workers"]) == 2
        command = subprocess.Popen(
            [sys.executable, "-m", "flowlab_course", "autograde", synthetic.ASSIGNMENT,
             "--course", graded, "--scheduler", cluster.scheduler_address, "--no-progress"],
            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            victim = _worker_running(client, f"-{SLOW}-")
            time.sleep(3)     # the slow submission's kernel is running its 12 s cell
            assert any(f"-{SLOW}-" in str(k) for k in client.processing()[victim])
            pid = client.run(os.getpid, workers=[victim])[victim]
            orphans = psutil.Process(pid).children(recursive=True)   # its kernel's sandbox
            os.kill(pid, signal.SIGKILL)
            output, _ = command.communicate(timeout=400)
        finally:
            if command.poll() is None:
                command.kill()
            for process in orphans:   # the sandbox launcher outlives a SIGKILLed grader
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
        assert command.returncode == 0, output
        assert "5 graded (0 repaired), 0 unchanged, 0 zeroed and flagged, 0 failed" in output
        client.wait_for_workers(2, timeout=120)               # the nanny restarted it
        assert pid not in client.run(os.getpid).values()
    finally:
        client.close()
        cluster.close()

    journal = read_journal(graded, synthetic.ASSIGNMENT)
    assert sorted(e["student"] for e in journal) == sorted(STUDENTS)  # each written once
    assert {e["status"] for e in journal} == {"graded"}
    slow = next(e for e in journal if e["student"] == SLOW)
    assert not slow["worker"].endswith(f":{pid}")       # re-run on another worker process
    _gradebook_intact(graded, STUDENTS)
    assert synthetic.scores(graded) == synthetic.scores(str(sequential))
    assert synthetic.scores(graded)[SLOW] == {"test_visible": 1.0, "test_hidden": 2.0}

    # a rerun grades nothing (nothing missing or changed) and writes nothing
    again = autograde_parallel(graded, synthetic.ASSIGNMENT, workers=1, progress=False)
    assert all(r.status == "unchanged" for r in again) and len(again) == len(STUDENTS)
    assert len(read_journal(graded, synthetic.ASSIGNMENT)) == len(STUDENTS)


def test_a_submission_that_kills_its_worker_is_zeroed_and_the_rest_graded(tmp_path,
                                                                        monkeypatch):
    students = {"ada": synthetic.CORRECT, "bob": synthetic.MISTAKEN, "killer": KILLER}
    root = _class(str(tmp_path / "course"), students, sandbox="False")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("FLOWLAB_SCRATCH", str(scratch))   # the workers' scratch folders
    results = {r.student: r for r in autograde_parallel(
        root, synthetic.ASSIGNMENT, workers=2, progress=False, allowed_failures=1)}
    assert results["ada"].status == "graded" and results["bob"].status == "graded"
    killer = results["killer"]
    assert killer.status == "zeroed" and not killer.ok
    assert "killed the grading worker" in killer.error
    # the killed workers' scratch folders did not outlive the run
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("flowlab-grade-")]
    scores = synthetic.scores(root)
    assert scores["ada"] == {"test_visible": 1.0, "test_hidden": 2.0}
    assert scores["bob"] == {"test_visible": 1.0, "test_hidden": 0.0}
    assert scores["killer"] == {"test_visible": 0.0, "test_hidden": 0.0}
    _gradebook_intact(root, students)

    from flowlab_course.report import class_report, read_flags

    flags = read_flags(root, synthetic.ASSIGNMENT, "killer")
    assert [f["kind"] for f in flags] == ["kernel_died"]
    report = class_report(root, synthetic.ASSIGNMENT, str(tmp_path / "report"))
    assert [(f["student"], f["kind"]) for f in report.flags] == [("killer", "kernel_died")]
    # graded (zero): a rerun does not try it again, a changed submission is graded anew
    synthetic.submit(root, "killer", synthetic.CORRECT)
    rerun = {r.student: r for r in autograde_parallel(root, synthetic.ASSIGNMENT, workers=1,
                                                      progress=False)}
    assert rerun["ada"].status == "unchanged" and rerun["killer"].status == "graded"
    assert synthetic.scores(root)["killer"] == {"test_visible": 1.0, "test_hidden": 2.0}
    assert [e["status"] for e in read_journal(root, synthetic.ASSIGNMENT)
            if e["student"] == "killer"] == ["zeroed", "graded"]


def test_the_graders_flags_in_the_autograded_notebook_reach_the_report(tmp_path):
    """``metadata.flowlab.flags`` kept in an autograded notebook (the course's
    ``ClearMetadataPreprocessor`` mask keeps them) are read by the report."""
    import nbformat

    from flowlab_course.report import read_flags

    target = tmp_path / "autograded" / "ada" / "ps1"
    target.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["flowlab"] = {"flags": [{"part": "test_hidden", "kind": "undecidable",
                                         "message": "exec of a built string"}]}
    nbformat.write(nb, target / "ps1.ipynb")
    assert read_flags(str(tmp_path), "ps1", "ada") == [
        {"part": "test_hidden", "kind": "undecidable", "message": "exec of a built string"}]


def test_stale_scratch_of_dead_processes_is_removed(tmp_path):
    from flowlab_course.parallel import SCRATCH_PREFIX, _process_tag, clean_stale_scratch

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    tag = _process_tag(dead.pid)
    dead.wait()
    mine = tmp_path / f"{SCRATCH_PREFIX}{_process_tag()}-ada-x1"
    gone = tmp_path / f"{SCRATCH_PREFIX}{tag}-bob-x2"
    reused = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-12345-cy-x3"   # pid reused since
    other = tmp_path / "someone-elses-folder"
    for folder in (mine, gone, reused, other):
        (folder / "sub").mkdir(parents=True)
    removed = clean_stale_scratch(str(tmp_path))
    assert sorted(removed) == sorted([gone.name, reused.name])
    assert mine.exists() and other.exists() and not gone.exists() and not reused.exists()


def _listening(pid: int, port: int) -> list[str]:
    return [c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port]


def _status_page(port: int) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_local_dashboard_is_off_by_default_and_on_the_loopback_when_asked():
    """The scheduler's HTTP server (health checks) and, when asked, the dashboard listen on
    127.0.0.1 only: never on every interface, which Dask's ``:8787`` would mean."""
    from urllib.parse import urlparse

    from flowlab_course.distributed import RECIPES, dask_client

    with dask_client(workers=1) as client:
        port = client.scheduler_info()["services"]["dashboard"]
        assert _listening(os.getpid(), port) == ["127.0.0.1"]
        assert _status_page(port) == 404                          # no dashboard
    with dask_client(workers=1, dashboard=":0") as client:
        port = client.scheduler_info()["services"]["dashboard"]
        assert urlparse(client.dashboard_link).hostname == "127.0.0.1"
        assert _listening(os.getpid(), port) == ["127.0.0.1"]   # not 0.0.0.0, not ::
        assert _status_page(port) == 200                          # the dashboard, asked for
    # every recipe keeps its dashboard on the loopback (or off)
    assert "--dashboard-address 127.0.0.1:8787" in RECIPES
    assert '"dashboard_address": "127.0.0.1:8787"' in RECIPES
    assert RECIPES.count("--no-dashboard") == 2
