"""The library and the course are two rooms: flowlab imports nothing of nbgrader, Jupyter or the course.

* every module of flowlab imports in a fresh interpreter without loading any module of nbgrader,
  nbclient, nbconvert, nbformat, Jupyter, IPython or :mod:`flowlab_course`;
* no source file of flowlab names those packages in an import statement;
* ``pip install -e .`` into a bare virtual environment (torch pinned as in the Makefile) installs a
  working flowlab, its CLI included, and none of those packages.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import flowlab

ROOT = Path(__file__).resolve().parents[1]
COURSE_SIDE = ("nbgrader", "nbclient", "nbconvert", "nbformat", "jupyter_client", "jupyter_core",
               "ipykernel", "IPython", "flowlab_course", "notebook", "jupyterlab")


def _modules() -> list[str]:
    names = ["flowlab"]
    for info in pkgutil.walk_packages(flowlab.__path__, "flowlab."):
        names.append(info.name)
    return sorted(names)


def test_importing_every_flowlab_module_loads_nothing_of_the_course() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted({{m for m in sys.modules if m.split('.')[0] in {COURSE_SIDE!r}}})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={**os.environ, "MPLBACKEND": "Agg"})
    assert out.stdout.strip() == "", f"flowlab loads course-side modules: {out.stdout.strip()}"


def test_no_flowlab_source_imports_the_course_side() -> None:
    offenders = []
    for path in (ROOT / "flowlab").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in COURSE_SIDE and name.split(".")[0] != "IPython":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert offenders == []


@pytest.mark.slow
def test_pip_install_in_a_bare_venv_gives_flowlab_without_the_course(tmp_path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    torch_spec = os.environ.get("TORCH_SPEC", "torch==2.13.0")

    def pip(*args: str) -> None:
        subprocess.run([py, "-m", "pip", "install", "--quiet", *args], check=True, timeout=1200)

    pip(torch_spec)
    pip("-e", str(ROOT))
    listed = subprocess.run([py, "-m", "pip", "list", "--format=freeze"], capture_output=True,
                            text=True, check=True).stdout.lower()
    installed = {line.split("==")[0].replace("_", "-") for line in listed.splitlines()}
    course = {"nbgrader", "nbclient", "nbconvert", "nbformat", "jupyter-client", "ipykernel",
              "ipython", "flowlab-course", "dask", "distributed"}
    assert installed & course == set(), installed & course
    run = subprocess.run([py, "-c", "import flowlab, flowlab.cli, flowlab.train; "
                          "print(flowlab.Flow.__name__)"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "Flow", run.stderr[-2000:]
    cli = subprocess.run([str(venv / "bin" / "flowlab"), "--help"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr[-2000:]
