"""The rehearsal JupyterHub of ``assignments/hub`` started with its one command, on loopback.

``jupyterhub -f assignments/hub/jupyterhub_config.py`` runs in a temporary state folder with a
temporary copy of assignment 01 as the course.  The instructor releases the assignment with
nbgrader's command line under the hub's nbgrader settings; two students log in through the hub's
log-in form (dummy authenticator), their servers are spawned by the hub, and through nbgrader's
assignment-list service of their own server each sees the release, fetches it and submits it.
The hand-ins reach the exchange under each student's hub name (the rehearsal mode's student id),
and the instructor collects both.  Every port is on 127.0.0.1; the hub, the proxy and the user
servers are stopped and the folder removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hub")]

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "assignments" / "hub"
BIN = Path(sys.executable).parent
ASSIGNMENT = "01_change_of_variables"
STUDENTS = ("ada", "bob")
INSTRUCTOR = "teacher"
START = 240.0

import requests  # noqa: E402  (installed with jupyterhub)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _needs() -> None:
    missing = []
    if not (BIN / "jupyterhub").exists():
        missing.append(f"jupyterhub ({BIN / 'python'} -m pip install jupyterhub)")
    if shutil.which("configurable-http-proxy") is None:
        missing.append("configurable-http-proxy (npm install -g configurable-http-proxy)")
    if missing:
        pytest.fail("the hub test needs " + " and ".join(missing))


@pytest.fixture(scope="module")
def hub():
    _needs()
    base = Path(tempfile.mkdtemp(prefix="flowlab-hub-"))
    course = base / "course"
    (course / "source").mkdir(parents=True)
    shutil.copy(ROOT / "assignments" / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(ROOT / "assignments" / "source" / ASSIGNMENT, course / "source" / ASSIGNMENT)
    port = _free_port()
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "FLOWLAB_HUB_STATE": str(base / "state"), "FLOWLAB_HUB_PORT": str(port),
        "FLOWLAB_HUB_API_PORT": str(_free_port()), "FLOWLAB_HUB_INTERNAL_PORT": str(_free_port()),
        "FLOWLAB_HUB_PASSWORD": secrets.token_hex(8), "FLOWLAB_HUB_INSTRUCTOR": INSTRUCTOR,
        "FLOWLAB_HUB_USERS": ",".join([INSTRUCTOR, *STUDENTS]), "FLOWLAB_HUB_COURSE": str(course),
        "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
    })
    env.pop("JUPYTERHUB_USER", None)
    log = base / "jupyterhub.log"
    with open(log, "w") as out:
        # the one command of assignments/hub/README.md
        proc = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(HUB / "jupyterhub_config.py")],
                                cwd=base, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    info = {"url": url, "env": env, "base": base, "course": course, "log": log, "proc": proc}
    try:
        deadline = time.monotonic() + START
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"jupyterhub exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/hub/api/", timeout=10).status_code == 200:
                    break
            time.sleep(1)
        else:
            pytest.fail(f"jupyterhub did not answer on {url} within {START:.0f} s:\n"
                        f"{log.read_text()[-4000:]}")
        yield info
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the hub stops the proxy and the user servers
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        # user servers run in sessions of their own: stop whatever still runs from the state folder
        for pid in _processes_under(base):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


def _processes_under(folder: Path) -> list[int]:
    """Our own leftover processes whose working folder lies in ``folder``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if Path(os.readlink(entry / "cwd")).is_relative_to(folder):
                pids.append(int(entry.name))
    return [p for p in pids if p != os.getpid()]


def _instructor(hub: dict, *args: str) -> subprocess.CompletedProcess:
    """nbgrader as the instructor's server runs it: the hub's settings, JUPYTERHUB_USER set."""
    env = dict(hub["env"], JUPYTER_CONFIG_PATH=str(HUB), JUPYTERHUB_USER=INSTRUCTOR,
               FLOWLAB_HUB_EXCHANGE=str(Path(hub["env"]["FLOWLAB_HUB_STATE"]) / "exchange"),
               FLOWLAB_HUB_COURSE_ROOT=str(hub["course"]), FLOWLAB_HUB_LOCAL_USERS="0")
    proc = subprocess.run([str(BIN / "nbgrader"), *args], cwd=hub["course"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)}:\n{proc.stdout[-3000:]}{proc.stderr[-5000:]}"
    return proc


def _log_in(hub: dict, user: str) -> requests.Session:
    """Log in through the hub's form and start the user's server; return the browser session."""
    s = requests.Session()
    url = hub["url"]
    s.get(f"{url}/hub/login", timeout=60).raise_for_status()
    reply = s.post(f"{url}/hub/login", timeout=120, data={
        "username": user, "password": hub["env"]["FLOWLAB_HUB_PASSWORD"],
        "_xsrf": s.cookies.get("_xsrf", path="/hub/")})
    assert reply.status_code == 200, f"{user}: log-in answered {reply.status_code}"
    # the "Start My Server" of the hub's home page (no options form: GET spawns)
    s.get(f"{url}/hub/spawn/{user}", timeout=START)
    deadline = time.monotonic() + START
    while time.monotonic() < deadline:
        # JupyterLab's page: once the server runs, the hub's OAuth log-in into it completes
        reply = s.get(f"{url}/user/{user}/lab", timeout=60)
        if reply.status_code == 200 and reply.url.startswith(f"{url}/user/{user}/lab"):
            status = s.get(f"{url}/user/{user}/api/status", timeout=60)
            assert status.status_code == 200, f"{user}: api/status {status.status_code}"
            return s
        time.sleep(2)
    raise AssertionError(f"{user}'s server did not start within {START:.0f} s "
                         f"(last {reply.status_code}):\n{hub['log'].read_text()[-4000:]}")


def _post(s: requests.Session, url: str, body: dict) -> dict:
    xsrf = next((c.value for c in s.cookies if c.name == "_xsrf" and "/user/" in c.path), None)
    reply = s.post(url, json=body, headers={"X-XSRFToken": xsrf or ""}, timeout=300)
    assert reply.status_code == 200, f"POST {url}: {reply.status_code} {reply.text[:500]}"
    return reply.json()


def test_students_fetch_and_submit_through_the_hub(hub: dict) -> None:
    _instructor(hub, "generate_assignment", ASSIGNMENT, "--force")
    _instructor(hub, "release_assignment", ASSIGNMENT)
    exchange = Path(hub["env"]["FLOWLAB_HUB_STATE"]) / "exchange" / "flowlab"
    for student in STUDENTS:
        s = _log_in(hub, student)
        base = f"{hub['url']}/user/{student}"
        listing = s.get(f"{base}/assignments", params={"course_id": "flowlab"}, timeout=300).json()
        assert listing["success"], listing
        released = [a for a in listing["value"] if a["assignment_id"] == ASSIGNMENT]
        assert released and released[0]["status"] == "released", listing
        assert _post(s, f"{base}/assignments/fetch",
                     {"course_id": "flowlab", "assignment_id": ASSIGNMENT})["success"]
        home = Path(hub["env"]["FLOWLAB_HUB_STATE"]) / "home" / student
        assert (home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
        result = _post(s, f"{base}/assignments/submit",
                       {"course_id": "flowlab", "assignment_id": ASSIGNMENT})
        assert result["success"], result
    handed_in = sorted(name.split("+")[0] for name in os.listdir(exchange / "inbound"))
    assert handed_in == sorted(STUDENTS), handed_in
    _instructor(hub, "collect", ASSIGNMENT)
    for student in STUDENTS:
        assert (hub["course"] / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
