"""The grading sandbox: how its command line is built, and what it lets a kernel do."""

from __future__ import annotations

import os
import sys
import warnings

import nbformat
import pytest
from traitlets.config import Config

from flowlab_course import sandbox
from flowlab_course.sandbox import SandboxSettings, configure, sandbox_command
from flowlab_course.sandbox import manager

needs_bwrap = pytest.mark.usefixtures("bwrap")


def _bound(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a in ("--ro-bind", "--bind")]


def test_command_never_mounts_the_course(tmp_path):
    course = tmp_path / "course"
    work = course / "autograded" / "alice" / "ps1"
    work.mkdir(parents=True)
    (work / "ps1.ipynb").write_text("{}")
    (work / "data.txt").write_text("given")
    settings = SandboxSettings(hidden_paths=[str(course)], extra_ro_paths=[str(tmp_path)])
    cmd = sandbox_command([sys.executable, "-c", "1"], workdir=str(work), settings=settings)
    bound = _bound(cmd)
    # tmp_path contains the course: asked for, but refused
    assert all(not str(course).startswith(b.rstrip("/") + "/") for b in bound)
    assert str(tmp_path) not in bound
    # the working copy is a size-limited tmpfs with its files read-only on top
    assert cmd[cmd.index(str(work)) - 1] == "--tmpfs"
    assert str(work / "data.txt") in bound and "--bind" not in cmd
    assert str(work / "ps1.ipynb") not in bound   # it holds the hidden tests
    assert "--unshare-net" in cmd and "--clearenv" in cmd and "--die-with-parent" in cmd


def test_command_scrubs_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADER_SECRET", "s3cret")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    cmd = sandbox_command([sys.executable], workdir=str(tmp_path))
    env = {cmd[i + 1]: cmd[i + 2] for i, a in enumerate(cmd) if a == "--setenv"}
    assert env["NBGRADER_EXECUTION"] == "autograde" and "GRADER_SECRET" not in env
    assert "s3cret" not in " ".join(cmd)


def test_command_binds_the_reference_package(tmp_path):
    import importlib.util

    flowlab_dir = importlib.util.find_spec("flowlab").submodule_search_locations[0]
    cmd = sandbox_command([sys.executable], workdir=str(tmp_path))
    assert any(flowlab_dir.startswith(b) for b in _bound(cmd))


def test_rlimits_cover_memory_cpu_processes_files():
    names = {name for name, _, _ in SandboxSettings().rlimits()}
    assert {"RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_FSIZE"} <= names


def test_configure_falls_back_with_a_warning(monkeypatch):
    monkeypatch.setattr(manager, "bwrap_available", lambda: (False, "no bwrap in this test"))
    monkeypatch.delenv("FLOWLAB_SANDBOX", raising=False)
    c = Config()
    with pytest.warns(RuntimeWarning, match="WITHOUT a sandbox"):
        assert configure(c) is False
    assert "kernel_manager_class" not in c.Execute
    with pytest.raises(RuntimeError, match="no bwrap in this test"):
        configure(c, enabled=True)


def test_configure_switches_the_kernel_manager(monkeypatch, tmp_path):
    monkeypatch.setattr(manager, "bwrap_available", lambda: (True, "ok"))
    c = Config()
    c.CourseDirectory.root = str(tmp_path)
    assert configure(c, memory_mb=1024)
    assert c.Execute.kernel_manager_class is sandbox.SandboxKernelManager
    assert c.SandboxKernelManager.memory_mb == 1024
    assert c.SandboxKernelManager.hidden_paths == [str(tmp_path)]
    with pytest.raises(TypeError, match="unknown sandbox setting"):
        configure(c, memroy_mb=1)
    monkeypatch.setenv("FLOWLAB_SANDBOX", "0")
    assert configure(Config()) is False


