"""One assignment through the real tools, the way a course on a hub runs it.

An instructor and two students, each with a home of their own, share an nbgrader exchange in a
temporary folder:

* the **instructor** uses nbgrader's command line in a copy of the course (assignment 01 and
  ``assignments/nbgrader_config.py``): ``generate_assignment``, ``release_assignment``, and after
  the hand-in ``collect``, ``autograde``, ``generate_feedback``, ``release_feedback``;
* each **student** is a Unix user of their own (created with ``useradd`` for the test and removed
  afterwards) running their own JupyterLab server on 127.0.0.1, started from the project's virtual
  environment with a separate ``HOME``, ``JUPYTER_CONFIG_DIR``, ``JUPYTER_DATA_DIR`` and
  ``JUPYTER_RUNTIME_DIR``.  Headless Chromium drives nbgrader's JupyterLab interface as a student
  would: the *Nbgrader > Assignment List* menu, *Fetch*, open the notebook, type an answer into a
  solution cell, save, the notebook's *Validate* button, *Submit*, and after grading *Fetch
  Feedback*.

Why real Unix users: nbgrader takes the student's name from the account that runs the server
(``pwd.getpwuid(os.getuid())``, not ``$USER``), and the exchange keeps students apart with file
permissions only (``inbound`` and ``feedback`` are write/traverse-only, a submission's feedback
file is named by a secret only its student holds).  With real users the test checks what a hub
with local accounts relies on: each student gets their own feedback and no other, cannot list the
hand-ins or the released feedback, cannot read the instructor's course (the solutions) or another
student's home.  Creating users needs root; the suite runs as root in CI (``.ci/run``).

Ada types a correct answer to part 1(a), Bob a wrong one; the gradebook must give Ada the point of
that part and Bob none (every other part is left unanswered: 0).  Screenshots of each step that
fails (and of the last state of both students) go to ``_build/screenshots/semester_*.png``.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.book.test_site import DevTools, browser  # noqa: E402,F401  (browser: a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.xdist_group("semester")]

BIN = Path(sys.executable).parent
SCREENSHOTS = ROOT / "_build" / "screenshots"
ASSIGNMENT = "01_change_of_variables"
COURSE_ID = "flowlab"  # = c.CourseDirectory.course_id of assignments/nbgrader_config.py
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
SERVER_START = 240.0   # a JupyterLab server answering, on a loaded two-core machine
UI_STEP = 180.0        # one click's effect in the page (fetch, submit, a panel opening)
VALIDATE = 420.0       # nbgrader validate: a kernel, torch imported, the notebook run

# What the students type into the solution cell of part 1(a) (grade cell "density_uniform").
SIGNATURE = 'def density_sqrt_uniform(x: Tensor) -> Tensor:\n'
ANSWERS = {
    "ada": SIGNATURE + "    return torch.where((x > 0) & (x < 1), 2 * x, torch.zeros_like(x))\n",
    "bob": SIGNATURE + "    return 2 * x  # forgets that the density is 0 outside (0, 1)\n",
}
# A line of the visible test of part 1(a): shown by Validate when that test fails.
PART_1A_TEST = "density_sqrt_uniform(torch.tensor([1.5]))"


# ----------------------------------------------------------------------------- people
@dataclass
class Person:
    role: str                      # "ada", "bob" or "instructor"
    name: str                      # the Unix user name (= nbgrader's student id)
    home: Path
    uid: int = 0
    gid: int = 0
    server: subprocess.Popen | None = None
    url: str = ""
    token: str = ""
    log: Path | None = None
    target: str = ""
    session: str = ""
    wrap: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        jupyter = self.home / ".jupyter"
        return {
            "HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
            "JUPYTER_CONFIG_DIR": str(jupyter),
            "JUPYTER_DATA_DIR": str(self.home / ".local" / "share" / "jupyter"),
            "JUPYTER_RUNTIME_DIR": str(self.home / ".local" / "share" / "jupyter" / "runtime"),
            "IPYTHONDIR": str(self.home / ".ipython"), "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
        }

    def command(self, *args: str) -> list[str]:
        """``args`` run as this person (setpriv to their uid; the instructor is root)."""
        if self.role == "instructor":
            return list(args)
        return [*self.wrap, "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
                "--init-groups", *args]

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 900,
            check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.command(*args), cwd=cwd or self.home, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.role} ({self.name}): {' '.join(args)} failed "
                                 f"({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
        return proc


def _private_ancestor(path: Path) -> Path | None:
    """The top-most folder at or above ``path`` that other users cannot enter, if any (``path``
    itself counts: ``mktemp -d`` makes a 0700 folder to clone into)."""
    for parent in [*reversed(path.parents), path]:
        if not parent.stat().st_mode & 0o001:
            return parent
    return None


def _interpreter_wrapper(stage: Path) -> list[str]:
    """A command prefix that lets the students' processes start the project's Python.

    The students need to run the project's virtual environment, as every user of a hub runs the
    system-wide one.  Where the venv's base interpreter lives in a private folder (pyenv in
    root's 0700 home, say), the students' processes get a mount namespace of their own in which
    that folder is an empty tmpfs holding only a read-only bind of the interpreter's prefix.
    Nothing else of the folder becomes visible and nothing changes outside the namespace.
    """
    repo_hidden = _private_ancestor(ROOT)
    if repo_hidden is not None:
        pytest.fail(f"the students' accounts cannot reach the project in {ROOT}: {repo_hidden} is "
                    "not searchable by other users (chmod o+x it, or clone elsewhere)")
    prefix = Path(sys.base_prefix).resolve()
    hidden = _private_ancestor(prefix)
    if hidden is None:
        return []
    if shutil.which("unshare") is None:
        pytest.fail(f"the venv's interpreter lies in {hidden}, private to root: the test needs "
                    "unshare (util-linux) to show it to the students, or a venv made from a "
                    "system Python (python3 -m venv .venv with /usr/bin/python3)")
    stage.mkdir(mode=0o700)
    script = ('set -e; mount --bind "$1" "$2"; mount -t tmpfs -o mode=0755,size=1m tmpfs "$3"; '
              'mkdir -p "$1"; mount --bind -o ro "$2" "$1"; shift 3; exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
            str(prefix), str(stage), str(hidden)]


def _nbgrader_config(exchange: Path, course_root: Path | None = None) -> str:
    """A person's own nbgrader_config.py: what a hub puts in /etc/jupyter for everyone."""
    lines = ["c = get_config()  # noqa: F821",
             f"c.Exchange.root = {str(exchange)!r}",
             f"c.CourseDirectory.course_id = {COURSE_ID!r}"]
    if course_root is not None:
        lines.append(f"c.CourseDirectory.root = {str(course_root)!r}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def semester():
    """The temporary exchange, the instructor's course and two student accounts; all removed."""
    if os.geteuid() != 0:
        pytest.fail("test_semester runs each student as a Unix user of their own (useradd, "
                    "setpriv) and so needs root, as the suite has in CI (.ci/run). Run it as "
                    "root: sudo -E make test, or sudo .venv/bin/python -m pytest "
                    "tests/course/test_semester.py")
    for tool in ("useradd", "userdel", "setpriv"):
        if shutil.which(tool) is None:
            pytest.fail(f"test_semester needs {tool} (apt-get install -y passwd util-linux)")
    base = Path(tempfile.mkdtemp(prefix="flowlab-semester-"))
    base.chmod(0o755)  # students reach the exchange through it; their homes are 0700
    created: list[str] = []
    people: dict[str, Person] = {}
    try:
        exchange = base / "exchange"  # made by release_assignment (0777, as nbgrader wants)
        instructor = Person("instructor", "root", base / "instructor")
        course = instructor.home / "course"
        (course / "source").mkdir(parents=True)
        instructor.home.chmod(0o700)  # the course holds every solution
        shutil.copy(ROOT / "assignments" / "nbgrader_config.py", course / "nbgrader_config.py")
        shutil.copytree(ROOT / "assignments" / "source" / ASSIGNMENT, course / "source" / ASSIGNMENT)
        (instructor.home / ".jupyter").mkdir()
        (instructor.home / ".jupyter" / "nbgrader_config.py").write_text(
            _nbgrader_config(exchange, course))
        people["instructor"] = instructor
        tag = secrets.token_hex(3)
        wrap = _interpreter_wrapper(base / "interpreter")
        for role in ANSWERS:
            name = f"flowlab-{role}-{tag}"
            home = base / role
            subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell",
                            "/usr/sbin/nologin", "--user-group", name],
                           check=True, capture_output=True, text=True, timeout=120)
            created.append(name)
            import pwd

            entry = pwd.getpwnam(name)
            student = Person(role, name, home, uid=entry.pw_uid, gid=entry.pw_gid, wrap=wrap)
            (home / ".jupyter").mkdir(parents=True)
            (home / ".jupyter" / "nbgrader_config.py").write_text(_nbgrader_config(exchange))
            # JupyterLab does not ask about its news feed (a hub sets this for everyone).
            settings = home / ".jupyter" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
            settings.mkdir(parents=True)
            (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}\n')
            for path in [home, *home.rglob("*")]:
                os.chown(path, student.uid, student.gid)
            home.chmod(0o700)
            people[role] = student
        yield {"base": base, "exchange": exchange, "course": course, "people": people}
    finally:
        for person in people.values():
            _stop_server(person)
        for name in created:
            subprocess.run(["userdel", name], capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------------------- servers
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(person: Person, logs: Path) -> None:
    """The student's JupyterLab on 127.0.0.1, as their own user, from the project's venv."""
    person.token = secrets.token_hex(24)
    port = _free_port()
    person.log = logs / f"jupyterlab-{person.role}.log"
    args = [str(BIN / "jupyter-lab"), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={person.token}",
            f"--ServerApp.root_dir={person.home}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(person.log, "w") as log:
        person.server = subprocess.Popen(person.command(*args), cwd=person.home, env=person.env(),
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
    person.url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START
    while time.monotonic() < deadline:
        if person.server.poll() is not None:
            raise AssertionError(f"{person.role}'s JupyterLab exited ({person.server.returncode}):"
                                 f"\n{_tail(person.log)}")
        try:
            with urllib.request.urlopen(f"{person.url}/api/status?token={person.token}",
                                        timeout=10) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"{person.role}'s JupyterLab did not answer on {person.url} within "
                         f"{SERVER_START:.0f} s:\n{_tail(person.log)}")


def _stop_server(person: Person) -> None:
    proc = person.server
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)  # the server and the kernels it started
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(timeout=30)


def _tail(path: Path | None, chars: int = 4000) -> str:
    if path is None or not path.exists():
        return "(no log)"
    return path.read_text(errors="replace")[-chars:]


# ----------------------------------------------------------------------------- the page
class Student:
    """One student's JupyterLab tab, driven through the DevTools protocol."""

    def __init__(self, tools: DevTools, person: Person) -> None:
        self.tools, self.person = tools, person
        self.step = "opening JupyterLab"

    # -- low level
    def js(self, expression: str, timeout: float = UI_STEP):
        result = self.tools.call("Runtime.evaluate", session=self.person.session,
                                 expression=expression, awaitPromise=True, returnByValue=True,
                                 timeout=timeout * 1000)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise AssertionError(f"{self.where()}: script failed: "
                                 f"{details.get('exception', {}).get('description', details)}")
        return result["result"].get("value")

    def where(self) -> str:
        return f"{self.person.role} ({self.person.name}), step '{self.step}'"

    def wait(self, condition: str, what: str, timeout: float = UI_STEP):
        """Poll the JavaScript expression ``condition`` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(f"(() => {{ try {{ const v = ({condition}); return v instanceof Node "
                            f"? true : v; }} catch (e) {{ return null; }} }})()")
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"{self.where()}: {what} did not happen within {timeout:.0f} s")

    def click(self, finder: str, what: str, timeout: float = UI_STEP) -> None:
        """A real mouse click (DevTools Input domain) at the centre of the element ``finder``
        (a JavaScript expression evaluating to an element) once it is visible and enabled."""
        box = self.wait(
            f"(() => {{ const el = {finder}; if (!el || el.disabled || el.hasAttribute('disabled'))"
            " return null; el.scrollIntoView({block: 'center'}); const r = el.getBoundingClientRect();"
            " return r.width > 0 && r.height > 0 ? [r.x + r.width / 2, r.y + r.height / 2] : null;"
            " })()", f"'{what}' to be shown", timeout)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.tools.call("Input.dispatchMouseEvent", session=self.person.session, type=kind,
                            x=box[0], y=box[1], button="left" if kind != "mouseMoved" else "none",
                            clickCount=1 if kind != "mouseMoved" else 0)

    def key(self, key: str, code: str, keycode: int, ctrl: bool = False,
            commands: list[str] | None = None) -> None:
        mods = 2 if ctrl else 0
        extra = {"commands": commands} if commands else {}
        self.tools.call("Input.dispatchKeyEvent", session=self.person.session, type="keyDown",
                        key=key, code=code, windowsVirtualKeyCode=keycode, modifiers=mods, **extra)
        self.tools.call("Input.dispatchKeyEvent", session=self.person.session, type="keyUp",
                        key=key, code=code, windowsVirtualKeyCode=keycode, modifiers=mods)

    def front(self) -> None:
        """Make this student's tab the focused one (a background tab's timers are throttled)."""
        self.tools.call("Page.bringToFront", session=self.person.session)
        self.tools.call("Emulation.setFocusEmulationEnabled", session=self.person.session,
                        enabled=True)

    def screenshot(self, label: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"semester_{self.person.role}_{label}.png"
        shot = self.tools.call("Page.captureScreenshot", session=self.person.session, format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    # -- the student's actions, as in the book's student page
    def open_lab(self) -> None:
        self.step = "opening JupyterLab"
        self.tools.call("Page.navigate", session=self.person.session,
                        url=f"{self.person.url}/lab?token={self.person.token}")
        self.front()
        self.wait("document.querySelector('#jp-main-dock-panel') && "
                  "!document.querySelector('#jupyterlab-splash') && "
                  "[...document.querySelectorAll('.lm-MenuBar-itemLabel')]"
                  ".some(e => e.textContent.trim() === 'Nbgrader')",
                  "JupyterLab with nbgrader's menu to load", SERVER_START)

    def open_assignment_list(self) -> None:
        self.step = "Nbgrader > Assignment List"
        self.click("[...document.querySelectorAll('.lm-MenuBar-item')].find(e => "
                   "e.textContent.trim() === 'Nbgrader')", "the Nbgrader menu")
        self.click("[...document.querySelectorAll('.lm-Menu-item')].find(e => "
                   "e.querySelector('.lm-Menu-itemLabel')?.textContent.trim() === 'Assignment List')",
                   "the Assignment List menu item")
        self.wait("document.querySelector('#released_assignments_list') && !["
                  "'released_assignments_list_loading', 'fetched_assignments_list_loading',"
                  "'submitted_assignments_list_loading'].some(id => { const e = "
                  "document.getElementById(id); return e && !e.hidden && e.offsetParent; })",
                  "the assignment list to load")

    def refresh_assignment_list(self) -> None:
        self.click("document.getElementById('refresh_assignments_list')", "the refresh button")
        time.sleep(1)

    def button_in(self, listing: str, label: str) -> str:
        return (f"[...document.querySelectorAll('#{listing} button')].find(b => "
                f"b.innerText.trim() === '{label}')")

    def fetch(self) -> None:
        self.step = "Fetch the assignment"
        self.wait(f"[...document.querySelectorAll('#released_assignments_list .item_name')]"
                  f".some(e => e.innerText.includes('{ASSIGNMENT}'))",
                  f"{ASSIGNMENT} to be listed as released")
        self.click(self.button_in("released_assignments_list", "Fetch"), "the Fetch button")
        self.wait(f"[...document.querySelectorAll('#fetched_assignments_list .item_name')]"
                  f".some(e => e.innerText.includes('{ASSIGNMENT}'))",
                  f"{ASSIGNMENT} to appear under 'Downloaded assignments'")

    def open_notebook(self) -> None:
        self.step = "open the notebook from the assignment list"
        self.click("document.querySelector('#fetched_assignments_list .assignment-notebooks-link')",
                   "the assignment's notebook list")
        self.click(f"[...document.querySelectorAll('#fetched_assignments_list .collapse.in a')]"
                   f".find(a => a.innerText.trim() === '{ASSIGNMENT}')", "the notebook's link")
        self.wait("document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) "
                  ".jp-Notebook .jp-Cell .cm-content') && [...document.querySelectorAll("
                  "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .cm-content')]"
                  ".some(e => e.innerText.includes('def density_sqrt_uniform'))",
                  "the notebook to open with its cells")
        self.wait("document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) "
                  ".validate-button')", "the notebook's Validate button")

    def answer(self, text: str) -> None:
        self.step = "type the answer into the solution cell"
        editor = ("[...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) "
                  ".jp-Notebook .jp-CodeCell .cm-content')].find(e => "
                  "e.innerText.includes('def density_sqrt_uniform'))")
        # The notebook may still be laying itself out (maths typeset, outputs sized): click
        # again until the editor has the focus.
        deadline = time.monotonic() + UI_STEP
        while True:
            self.click(editor, "the solution cell's editor")
            try:
                self.wait(f"{editor}.contains(document.activeElement)",
                          "the solution cell to take the focus", 10)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
        self.key("a", "KeyA", 65, ctrl=True, commands=["selectAll"])
        self.tools.call("Input.insertText", session=self.person.session, text=text)
        self.wait(f"{editor}.innerText.includes({json.dumps(text.splitlines()[-1].strip())})",
                  "the typed answer to show in the cell")

    def save(self, path: Path) -> None:
        self.step = "save the notebook (Ctrl+S)"
        before = path.stat().st_mtime
        self.key("s", "KeyS", 83, ctrl=True)
        deadline = time.monotonic() + UI_STEP
        while time.monotonic() < deadline and path.stat().st_mtime == before:
            time.sleep(0.5)
        assert path.stat().st_mtime != before, f"{self.where()}: {path} was not saved"

    def validate(self) -> str:
        self.step = "Validate"
        self.click("document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) "
                   ".validate-button')", "the Validate button")
        text = self.wait("(() => { const d = [...document.querySelectorAll('.jp-Dialog')].find("
                         "d => d.innerText.includes('Validation Results') || "
                         "d.innerText.includes('Validation failed')); "
                         "return d ? d.querySelector('.jp-Dialog-body').innerText : null; })()",
                         "the validation results", VALIDATE)
        self.screenshot("validated")
        self.click("document.querySelector('.jp-Dialog .jp-Dialog-footer button')",
                   "the dialog's OK button")
        self.wait("!document.querySelector('.jp-Dialog')", "the dialog to close")
        return text

    def submit(self) -> None:
        self.open_assignment_list()
        self.step = "Submit"
        self.click(self.button_in("fetched_assignments_list", "Submit"), "the Submit button")
        self.wait(f"[...document.querySelectorAll('#submitted_assignments_list .item_name')]"
                  f".some(e => e.innerText.includes('{ASSIGNMENT}'))",
                  f"{ASSIGNMENT} to appear under 'Submitted assignments'")

    def fetch_feedback(self) -> None:
        self.front()
        self.open_assignment_list()
        self.step = "Fetch Feedback"
        deadline = time.monotonic() + UI_STEP
        fetch = self.button_in("submitted_assignments_list", "Fetch Feedback")
        while not self.js(f"!!({fetch})") and time.monotonic() < deadline:
            self.refresh_assignment_list()
        self.click(fetch, "the Fetch Feedback button")
        self.wait("[...document.querySelectorAll('#submitted_assignments_list a')]"
                  ".some(a => a.innerText.includes('view feedback'))",
                  "the 'view feedback' link after fetching the feedback")


@contextlib.contextmanager
def _step(students: list[Student], what: str):
    """Any failure inside names the step, saves screenshots and the servers' log tails."""
    try:
        yield
    except Exception as exc:
        shots, logs = [], []
        for s in students:
            with contextlib.suppress(Exception):
                shots.append(str(s.screenshot("failed")))
            logs.append(f"--- {s.person.role}'s JupyterLab log ---\n{_tail(s.person.log, 2500)}")
        raise AssertionError(f"{what} failed: {exc}\nscreenshots: {shots}\n" + "\n".join(logs)) from exc


