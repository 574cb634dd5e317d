"""What a student is handed: one install that gives a working JupyterLab with nbgrader's
Assignments panel, and a release, a wheel and a site that carry no solution and no hidden test.

* ``flowlab[student]`` (pyproject.toml) resolves, with everything it pulls in, to packages
  installed here (the Makefile's venv installs ``.[all]``, which includes it); environment.yml
  names only extras that exist and installs what the Makefile installs.
* The student page's one command (the flowlab wheel with its ``student`` extra), run in a new
  virtual environment, gives JupyterLab 4 with nbgrader's assignment list and validate
  extensions enabled, nbgrader, a kernel and flowlab, and no grading package (slow: pip).
* A JupyterLab started as a fresh student (empty home, no user configuration) on loopback lists
  nbgrader's lab extension with its assignment-list plugin enabled, serves it on ``/lab`` and
  answers nbgrader's ``/assignments`` endpoint (the Assignments panel's list) from an exchange.
* The student release of every assignment (generated here with ``nbgrader generate_assignment``,
  as ``make release`` does), the flowlab wheel a student installs and the book's pages hold no
  ``### BEGIN SOLUTION``, no hidden-test region, no ``flowlab-grade:`` directive and no line of
  solution or hidden-test code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ASSIGNMENTS = sorted(p.name for p in (ROOT / "assignments" / "source").iterdir() if p.is_dir())

# A secret region of an nbgrader source notebook, and the course's grader directive.
REGION = re.compile(r"^[ \t]*### (BEGIN|END) (SOLUTION|HIDDEN TESTS)[ \t]*$", re.M)
FORBIDDEN = (re.compile(r"### BEGIN SOLUTION"), re.compile(r"### (BEGIN|END) HIDDEN TESTS"),
             re.compile(r"^[ \t]*#[ \t]*flowlab-grade:", re.M))


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------ the student extra


def _closure(requirements: list[str], extras_of: dict[str, set[str]]) -> tuple[dict, list]:
    """Walk ``requirements`` and everything they require; ``({name: version}, problems)``."""
    seen: dict[str, str] = {}
    problems: list[str] = []
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, parent = todo.pop()
        name = canonicalize_name(req.name)
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req} (needed by {parent or 'the extra'}) is not installed")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req} (needed by {parent or 'the extra'}): {version} installed")
        new_extras = set(req.extras) - extras_of.get(name, set())
        if name in seen and not new_extras:
            continue
        seen[name] = version
        extras_of.setdefault(name, set()).update(req.extras)
        for line in metadata.requires(req.name) or []:
            sub = Requirement(line)
            if sub.marker is not None:
                wanted = [e for e in extras_of[name]] or [""]
                if not any(sub.marker.evaluate({"extra": e}) for e in wanted):
                    continue
            todo.append((sub, f"{req.name} {version}"))
    return seen, problems


def test_student_extra_resolves_to_installed_packages() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    student = extras.get("student")
    assert student, "pyproject.toml has no extra 'student' (flowlab[student])"
    names = {canonicalize_name(Requirement(r).name) for r in student}
    assert {"jupyterlab", "nbgrader", "ipykernel"} <= names, names
    assert "flowlab-course" not in names, "students get no grading package"
    # the requirements of flowlab itself, then the extra's, with all they pull in
    core = _pyproject()["project"]["dependencies"]
    installed, problems = _closure(core + student, {})
    assert not problems, (
        "flowlab[student] does not resolve to what is installed; run "
        "`.venv/bin/pip install -e \".[all]\"` (make venv):\n" + "\n".join(problems))
    assert Requirement("jupyterlab>=4,<5").specifier.contains(installed["jupyterlab"])
    assert Requirement("nbgrader>=0.9,<0.10").specifier.contains(installed["nbgrader"])


def test_all_includes_student_and_environment_yml_names_real_extras() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    (all_,) = extras["all"]
    assert "student" in Requirement(all_).extras, "make venv installs .[all]: include student"
    for name in Requirement(all_).extras:
        assert name in extras, f"extra 'all' names an extra {name!r} that does not exist"
    env = (ROOT / "environment.yml").read_text(encoding="utf-8")
    named = re.findall(r"-e \.\[([\w,]+)\]", env)
    assert named, "environment.yml installs no `-e .[...]`"
    for group in named:
        for name in group.split(","):
            assert name in extras, f"environment.yml names an extra {name!r} that does not exist"
    assert "-e ./assignments" in env, "environment.yml must install the course package too"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    venv = makefile.split("$(VENV)/.installed:", 1)[1].split("\n\n", 1)[0]
    assert '-e ".[all]"' in venv and "-e ./assignments" in venv, venv


# ------------------------------------------------------------------ JupyterLab as a student


def _student_env(home: Path, bin_dir: Path = BIN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "NBGRADER"))}
    env.update(HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
               JUPYTER_DATA_DIR=str(home / ".local" / "share" / "jupyter"),
               JUPYTER_RUNTIME_DIR=str(home / ".local" / "share" / "jupyter" / "runtime"))
    return env


def _jupyter(env: dict[str, str], *args: str, bin_dir: Path = BIN) -> str:
    proc = subprocess.run([str(bin_dir / "jupyter"), *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"jupyter {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}"
    return re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)


def _check_lab_lists_the_assignment_list(env: dict[str, str], bin_dir: Path = BIN) -> None:
    labext = _jupyter(env, "labextension", "list", bin_dir=bin_dir)
    assert "JupyterLab v4." in labext, labext
    line = next((ln for ln in labext.splitlines() if "@jupyter/nbgrader" in ln), "")
    assert "enabled" in line and "OK" in line, f"nbgrader's lab extension is missing:\n{labext}"
    disabled = labext.split("Disabled extensions:", 1)[1] if "Disabled extensions:" in labext \
        else ""
    assert "nbgrader:assignment-list" not in disabled, labext
    server = _jupyter(env, "server", "extension", "list", bin_dir=bin_dir)
    for ext in ("assignment_list", "validate_assignment"):
        block = re.search(rf"nbgrader\.server_extensions\.{ext} (\w+)", server)
        assert block and block.group(1) == "enabled", f"{ext} not enabled:\n{server}"
        assert re.search(rf"nbgrader\.server_extensions\.{ext}\s+OK", server), server


def test_jupyterlab_lists_nbgraders_assignment_list(tmp_path) -> None:
    home = tmp_path / "student"
    home.mkdir()
    _check_lab_lists_the_assignment_list(_student_env(home))
    # the lab extension that draws the Assignments panel, of the nbgrader for JupyterLab 4
    share = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "@jupyter" / "nbgrader"
    package = json.loads((share / "package.json").read_text())
    assert package["version"].startswith("0.9"), package["version"]


def _build_wheel(tmp_path: Path) -> Path:
    """``pip wheel --no-deps .`` of a copy of the library (the work tree stays untouched)."""
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    shutil.copytree(ROOT / "flowlab", tree / "flowlab", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), "."],
                          cwd=tree, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").glob("flowlab-*.whl")
    return wheel


@pytest.mark.slow
def test_the_students_one_command_in_a_fresh_venv_gives_jupyterlab_with_assignments(
        tmp_path) -> None:
    """What the student page tells a student to run, in a new virtual environment: the wheel
    with its student extra (torch pinned first, as the Makefile does, so that pip fetches no
    other build).  About 6 minutes on a busy 2-core machine, mostly pip."""
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "student-env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")

    def pip(*args: str) -> None:
        proc = subprocess.run([py, "-m", "pip", "install", "--quiet", *args],
                              capture_output=True, text=True, timeout=1500)
        assert proc.returncode == 0, f"pip install {' '.join(args)}:\n{proc.stderr[-3000:]}"

    pip(os.environ.get("TORCH_SPEC", "torch==2.13.0"))
    pip(f"flowlab[student] @ {wheel.as_uri()}")
    home = tmp_path / "student"
    home.mkdir()
    env = _student_env(home, venv / "bin")
    _check_lab_lists_the_assignment_list(env, venv / "bin")
    listed = subprocess.run([py, "-m", "pip", "list", "--format=freeze"], capture_output=True,
                            text=True, check=True).stdout.lower()
    installed = {ln.split("==")[0].replace("_", "-") for ln in listed.splitlines()}
    assert {"flowlab", "jupyterlab", "nbgrader", "ipykernel", "mlxtend"} <= installed
    assert "flowlab-course" not in installed, "a student gets no grading package"
    run = subprocess.run([str(venv / "bin" / "nbgrader"), "--version"], capture_output=True,
                         text=True, env=env, cwd=home, timeout=300)
    assert run.returncode == 0 and "0.9" in run.stdout + run.stderr, run.stderr[-2000:]
    run = subprocess.run([py, "-c", "import flowlab.testing, torch; print('ok')"],
                         capture_output=True, text=True, cwd=home, timeout=300)
    assert run.stdout.strip() == "ok", run.stderr[-2000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode("utf-8", "replace")


@pytest.mark.slow
def test_a_fresh_students_jupyterlab_serves_the_assignments_panel(tmp_path) -> None:
    """Start JupyterLab as a student would (``jupyter lab``), on loopback, and ask it."""
    home, work, exchange = tmp_path / "student", tmp_path / "work", tmp_path / "exchange"
    for folder in (home / ".jupyter", work, exchange):
        folder.mkdir(parents=True)
    exchange.chmod(0o777)
    (home / ".jupyter" / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.Exchange.root = {str(exchange)!r}\n"
        "c.CourseDirectory.course_id = 'flowlab'\n")
    env = _student_env(home)
    port, token = _free_port(), "student-setup-test"
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "jupyter"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={work}", "--ServerApp.open_browser=False",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                status, _ = _get(f"{base}/api/status?token={token}")
                if status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "lab.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "lab.log").read_text()
            time.sleep(0.5)
        status, page = _get(f"{base}/lab?token={token}")
        assert status == 200
        config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page,
                                      re.S).group(1))
        federated = {ext["name"] for ext in config.get("federated_extensions", [])}
        assert "@jupyter/nbgrader" in federated, sorted(federated)
        assert "nbgrader:assignment-list" not in config.get("disabledExtensions", [])
        status, body = _get(f"{base}/assignments?course_id=flowlab&token={token}")
        answer = json.loads(body)
        assert status == 200 and answer["success"] is True, answer
        assert answer["value"] == [], answer      # nothing released to this exchange yet
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# --------------------------------------------------------- what students receive: no secrets


def secrets(source: Path) -> set[str]:
    """The lines of solution and hidden-test code in a source notebook (>= 8 characters, not
    comments, not also written outside a secret region, as a skeleton or an instruction)."""
    import nbformat

    inside: list[str] = []
    outside: list[str] = []
    for cell in nbformat.read(source, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and not REGION.search(cell.source):
            inside.append(cell.source)       # a whole solution cell (a written answer)
            continue
        pieces = re.split(r"^[ \t]*### (?:BEGIN|END) (?:SOLUTION|HIDDEN TESTS)[ \t]*$",
                          cell.source, flags=re.M)
        for i, piece in enumerate(pieces):
            (inside if i % 2 else outside).append(piece)
    public = {ln.strip() for piece in outside for ln in piece.splitlines()}
    return {ln.strip() for piece in inside for ln in piece.splitlines()
            if len(ln.strip()) >= 8 and not ln.strip().startswith("#")} - public


def leaks(text: str, secret_lines: set[str]) -> list[str]:
    """What of ``secret_lines`` (or any marker and directive) ``text`` contains."""
    found = [rx.pattern for rx in FORBIDDEN if rx.search(text)]
    lines = {ln.strip() for ln in text.splitlines()}
    return found + sorted(secret_lines & lines)


def _notebook_text(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return "\n".join(cell.source for cell in nb.cells) + "\n" + json.dumps(nb.metadata)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """``make release`` in a copy of the course: the student version of every assignment."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "assignments" / "source", root / "source")
    shutil.copy(ROOT / "assignments" / "nbgrader_config.py", root)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in ASSIGNMENTS:
        proc = subprocess.run([str(BIN / "nbgrader"), "generate_assignment", name, "--force"],
                              cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def test_the_leak_check_finds_a_leak() -> None:
    source = ROOT / "assignments" / "source" / ASSIGNMENTS[0] / f"{ASSIGNMENTS[0]}.ipynb"
    found = secrets(source)
    assert len(found) >= 10, found
    assert leaks(_notebook_text(source), found)          # the instructor's notebook leaks
    one = sorted(found)[0]
    assert leaks(f"x = 1\n    {one}\n", found) == [one]   # one copied line is enough
    assert leaks("# flowlab-grade: assignment1.leaky\n", set())


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_student_release_holds_no_solution_and_no_hidden_test(release, assignment) -> None:
    source = release / "source" / assignment / f"{assignment}.ipynb"
    files = sorted((release / "release" / assignment).rglob("*"))
    notebooks = [f for f in files if f.suffix == ".ipynb"]
    assert notebooks, f"nbgrader wrote no release of {assignment}"
    secret = secrets(source)
    assert secret, f"{assignment}: found no solution code in the source (is the check broken?)"
    for path in files:
        if path.is_file():
            text = _notebook_text(path) if path.suffix == ".ipynb" else \
                path.read_text(encoding="utf-8", errors="replace")
            found = leaks(text, secret)
            assert not found, f"{path.relative_to(release)} gives away: {found}"


def _all_secrets() -> set[str]:
    found: set[str] = set()
    for name in ASSIGNMENTS:
        found |= secrets(ROOT / "assignments" / "source" / name / f"{name}.ipynb")
    return found


def test_the_wheel_a_student_installs_holds_no_course_and_no_solution(tmp_path) -> None:
    """The wheel holds flowlab and its metadata only: no assignment, no grader, no marker.

    flowlab *is* the reference implementation that the graders compare with (students use it,
    and a submission that delegates to it scores 0), so its code may share lines with the
    solutions; what must not travel is the course: source notebooks, authoring files, graders.
    """
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        tops = {n.split("/", 1)[0] for n in names}
        assert {t for t in tops if not t.endswith(".dist-info")} == {"flowlab"}, tops
        assert not [n for n in names if n.endswith(".ipynb") or "flowlab_course" in n
                    or "assignments/" in n], names
        meta = archive.read(next(n for n in names if n.endswith("dist-info/METADATA")))
        assert b'extra == "student"' in meta, "the wheel does not carry the student extra"
        for name in names:
            if name.endswith((".py", ".yaml", ".toml", ".json", ".txt")) or "METADATA" in name:
                text = archive.read(name).decode("utf-8", "replace")
                found = leaks(text, set())
                assert not found, f"{wheel.name}:{name} holds {found}"
                assert "YOUR CODE HERE" not in text, f"{wheel.name}:{name} holds an assignment"


# Lines of the solutions that are the training loop every PyTorch text writes: a chapter that
# trains a model has them too, and they give nothing of an assignment away.
GENERIC = {"loss.backward()", "optimizer.step()", "optimizer.zero_grad()"}


def test_the_books_pages_hold_no_solution_and_no_hidden_test() -> None:
    secret = _all_secrets() - GENERIC
    assert len(secret) > 100, len(secret)
    pages = sorted((ROOT / "book").rglob("*.md"))
    assert pages
    for page in pages:
        found = leaks(page.read_text(encoding="utf-8"), secret)
        assert not found, f"{page.relative_to(ROOT)} gives away {found}"