@needs_bwrap
@pytest.mark.sandbox
def test_kernel_sees_flowlab_but_not_the_host(tmp_path):
    """A real sandboxed kernel: reference code importable, the rest of the host invisible."""
    import importlib.util

    from nbclient import NotebookClient

    (tmp_path / "secret.txt").write_text("do not read")
    package = importlib.util.find_spec("flowlab").submodule_search_locations[0]
    repo_file = os.path.join(os.path.dirname(package), "pyproject.toml")  # beside flowlab/
    work = tmp_path / "autograded" / "alice" / "ps1"
    work.mkdir(parents=True)
    (work / "data.txt").write_text("given data")
    cells = [
        ("import os, importlib.util\nprint(importlib.util.find_spec('flowlab.flow') is not None, "
         "open('data.txt').read())"),
        f"print(os.path.exists({str(tmp_path / 'secret.txt')!r}), os.path.exists({repo_file!r}))",
        "open('data.txt', 'a').write('x')",
        "open('notes.txt', 'w').write('scratch'); print(open('notes.txt').read())",
        ("try:\n    import flowlab_course.graders.assignment2\n    print('visible')\n"
         "except ImportError:\n    print('hidden')"),
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, timeout=60, allow_errors=True,
                            kernel_manager_class=sandbox.SandboxKernelManager,
                            resources={"metadata": {"path": str(work)}})
    client.execute()
    out = [c.outputs for c in nb.cells]
    assert out[0][0]["text"].strip() == "True given data"
    # the graders (flowlab_course) run in the trusted process and are not in the sandbox
    assert out[4][0].get("text", "").strip() == "hidden" or out[4][0].get("ename") in (
        "ModuleNotFoundError", "ImportError"), out[4]
    assert out[1][0]["text"].strip() == "False False"
    assert out[2][0]["ename"] in ("PermissionError", "OSError")
    assert out[3][0]["text"].strip() == "scratch"
    assert (work / "data.txt").read_text() == "given data"   # the host copy is untouched
    assert not (work / "notes.txt").exists()                  # scratch writes stay inside


@needs_bwrap
@pytest.mark.sandbox
def test_cell_guard_ends_a_fork_bomb_and_keeps_background_processes(tmp_path):
    """After a fork bomb the kernel has its process budget back; a modest pool survives cells."""
    cells = [
        ("import multiprocessing, os, subprocess, threading\n"
         "pool = multiprocessing.get_context('fork').Pool(2)"),
        "print('pool', pool.map(abs, [-1, -2]))",          # the pool survived the cell above
        "while True:\n    os.fork()",                        # the bomb
        # What may be left: the sandbox's init, the kernel, and the kernel's children — the
        # pool of cell 0 re-forks its 2 workers after the guard killed them.  Nothing else
        # (no descendant of the bomb).  Killed processes are reaped asynchronously: wait (at
        # most 20 s, on a loaded machine reaping thousands of zombies is slow) for the count
        # to settle.
        ("import time\n"
         "def survivors():\n"
         "    me = os.getpid()\n"
         "    ppid = {p: int(open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1])\n"
         "            for p in os.listdir('/proc') if p.isdigit()}\n"
         "    children = [p for p, q in ppid.items() if q == me]\n"
         "    others = [p for p, q in ppid.items() if int(p) not in (1, me) and q != me]\n"
         "    return len(children) <= 2 and not others\n"
         "for _ in range(200):\n"
         "    if survivors():\n"
         "        break\n"
         "    time.sleep(0.1)\n"
         "print(survivors())"),
        ("t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()\n"
         "print(subprocess.run(['echo', 'process'], capture_output=True, text=True).stdout)"),
    ]
    # KNOWN ISSUE (issue 7): this scenario failed once in 25 consecutive runs on a machine at
    # load average 8-17 (cause not found; 90 runs since, 40 idle and 25 beside three CPU
    # hogs, all passed).  It runs at most twice, on fresh kernels, so that this race does not
    # block CI; a guard that does not work fails both runs.  A first failure is reported as
    # a warning (in pytest's summary) so that its details are not lost.
    failures = []
    for attempt in range(2):
        try:
            _run_fork_bomb_scenario(cells, tmp_path / f"attempt{attempt}")
            return
        except AssertionError as err:
            failures.append(err)
            warnings.warn(f"fork-bomb scenario, attempt {attempt + 1} failed: {err}")
    raise failures[-1]


def _run_fork_bomb_scenario(cells, workdir):
    from nbclient import NotebookClient

    workdir.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, timeout=60, allow_errors=True,
                            kernel_manager_class=sandbox.SandboxKernelManager,
                            resources={"metadata": {"path": str(workdir)}})
    client.km = client.create_kernel_manager()
    client.km.processes = 48
    client.execute()
    out = [c.outputs for c in nb.cells]
    assert out[0] == [] and out[1][0]["text"].strip() == "pool [1, 2]", out[:2]
    assert "BlockingIOError" in [o.get("ename") for o in out[2]], out[2]
    # nothing of the bomb is left, and nothing of it reaches the later cells
    assert [o.get("text", "").strip() for o in out[3]] == ["True"], out[3]
    assert [o.get("name") for o in out[4]] == ["stdout"] * len(out[4]), out[4]
    assert "".join(o["text"] for o in out[4]).split() == ["thread", "process"], out[4]


# ------------------------------------------------------------------ separation: the redacted flowlab
def _redacted(tmp_path):
    from flowlab_course.graders.assignment2 import GRADED
    from flowlab_course.trusted import redaction

    return redaction.build(GRADED, cache=str(tmp_path / "cache"))