# ----------------------------------------------------------------------------- the test
def _as_student_can(person: Person, action: str, path: Path) -> str:
    """Try ``listdir`` or ``read`` of ``path`` as ``person``: 'ok' or the error's name."""
    code = (f"import os, sys\ntry:\n    {'os.listdir' if action == 'list' else 'open'}({str(path)!r})"
            f"{'.read()' if action == 'read' else ''}\n    print('ok')\n"
            "except OSError as e:\n    print(type(e).__name__)")
    return person.run(str(BIN / "python"), "-c", code, timeout=120).stdout.strip()


def _html_files(folder: Path) -> dict[str, bytes]:
    return {p: Path(p).read_bytes() for p in glob.glob(str(folder / "**" / "*.html"), recursive=True)}


def test_a_semester_through_the_real_tools(semester, browser: DevTools) -> None:
    people: dict[str, Person] = semester["people"]
    instructor, exchange, course = people["instructor"], semester["exchange"], semester["course"]
    roles = list(ANSWERS)

    # -- the instructor releases the assignment into the exchange
    instructor.run(str(BIN / "nbgrader"), "generate_assignment", ASSIGNMENT, "--force", cwd=course)
    instructor.run(str(BIN / "nbgrader"), "release_assignment", ASSIGNMENT, cwd=course)
    assert (exchange / COURSE_ID / "outbound" / ASSIGNMENT / NOTEBOOK).is_file()

    # -- each student: their own JupyterLab, fetch, answer, save, validate, submit
    students: list[Student] = []
    for role in roles:
        person = people[role]
        with _step(students, f"starting {role}'s JupyterLab"):
            _start_server(person, semester["base"])
        person.target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        person.session = browser.call("Target.attachToTarget", targetId=person.target,
                                      flatten=True)["sessionId"]
        students.append(Student(browser, person))
    validation: dict[str, str] = {}
    try:
        for student in students:
            role, person = student.person.role, student.person
            local = person.home / ASSIGNMENT / NOTEBOOK
            with _step(students, f"{role}: fetch, answer, validate and submit in JupyterLab"):
                student.open_lab()
                student.open_assignment_list()
                student.fetch()
                assert local.is_file(), f"{role}: Fetch did not write {local}"
                student.open_notebook()
                student.answer(ANSWERS[role])
                student.save(local)
                saved = json.loads(local.read_text())
                cell = next(c for c in saved["cells"]
                            if "def density_sqrt_uniform" in "".join(c["source"]))
                assert "".join(cell["source"]).strip() == ANSWERS[role].strip(), (
                    f"{role}: the saved solution cell is not what was typed:\n"
                    + "".join(cell["source"]))
                validation[role] = student.validate()
                student.submit()
                student.screenshot("submitted")

        # Validate runs the visible tests: part 1(a) fails for Bob only; the unanswered parts
        # fail for both.
        for role, text in validation.items():
            assert "The following cell failed" in text, f"{role}: validation output:\n{text}"
        assert PART_1A_TEST not in validation["ada"], validation["ada"]
        assert PART_1A_TEST in validation["bob"], validation["bob"]

        # -- the hand-ins are invisible to the other students
        inbound = exchange / COURSE_ID / "inbound"
        submitted = sorted(os.listdir(inbound))
        assert [s.split("+")[0] for s in submitted] == sorted(people[r].name for r in roles), submitted
        for role in roles:
            person = people[role]
            assert _as_student_can(person, "list", inbound) == "PermissionError"
            assert _as_student_can(person, "list", course) == "PermissionError"
            other = people[next(r for r in roles if r != role)]
            assert _as_student_can(person, "list", other.home) == "PermissionError"

        # -- the instructor grades and hands the feedback back
        instructor.run(str(BIN / "nbgrader"), "collect", ASSIGNMENT, cwd=course)
        instructor.run(str(BIN / "nbgrader"), "autograde", ASSIGNMENT, cwd=course)
        instructor.run(str(BIN / "nbgrader"), "generate_feedback", ASSIGNMENT, cwd=course)
        instructor.run(str(BIN / "nbgrader"), "release_feedback", ASSIGNMENT, cwd=course)

        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            scores = {}
            for role in roles:
                sub = gb.find_submission(ASSIGNMENT, people[role].name)
                scores[role] = {g.name: g.score for nb in sub.notebooks for g in nb.grades}
        parts = set(scores["ada"])
        assert "density_uniform" in parts and len(parts) > 1, scores
        assert scores["ada"] == {p: (1.0 if p == "density_uniform" else 0.0) for p in parts}, scores
        assert scores["bob"] == {p: 0.0 for p in parts}, scores

        # -- each student fetches their own feedback in JupyterLab
        released = exchange / COURSE_ID / "feedback"
        assert len(os.listdir(released)) == 2
        for student in students:
            with _step(students, f"{student.person.role}: Fetch Feedback in JupyterLab"):
                student.fetch_feedback()
                student.screenshot("feedback")
    finally:
        for s in students:
            with contextlib.suppress(Exception):
                s.screenshot("last")
            with contextlib.suppress(Exception):
                browser.call("Target.closeTarget", targetId=s.person.target)

    feedback_of = {role: course / "feedback" / people[role].name / ASSIGNMENT /
                   f"{ASSIGNMENT}.html" for role in roles}
    for role in roles:
        person = people[role]
        other = next(r for r in roles if r != role)
        got = _html_files(person.home / ASSIGNMENT / "feedback")
        assert len(got) == 1, f"{role} has {sorted(got)} in their feedback folder, wanted one page"
        page = next(iter(got.values()))
        assert page == feedback_of[role].read_bytes(), f"{role} got a feedback page not theirs"
        # Another student's feedback is nowhere in this student's home ...
        theirs = feedback_of[other].read_bytes()
        home_pages = _html_files(person.home)
        assert all(content != theirs for content in home_pages.values()), (
            f"{role}'s home holds {other}'s feedback")
        # ... the exchange does not list the released feedback to them ...
        assert _as_student_can(person, "list", released) == "PermissionError"
        # ... and asking the exchange for the other student's feedback hands over none of it.
        person.run(str(BIN / "nbgrader"), "fetch_feedback", ASSIGNMENT, "--course", COURSE_ID,
                   f"--student={people[other].name}", check=False)
        assert all(content != theirs for content in _html_files(person.home).values()), (
            f"nbgrader fetch_feedback --student={people[other].name} run by {role} handed over "
            f"{other}'s feedback")
    assert re.search(rb"1(\.0)?\s*/\s*\d", feedback_of["ada"].read_bytes()) is not None