def test_command_mounts_the_redacted_copy_where_flowlab_is_found(tmp_path):
    import importlib.util

    flowlab_dir = os.path.realpath(importlib.util.find_spec("flowlab").submodule_search_locations[0])
    copy = _redacted(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    repo = os.path.dirname(flowlab_dir)   # a checkout: flowlab's real source beside other files
    settings = SandboxSettings(replace_packages={"flowlab": copy}, extra_ro_paths=[repo])
    cmd = sandbox_command([sys.executable], workdir=str(work), settings=settings)
    pairs = [(cmd[i + 1], cmd[i + 2]) for i, a in enumerate(cmd) if a == "--ro-bind"]
    assert (os.path.realpath(copy), flowlab_dir) in pairs
    mounted_at = [dst for _, dst in pairs]
    # the original is mounted nowhere: not at its own path, not through a folder above it
    assert [src for src, dst in pairs if dst == flowlab_dir] == [os.path.realpath(copy)]
    assert not any(flowlab_dir.startswith(dst.rstrip("/") + "/") for dst in mounted_at)
    assert repo not in mounted_at   # the checkout holding the real source is refused
    with pytest.raises(FileNotFoundError):
        sandbox_command([sys.executable], workdir=str(work), settings=SandboxSettings(
            replace_packages={"flowlab": str(tmp_path / "missing")}))


@needs_bwrap
@pytest.mark.sandbox
@pytest.mark.slow
def test_kernel_sees_only_the_redacted_flowlab(tmp_path):
    """In a real sandboxed kernel the graded code is not there: not importable, not on disk."""
    from nbclient import NotebookClient

    copy = _redacted(tmp_path)
    work = tmp_path / "autograded" / "alice" / "ps1"
    work.mkdir(parents=True)
    needle = "x * torch.exp(s) + shift, s"   # the affine map of every coupling (univariate.Affine)
    with open(os.path.join(os.path.dirname(manager.__file__), "..", "..", "..", "flowlab",
                           "transforms", "univariate.py")) as handle:
        assert needle in handle.read()   # the original has it
    cells = [
        ("import flowlab, gc, sys, inspect\nfrom flowlab.transforms.coupling import AffineCoupling\n"
         "try:\n    AffineCoupling(None)\nexcept Exception as e:\n    print(type(e).__name__)"),
        ("import importlib\nm = importlib.import_module('flowlab.transforms.univariate')\n"
         f"print({needle!r} in open(m.__file__).read(), {needle!r} in inspect.getsource(m))"),
        ("import os\nhits = []\nfor top, dirs, files in os.walk('/'):\n"
         "    dirs[:] = [d for d in dirs if os.path.join(top, d) not in ('/proc', '/sys', '/dev', '/usr')]\n"
         "    for f in files:\n        if f.endswith('.py'):\n            try:\n"
         f"                if {needle!r} in open(os.path.join(top, f), errors='ignore').read():\n"
         "                    hits.append(os.path.join(top, f))\n"
         "            except OSError:\n                pass\nprint('HITS', hits)"),
        ("print(sorted(o.__name__ for o in gc.get_objects() if isinstance(o, type) "
         "and 'Coupling' in o.__name__ and hasattr(o, 'forward')))"),
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    km = sandbox.SandboxKernelManager(kernel_name="python3")
    km.replace_packages = {"flowlab": copy}
    client = NotebookClient(nb, km=km, timeout=300, allow_errors=True,
                            resources={"metadata": {"path": str(work)}})
    client.execute()
    out = ["".join(o.get("text", "") or o.get("evalue", "") for o in c.outputs
                   if o.get("name") != "stderr") for c in nb.cells]
    assert out[0].strip() == "ReferenceUnavailable", out
    assert out[1].strip() == "False False", out
    assert out[2].strip() == "HITS []", out
    assert out[3].strip() == "[]", out   # no class with a coupling's forward anywhere


def test_without_the_sandbox_the_copy_comes_first_but_is_flagged(tmp_path):
    """Sandbox off: best effort only (the copy first on PYTHONPATH); the notebook is flagged."""
    from flowlab_course.plugins import GradingExecute

    copy = _redacted(tmp_path)
    plain = GradingExecute()
    plain._redacted = copy
    assert not plain._sandboxed()
    env = plain._kernel_env()["env"]
    assert env["PYTHONPATH"].split(os.pathsep)[0] == os.path.dirname(copy)
    boxed = GradingExecute(kernel_manager_class=manager.SandboxKernelManager)
    boxed._redacted = copy
    assert boxed._sandboxed() and boxed._kernel_env() == {}
    boxed.nb = nbformat.v4.new_notebook()
    boxed.nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}
    km = boxed.create_kernel_manager()
    assert km.replace_packages == {"flowlab": copy}
